//! Deterministic simulations of the whole protocol: a sequencer (and its
//! replacements), members sending in all four modes, and a network that
//! loses up to 10% of frames, duplicates, delays and reorders them.
//!
//! Every run checks agreement, integrity, validity and each mode's order
//! (see `common::Sim::check`). `NFVINC_SIM_SEEDS=100000 cargo test -p
//! vnf-sequencer --test simulation --release` runs longer; a failure names
//! its seed, and `NFVINC_SIM_SEED=<seed>` replays just that one.

mod common;

use common::{MS, Plan, Rng, Sim, run_seed, seed_count};
use vnf_sequencer::Mode;

fn run_range(from: u64, count: u64) {
    if let Some(seed) = std::env::var("NFVINC_SIM_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        if let Err(e) = run_seed(seed) {
            panic!("seed {seed}: {e}");
        }
        return;
    }
    for seed in from..from + count {
        if let Err(e) = run_seed(seed) {
            panic!(
                "seed {seed} failed: {e}\nreplay: NFVINC_SIM_SEED={seed} cargo test -p vnf-sequencer --test simulation"
            );
        }
    }
}

/// 20,000 seeds by default (a few seconds in the test profile): 5,000 did
/// not reach seed 16442. The seeds are split over two tests so that both
/// cores work.
#[test]
fn random_faults_and_sequencer_changes_first_half() {
    let n = seed_count(20000);
    run_range(0, n / 2);
}

#[test]
fn random_faults_and_sequencer_changes_second_half() {
    let n = seed_count(20000);
    run_range(n / 2, n - n / 2);
}

/// Seeds that once failed, each with what it found; they run whatever
/// `NFVINC_SIM_SEEDS` says.
const REGRESSIONS: &[(u64, &str)] = &[(
    16442,
    "epoch 2 filled 69 (an undelivered stamp of epoch 1) and stamped its \
     message again at 85; members frozen through epoch 2 served epoch 1's \
     stale 69 to epoch 3 as final, so the message was delivered twice",
)];

#[test]
fn seeds_that_once_failed() {
    for &(seed, what) in REGRESSIONS {
        if let Err(e) = run_seed(seed) {
            panic!("seed {seed} ({what}): {e}");
        }
    }
}

/// No faults, one sequencer: everyone delivers everything, and a burst of
/// sends leaves in batched frames.
#[test]
fn a_clean_run_batches_under_load() {
    let mut rng = Rng::new(1);
    let mut plan = Plan::random(&mut rng);
    plan.members = 5;
    plan.msgs_per_member = 60;
    plan.send_span = MS;
    plan.mode = Some(Mode::Atomic);
    plan.batching = true;
    plan.faults.loss_ppm = 0;
    plan.faults.dup_ppm = 0;
    plan.faults.crashes.clear();
    let mut sim = Sim::new(7, plan.clone());
    sim.run(500 * MS);
    sim.check().unwrap();
    let batched = sim.frames;
    plan.batching = false;
    let mut sim = Sim::new(7, plan);
    sim.run(500 * MS);
    sim.check().unwrap();
    assert!(
        batched < sim.frames,
        "batching sends fewer frames ({batched} vs {})",
        sim.frames
    );
}

/// Heavy loss and two sequencer changes in every mode separately.
#[test]
fn each_mode_survives_heavy_loss_and_two_changes() {
    for (k, mode) in [Mode::Reliable, Mode::Atomic, Mode::Fifo, Mode::Causal]
        .into_iter()
        .enumerate()
    {
        for seed in 0..25u64 {
            let mut rng = Rng::new(seed * 31 + k as u64);
            let mut plan = Plan::random(&mut rng);
            plan.mode = Some(mode);
            plan.faults.loss_ppm = 100_000;
            plan.faults.crashes = vec![(3 * MS, seed % 2 == 0, MS), (4 * MS, false, 0)];
            plan.send_span = plan.send_span.max(5 * MS);
            let deadline = plan.faults.until + 2_000 * MS;
            let mut sim = Sim::new(seed, plan);
            sim.run(deadline);
            if let Err(e) = sim.check() {
                panic!("{mode:?} seed {seed}: {e}");
            }
        }
    }
}

/// Three sequencer changes close together, each of the later ones often
/// hitting its predecessor mid-change (before any member installed it), a
/// zombie or two among them: the case where members hold stamps of an
/// epoch two changes back. A tenth of the random seeds.
#[test]
fn three_changes_in_a_row() {
    let n = seed_count(20000) / 10;
    for seed in 0..n {
        let mut rng = Rng::new(seed ^ 0x3c3c_c3c3);
        let mut plan = Plan::random(&mut rng);
        let mut at = rng.between(MS, plan.send_span);
        plan.faults.crashes.clear();
        for _ in 0..3 {
            plan.faults
                .crashes
                .push((at, rng.below(2) == 0, rng.between(0, 2 * MS)));
            at += rng.between(0, 6 * MS);
        }
        let deadline = plan.faults.until + 2_000 * MS;
        let mut sim = Sim::new(seed, plan);
        sim.run(deadline);
        if let Err(e) = sim.check() {
            panic!("seed {seed}: {e}");
        }
    }
}

/// The same seed gives the same run.
#[test]
fn runs_are_deterministic() {
    let a = run_seed(42).unwrap();
    let b = run_seed(42).unwrap();
    assert_eq!(a.log, b.log);
    assert_eq!(a.frames, b.frames);
}

/// A member cut off while the sequencer stamps more than its ring holds
/// gets the old part from its peers (TooOld, then peer NACKs), and the
/// rest from the sequencer.
#[test]
fn messages_older_than_the_ring_come_from_peers() {
    for seed in 0..20u64 {
        let mut rng = Rng::new(seed);
        let mut plan = Plan::random(&mut rng);
        plan.members = 4;
        plan.msgs_per_member = 60;
        plan.send_span = 20 * MS;
        plan.seq_ring = 32;
        plan.faults.crashes.clear();
        plan.faults.loss_ppm = 10_000;
        plan.faults.cut = Some((3, 2 * MS, 25 * MS));
        let mut sim = Sim::new(seed, plan);
        sim.run(2_000 * MS);
        if let Err(e) = sim.check() {
            panic!("seed {seed}: {e}");
        }
        assert!(
            sim.members[3].counters().peer_nacks > 0,
            "seed {seed}: the peers were asked"
        );
    }
}
