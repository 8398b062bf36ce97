//! Time as the sans-IO protocol cores see it: a number the caller hands in.
//!
//! The cores (sequencer, Paxos, failure detector) never read a clock: the
//! shell passes the time of every input, which is what makes simulation
//! deterministic. The shells use [`Time::monotonic_now`], on
//! `CLOCK_MONOTONIC`, the clock the XDP programs stamp packets with
//! (`bpf_ktime_get_ns`), so one time base serves every source of evidence.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::{Duration, Instant};

/// A point in time, in nanoseconds since an epoch the caller chooses.
///
/// Every input of one core must use the same epoch and clock. Arithmetic
/// saturates, so no input time can make a core panic: absurd times give
/// absurd timers, nothing worse.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(u64);

impl Time {
    /// The epoch.
    pub const ZERO: Time = Time(0);
    /// The latest representable time; used as "never".
    pub const MAX: Time = Time(u64::MAX);

    /// The time `nanos` nanoseconds after the epoch.
    #[inline]
    pub const fn from_nanos(nanos: u64) -> Self {
        Time(nanos)
    }

    /// The time `micros` microseconds after the epoch (saturating).
    #[inline]
    pub const fn from_micros(micros: u64) -> Self {
        Time(micros.saturating_mul(1_000))
    }

    /// The time `millis` milliseconds after the epoch (saturating).
    #[inline]
    pub const fn from_millis(millis: u64) -> Self {
        Time(millis.saturating_mul(1_000_000))
    }

    /// Nanoseconds since the epoch.
    #[inline]
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// How long after `earlier` this is; zero when it is not after it.
    #[inline]
    pub const fn saturating_duration_since(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Now on `CLOCK_MONOTONIC` (epoch: boot), the clock of the XDP
    /// programs' stamps and of every shell.
    #[inline]
    pub fn monotonic_now() -> Time {
        Time(monotonic_nanos())
    }
}

/// Maps [`Instant`]s (what the dataplane runtime hands a VNF) onto
/// [`Time`] on `CLOCK_MONOTONIC` (what the cores take) and back: the
/// shells' one converter, so that every service reads the XDP programs'
/// time base the same way.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_ns: u64,
}

impl Clock {
    /// A clock anchored now.
    pub fn new() -> Self {
        Clock {
            base: Instant::now(),
            base_ns: monotonic_nanos(),
        }
    }

    /// The instant it was anchored at: one already past, for a wake-up
    /// that is due now.
    pub fn anchor(&self) -> Instant {
        self.base
    }

    /// `at` as core time (instants before the anchor map to it).
    pub fn time(&self, at: Instant) -> Time {
        let d = at.saturating_duration_since(self.base).as_nanos() as u64;
        Time::from_nanos(self.base_ns.saturating_add(d))
    }

    /// Core time `t` as an [`Instant`]: times before the anchor map to it,
    /// and times too far ahead for an `Instant` (a core's "never",
    /// [`Time::MAX`]) to a year from the anchor, never a panic.
    pub fn instant(&self, t: Time) -> Instant {
        let after = t.as_nanos().saturating_sub(self.base_ns);
        self.base
            .checked_add(Duration::from_nanos(after))
            .unwrap_or(self.base + Duration::from_secs(86_400 * 365))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// `CLOCK_MONOTONIC` now, in nanoseconds since boot.
#[inline]
pub fn monotonic_nanos() -> u64 {
    clock_nanos(libc::CLOCK_MONOTONIC)
}

/// CPU time the calling thread has used, in nanoseconds
/// (`CLOCK_THREAD_CPUTIME_ID`): what a benchmark on a shared, noisy machine
/// divides by to give a rate per second of one core actually had.
#[inline]
pub fn thread_cpu_nanos() -> u64 {
    clock_nanos(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn clock_nanos(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; both clocks used here
    // always exist on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Nanoseconds in `d`, saturating at `u64::MAX` (584 years).
#[inline]
pub fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Time {
    type Output = Time;

    /// Saturates at [`Time::MAX`].
    #[inline]
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(duration_nanos(d)))
    }
}

impl Sub<Time> for Time {
    type Output = Duration;

    /// Saturates at zero, like [`Time::saturating_duration_since`].
    #[inline]
    fn sub(self, earlier: Time) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl fmt::Debug for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:09}s",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000
        )
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_round_trips() {
        let c = Clock::new();
        let now = Instant::now();
        let back = c.instant(c.time(now));
        assert!(back <= now && now - back < Duration::from_micros(1));
    }

    #[test]
    fn clock_maps_the_extremes_without_panic() {
        let c = Clock::new();
        let never = c.instant(Time::MAX);
        assert!(never > Instant::now() + Duration::from_secs(86_400));
        // Times before the anchor, and instants before it, map to it.
        assert_eq!(c.instant(Time::ZERO), c.anchor());
        if let Some(earlier) = c.anchor().checked_sub(Duration::from_millis(1)) {
            assert_eq!(c.time(earlier), c.time(c.anchor()));
        }
        // On the monotonic clock's base, within the slack of two reads.
        let before = Time::monotonic_now();
        let t = c.time(Instant::now());
        let after = Time::monotonic_now();
        let slack = Duration::from_millis(1);
        assert!(
            t + slack >= before && t <= after + slack,
            "{before} {t} {after}"
        );
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Time::MAX + Duration::from_secs(1), Time::MAX);
        assert_eq!(Time::ZERO - Time::from_millis(1), Duration::ZERO);
        assert_eq!(
            Time::from_millis(15) - Time::from_micros(5_000),
            Duration::from_millis(10)
        );
        assert_eq!(Time::from_millis(u64::MAX), Time::MAX);
        assert_eq!(
            format!("{:?}", Time::from_nanos(1_000_000_007)),
            "1.000000007s"
        );
    }

    #[test]
    fn the_monotonic_clock_moves_forward() {
        let a = Time::monotonic_now();
        std::thread::sleep(Duration::from_millis(2));
        let b = Time::monotonic_now();
        assert!(b - a >= Duration::from_millis(2), "{a} then {b}");
    }
}
