//! Failure detector as a network service.
//!
//! Placeholder: filled by its own issue; see `../shared/ARCHITECTURE.md`.
