//! Time as the protocol cores see it: a number the caller hands in, shared
//! with the other cores ([`dataplane::time`]).

pub use dataplane::time::Time;
pub(crate) use dataplane::time::duration_nanos;
