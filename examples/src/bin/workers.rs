//! A worker pool supervised by NFVinc's failure detector.
//!
//! The application connects to the `fd` service (a detector instance in
//! its own virtual network), and starts a pool of workers that take jobs
//! from a shared queue. Each worker is a process the detector monitors: it
//! sends heartbeats over the direct channel, tagged under the session key
//! the control plane handed out. The supervisor subscribes to the
//! detector's state changes. One worker crashes while it holds a job: its
//! heartbeats stop, the detector suspects it within a few heartbeat
//! periods, and the supervisor gives its job to the others. The run ends
//! when every job is done; it fails if the crash was never detected, if a
//! healthy worker was suspected, or if a job was lost.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use libnfvinc::direct::DirectAuth;
use libnfvinc::fd::{FdClient, Heartbeater};
use libnfvinc::rest::OpOutcome;
use nfvinc_examples::Connection;
use serde_json::json;
use vnf_fd::wire::Target;
use vnf_fd::{Config as FdConfig, ProcessId, ProcessSpec, State};

/// A worker pool whose crashed workers the failure detector finds.
#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    conn: Connection,
    /// Workers in the pool.
    #[arg(long, default_value_t = 4)]
    workers: u64,
    /// Jobs to run.
    #[arg(long, default_value_t = 40)]
    jobs: u64,
    /// The worker that crashes (1..=workers).
    #[arg(long, default_value_t = 3)]
    crash: u64,
    /// Heartbeat period, milliseconds.
    #[arg(long, default_value_t = 10)]
    heartbeat_ms: u64,
    /// Keep the detector instance instead of removing it at the end.
    #[arg(long)]
    keep: bool,
}

/// The pool's shared state.
#[derive(Default)]
struct Pool {
    queue: Mutex<VecDeque<u64>>,
    /// Job each worker holds now.
    holding: Mutex<HashMap<u64, u64>>,
    /// Job -> (result, worker that computed it).
    done: Mutex<BTreeMap<u64, (u64, u64)>>,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("workers: {e:#}");
        std::process::exit(1);
    }
}

fn run(a: Args) -> anyhow::Result<()> {
    ensure!(a.workers >= 2, "a pool needs at least 2 workers");
    ensure!(
        (1..=a.workers).contains(&a.crash),
        "--crash must name a worker, 1..={}",
        a.workers
    );
    let client = a.conn.open()?;
    let started = Instant::now();
    let fd = client
        .connect_service("fd")
        .context("connecting to the failure detector")?;
    println!(
        "connected to fd: instance {} ready in {:.1} ms, direct channel {}:{}",
        fd.id,
        fd.startup_ms
            .unwrap_or(started.elapsed().as_secs_f64() * 1e3),
        fd.direct.addr,
        fd.direct.port
    );
    let result = supervise(&a, &client, &fd);
    if !a.keep {
        client.remove(&fd.id).context("removing the detector")?;
    }
    result
}

