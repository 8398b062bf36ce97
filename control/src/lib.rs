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
//! ## The `nfvinc` client commands
//!
//! The same binary is the operators' and users' client of a running
//! daemon (its code is in `src/cli/`, built into the binary, over
//! `libnfvinc::rest`). Every command takes `--url` (or `NFVINC_URL`,
//! default `http://127.0.0.1:8470`), `--api-key` (or `NFVINC_API_KEY`),
//! `--ca-cert` for an HTTPS daemon with a private CA, and `--json` to print
//! JSON instead of tables:
//!
//! | command | what it does |
//! | --- | --- |
//! | `nfvinc services` | the catalog: services, versions, modes, operations, limits |
//! | `nfvinc connect SERVICE [--name N] [--options JSON] [--replicas N]` | creates an instance in your virtual network; prints its REST handle and direct channel (with the session key, shown once) |
//! | `nfvinc instances` | your instances, their state, direct channel, workers, restarts |
//! | `nfvinc metrics [ID]` | what the Monitor measured (CPU, memory, the VNF's counters) |
//! | `nfvinc op ID OP ['JSON'] [--wait S]` | runs an operation (`add`, `broadcast`, `propose`, …); a scheduled one is waited for |
//! | `nfvinc request RID` | a logged request and its outcome |
//! | `nfvinc events ID [--count N] [--timeout S]` | tails the instance's event stream (deliveries, decisions, state changes, lifecycle) |
//! | `nfvinc scale ID [--replicas N] [--min N] [--max N]` | scales by request |
//! | `nfvinc heal ID` | restarts the instance now and replays its log |
//! | `nfvinc remove ID` | removes it |
//!
//! For example, a group chat by hand:
//!
//! ```sh
//! nfvinc connect sequencer                       # i-… with its group and sequencer endpoint
//! nfvinc events i-… --timeout 30 &               # deliveries as they come
//! nfvinc op i-… broadcast '{"message": "hello", "mode": "atomic"}'
//! nfvinc connect consensus && nfvinc op i-… propose '{"value": "x=1"}'
//! ```
//!
//! `nfvinc demo` starts a daemon of its own (or uses one with `--attach`)
//! and runs the example applications of the `examples` crate against it:
//! a worker pool on the failure detector, a replicated key-value store on
//! consensus, a group chat on atomic broadcast.
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
