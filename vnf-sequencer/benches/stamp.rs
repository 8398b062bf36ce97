//! Placeholder: the stamping benchmark is being written.
fn main() {}
