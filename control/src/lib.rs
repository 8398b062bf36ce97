//! NFV-SI control plane daemon (netServices REST API, broker, configuration agent, monitor, VIM).
//!
//! Placeholder: filled by its own issue; see `../shared/ARCHITECTURE.md`.
