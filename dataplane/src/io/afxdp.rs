//! AF_XDP backend.
