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
//! | [`services`] | launching the sequencer and consensus services, their REST gateway member |
//! | [`db`], [`config`], [`error`], [`metrics`], [`state`], [`server`] | plumbing |
//!
//! ## Running it
//!
//! ```sh
//! nfvinc --data-dir /tmp/nfv user add alice        # prints an API key, once
//! nfvinc --data-dir /tmp/nfv serve --listen 127.0.0.1:8470   # prints READY <url>
//! curl -XPOST localhost:8470/v1/sessions -H 'content-type: application/json' \
//!      -d '{"api_key":"nfvk_…"}'                    # {"token": "nfvt_…", …}
//! curl -XPOST localhost:8470/v1/instances -H 'authorization: Bearer nfvt_…' \
//!      -H 'content-type: application/json' -d '{"service":"fd"}'
//! curl -XPOST localhost:8470/v1/instances/i-…/ops/add -H 'authorization: Bearer nfvt_…' \
//!      -H 'content-type: application/json' -d '{"process":7}'
//! ```
//!
//! `nfvinc config` prints every setting with its default; `--config FILE`
//! reads them from TOML and the flags of `serve` override the file. The
//! daemon needs root for the per-tenant namespaces (`--no-isolation` runs
//! every instance on loopback instead). VNF binaries are looked up beside
//! `nfvinc` unless `vim.vnf_dir` says otherwise.
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
pub mod services;
pub mod state;
pub mod vim;
