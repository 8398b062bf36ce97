//! The load generator's loop, over any [`PacketIo`] backend.
//!
//! One thread, one or more queues. Per iteration: top up the current queue's
//! transmit batch with freshly stamped frames (as many as the pacing allows
//! and the backend has buffers for), send it (what the ring cannot take stays
//! for the next try, stamp unchanged), then receive from every queue, match
//! replies by sequence number and record their round-trip time. Nothing on
//! this path allocates, locks or makes a system call beyond the backend's own.
//!
//! Timeline (all from [`clock::now_ns`]): warm-up `[t0, ms)`, measured window
//! `[ms, me)`, then the drain: `drain` long after the last send. A packet
//! belongs to the window its *stamp* (intended send time in open loop, send
//! time otherwise) falls in; only replies to measured packets that arrive
//! before the drain ends count.
//!
//! An open loop that has fallen behind keeps sending after `me` until every
//! packet intended before `me` is out, for at most `drain` more: the time it
//! was behind shows up as latency. What it still had not sent then is
//! reported as `backlog`: the generator, not the system under test, limited
//! that run.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use dataplane::io::{Batch, IoCounters, IoError, MAX_BURST, PacketIo};
use hdrhistogram::Histogram;

use crate::clock;
use crate::frame::{NotOurs, Template};
use crate::report::new_histogram;
use crate::sched::{OpenLoop, Pacing};
use crate::seq::{SeqCounts, SeqOutcome, SeqTracker};

/// Sequence numbers the loss tracker remembers (512 KiB of bitmap).
const SEQ_WINDOW: u64 = 1 << 22;

/// Receive bursts per queue per loop turn, at most.
const RX_BURSTS_PER_TURN: usize = 4;

/// How long a gap before the next open-loop send is worth sleeping through.
const SLEEP_GAP_NS: u64 = 200_000;

/// Settings of one generator run.
#[derive(Debug, Clone, Copy)]
pub struct GenConfig {
    /// Send pacing.
    pub pacing: Pacing,
    /// Frames per transmit and receive call (1..=64).
    pub burst: usize,
    /// Warm-up before the measured window.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// How long to keep receiving after the window.
    pub drain: Duration,
    /// Closed loop: after this long with the window full and no reply, the
    /// packets in flight are given up for lost and sending resumes.
    pub closed_loop_timeout: Duration,
}

/// Where a run is, for the progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Setting up (topology, VNF, sockets).
    Setup = 0,
    /// Warm-up traffic, not counted.
    Warmup = 1,
    /// The measured window.
    Measure = 2,
    /// Waiting for the last replies.
    Drain = 3,
    /// Finished.
    Done = 4,
}

impl Phase {
    /// The phase stored as `v`.
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => Phase::Warmup,
            2 => Phase::Measure,
            3 => Phase::Drain,
            4 => Phase::Done,
            _ => Phase::Setup,
        }
    }

    /// A word for the progress display.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Setup => "setting up",
            Phase::Warmup => "warming up",
            Phase::Measure => "measuring",
            Phase::Drain => "draining",
            Phase::Done => "done",
        }
    }
}

/// Counters the generator publishes for the progress display (relaxed
/// stores, read by another thread a few times a second).
#[derive(Debug, Default)]
pub struct Progress {
    /// Packets sent so far, warm-up included.
    pub sent: AtomicU64,
    /// Replies received so far, warm-up included.
    pub received: AtomicU64,
    phase: AtomicU8,
}

impl Progress {
    /// The current phase.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    /// Moves to `phase`.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }
}

