//! Pinned workers that run a VNF on a backend.
//!
//! The shape is DPDK's l2fwd: set-up happens elsewhere; the per-core loop is
//! one short function: receive a burst, let the VNF rewrite it in place,
//! transmit what it kept, and when idle apply the [`PollPolicy`].
//!
//! * [`run_to_completion`]: one thread does I/O and logic for one queue.
//! * [`run_pipeline`]: the I/O thread hands bursts to a logic thread over
//!   bounded lock-free rings and gets them back to transmit, for VNFs whose
//!   logic is heavier than the I/O.
//!
//! Both stop when their [`Shutdown`] is triggered (SIGINT or SIGTERM for
//! binaries, see [`Shutdown::on_signals`]), transmit what they still hold,
//! and return their counters.

mod pipeline;
mod shutdown;

use std::time::{Duration, Instant};

pub use pipeline::run_pipeline;
pub use shutdown::Shutdown;

use crate::io::{Batch, IoCounters, IoError, PacketIo};

/// A network function: rewrites bursts of frames in place, and may send
/// frames of its own (retransmissions, timers, pushed events).
pub trait Vnf: Send {
    /// Handles one received burst. Frames left in `burst` are transmitted
    /// after the call, in order; frames removed (with
    /// [`Batch::retain_mut`] or [`Batch::clear`]) are dropped.
    fn process(&mut self, now: Instant, burst: &mut Batch);

    /// When the VNF next wants [`Vnf::emit`] called, input or not: a timer's
    /// deadline, or a time already past when it has frames to send. `None`
    /// (the default, a pure rewriter like echo) costs the loop nothing.
    fn next_wakeup(&self) -> Option<Instant> {
        None
    }

    /// Writes the frames the VNF originates into frames taken from `out`.
    /// Called by [`run_to_completion`] once [`Vnf::next_wakeup`] has passed;
    /// called again (after what was written is sent) while it still has.
    /// [`run_pipeline`] does not call it: pipeline stages only rewrite.
    fn emit(&mut self, now: Instant, out: &mut Emit<'_>) {
        let _ = (now, out);
    }

    /// True when the VNF's wake-ups judge the world by what has arrived (a
    /// failure detector's suspicion timers): then, while input is
    /// backlogged (a receive filled a whole burst), [`run_to_completion`]
    /// reads on before calling [`Vnf::emit`], for at most
    /// [`BACKLOG_BURSTS`] bursts or [`BACKLOG_TIME`]. Without it, a worker
    /// descheduled for a few milliseconds would, on waking, fire the timers
    /// of messages that arrived in time and wait unread in the queue.
    /// Default false: a VNF whose wake-ups carry output is served between
    /// every two bursts.
    fn wakeups_wait_for_backlog(&self) -> bool {
        false
    }
}

/// Most full bursts read past a due wake-up of a VNF whose wake-ups wait for
/// the backlog ([`Vnf::wakeups_wait_for_backlog`]).
pub const BACKLOG_BURSTS: u32 = 256;
/// Longest a due wake-up waits for the backlog to be read.
pub const BACKLOG_TIME: Duration = Duration::from_millis(2);

/// Empty frames for [`Vnf::emit`], taken from the backend one at a time so
/// that a VNF with one message to send does not tie up a whole burst.
pub struct Emit<'a> {
    batch: &'a mut Batch,
    alloc: &'a mut dyn FnMut(&mut Batch) -> bool,
}

impl Emit<'_> {
    /// An empty frame to write a message into (with [`FrameMut::fill`] or
    /// [`FrameMut::set_len`]); `None` when this burst is full or the
    /// backend has no free buffer: keep the message for the next call.
    ///
    /// [`FrameMut::fill`]: crate::io::FrameMut::fill
    /// [`FrameMut::set_len`]: crate::io::FrameMut::set_len
    pub fn frame(&mut self) -> Option<crate::io::FrameMut<'_>> {
        if self.batch.spare() == 0 || !(self.alloc)(self.batch) {
            return None;
        }
        let last = self.batch.len() - 1;
        Some(self.batch.frame_mut(last))
    }

    /// Frames taken so far in this call.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    /// True when no frame has been taken in this call.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
}

impl<F: FnMut(Instant, &mut Batch) + Send> Vnf for F {
    fn process(&mut self, now: Instant, burst: &mut Batch) {
        self(now, burst)
    }
}

