//! NFV-SI control plane: the `nfvinc` daemon's library.
//!
//! | module | role |
//! | --- | --- |
//! | [`routes`] | the netServices REST API (axum router, handlers, OpenAPI) |
//! | [`broker`] | sends operations to instances, or to the Scheduler |
//! | [`scheduler`] | durable log of requests for unavailable instances, replay |
//! | [`manager`] | Service Manager: instance lifecycle, reconciliation |
//! | [`vim`] | the VIM trait and the local VIM (VNF processes) |
//! | [`monitor`] | health checks, healing, per-instance measurements |
//! | [`agent`] | Configuration Agent: tenant networks, session keys |
//! | [`auth`] | users, API keys, sessions, the bearer extractor |
//! | [`catalog`] | the discovery catalog |
//! | [`db`], [`config`], [`error`], [`metrics`], [`state`], [`server`] | plumbing |
//!
//! Flow routes in the XDP program and the keyed MAC of direct-channel
//! packets belong to the dataplane; this crate keeps their table and keys.

pub mod agent;
pub mod auth;
pub mod broker;
pub mod catalog;
pub mod config;
pub mod db;
pub mod error;
pub mod manager;
pub mod metrics;
pub mod monitor;
pub mod routes;
pub mod scheduler;
pub mod server;
pub mod state;
pub mod vim;
