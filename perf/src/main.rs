//! nfvinc-perf.
fn main() {}
