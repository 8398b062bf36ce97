//! Sequencer VNF: reliable, atomic, FIFO-atomic and causal-atomic broadcast.
//!
//! Placeholder: filled by its own issue; see `../shared/ARCHITECTURE.md`.