/// What a worker does when a receive finds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollPolicy {
    /// Poll again at once: lowest latency, one core fully used. For cores
    /// dedicated to the dataplane.
    Busy,
    /// Poll again `spins` times, then wait on the backend (the socket's
    /// readiness) for at most `wait`. The default: shared machines, tests and
    /// CI must never have a core spun for nothing.
    Adaptive {
        /// Empty polls before waiting.
        spins: u32,
        /// Zero (the default): `spins` alone decides. Else, while the
        /// pauses in the input last no longer than this, each is polled
        /// through for up to this long (yielding the core at every poll
        /// to any thread that wants it) before waiting; after a longer
        /// pause, `spins` decides until a short one comes again.
        ///
        /// Why a time and not a count: a count of polls lasts very
        /// different times on different backends (an empty AF_XDP poll
        /// reads a few ring indexes, an empty kernel-UDP poll is a system
        /// call), and a VNF in a closed loop (its answer comes back within
        /// tens of microseconds) pays a sleep and a wake-up per round trip
        /// when the count runs out first; a time spins alike on every
        /// backend, and only through the gaps it catches.
        spin_for: Duration,
        /// Longest single wait.
        wait: Duration,
    },
    /// After an empty poll, sleep `every` (or until the VNF's next wake-up,
    /// if sooner) and then read the backlog in full bursts, as NAPI does
    /// with interrupts. For VNFs whose deadlines are milliseconds (the
    /// failure detector): a steady trickle of packets, each a few
    /// microseconds apart, would keep an adaptive worker spinning on its
    /// core for nothing, where this one works a few percent of it. The
    /// receive ring must hold `every` of traffic.
    Paced {
        /// Sleep after an empty poll.
        every: Duration,
    },
}

impl PollPolicy {
    /// `paced` without a period: half a millisecond, a tenth of the
    /// failure detector's default margin.
    pub const PACED: PollPolicy = PollPolicy::Paced {
        every: Duration::from_micros(500),
    };

    /// This policy, adaptive ones spinning for at least `t` before they
    /// wait (see [`PollPolicy::Adaptive`]); other policies unchanged.
    pub fn spinning_for(self, t: Duration) -> Self {
        match self {
            PollPolicy::Adaptive { spins, wait, .. } => PollPolicy::Adaptive {
                spins,
                spin_for: t,
                wait,
            },
            other => other,
        }
    }
}

impl Default for PollPolicy {
    fn default() -> Self {
        PollPolicy::Adaptive {
            spins: 256,
            spin_for: Duration::ZERO,
            wait: Duration::from_millis(10),
        }
    }
}

impl std::str::FromStr for PollPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "busy" => Ok(PollPolicy::Busy),
            "adaptive" => Ok(PollPolicy::default()),
            other if other.starts_with("adaptive:") => {
                match other["adaptive:".len()..].parse::<u64>() {
                    Ok(us @ 1..=100_000) => {
                        Ok(PollPolicy::default().spinning_for(Duration::from_micros(us)))
                    }
                    _ => Err(format!(
                        "{other:?}: the spin time is microseconds from 1 to 100000 (adaptive:100)"
                    )),
                }
            }
            "paced" => Ok(PollPolicy::PACED),
            other => match other.strip_prefix("paced:") {
                Some(us) => match us.parse::<u64>() {
                    Ok(us @ 1..=100_000) => Ok(PollPolicy::Paced {
                        every: Duration::from_micros(us),
                    }),
                    _ => Err(format!(
                        "{other:?}: the pace is microseconds from 1 to 100000 (paced:500)"
                    )),
                },
                None => Err(format!(
                    "unknown poll policy {other:?}: expected busy, adaptive, adaptive:<microseconds>, paced or paced:<microseconds>"
                )),
            },
        }
    }
}

/// Empty polls between two clock reads of an adaptive policy with a spin
/// time: the clock is not read at every poll (a few tens of nanoseconds,
/// as much as an empty AF_XDP poll itself).
const SPIN_CLOCK_EVERY: u32 = 16;

/// Tracks empty polls and applies the policy.
#[derive(Debug)]
struct Idle {
    policy: PollPolicy,
    empty: u32,
    /// Adaptive with a spin time: when this pause in the input started,
    /// as of the first clock read (the [`SPIN_CLOCK_EVERY`]th empty poll).
    idle_since: Option<Instant>,
    /// Adaptive with a spin time: the last pause was no longer than it,
    /// so this one is spun through (else the pauses are long, a spin would
    /// only take the core from others, and `spins` alone decides).
    spin: bool,
    /// This spin is over: wait at every empty poll until traffic comes.
    spun: bool,
}

