//! Accepts per second of one in-memory acceptor on one core, from the
//! accept's bytes to the vote's bytes: what `nfvinc-perf paxos --backend
//! mem` measures, without building the rest of the workspace.
//!
//! Each accept is an NFVinc message for one instance (or eight), a 16-byte
//! command each, as the leader sends them; the acceptor takes it with
//! `handle_nfv` and its vote is copied out with `poll_emit`, as the
//! service shell does. Run with `cargo bench -p vnf-paxos --bench accept`.
//! Rates are given per wall-clock second and per second of the thread's
//! CPU time (on a shared machine the second says what a core does).

use std::hint::black_box;
use std::time::{Duration, Instant};

use vnf_paxos::wire::{Message, accept, value::Entry};
use vnf_paxos::{
    Acceptor, AcceptorConfig, AcceptorId, Ballot, ClientId, Command, Durability, NodeId, Time,
    Value,
};

const RUN: Duration = Duration::from_millis(1500);
const TRIALS: usize = 3;

fn frame(ballot: Ballot, per_msg: u64, value: &Value) -> Vec<u8> {
    let msg = Message::Accept(accept::Repr {
        ballot,
        committed: 0,
        entries: (0..per_msg)
            .map(|instance| Entry {
                instance,
                ballot: Ballot::ZERO,
                value: value.clone(),
            })
            .collect(),
    });
    let mut buf = vec![0u8; 64 + msg.payload_len()];
    let n = msg.emit(0, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// Accepts per wall second and per CPU second, and votes emitted per
/// accept.
fn rate(per_msg: u64) -> (f64, f64, f64) {
    let mut acc = Acceptor::new(
        AcceptorId {
            slot: 0,
            incarnation: 1,
        },
        AcceptorConfig {
            durability: Durability::Memory,
            retain: 1024,
            ..AcceptorConfig::default()
        },
    );
    let ballot = Ballot {
        round: 1,
        node: NodeId(1),
        incarnation: 1,
    };
    let value = Value::batch(vec![Command {
        client: ClientId(7),
        seq: 1,
        payload: (&[0xabu8; 16][..]).into(),
    }]);
    let mut frame = frame(ballot, per_msg, &value);
    let hdr = dataplane::wire::nfvinc::HEADER_LEN;
    let entry_len = (frame.len() - hdr - accept::HEADER_LEN) / per_msg as usize;
    let mut out = vec![0u8; 65_536];
    let (mut msgs, mut votes, mut instance) = (0u64, 0u64, 0u64);
    let now = Time::from_nanos(1);
    let t0 = Instant::now();
    let cpu0 = cpu_time();
    while t0.elapsed() < RUN {
        for _ in 0..1024 {
            for k in 0..per_msg as usize {
                let at = hdr + accept::HEADER_LEN + k * entry_len;
                frame[at..at + 8].copy_from_slice(&(instance + k as u64).to_be_bytes());
            }
            let committed = instance.saturating_sub(512);
            frame[hdr + 8..hdr + 16].copy_from_slice(&committed.to_be_bytes());
            instance += per_msg;
            if acc.handle_nfv(now, NodeId(1), &frame).is_err() {
                continue;
            }
            while let Some((_, n)) = acc.poll_emit(&mut out) {
                if n.is_ok() {
                    votes += 1;
                }
            }
            black_box(&out);
            msgs += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = (cpu_time() - cpu0).as_secs_f64();
    (
        msgs as f64 / secs,
        msgs as f64 / cpu,
        votes as f64 / msgs.max(1) as f64,
    )
}

fn main() {
    for per in [1u64, 8] {
        let mut best = (0f64, 0f64);
        for _ in 0..TRIALS {
            let (r, c, v) = rate(per);
            assert!((v - 1.0).abs() < 1e-9, "one vote per accept, got {v}");
            println!(
                "accept/{per}-instance: {:.2} M accepts/s, {:.2} M per CPU second",
                r / 1e6,
                c / 1e6
            );
            best = (best.0.max(r), best.1.max(c));
        }
        println!(
            "accept/{per}-instance: best {:.2} M accepts/s ({:.1} ns each, {:.2} M instances/s); \
             per CPU second {:.2} M ({:.1} ns each)",
            best.0 / 1e6,
            1e9 / best.0,
            best.0 * per as f64 / 1e6,
            best.1 / 1e6,
            1e9 / best.1,
        );
    }
}

/// CPU time this thread has used: on a shared machine the wall clock also
/// counts time other processes held the core.
fn cpu_time() -> Duration {
    Duration::from_nanos(dataplane::time::thread_cpu_nanos())
}
