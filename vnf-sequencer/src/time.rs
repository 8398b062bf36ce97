//! Time as the cores see it: a number the caller hands in, shared with the
//! other cores ([`dataplane::time`]).

pub use dataplane::time::Time;
