//! Client library for NFVinc applications.
//!
//! Placeholder: filled by its own issue; see `../shared/ARCHITECTURE.md`.
