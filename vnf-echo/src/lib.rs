//! The echo VNF.
