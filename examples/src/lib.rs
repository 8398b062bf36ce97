//! Small applications that use NFVinc's services through `libnfvinc`,
//! each a binary that `nfvinc demo` runs against a live `nfvinc serve`:
//!
//! | binary | service | what it shows |
//! | --- | --- | --- |
//! | `nfvinc-example-workers` | `fd` | a worker pool supervised by the failure detector: workers send heartbeats over the authenticated direct channel, one crashes, the detector suspects it, its job goes to another worker |
//! | `nfvinc-example-kv` | `consensus` | a replicated key-value store: replicas propose writes over their direct channels, an administrator over REST, and every replica applies the same decided log to the same store |
//! | `nfvinc-example-chat` | `sequencer` | a group chat on FIFO-atomic broadcast: participants type concurrently over the direct channel, a moderator posts over REST, and everyone (and a REST subscriber) sees one transcript |
//!
//! Every example takes the daemon's URL and an API key from `--url` and
//! `--api-key` or `NFVINC_URL` and `NFVINC_API_KEY` ([`Connection`]),
//! creates the instances it needs, removes them when done, prints what it
//! sees, and exits non-zero when the service did not behave as it should.

use anyhow::Context;
use libnfvinc::rest::Client;

/// Where the daemon is, for every example.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// Base URL of `nfvinc serve`.
    #[arg(long, env = "NFVINC_URL", default_value = "http://127.0.0.1:8470")]
    pub url: String,
    /// API key (from `nfvinc user add NAME`).
    #[arg(long, env = "NFVINC_API_KEY", hide_env_values = true)]
    pub api_key: String,
}

impl Connection {
    /// Opens a session.
    pub fn open(&self) -> anyhow::Result<Client> {
        Client::connect(&self.url, &self.api_key)
            .with_context(|| format!("opening a session with nfvinc at {}", self.url))
    }
}