/// What a generator run measured.
pub struct GenResult {
    /// Measured packets handed to the device.
    pub sent: u64,
    /// Replies to measured packets, by kind.
    pub seq: SeqCounts,
    /// Round-trip times of measured packets, in nanoseconds.
    pub hist: Histogram<u64>,
    /// Length of the measured window actually run (shorter than asked when
    /// interrupted).
    pub window: Duration,
    /// Packets sent during warm-up.
    pub warmup_sent: u64,
    /// Frames received that were not replies to this run.
    pub foreign: u64,
    /// Open loop: packets intended before the end of the window that the
    /// generator never managed to send (0 when it kept up).
    pub backlog: u64,
    /// Replies with our tag but a wrong UDP checksum (not counted).
    pub corrupt: u64,
    /// Closed loop: times the in-flight window was given up after a timeout.
    pub closed_loop_timeouts: u64,
    /// True when stopped early by the stop flag (the window ends there, the
    /// drain still runs).
    pub interrupted: bool,
    /// Backend counters, summed over queues.
    pub io: IoCounters,
}

impl std::fmt::Debug for GenResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenResult")
            .field("sent", &self.sent)
            .field("seq", &self.seq)
            .field("samples", &self.hist.len())
            .field("p50", &self.hist.value_at_quantile(0.5))
            .field("max", &self.hist.max())
            .field("window", &self.window)
            .field("warmup_sent", &self.warmup_sent)
            .field("backlog", &self.backlog)
            .field("foreign", &self.foreign)
            .field("corrupt", &self.corrupt)
            .field("closed_loop_timeouts", &self.closed_loop_timeouts)
            .field("interrupted", &self.interrupted)
            .field("io", &self.io)
            .finish()
    }
}

