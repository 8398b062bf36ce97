//! Client library for NFVinc applications.
//!
//! * [`fd`]: the failure detector's direct channel: a heartbeat sender
//!   that keeps its period, requests, and pushed state changes.

pub mod fd;
pub mod rest;
