//! Client library for NFVinc applications.
//!
//! * [`fd`]: the failure detector's direct channel: a heartbeat sender
//!   that keeps its period, requests, and pushed state changes.
//! * [`direct`]: the credentials every direct channel is authenticated
//!   with.
//! * [`rest`]: the netServices REST API.

pub mod direct;
pub mod fd;
pub mod rest;
