//! `nfvinc`: the NFV-SI daemon and its administration commands.

mod cli;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use control::config::{Config, TlsConfig};
use control::{auth, server};

/// NFVinc control plane (NFV-SI).
///
/// `nfvinc serve` runs the netServices REST API: discovery of the services
/// (sequencer, consensus, failure detector), sessions opened with API keys,
/// instances started inside each tenant's own network namespace, operations,
/// event streams, management, /metrics and /openapi.json. State lives in
/// SQLite under the data directory and survives restarts.
///
/// Settings come from the TOML file given with --config (every field has a
/// default; `nfvinc config` prints them all), and the flags of `serve`
/// override the file. Users and API keys are created with `nfvinc user`.
///
/// The client commands (services, connect, instances, metrics, scale, heal,
/// remove, events, op, request) talk to a running daemon at --url with
/// --api-key (or NFVINC_URL and NFVINC_API_KEY). `nfvinc demo` starts a
/// daemon and shows every service at work through the example applications.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, short, global = true, env = "NFVINC_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (database, control sockets, VNF logs); overrides the file.
    #[arg(long, global = true, env = "NFVINC_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    client: cli::ClientArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon until SIGINT or SIGTERM; prints `READY <url>` when it serves.
    Serve(ServeArgs),
    /// Manage users (tenants) and their API keys.
    #[command(subcommand)]
    User(UserCommand),
    /// Print the configuration in force (defaults, file, flags) as TOML.
    Config,
    /// Start a daemon (or --attach to one), run the example applications
    /// against it and show each service working; exits non-zero if one
    /// misbehaves.
    Demo(cli::demo::DemoArgs),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on (port 0: any free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// PEM certificate chain: serve HTTPS (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Directory of the vnf-SERVICE binaries (default: beside nfvinc).
    #[arg(long)]
    vnf_dir: Option<PathBuf>,
    /// Dataplane backend for VNFs: udp or afxdp.
    #[arg(long)]
    backend: Option<String>,
    /// Milliseconds between health checks.
    #[arg(long)]
    monitor_interval_ms: Option<u64>,
    /// Do not restart dead instances (they stay unavailable, requests are
    /// logged, until healed by request).
    #[arg(long)]
    no_auto_heal: bool,
    /// Run every instance in the daemon's namespace on loopback (no root
    /// needed, no tenant isolation at the network level).
    #[arg(long)]
    no_isolation: bool,
    /// Offer the test services (echo, journal).
    #[arg(long)]
    test_services: bool,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user and print its first API key (shown once, stored hashed).
    Add {
        /// User name: 1-64 letters, digits or any of - _ . @
        name: String,
    },
    /// Print a new API key for an existing user.
    Key {
        /// User name.
        name: String,
    },
    /// List users and how many live keys each has.
    List,
}

fn load(cli: &Cli) -> anyhow::Result<Config> {
    let mut c = Config::load(cli.config.as_deref())?;
    if let Some(d) = &cli.data_dir {
        c.data_dir = d.clone();
    }
    Ok(c)
}

fn apply(c: &mut Config, a: &ServeArgs) {
    if let Some(l) = a.listen {
        c.listen = l;
    }
    if let (Some(cert), Some(key)) = (&a.tls_cert, &a.tls_key) {
        c.tls = Some(TlsConfig {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    if let Some(d) = &a.vnf_dir {
        c.vim.vnf_dir = Some(d.clone());
    }
    if let Some(b) = &a.backend {
        c.vim.backend = b.clone();
    }
    if let Some(ms) = a.monitor_interval_ms {
        c.monitor.interval_ms = ms;
    }
    if a.no_auto_heal {
        c.monitor.auto_heal = false;
    }
    if a.no_isolation {
        c.network.isolation = false;
    }
    if a.test_services {
        c.test_services = true;
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("nfvinc: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Client(cmd) => return cli::run(&cli.client, cmd),
        Command::Demo(args) => return cli::demo::run(&cli.client, args),
        _ => {}
    }
    let mut config = load(&cli)?;
    match &cli.command {
        Command::Serve(args) => {
            apply(&mut config, args);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(server::serve(config))
        }
        Command::User(cmd) => {
            let state = server::open_state(config)?;
            match cmd {
                UserCommand::Add { name } | UserCommand::Key { name } => {
                    let create = matches!(cmd, UserCommand::Add { .. });
                    let key = state.db.blocking(|c| auth::add_key(c, name, create))?;
                    eprintln!("API key for {name} (shown once; keep it secret):");
                    println!("{key}");
                }
                UserCommand::List => {
                    for (name, keys) in state.db.blocking(|c| auth::list_users(c))? {
                        println!("{name}\t{keys} key(s)");
                    }
                }
            }
            Ok(())
        }
        Command::Config => {
            config.validate()?;
            print!("{}", config.to_toml());
            Ok(())
        }
        Command::Client(_) | Command::Demo(_) => unreachable!("handled above"),
    }
}