impl Idle {
    fn new(policy: PollPolicy) -> Self {
        Self {
            policy,
            empty: 0,
            idle_since: None,
            spin: true,
            spun: false,
        }
    }

    /// The spin time of an adaptive policy (zero: none).
    fn spin_for(&self) -> Duration {
        match self.policy {
            PollPolicy::Adaptive { spin_for, .. } => spin_for,
            _ => Duration::ZERO,
        }
    }

    fn busy(&mut self) {
        if self.empty > 0 {
            // A pause ended: shorter than a spin (or too short to have
            // been timed), the next one is spun through.
            let spin_for = self.spin_for();
            self.spin = self.idle_since.is_none_or(|t| t.elapsed() <= spin_for);
        }
        self.empty = 0;
        self.idle_since = None;
        self.spun = false;
    }

    /// Whether an adaptive policy has polled enough and waits now; with a
    /// spin time, reads the clock at every [`SPIN_CLOCK_EVERY`]th call.
    fn done_spinning(&mut self, spins: u32, spin_for: Duration) -> bool {
        if spin_for.is_zero() {
            return self.empty > spins;
        }
        if self.spun {
            return true;
        }
        if self.empty % SPIN_CLOCK_EVERY == 0 {
            let now = Instant::now();
            let since = *self.idle_since.get_or_insert(now);
            self.spun = self.spin && now.duration_since(since) >= spin_for;
        }
        let wait = self.spun || (!self.spin && self.empty > spins);
        if wait && self.idle_since.is_none() {
            // A pause waited through is timed, however few polls it took.
            self.idle_since = Some(Instant::now());
        }
        wait
    }

    /// Called after an empty poll; `wait` blocks for at most the given time,
    /// and never past `until` (the VNF's next wake-up).
    fn idle(
        &mut self,
        until: Option<Instant>,
        wait: impl FnOnce(Duration) -> Result<(), IoError>,
    ) -> Result<(), IoError> {
        match self.policy {
            PollPolicy::Busy => std::hint::spin_loop(),
            PollPolicy::Adaptive {
                spins,
                spin_for,
                wait: max,
            } => {
                self.empty = self.empty.saturating_add(1);
                if self.done_spinning(spins, spin_for) {
                    let max = until.map_or(max, |t| {
                        max.min(t.saturating_duration_since(Instant::now()))
                    });
                    wait(max)?;
                } else if !spin_for.is_zero() && self.spin {
                    // Spinning for a time, maybe hundreds of
                    // microseconds: a thread that wants this core (on a
                    // small host, the very process whose answer we wait
                    // for) goes first.
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
            PollPolicy::Paced { every } => {
                let pause = until.map_or(every, |t| {
                    every.min(t.saturating_duration_since(Instant::now()))
                });
                // A plain sleep, not a wait on the socket: waking for each
                // packet is what pacing avoids.
                std::thread::sleep(pause);
            }
        }
        Ok(())
    }
}

/// Pins the calling thread to `core`; returns false (and logs) when the core
/// does not exist or pinning is refused.
pub fn pin_current_thread(core: usize) -> bool {
    let ok = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.id == core)
        .is_some_and(core_affinity::set_for_current);
    if !ok {
        tracing::warn!(core, "could not pin thread to core; running unpinned");
    }
    ok
}

/// Puts the calling thread under the real-time FIFO scheduler at
/// `priority` (1 to 99): it then runs as soon as it is runnable, ahead of
/// every normal thread of its core. For threads whose lateness is an
/// error (heartbeat senders, a failure detector), never for a thread that
/// polls without sleeping. Returns false (and changes nothing) when the
/// priority is out of range or the caller may not (no CAP_SYS_NICE).
pub fn set_realtime(priority: i32) -> bool {
    if !(1..=99).contains(&priority) {
        return false;
    }
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: a plain syscall on the calling thread with a valid parameter.
    unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) == 0 }
}

/// Transmits every frame of `batch`, retrying while the TX ring is full.
/// Gives up (and releases the rest, counted by the caller) only on shutdown.
fn send_all<I: PacketIo + ?Sized>(
    io: &mut I,
    batch: &mut Batch,
    stop: &Shutdown,
) -> Result<u64, IoError> {
    let mut unsent = 0;
    while !batch.is_empty() {
        if io.send(batch)? == 0 {
            if stop.is_triggered() {
                unsent = batch.len() as u64;
                io.release(batch)?;
                break;
            }
            io.flush()?;
            std::hint::spin_loop();
        }
    }
    Ok(unsent)
}

