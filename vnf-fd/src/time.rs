//! Time as the detector sees it: a number the caller hands in.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time, in nanoseconds since an epoch the caller chooses.
///
/// The detector never reads a clock: the shell passes the time of every
/// input, which is what makes simulation deterministic. Every input of one
/// detector must use the same epoch and clock (a passive-liveness timestamp
/// from a BPF map is `CLOCK_MONOTONIC`, so the shell should use that clock
/// too). The detector's results are meaningful while times stay below
/// 2^62 ns (146 years of uptime); beyond, they are absurd but nothing
/// panics: arithmetic on times saturates or wraps, never overflows.
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
}

/// Nanoseconds in `d`, saturating at `u64::MAX` (584 years).
#[inline]
pub(crate) fn duration_nanos(d: Duration) -> u64 {
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
}