/// Runs the generator on `ios` (one per queue, at least one) until the
/// window and drain are over or `stop` is set.
pub fn run<I: PacketIo>(
    ios: &mut [I],
    tpl: &Template,
    cfg: &GenConfig,
    progress: &Progress,
    stop: &AtomicBool,
) -> Result<GenResult, IoError> {
    assert!(!ios.is_empty(), "the generator needs at least one queue");
    let nq = ios.len();
    let burst = cfg.burst.clamp(1, MAX_BURST);
    let mut tx: Vec<Batch> = ios.iter().map(|io| io.new_batch()).collect();
    let mut rx: Vec<Batch> = ios.iter().map(|io| io.new_batch()).collect();
    let mut hist = new_histogram();
    let mut tracker = SeqTracker::new(SEQ_WINDOW);

    let t0 = clock::now_ns();
    let ms = t0 + cfg.warmup.as_nanos() as u64;
    let me = ms + cfg.duration.as_nanos() as u64;
    let drain = cfg.drain.as_nanos() as u64;
    // Set when sending stops.
    let mut de = u64::MAX;
    let timeout = cfg.closed_loop_timeout.as_nanos() as u64;
    let mut sched = match cfg.pacing {
        Pacing::Rate(r) => Some(OpenLoop::new(t0, r)),
        _ => None,
    };

    let mut next_seq = 0u64; // next sequence number to stamp
    let mut m0: Option<u64> = None; // first measured sequence number
    let mut sent_total = 0u64; // handed to the device, warm-up included
    let mut received_total = 0u64;
    let mut outstanding = 0u64; // closed loop: sent, not yet answered
    let mut last_activity = t0;
    let mut foreign = 0u64;
    let mut corrupt = 0u64;
    let mut timeouts = 0u64;
    let mut sending = true;
    let mut interrupted = false;
    let mut q = 0usize;
    let mut phase = Phase::Warmup;
    let mut end = u64::MAX;
    progress.set_phase(phase);

    loop {
        let now = clock::now_ns();
        if !interrupted && stop.load(Ordering::Relaxed) {
            // Stop sending now, and still drain: the packets in flight were
            // sent in the window and deserve their replies.
            interrupted = true;
            end = now;
            if sending {
                sending = false;
                de = now + drain;
            }
        }
        if sending {
            let over = match &sched {
                // Every packet intended before `me` is out, or catching up
                // has taken too long.
                Some(s) => s.next_intended() >= me || now >= me + drain,
                None => now >= me,
            };
            if over {
                sending = false;
                de = now + drain;
            }
        }
        let next_phase = if now < ms {
            Phase::Warmup
        } else if sending {
            Phase::Measure
        } else {
            Phase::Drain
        };
        if next_phase != phase {
            phase = next_phase;
            progress.set_phase(phase);
        }
        let mut busy = false;

        // Transmit: top up the current queue's batch, then send it.
        if sending {
            let room = burst.saturating_sub(tx[q].len());
            let want = match (cfg.pacing, &sched) {
                (Pacing::Max, _) => room,
                (Pacing::Rate(_), Some(s)) => s.due(now.min(me - 1), room),
                (Pacing::Closed(n), _) => {
                    let queued: usize = tx.iter().map(Batch::len).sum();
                    (u64::from(n).saturating_sub(outstanding + queued as u64) as usize).min(room)
                }
                (Pacing::Rate(_), None) => unreachable!("open loop has a schedule"),
            };
            let b = &mut tx[q];
            if want > 0 {
                let old = b.len();
                let got = ios[q].alloc(b, want);
                for i in old..old + got {
                    let ts = match &mut sched {
                        Some(s) => s.take_due(now.min(me - 1)).expect("counted as due above"),
                        None => now,
                    };
                    if m0.is_none() && ts >= ms {
                        m0 = Some(next_seq);
                    }
                    let mut f = b.frame_mut(i);
                    f.set_len(tpl.len())
                        .expect("frame sizes are validated against the chunk size");
                    tpl.write(f.data_mut(), next_seq, ts);
                    next_seq += 1;
                }
            }
        }
        let b = &mut tx[q];
        if !b.is_empty() {
            let n = ios[q].send(b)? as u64;
            sent_total += n;
            outstanding += n;
            busy |= n > 0;
        }
        q = (q + 1) % nq;

        // Receive from every queue: while bursts come full, a few of them,
        // so replies do not pile up in the ring while we transmit.
        for (io, b) in ios.iter_mut().zip(rx.iter_mut()) {
            for _ in 0..RX_BURSTS_PER_TURN {
                let n = io.recv(b)?;
                if n == 0 {
                    break;
                }
                busy = true;
                let t = clock::now_ns();
                last_activity = t;
                for i in 0..b.len() {
                    let stamp = match tpl.read_reply(b.frame(i)) {
                        Ok(s) => s,
                        Err(NotOurs::Foreign) => {
                            foreign += 1;
                            continue;
                        }
                        Err(NotOurs::Corrupt) => {
                            corrupt += 1;
                            continue;
                        }
                    };
                    if stamp.seq >= next_seq {
                        foreign += 1; // never sent: not ours
                        continue;
                    }
                    received_total += 1;
                    outstanding = outstanding.saturating_sub(1);
                    if let Some(m0) = m0.filter(|&m0| stamp.seq >= m0)
                        && tracker.record(stamp.seq - m0) == SeqOutcome::New
                    {
                        hist.saturating_record(t.saturating_sub(stamp.ts));
                    }
                }
                b.clear();
                if n < b.burst() {
                    break;
                }
            }
        }

        if let Pacing::Closed(n) = cfg.pacing
            && outstanding >= u64::from(n)
            && now.saturating_sub(last_activity) > timeout
        {
            outstanding = 0;
            timeouts += 1;
            last_activity = now;
        }

        progress.sent.store(sent_total, Ordering::Relaxed);
        progress.received.store(received_total, Ordering::Relaxed);

        if !sending {
            let all_out = tx.iter().all(Batch::is_empty);
            let measured = m0.map_or(0, |m0| next_seq - m0);
            if now >= de || (all_out && tracker.counts().received >= measured) {
                end = end.min(now);
                break;
            }
        }
        if !busy {
            // Nothing moved: complete transmits and kick the kernel; in a
            // slow open loop, sleep until shortly before the next send.
            for io in ios.iter_mut() {
                io.flush()?;
            }
            if let Some(s) = &sched {
                let gap = s.next_intended().saturating_sub(now);
                if sending && gap > SLEEP_GAP_NS {
                    let nap = Duration::from_nanos((gap - SLEEP_GAP_NS / 2).min(1_000_000));
                    ios[0].wait(nap)?;
                }
            }
        }
    }
    progress.set_phase(Phase::Done);

    // Frames stamped but never taken by the device were not sent.
    let mut unsent_measured = 0u64;
    for (io, b) in ios.iter_mut().zip(tx.iter_mut()) {
        if let Some(m0) = m0 {
            unsent_measured += (0..b.len())
                .filter_map(|i| tpl.read_own(b.frame(i)))
                .filter(|&s| s >= m0)
                .count() as u64;
        }
        io.release(b)?;
    }
    let stamped_measured = m0.map_or(0, |m0| next_seq - m0);
    let mut io_counters = IoCounters::default();
    for io in ios.iter() {
        io_counters.add(&io.counters());
    }
    let window_end = end.min(me);
    let backlog = match &sched {
        Some(s) if s.next_intended() < me => {
            let (behind, rate) = (u128::from(me - s.next_intended()), u128::from(s.rate()));
            (behind * rate).div_ceil(1_000_000_000) as u64
        }
        _ => 0,
    };
    Ok(GenResult {
        sent: stamped_measured - unsent_measured,
        seq: tracker.counts(),
        hist,
        window: Duration::from_nanos(window_end.saturating_sub(ms)),
        warmup_sent: m0.unwrap_or(next_seq).min(sent_total),
        foreign,
        corrupt,
        backlog,
        closed_loop_timeouts: timeouts,
        interrupted,
        io: io_counters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::ChecksumMode;
    use crate::frame::tests::spec;
    use dataplane::io::mem::{MemConfig, MemIo};

    /// An echo VNF in memory: every frame sent is reflected and comes back
    /// on the next receive, minus the ones it is told to drop, plus copies
    /// of the ones it is told to duplicate.
    struct EchoMem {
        io: MemIo,
        drop_every: u64,
        dup_every: u64,
        seen: u64,
        max_pending: usize,
        /// Sleep this long once, when `seen` reaches `stall_at`.
        stall: Option<(u64, Duration)>,
    }

    impl EchoMem {
        fn new() -> Self {
            Self {
                io: MemIo::new(MemConfig {
                    loopback: true,
                    ..MemConfig::default()
                })
                .unwrap(),
                drop_every: 0,
                dup_every: 0,
                seen: 0,
                max_pending: 0,
                stall: None,
            }
        }
    }

    impl PacketIo for EchoMem {
        fn name(&self) -> &'static str {
            "echo-mem"
        }
        fn new_batch(&self) -> Batch {
            self.io.new_batch()
        }
        fn recv(&mut self, batch: &mut Batch) -> Result<usize, IoError> {
            self.io.recv(batch)
        }
        fn send(&mut self, batch: &mut Batch) -> Result<usize, IoError> {
            let (drop_every, dup_every) = (self.drop_every, self.dup_every);
            let mut dups = Vec::new();
            let mut seen = self.seen;
            let before = batch.len();
            batch.retain_mut(|f| {
                seen += 1;
                dataplane::wire::swap_udp_frame_addresses(f.data_mut()).unwrap();
                let keep = drop_every == 0 || seen % drop_every != 0;
                if keep && dup_every > 0 && seen % dup_every == 0 {
                    dups.push(f.data().to_vec());
                }
                keep
            });
            if let Some((at, pause)) = self.stall
                && seen >= at
            {
                self.stall = None;
                std::thread::sleep(pause);
            }
            self.seen = seen;
            // Dropped frames count as taken, as a device that loses them would.
            let dropped = before - batch.len();
            let n = self.io.send(batch)? + dropped;
            for d in dups {
                self.io.inject(&d).unwrap();
            }
            self.max_pending = self.max_pending.max(self.io.pending_rx());
            Ok(n)
        }
        fn alloc(&mut self, batch: &mut Batch, n: usize) -> usize {
            self.io.alloc(batch, n)
        }
        fn release(&mut self, batch: &mut Batch) -> Result<(), IoError> {
            self.io.release(batch)
        }
        fn wait(&mut self, timeout: Duration) -> Result<(), IoError> {
            self.io.wait(timeout)
        }
        fn counters(&self) -> IoCounters {
            self.io.counters()
        }
    }

    fn template() -> Template {
        Template::new(spec(), 64, 7, ChecksumMode::Incremental).unwrap()
    }

    fn config(pacing: Pacing, ms: u64) -> GenConfig {
        GenConfig {
            pacing,
            burst: 32,
            warmup: Duration::from_millis(10),
            duration: Duration::from_millis(ms),
            drain: Duration::from_millis(20),
            closed_loop_timeout: Duration::from_millis(5),
        }
    }

    /// Timing tests run one at a time: the generator spins a core, and the
    /// machine may have only two.
    pub(crate) static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn go(ios: &mut [EchoMem], cfg: &GenConfig) -> GenResult {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let progress = Progress::default();
        let r = run(ios, &template(), cfg, &progress, &AtomicBool::new(false)).unwrap();
        assert_eq!(progress.phase(), Phase::Done);
        assert!(progress.sent.load(Ordering::Relaxed) >= r.sent);
        r
    }

    #[test]
    fn flat_out_every_packet_comes_back() {
        let mut ios = [EchoMem::new()];
        let r = go(&mut ios, &config(Pacing::Max, 50));
        assert!(r.sent > 1000, "{r:?}");
        assert_eq!(r.seq.received, r.sent, "{r:?}");
        assert_eq!(r.hist.len(), r.sent);
        assert_eq!(
            (r.foreign, r.corrupt, r.seq.duplicates, r.seq.late),
            (0, 0, 0, 0)
        );
        assert!(r.warmup_sent > 0);
        assert!(!r.interrupted);
        let w = r.window.as_secs_f64();
        assert!((0.045..0.2).contains(&w), "window {w}");
        // Every buffer went back to the backend.
        assert_eq!(ios[0].io.free_buffers(), 1024);
    }

    #[test]
    fn losses_and_duplicates_are_counted() {
        let mut ios = [EchoMem::new()];
        ios[0].drop_every = 10;
        ios[0].dup_every = 7;
        let r = go(&mut ios, &config(Pacing::Max, 50));
        let lost = r.sent - r.seq.received;
        let expect = r.sent / 10;
        assert!(
            lost.abs_diff(expect) <= 64,
            "lost {lost}, expected about {expect}: {r:?}"
        );
        let dups = r.sent / 7 - r.sent / 70;
        assert!(r.seq.duplicates.abs_diff(dups) <= 64, "{r:?}");
        assert_eq!(
            r.hist.len(),
            r.seq.received,
            "duplicates are not sampled twice"
        );
    }

    #[test]
    fn open_loop_sends_at_the_rate_and_measures_from_intended_times() {
        let mut ios = [EchoMem::new()];
        let r = go(&mut ios, &config(Pacing::Rate(100_000), 100));
        // 100 ms at 100 kpps.
        assert!(r.sent.abs_diff(10_000) <= 2, "{r:?}");
        assert_eq!(r.seq.received, r.sent);
        // Replies come back within the same loop iteration in memory, so
        // latency is the gap between the intended and the actual send time
        // plus a loop: microseconds. Measured from the run's start instead,
        // the median would be 50 ms; the bound is 25 ms so that a loaded
        // test machine descheduling this thread does not fail it.
        assert!(
            r.hist.value_at_quantile(0.5) < 25_000_000,
            "{}",
            r.hist.value_at_quantile(0.5)
        );
    }

    #[test]
    fn a_stalled_open_loop_catches_up_and_records_the_stall_as_latency() {
        // 100 kpps for 100 ms; 30 ms into the run the path stalls for 5 ms
        // (a descheduled generator, a full ring). The 500 packets due
        // meanwhile go out back to back afterwards, stamped with their
        // intended times: none is skipped, and their latency shows the
        // stall instead of hiding it (no coordinated omission).
        let mut ios = [EchoMem::new()];
        ios[0].stall = Some((3_000, Duration::from_millis(5)));
        let r = go(&mut ios, &config(Pacing::Rate(100_000), 100));
        assert!(r.sent.abs_diff(10_000) <= 2, "{r:?}");
        assert_eq!(r.seq.received, r.sent);
        assert_eq!(r.backlog, 0);
        assert!(r.hist.max() >= 5_000_000, "{r:?}");
        // Packets due during the stall waited from 5 ms down to nothing:
        // about 400 of them for 1 ms or more (more if the test machine
        // descheduled us too, hence no upper bound).
        let delayed = r.hist.count_between(1_000_000, u64::MAX);
        assert!(delayed >= 350, "{delayed} delayed: {r:?}");
        // Only what was due during the stall waited, not everything after
        // it (a median of tens of milliseconds): the bound leaves room for a
        // loaded test machine descheduling this thread.
        assert!(r.hist.value_at_quantile(0.5) < 25_000_000, "{r:?}");
    }

    #[test]
    fn an_open_loop_beyond_the_generator_reports_its_backlog() {
        let mut ios = [EchoMem::new()];
        let r = go(&mut ios, &config(Pacing::Rate(100_000_000), 20));
        assert!(r.backlog > 0, "{r:?}");
    }

    #[test]
    fn closed_loop_keeps_n_in_flight() {
        let mut ios = [EchoMem::new()];
        // Windows of 200 ms: a loaded test machine may deschedule this
        // thread for tens of milliseconds.
        let r = go(&mut ios, &config(Pacing::Closed(4), 200));
        assert!(r.sent > 100, "{r:?}");
        assert_eq!(r.seq.received, r.sent);
        assert!(ios[0].max_pending <= 4, "{}", ios[0].max_pending);
        assert_eq!(r.closed_loop_timeouts, 0);
    }

    #[test]
    fn closed_loop_survives_total_loss() {
        let mut ios = [EchoMem::new()];
        ios[0].drop_every = 1;
        let r = go(&mut ios, &config(Pacing::Closed(2), 200));
        assert_eq!(r.seq.received, 0);
        assert!(r.closed_loop_timeouts >= 3, "{r:?}");
        assert!(r.sent >= 6, "{r:?}");
    }

    #[test]
    fn several_queues() {
        let mut ios = [EchoMem::new(), EchoMem::new(), EchoMem::new()];
        let r = go(&mut ios, &config(Pacing::Max, 30));
        assert_eq!(r.seq.received, r.sent);
        assert!(ios.iter().all(|q| q.io.counters().tx_packets > 100));
        assert_eq!(
            r.io.tx_packets,
            ios.iter().map(|q| q.io.counters().tx_packets).sum::<u64>()
        );
    }

    #[test]
    fn the_stop_flag_ends_a_long_run_at_once_and_still_drains() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let mut ios = [EchoMem::new()];
        let stop = AtomicBool::new(false);
        let started = std::time::Instant::now();
        let r = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(60));
                stop.store(true, Ordering::Relaxed);
            });
            run(
                &mut ios,
                &template(),
                &config(Pacing::Max, 3_600_000),
                &Progress::default(),
                &stop,
            )
            .unwrap()
        });
        assert!(r.interrupted);
        assert!(started.elapsed() < Duration::from_secs(1));
        // Warm-up 10 ms, then about 50 ms measured before the stop.
        assert!(r.window < Duration::from_millis(500), "{r:?}");
        assert!(
            r.sent > 0 && r.seq.received == r.sent,
            "in-flight replies drained: {r:?}"
        );
    }
}