/// Lets `vnf` write its own frames into `out`, taking empty frames from
/// `io` one at a time: one step of what [`run_to_completion`] does when the
/// VNF's wake-up is due, for loops of one's own and for tests.
pub fn emit_into<I: PacketIo + ?Sized, V: Vnf + ?Sized>(
    io: &mut I,
    out: &mut Batch,
    now: Instant,
    vnf: &mut V,
) {
    let mut alloc = |b: &mut Batch| io.alloc(b, 1) == 1;
    vnf.emit(
        now,
        &mut Emit {
            batch: out,
            alloc: &mut alloc,
        },
    );
}

/// Bursts of its own frames a VNF may send between two receives.
const EMITS_PER_ROUND: usize = 4;

/// Runs `vnf` on `io` in the calling thread until `stop` triggers; returns
/// the backend's counters, with frames abandoned at shutdown in `tx_errors`.
pub fn run_to_completion<I: PacketIo + ?Sized, V: Vnf + ?Sized>(
    io: &mut I,
    vnf: &mut V,
    policy: PollPolicy,
    stop: &Shutdown,
) -> Result<IoCounters, IoError> {
    let mut batch = io.new_batch();
    let mut out = io.new_batch();
    let mut idle = Idle::new(policy);
    let mut abandoned = 0;
    let wait_for_backlog = vnf.wakeups_wait_for_backlog();
    // Full bursts read in a row past a due wake-up, and since when.
    let mut backlog: Option<(u32, Instant)> = None;
    while !stop.is_triggered() {
        let got = io.recv(&mut batch)?;
        let full = got > 0 && got >= batch.burst();
        if got > 0 {
            idle.busy();
            vnf.process(Instant::now(), &mut batch);
            abandoned += send_all(io, &mut batch, stop)?;
        }
        let mut wakeup = vnf.next_wakeup();
        let mut emitted = false;
        if let Some(at) = wakeup {
            let now = Instant::now();
            if at <= now && wait_for_backlog && full {
                let (bursts, since) = backlog.get_or_insert((0, now));
                *bursts += 1;
                if *bursts <= BACKLOG_BURSTS && now.duration_since(*since) < BACKLOG_TIME {
                    continue;
                }
            }
            backlog = None;
            if at <= now {
                // Bounded: at most a few bursts of the VNF's own frames
                // before the next receive, so input is never starved.
                for _ in 0..EMITS_PER_ROUND {
                    emit_into(io, &mut out, now, vnf);
                    if out.is_empty() {
                        break;
                    }
                    emitted = true;
                    abandoned += send_all(io, &mut out, stop)?;
                    if vnf.next_wakeup().is_none_or(|t| t > now) {
                        break;
                    }
                }
                // A wake-up that stays due with nothing written (no free
                // buffer yet) must not turn the idle wait into a spin.
                wakeup = vnf.next_wakeup().filter(|t| *t > now);
            }
        }
        if emitted {
            idle.busy();
        } else if got == 0 {
            idle.idle(wakeup, |t| io.wait(t))?;
        }
    }
    io.release(&mut out)?;
    io.release(&mut batch)?;
    io.flush()?;
    let mut c = io.counters();
    c.tx_errors += abandoned;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::mem::{MemConfig, MemIo};

    #[test]
    fn run_to_completion_processes_everything_then_stops() {
        let mut io = MemIo::new(MemConfig::default()).unwrap();
        for i in 0..500u32 {
            io.inject(&i.to_be_bytes()).unwrap();
        }
        let stop = Shutdown::new();
        let seen = std::sync::atomic::AtomicU32::new(0);
        let mut vnf = |_: Instant, b: &mut Batch| {
            // Drop odd frames, mark even ones.
            b.retain_mut(|f| f.data()[3] % 2 == 0);
            for mut f in b.iter_mut() {
                f.data_mut()[0] = 0xff;
            }
            if seen.fetch_add(b.len() as u32, std::sync::atomic::Ordering::Relaxed) + b.len() as u32
                >= 250
            {
                stop.trigger();
            }
        };
        let c = run_to_completion(&mut io, &mut vnf, PollPolicy::default(), &stop).unwrap();
        assert_eq!(c.rx_packets, 500);
        assert_eq!(c.tx_packets, 250);
        let mut out = Vec::new();
        io.drain_sent(|f| out.push(u32::from_be_bytes(f.try_into().unwrap())));
        assert_eq!(out.len(), 250);
        assert!(out.iter().all(|v| v >> 24 == 0xff && v % 2 == 0));
        assert_eq!(
            io.free_buffers(),
            MemConfig::default().chunks as usize,
            "no buffer leaked"
        );
    }

    /// A VNF that sends `total` numbered frames of its own, a few per
    /// wake-up, and stops the loop once they are all out.
    struct Ticker {
        next: u32,
        total: u32,
        due: Instant,
        stop: Shutdown,
    }

    impl Vnf for Ticker {
        fn process(&mut self, _: Instant, burst: &mut Batch) {
            burst.clear();
        }
        fn next_wakeup(&self) -> Option<Instant> {
            (self.next < self.total).then_some(self.due)
        }
        fn emit(&mut self, now: Instant, out: &mut Emit<'_>) {
            while self.next < self.total {
                let Some(mut f) = out.frame() else { return };
                f.fill(&self.next.to_be_bytes()).unwrap();
                self.next += 1;
                if self.next % 100 == 0 && self.next < self.total {
                    // Then wait a little: the loop must sleep until then.
                    self.due = now + Duration::from_millis(1);
                    return;
                }
            }
            self.stop.trigger();
        }
    }

    #[test]
    fn emitted_frames_are_sent_in_order_without_leaks() {
        let mut io = MemIo::new(MemConfig::default()).unwrap();
        let stop = Shutdown::new();
        let mut vnf = Ticker {
            next: 0,
            total: 1000,
            due: Instant::now(),
            stop: stop.clone(),
        };
        let c = run_to_completion(&mut io, &mut vnf, PollPolicy::default(), &stop).unwrap();
        assert_eq!(c.tx_packets, 1000);
        let mut out = Vec::new();
        io.drain_sent(|f| out.push(u32::from_be_bytes(f.try_into().unwrap())));
        assert_eq!(out, (0..1000).collect::<Vec<_>>());
        assert_eq!(io.free_buffers(), MemConfig::default().chunks as usize);
    }

    /// A VNF whose one timer is already due, counting the frames it had
    /// read by the time the timer was served.
    struct Judge {
        read: u32,
        read_at_timer: Option<u32>,
        wait_for_backlog: bool,
        stop: Shutdown,
    }

    impl Vnf for Judge {
        fn process(&mut self, _: Instant, burst: &mut Batch) {
            self.read += burst.len() as u32;
            burst.clear();
        }
        fn next_wakeup(&self) -> Option<Instant> {
            self.read_at_timer.is_none().then(Instant::now)
        }
        fn emit(&mut self, _: Instant, _: &mut Emit<'_>) {
            self.read_at_timer = Some(self.read);
            self.stop.trigger();
        }
        fn wakeups_wait_for_backlog(&self) -> bool {
            self.wait_for_backlog
        }
    }

    #[test]
    fn due_wakeups_wait_for_the_backlog_when_the_vnf_asks() {
        for wait_for_backlog in [false, true] {
            let mut io = MemIo::new(MemConfig::default()).unwrap();
            // A queue built up while the worker was away: 8 bursts' worth.
            let queued = 8 * MemConfig::default().burst as u32;
            for i in 0..queued {
                io.inject(&i.to_be_bytes()).unwrap();
            }
            let stop = Shutdown::new();
            let mut vnf = Judge {
                read: 0,
                read_at_timer: None,
                wait_for_backlog,
                stop: stop.clone(),
            };
            run_to_completion(&mut io, &mut vnf, PollPolicy::default(), &stop).unwrap();
            let read = vnf.read_at_timer.unwrap();
            if wait_for_backlog {
                assert_eq!(read, queued, "the timer judged with the whole queue read");
            } else {
                assert_eq!(
                    read,
                    MemConfig::default().burst as u32,
                    "served after one burst"
                );
            }
        }
    }

    #[test]
    fn poll_policy_parses() {
        assert_eq!("busy".parse::<PollPolicy>().unwrap(), PollPolicy::Busy);
        assert!(matches!(
            "adaptive".parse::<PollPolicy>().unwrap(),
            PollPolicy::Adaptive { .. }
        ));
        assert_eq!("paced".parse::<PollPolicy>().unwrap(), PollPolicy::PACED);
        assert_eq!(
            "adaptive:150".parse::<PollPolicy>().unwrap(),
            PollPolicy::default().spinning_for(Duration::from_micros(150))
        );
        assert_eq!(
            PollPolicy::Busy.spinning_for(Duration::from_micros(150)),
            PollPolicy::Busy
        );
        assert_eq!(
            "paced:250".parse::<PollPolicy>().unwrap(),
            PollPolicy::Paced {
                every: Duration::from_micros(250)
            }
        );
        for bad in [
            "spin",
            "paced:",
            "paced:0",
            "paced:100001",
            "paced:-5",
            "adaptive:",
            "adaptive:0",
            "adaptive:100001",
            "paced:1ms",
        ] {
            assert!(bad.parse::<PollPolicy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn paced_policy_sleeps_its_pace_or_until_the_wakeup_without_waiting_on_the_socket() {
        let every = Duration::from_millis(50);
        let mut idle = Idle::new(PollPolicy::Paced { every });
        let t = Instant::now();
        idle.idle(None, |_| {
            panic!("a paced worker sleeps, it does not wait on the socket")
        })
        .unwrap();
        assert!(t.elapsed() >= every, "slept {:?}", t.elapsed());
        // A wake-up sooner than the pace cuts the sleep short.
        let t = Instant::now();
        idle.idle(Some(t + Duration::from_micros(200)), |_| unreachable!())
            .unwrap();
        assert!(t.elapsed() < every, "slept {:?}", t.elapsed());
    }

    #[test]
    fn realtime_priority_is_set_on_the_calling_thread_only() {
        assert!(!set_realtime(0));
        assert!(!set_realtime(100));
        // SAFETY: plain getter.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: SCHED_FIFO needs root (CAP_SYS_NICE)");
            return;
        }
        let policy = std::thread::spawn(|| {
            assert!(set_realtime(5));
            // SAFETY: plain getter on the calling thread.
            unsafe { libc::sched_getscheduler(0) }
        })
        .join()
        .unwrap();
        assert_eq!(policy, libc::SCHED_FIFO);
        // SAFETY: plain getter on the calling thread.
        assert_ne!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_FIFO);
    }

    #[test]
    fn adaptive_policy_with_a_spin_time_spins_through_short_pauses_only() {
        let spin_for = Duration::from_millis(20);
        let mut idle = Idle::new(PollPolicy::Adaptive {
            spins: 4,
            spin_for,
            wait: Duration::from_millis(1),
        });
        // Polls until the policy waits; how many, and for how long.
        let pause = |idle: &mut Idle| {
            let t = Instant::now();
            let mut polls = 0u32;
            let mut waited = false;
            while !waited {
                polls += 1;
                idle.idle(None, |_| {
                    waited = true;
                    Ok(())
                })
                .unwrap();
            }
            (polls, t.elapsed())
        };
        // The first pause is spun through for the time, not the count.
        let (polls, took) = pause(&mut idle);
        assert!(took >= spin_for && polls > 4, "{polls} polls, {took:?}");
        // Once the spin is over, every empty poll waits.
        idle.idle(None, |_| Err(IoError::ForeignBatch)).unwrap_err();
        // That pause was longer than a spin: the next one waits after the
        // count of polls.
        idle.busy();
        assert_eq!(pause(&mut idle).0, 5);
        // A short pause (traffic again after a few polls) brings the spin
        // back.
        idle.busy();
        idle.idle(None, |_| panic!("polls first")).unwrap();
        idle.busy();
        let (polls, took) = pause(&mut idle);
        assert!(took >= spin_for && polls > 4, "{polls} polls, {took:?}");
    }

    #[test]
    fn adaptive_policy_waits_after_spinning() {
        let mut idle = Idle::new(PollPolicy::Adaptive {
            spins: 3,
            spin_for: Duration::ZERO,
            wait: Duration::from_millis(1),
        });
        let mut waits = 0;
        for _ in 0..10 {
            idle.idle(None, |_| {
                waits += 1;
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(waits, 7);
        idle.busy();
        idle.idle(None, |_| panic!("must spin first")).unwrap();
        for _ in 0..4 {
            idle.idle(None, |_| Ok(())).unwrap();
        }
        idle.idle(Some(Instant::now()), |t| {
            assert_eq!(t, Duration::ZERO, "a wake-up due now bounds the wait");
            Ok(())
        })
        .unwrap();
    }
}
