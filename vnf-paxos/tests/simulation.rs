//! Deterministic simulations of the whole service over thousands of seeds:
//! loss, duplication, reordering, delay, partitions, and crashes and
//! restarts of coordinators and acceptors. Every run checks agreement,
//! validity and integrity, and once the faults stop, liveness.
//!
//! `NFVINC_SIM_SEEDS` sets the number of seeds per test (default below); a
//! failure names its seed, and `NFVINC_SIM_SEED=<n>` replays just that one.

mod common;

use common::{Faults, MS, Scenario, Sim, seeds};
use vnf_paxos::Durability;

/// Runs `count` seeds from `first` of the scenario `make` builds; panics
/// with the first failing seed.
fn run_seeds(name: &str, first: u64, count: u64, make: impl Fn(u64) -> Scenario) {
    let only: Option<u64> = std::env::var("NFVINC_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    let range: Vec<u64> = match only {
        Some(s) => vec![s],
        None => (first..first + count).collect(),
    };
    let mut messages = 0;
    let mut admissions = 0;
    let (mut multi_submits, mut multi_replies) = (0, 0);
    for seed in range {
        let out = Sim::new(seed, make(seed)).run();
        messages += out.messages;
        admissions += out.admissions;
        multi_submits += out.multi_submits;
        multi_replies += out.multi_replies;
        if let Err(e) = out.check(true) {
            panic!(
                "{name}: seed {seed} failed (replay with NFVINC_SIM_SEED={seed}): {e}\n{}",
                out.summary
            );
        }
    }
    eprintln!(
        "{name}: {messages} messages delivered, {admissions} admissions, \
         {multi_submits} multi-command submits, {multi_replies} multi-command replies"
    );
    if only.is_none() && count >= 20 {
        assert!(
            multi_submits > 0 && multi_replies > 0,
            "{name}: coalescing never exercised"
        );
    }
    if only.is_none() && name.starts_with("memory") && count >= 20 {
        assert!(admissions > 0, "{name}: restarts never exercised admission");
    }
}

fn per_test() -> u64 {
    seeds(8000) / 4
}

#[test]
fn wal_acceptors_survive_every_fault() {
    run_seeds("wal", 0, per_test(), |_| Scenario::new(Durability::Wal));
}

#[test]
fn wal_acceptors_unbatched() {
    run_seeds("wal-unbatched", 1_000_000, per_test(), |_| Scenario {
        batching: false,
        ..Scenario::new(Durability::Wal)
    });
}

#[test]
fn in_memory_acceptors_rejoin_under_new_identities() {
    run_seeds("memory", 2_000_000, per_test(), |_| {
        Scenario::new(Durability::Memory)
    });
}

#[test]
fn five_in_memory_acceptors_and_three_coordinators() {
    run_seeds("memory-5", 3_000_000, per_test(), |_| Scenario {
        acceptors: 5,
        coordinators: 3,
        ..Scenario::new(Durability::Memory)
    });
}

/// Without faults, values are decided quickly and nothing is retransmitted
/// in vain: a sanity check of the steady state.
#[test]
fn a_calm_network_decides_everything_quickly() {
    for seed in 0..20 {
        let out = Sim::new(
            seed,
            Scenario {
                faults: Faults::none(),
                fault_end: 100 * MS,
                settle: 300 * MS,
                commands_per_client: 20,
                ..Scenario::new(Durability::Wal)
            },
        )
        .run();
        out.check(true)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(out.end < 400 * MS, "seed {seed} took until {}", out.end);
        let (wrong, which) = out.reply_mismatches();
        assert_eq!(
            wrong, 0,
            "seed {seed}: replies named other instances:{which}"
        );
    }
}
