//! cloud3 agent.
fn main() {}
