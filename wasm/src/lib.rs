//! cloud3 wasm bindings.
