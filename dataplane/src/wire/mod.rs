//! Wire formats: zero-copy typed views over packet bytes.
