//! How a process is monitored: heartbeat interval, estimator window and
//! safety margin.

use std::time::Duration;

use crate::time::duration_nanos;

/// The largest estimator window; each process keeps this many `i64`s at most.
pub const MAX_WINDOW: u32 = 4096;
/// The longest interval or margin accepted. Far beyond any useful value; the
/// bound keeps every sum of times far from `u64::MAX`.
pub const MAX_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// How one process (or a group of processes) is monitored.
///
/// A process whose heartbeats arrive every `interval` with a delay that
/// varies by less than `margin` from one heartbeat to another (peak to peak)
/// and by less than half an interval, and that loses none, is never
/// suspected. A process that stops is suspected at most `interval + margin`
/// after the heartbeat that should have come next was expected. To ride out
/// `k` consecutive lost heartbeats, add `k × interval` to the margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Config {
    /// The sender's heartbeat period (Chen's Δi). It must match what the
    /// sender does: the estimator predicts arrivals from it.
    pub interval: Duration,
    /// Safety margin (Chen's α) added to the expected arrival time: the
    /// detection time traded for tolerance to delay variation.
    pub margin: Duration,
    /// How many recent arrivals the expected arrival is averaged over
    /// (Chen's n), 1 to [`MAX_WINDOW`]. Larger smooths jitter out of the
    /// estimate; smaller follows a shift in delay sooner.
    pub window: u32,
}

impl Default for Config {
    /// 10 ms heartbeats, 5 ms margin, 32-arrival window: millisecond
    /// detection with room for ±2 ms of jitter. The mean of 32 arrivals
    /// already averages one heartbeat's jitter down to a thirty-second;
    /// a longer window would only follow a change of delay more slowly.
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(10),
            margin: Duration::from_millis(5),
            window: 32,
        }
    }
}

/// Why a [`Config`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The interval is zero or above [`MAX_PERIOD`].
    #[error("interval must be above zero and at most {MAX_PERIOD:?}")]
    Interval,
    /// The margin is above [`MAX_PERIOD`].
    #[error("margin must be at most {MAX_PERIOD:?}")]
    Margin,
    /// The window is zero or above [`MAX_WINDOW`].
    #[error("window must be 1 to {MAX_WINDOW}")]
    Window,
}

impl Config {
    /// A configuration with the given interval and margin and the default
    /// window.
    pub fn new(interval: Duration, margin: Duration) -> Self {
        Self {
            interval,
            margin,
            ..Self::default()
        }
    }

    /// The same configuration with another window.
    pub fn with_window(self, window: u32) -> Self {
        Self { window, ..self }
    }

    /// Checks every field against its bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval.is_zero() || self.interval > MAX_PERIOD {
            return Err(ConfigError::Interval);
        }
        if self.margin > MAX_PERIOD {
            return Err(ConfigError::Margin);
        }
        if self.window == 0 || self.window > MAX_WINDOW {
            return Err(ConfigError::Window);
        }
        Ok(())
    }

    /// The interval in nanoseconds.
    pub(crate) fn interval_ns(&self) -> u64 {
        duration_nanos(self.interval)
    }

    /// The margin in nanoseconds.
    pub(crate) fn margin_ns(&self) -> u64 {
        duration_nanos(self.margin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert_eq!(Config::default().validate(), Ok(()));
        let ms = Duration::from_millis;
        assert_eq!(
            Config::new(Duration::ZERO, ms(1)).validate(),
            Err(ConfigError::Interval)
        );
        assert_eq!(
            Config::new(ms(10), MAX_PERIOD + ms(1)).validate(),
            Err(ConfigError::Margin)
        );
        assert_eq!(
            Config::default().with_window(0).validate(),
            Err(ConfigError::Window)
        );
        assert_eq!(
            Config::default().with_window(MAX_WINDOW + 1).validate(),
            Err(ConfigError::Window)
        );
        let c = Config::new(ms(10), ms(5));
        assert_eq!((c.interval_ns(), c.margin_ns()), (10_000_000, 5_000_000));
    }
}
