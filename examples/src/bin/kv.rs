//! A replicated key-value store on NFVinc's consensus service.
//!
//! The application connects to the consensus service (a Multi-Paxos
//! instance: coordinator, three acceptors and a learner in its own virtual
//! network) and runs a few replicas of a key-value store. Each replica
//! has its own direct channel (`libnfvinc::consensus::Consensus`): it
//! proposes the writes its clients ask for, and applies every decided
//! write, its own and the others', in the decided order to its own copy of
//! the store. An administrator also writes over REST (`RestConsensus`).
//! However the replicas' proposals interleave, every replica must end with
//! the same store after applying the same log; otherwise the run fails.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use libnfvinc::consensus::{Consensus, Delivery, RestConsensus};
use nfvinc_examples::Connection;

/// A key-value store replicated by consensus.
#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    conn: Connection,
    /// Replicas of the store.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Writes each replica proposes.
    #[arg(long, default_value_t = 10)]
    writes: usize,
    /// Distinct keys the writes go to (so that they overwrite each other).
    #[arg(long, default_value_t = 4)]
    keys: usize,
    /// Keep the consensus instance instead of removing it at the end.
    #[arg(long)]
    keep: bool,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("kv: {e:#}");
        std::process::exit(1);
    }
}

/// One replica's copy of the store, and the log it applied.
#[derive(Debug, Default, PartialEq, Eq)]
struct Store {
    map: BTreeMap<String, String>,
    applied: Vec<String>,
}

impl Store {
    /// Applies `set KEY VALUE` (anything else is logged, not applied).
    fn apply(&mut self, command: &str) {
        if let Some(rest) = command.strip_prefix("set ") {
            if let Some((k, v)) = rest.split_once(' ') {
                self.map.insert(k.to_owned(), v.to_owned());
            }
        }
        self.applied.push(command.to_owned());
    }

    fn apply_delivery(&mut self, d: &Delivery) {
        for c in &d.commands {
            self.apply(&String::from_utf8_lossy(&c.payload));
        }
    }
}

fn run(a: Args) -> anyhow::Result<()> {
    ensure!(
        a.replicas >= 1 && a.keys >= 1,
        "at least one replica and one key"
    );
    let client = a.conn.open()?;
    let t0 = Instant::now();
    let inst = client
        .connect_service("consensus")
        .context("connecting to the consensus service")?;
    println!(
        "kv: consensus instance {} ready in {:.1} ms ({} processes)",
        inst.id,
        t0.elapsed().as_secs_f64() * 1e3,
        inst.direct.roles.len()
    );
    let result = replicate(&a, &client, &inst);
    if !a.keep {
        client.remove(&inst.id).context("removing the instance")?;
    }
    result
}

fn replicate(
    a: &Args,
    client: &libnfvinc::rest::Client,
    inst: &libnfvinc::rest::Instance,
) -> anyhow::Result<()> {
    // Every replica learns from the start, before anything is proposed.
    let handles: Vec<Consensus> = (0..a.replicas)
        .map(|_| Consensus::connect_instance(inst))
        .collect::<Result<_, _>>()
        .context("opening the replicas' direct channels")?;
    let admin = RestConsensus::new(client.clone(), &inst.id);
    let total = a.replicas * a.writes + 1;
    let t = Instant::now();
    let stores = std::thread::scope(|s| {
        let workers: Vec<_> = handles
            .iter()
            .enumerate()
            .map(|(r, h)| {
                s.spawn(move || -> anyhow::Result<Store> {
                    // Submitted at once (pipelined); each handle retries
                    // its own until decided.
                    for w in 0..a.writes {
                        h.submit(format!("set k{} r{r}-w{w}", (w + r) % a.keys).as_bytes())?;
                    }
                    let mut store = Store::default();
                    let deadline = Instant::now() + Duration::from_secs(20);
                    while store.applied.len() < total {
                        if Instant::now() > deadline {
                            bail!(
                                "replica {r} applied only {} of {total} writes",
                                store.applied.len()
                            );
                        }
                        if let Some(d) = h.next_delivery(Duration::from_millis(200))? {
                            store.apply_delivery(&d);
                        }
                    }
                    Ok(store)
                })
            })
            .collect();
        admin.propose("set owner admin-over-rest")?;
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| anyhow::anyhow!("a replica panicked"))?
            })
            .collect::<anyhow::Result<Vec<Store>>>()
    })?;
    let elapsed = t.elapsed();
    for (r, s) in stores.iter().enumerate() {
        ensure!(
            s == &stores[0],
            "replica {r} diverged from replica 0:\n{:?}\n{:?}",
            s.map,
            stores[0].map
        );
    }
    println!("kv: the store every replica holds after {total} decided writes:");
    for (k, v) in &stores[0].map {
        println!("    {k} = {v}");
    }
    println!(
        "kv: {} replicas applied the same {total} writes in the same order ({:.1} ms)",
        a.replicas,
        elapsed.as_secs_f64() * 1e3
    );
    Ok(())
}
