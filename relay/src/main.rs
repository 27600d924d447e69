//! cloud3 relay.
fn main() {}
