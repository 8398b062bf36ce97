//! Client library for NFVinc applications.
//!
//! * [`broadcast`]: the sequencer service: a member of a group that
//!   sends in any of the four broadcast modes and receives in order, over
//!   the direct channel ([`broadcast::Broadcast::join_instance`] joins an
//!   instance of `nfvinc serve`) or over REST
//!   ([`broadcast::RestBroadcast`]).
//! * [`fd`]: the failure detector's direct channel: a heartbeat sender
//!   that keeps its period, requests, and pushed state changes.
//! * [`consensus`]: the consensus service: submit values (retried, decided
//!   at most once) and follow the decided log in instance order, over the
//!   direct channel ([`consensus::Consensus::connect_instance`]) or over
//!   REST ([`consensus::RestConsensus`]).
//! * [`direct`]: the credentials every direct channel is authenticated
//!   with.
//! * [`rest`]: the netServices REST API.

pub mod broadcast;
pub mod consensus;
mod datagrams;
pub mod direct;
pub mod fd;
pub mod rest;
