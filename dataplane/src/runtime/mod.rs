//! Pinned run-to-completion workers and polling policies.
