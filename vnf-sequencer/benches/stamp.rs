//! Cost of the sequencer core per stamped message, on one core.
//!
//! 50 members send 64-byte atomic-broadcast messages; the sequencer takes
//! them in received bursts of 32 (NFVinc parsing included), stamps them,
//! and the bench drains `poll_transmit` after every burst as a dataplane
//! shell would: group frames built straight from the retransmission ring.
//! Scenarios:
//!
//! * `batched`: up to 64 messages per group frame (the default);
//! * `unbatched`: one message per frame (`max_batch = 1`);
//! * `batched+auth`: as `batched` under `--auth required`: every message
//!   checked under the group's key as it arrives (`dataplane::auth`), every
//!   group frame tagged before it leaves. The bench changes each message's
//!   sequence number, so it also tags each message again first, which is
//!   the sender's work, not the sequencer's: `tag` times that alone, to be
//!   taken off.
//!
//! Run with `cargo bench -p vnf-sequencer --bench stamp` (release
//! profile); name scenarios after `--` to run only those. Rates are given
//! per wall-clock second and per second of the thread's CPU time (on a
//! shared machine the second is the one that says what a core does).

use std::hint::black_box;
use std::time::{Duration, Instant};

use dataplane::auth::{AuthPolicy, SessionKey, Sessions};
use vnf_sequencer::wire::{Message, data};
use vnf_sequencer::{Mode, ProcessId, Sequencer, SequencerConfig, Time};

const SENDERS: u64 = 50;
const BURST: usize = 32;
const PAYLOAD: usize = 64;
const RUN: Duration = Duration::from_secs(2);
const TRIALS: usize = 5;
const GROUP: u64 = 7;

/// Offset of the sender sequence number in a Data frame (after the 32-byte
/// NFVinc header and the 8-byte sender id).
const SEQ_AT: usize = 32 + 8;

fn frames() -> Vec<Vec<u8>> {
    let payload = [0x5au8; PAYLOAD];
    (0..SENDERS)
        .map(|s| {
            let m = Message::Data(
                data::Repr {
                    sender: ProcessId(s + 1),
                    sender_seq: 1,
                    barrier: 0,
                    mode: Mode::Atomic,
                },
                &payload,
            );
            let mut b = vec![0u8; 256];
            let n = m.emit(GROUP, &mut b).expect("room");
            b.truncate(n);
            b
        })
        .collect()
}

/// One trial: messages stamped, their rate per wall second and per CPU
/// second, and frames sent.
fn trial(max_batch: usize, auth: bool) -> (u64, f64, u64, f64) {
    let key = SessionKey::from_bytes([0x42; 32]);
    let mut sessions = Sessions::new(AuthPolicy::Required);
    sessions.insert(GROUP, key.clone());
    let members: Vec<ProcessId> = (1..=SENDERS).map(ProcessId).collect();
    let mut cfg = SequencerConfig::new(ProcessId(1000), GROUP);
    cfg.max_batch = max_batch;
    let mut s = Sequencer::new(cfg, &members, Time::ZERO);
    let mut frames = frames();
    let mut out = vec![0u8; 2048];
    let mut sent_frames = 0u64;
    let mut n = 0u64;
    let mut round = 1u64;
    let mut k = 0usize;
    let start = Instant::now();
    let cpu0 = cpu_time();
    while start.elapsed() < RUN / TRIALS as u32 {
        for _ in 0..1000 {
            let now = Time::from_nanos(n * 100);
            for _ in 0..BURST {
                let f = &mut frames[k];
                f[SEQ_AT..SEQ_AT + 8].copy_from_slice(&round.to_be_bytes());
                if auth {
                    // The sender's tag, then the sequencer's check.
                    key.sign(f).expect("well-formed");
                    sessions.admit(black_box(f)).expect("tagged");
                }
                s.handle(now, black_box(f)).expect("well-formed");
                k += 1;
                if k == frames.len() {
                    k = 0;
                    round += 1;
                }
            }
            while let Some(t) = s.poll_transmit(now, &mut out) {
                if auth {
                    sessions.sign(&mut out[..t.len]);
                }
                black_box(&out[..t.len]);
                sent_frames += 1;
            }
            n += BURST as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = (cpu_time() - cpu0).as_secs_f64();
    assert_eq!(s.counters().stamped, n, "every message stamped once");
    (n, n as f64 / secs, sent_frames, n as f64 / cpu)
}

/// Whether scenario `name` was asked for (all when none was named).
fn wanted(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    filters.is_empty() || filters.iter().any(|f| name == f.as_str())
}

fn run(name: &str, max_batch: usize, auth: bool) {
    if !wanted(name) {
        return;
    }
    let mut results: Vec<(u64, f64, u64, f64)> =
        (0..TRIALS).map(|_| trial(max_batch, auth)).collect();
    let mut cpu: Vec<f64> = results.iter().map(|r| r.3).collect();
    cpu.sort_by(f64::total_cmp);
    results.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (n, median, frames, _) = results[TRIALS / 2];
    let best = results[TRIALS - 1].1;
    println!(
        "{name:>10}: median {:.1} M msgs/s ({:.1} ns/msg), best {:.1} M/s, {:.1} msgs/frame, trials {}; \
         per CPU second: median {:.1} M/s ({:.1} ns/msg)",
        median / 1e6,
        1e9 / median,
        best / 1e6,
        n as f64 / frames as f64,
        results
            .iter()
            .map(|r| format!("{:.1}", r.1 / 1e6))
            .collect::<Vec<_>>()
            .join(" "),
        cpu[TRIALS / 2] / 1e6,
        1e9 / cpu[TRIALS / 2],
    );
}

/// The cost of tagging one of the bench's Data messages (what a sender
/// does, and what `batched+auth` does for it), per thread CPU second.
fn tag() {
    if !wanted("tag") {
        return;
    }
    let key = SessionKey::from_bytes([0x42; 32]);
    let mut f = frames().swap_remove(0);
    let mut rates: Vec<f64> = (0..TRIALS)
        .map(|_| {
            let (start, cpu0) = (Instant::now(), cpu_time());
            let mut n = 0u64;
            while start.elapsed() < RUN / TRIALS as u32 {
                for _ in 0..10_000 {
                    key.sign(black_box(&mut f)).expect("well-formed");
                }
                n += 10_000;
            }
            n as f64 / (cpu_time() - cpu0).as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    let median = rates[TRIALS / 2];
    println!(
        "{:>10}: per CPU second: median {:.1} M tags/s ({:.1} ns per {}-byte message)",
        "tag",
        median / 1e6,
        1e9 / median,
        f.len()
    );
}

fn main() {
    run("batched", 64, false);
    run("unbatched", 1, false);
    run("batched+auth", 64, true);
    tag();
}

/// CPU time this thread has used: on a shared machine the wall clock also
/// counts time other processes held the core.
fn cpu_time() -> Duration {
    Duration::from_nanos(dataplane::time::thread_cpu_nanos())
}
