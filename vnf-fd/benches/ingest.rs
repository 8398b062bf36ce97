//! Heartbeat ingestion rate of the detector logic alone, on one core.
//!
//! 1,000 processes with random 64-bit ids send heartbeats every 10 ms of
//! simulated time, in a shuffled order; the detector ingests them as fast
//! as it can for about two seconds of wall time per scenario, in bursts of
//! 32, with `poll_timeout` (and `handle_timeout` when due) called after
//! every burst as a dataplane shell would. Scenarios:
//!
//! * `logic`: `Detector::heartbeat` only;
//! * `logic/burst`: `Detector::heartbeats`, a burst at a time;
//! * `parse+burst`: each heartbeat also parsed from its NFVinc message
//!   (header checks included) before the burst is handed over, as the
//!   shell will do;
//! * `auth+parse+burst`: each message's tag also checked under its
//!   session's key (keyed BLAKE3, `dataplane::auth`), as the shell does
//!   under `--auth required`.
//!
//! Run with `cargo bench -p vnf-fd --bench ingest` (release profile); name
//! scenarios after `--` to run only those.

use std::hint::black_box;
use std::time::{Duration, Instant};

use dataplane::auth::{AuthPolicy, SessionKey, Sessions};
use vnf_fd::wire::{Message, heartbeat};
use vnf_fd::{Config, Detector, ProcessId, ProcessSpec, Time};

const PROCESSES: usize = 1000;
const BURST: usize = 32;
const RUN: Duration = Duration::from_secs(2);
const TRIALS: usize = 5;
const INTERVAL_NS: u64 = 10_000_000;

/// SplitMix64: ids and shuffling without a dependency.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn setup() -> (Detector, Vec<ProcessId>) {
    let mut rng = 0x5eed;
    let mut ids: Vec<ProcessId> = (0..PROCESSES)
        .map(|_| ProcessId(splitmix(&mut rng)))
        .collect();
    let mut d = Detector::with_capacity(Config::default(), PROCESSES).expect("default config");
    for &id in &ids {
        d.add_process(ProcessSpec::new(id), Time::ZERO)
            .expect("distinct ids");
    }
    for i in (1..ids.len()).rev() {
        let j = (splitmix(&mut rng) % (i as u64 + 1)) as usize;
        ids.swap(i, j);
    }
    (d, ids)
}

/// Runs rounds of one heartbeat per process, in bursts of `BURST`, for
/// `TRIALS` trials of `RUN / TRIALS` each on a fresh detector; `ingest`
/// handles one burst of (process index, arrival time). Prints the median
/// and best rates (the machine is shared and virtualised: single runs
/// vary by a fifth) and returns the median, in heartbeats per second.
fn run(name: &str, mut ingest: impl FnMut(&mut Detector, &[(usize, Time)])) -> Option<f64> {
    // `cargo bench` passes `--bench`; any other argument picks scenarios.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
        return None;
    }
    let mut total = 0;
    let mut rates: Vec<f64> = (0..TRIALS)
        .map(|_| {
            let (n, rate) = trial(&mut ingest);
            total += n;
            rate
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    let median = rates[TRIALS / 2];
    let best = rates[TRIALS - 1];
    println!(
        "{name:>12}: {PROCESSES} processes, median {:.1} M heartbeats/s ({:.1} ns each), best {:.1} M/s, trials {} ({total} heartbeats)",
        median / 1e6,
        1e9 / median,
        best / 1e6,
        rates
            .iter()
            .map(|r| format!("{:.1}", r / 1e6))
            .collect::<Vec<_>>()
            .join(" "),
    );
    Some(median)
}

/// One trial: heartbeats ingested and their rate.
fn trial(ingest: &mut impl FnMut(&mut Detector, &[(usize, Time)])) -> (u64, f64) {
    let (mut d, _) = setup();
    let spacing = INTERVAL_NS / PROCESSES as u64;
    let mut burst = Vec::with_capacity(BURST);
    let start = Instant::now();
    let mut round = 0u64;
    let mut n = 0u64;
    while start.elapsed() < RUN / TRIALS as u32 {
        let base = 1_000_000 + round * INTERVAL_NS;
        for first in (0..PROCESSES).step_by(BURST) {
            burst.clear();
            burst.extend(
                (first..(first + BURST).min(PROCESSES))
                    .map(|i| (i, Time::from_nanos(base + i as u64 * spacing))),
            );
            ingest(&mut d, &burst);
            let now = burst[burst.len() - 1].1;
            if d.poll_timeout().is_some_and(|t| t <= now) {
                d.handle_timeout(now);
            }
            while let Some(e) = d.poll_event() {
                black_box(e);
            }
        }
        n += PROCESSES as u64;
        round += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let c = d.counters();
    assert_eq!(
        c.heartbeats, n,
        "every heartbeat was for a monitored process"
    );
    assert_eq!(c.transitions, 0, "a steady load suspects no one");
    (n, n as f64 / secs)
}

fn main() {
    let (_, ids) = setup();
    run("logic", |d, burst| {
        for &(i, now) in burst {
            black_box(d.heartbeat(ids[i], now)).expect("monitored");
        }
    });

    // The shell's shape: a received burst handed over at once.
    let mut pairs = Vec::with_capacity(BURST);
    run("logic/burst", |d, burst| {
        pairs.clear();
        pairs.extend(burst.iter().map(|&(i, now)| (ids[i], now)));
        assert_eq!(d.heartbeats(black_box(&pairs)), burst.len());
    });

    // One buffer, 64 bytes a message, as frames sit in a UMEM.
    const STRIDE: usize = 64;
    let mut frames = vec![0u8; STRIDE * PROCESSES];
    let mut lens = Vec::with_capacity(PROCESSES);
    for (k, &process) in ids.iter().enumerate() {
        let m = Message::Heartbeat(heartbeat::Repr {
            process,
            seq: 1,
            sent_ns: 0,
        });
        lens.push(
            m.emit(7, &mut frames[k * STRIDE..(k + 1) * STRIDE])
                .expect("room"),
        );
    }
    run("parse+burst", |d, burst| {
        pairs.clear();
        for &(i, now) in burst {
            let frame = &frames[i * STRIDE..i * STRIDE + lens[i]];
            if let Some(process) = Message::heartbeat_process(black_box(frame)) {
                pairs.push((process, now));
            }
        }
        assert_eq!(d.heartbeats(&pairs), burst.len());
    });

    let key = SessionKey::from_bytes([0x42; 32]);
    let mut sessions = Sessions::new(AuthPolicy::Required);
    sessions.insert(7, key.clone());
    for (k, &len) in lens.iter().enumerate() {
        key.sign(&mut frames[k * STRIDE..k * STRIDE + len])
            .expect("a whole message");
    }
    run("auth+parse+burst", |d, burst| {
        pairs.clear();
        for &(i, now) in burst {
            let frame = &frames[i * STRIDE..i * STRIDE + lens[i]];
            if sessions.admit(black_box(frame)).is_err() {
                continue;
            }
            if let Some(process) = Message::heartbeat_process(frame) {
                pairs.push((process, now));
            }
        }
        assert_eq!(d.heartbeats(&pairs), burst.len());
    });
}