fn supervise(
    a: &Args,
    client: &libnfvinc::rest::Client,
    fd: &libnfvinc::rest::Instance,
) -> anyhow::Result<()> {
    let at: SocketAddrV4 = format!("{}:{}", fd.direct.addr, fd.direct.port)
        .parse()
        .context("the instance's direct endpoint")?;
    let auth = DirectAuth::of(&fd.direct)
        .transpose()
        .context("the session key of the direct channel")?;
    let mut detector = FdClient::connect(at)?;
    if let Some(auth) = auth.clone() {
        detector = detector.with_auth(auth);
    }
    let every = Duration::from_millis(a.heartbeat_ms.max(1));
    // Suspect after four periods of silence: quick for the demo, and
    // still tolerant of a loaded machine's scheduling delays.
    let config = FdConfig::new(every, every * 4);
    detector.subscribe(Target::All)?;

    let pool = Arc::new(Pool::default());
    pool.queue.lock().unwrap().extend(0..a.jobs);
    let crashed = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for w in 1..=a.workers {
        detector.add(ProcessSpec::new(ProcessId(w)).with_config(config))?;
        let beats = Heartbeater::start_with(at, ProcessId(w), every, auth.clone())?;
        let (pool, crashed) = (pool.clone(), crashed.clone());
        let crashes = w == a.crash;
        threads.push(std::thread::spawn(move || {
            worker(w, &pool, beats, crashes, &crashed)
        }));
    }
    println!(
        "{} workers monitored (heartbeat every {} ms), {} jobs queued",
        a.workers, a.heartbeat_ms, a.jobs
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut crash_seen_at = None;
    let mut detected = None;
    while pool.done.lock().unwrap().len() < a.jobs as usize {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} jobs done after 20 s (crash detected: {})",
                pool.done.lock().unwrap().len(),
                a.jobs,
                detected.is_some()
            );
        }
        if crash_seen_at.is_none() && crashed.load(Ordering::Acquire) {
            crash_seen_at = Some(Instant::now());
        }
        let Some(ev) = detector.next_event(Duration::from_millis(50))? else {
            continue;
        };
        let w = ev.process.0;
        println!("  detector: worker {w} {:?} -> {:?}", ev.from, ev.to);
        if ev.to == State::Correct {
            continue;
        }
        ensure!(
            w == a.crash,
            "worker {w} was suspected but it is alive (is the machine overloaded?)"
        );
        let after = crash_seen_at.map(|t| t.elapsed());
        detected.get_or_insert(after);
        if let Some(job) = pool.holding.lock().unwrap().remove(&w) {
            println!("  supervisor: worker {w} is gone; job {job} goes back to the queue");
            pool.queue.lock().unwrap().push_front(job);
        }
    }
    let beating: Vec<Heartbeater> = threads
        .into_iter()
        .filter_map(|t| t.join().ok().flatten())
        .collect();
    let Some(after) = detected else {
        bail!(
            "every job is done but worker {} was never suspected",
            a.crash
        );
    };

    // The detector's view, over the direct channel and over REST.
    let view = detector.query(Target::All)?;
    for e in &view {
        let expect = if e.process.0 == a.crash {
            State::Suspected
        } else {
            State::Correct
        };
        ensure!(
            e.state == expect,
            "worker {} is {:?}, expected {expect:?}",
            e.process.0,
            e.state
        );
    }
    let rest = match client.op(&fd.id, "query", json!({"process": a.crash}))? {
        OpOutcome::Done(v) => v,
        OpOutcome::Scheduled(r) => client
            .wait_request(&r.id, Duration::from_secs(10))?
            .result
            .unwrap_or_default(),
    };
    let done = pool.done.lock().unwrap();
    let mut per_worker: BTreeMap<u64, u64> = BTreeMap::new();
    for (job, (result, w)) in done.iter() {
        ensure!(*result == job * job, "job {job} has a wrong result");
        *per_worker.entry(*w).or_default() += 1;
    }
    println!(
        "all {} jobs done; jobs per worker: {per_worker:?}",
        done.len()
    );
    match after {
        Some(d) => println!(
            "worker {} crashed and was suspected {:.0} ms later",
            a.crash,
            d.as_secs_f64() * 1e3
        ),
        None => println!("worker {} crashed and was suspected", a.crash),
    }
    println!("REST query of worker {}: {rest}", a.crash);
    for b in beating {
        let _ = b.stop();
    }
    println!("OK failure detector: crashed worker suspected, the others correct, no job lost");
    Ok(())
}

/// A worker: takes jobs until the queue is empty; the one that crashes
/// stops, heartbeats and all, while it holds its third job. The others
/// hand their heartbeats back, still beating, for the supervisor's last
/// look at the detector.
fn worker(
    w: u64,
    pool: &Pool,
    beats: Heartbeater,
    crashes: bool,
    crashed: &AtomicBool,
) -> Option<Heartbeater> {
    let mut taken = 0;
    loop {
        let Some(job) = pool.queue.lock().unwrap().pop_front() else {
            // Another worker's job may come back to the queue if it
            // crashes; wait until everything is done.
            if pool.holding.lock().unwrap().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        pool.holding.lock().unwrap().insert(w, job);
        taken += 1;
        if crashes && taken == 3 {
            drop(beats);
            crashed.store(true, Ordering::Release);
            println!("  worker {w}: crashing while holding job {job}");
            return None;
        }
        std::thread::sleep(Duration::from_millis(15)); // the work
        pool.done.lock().unwrap().insert(job, (job * job, w));
        pool.holding.lock().unwrap().remove(&w);
    }
    Some(beats)
}
