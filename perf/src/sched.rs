//! Send scheduling: as fast as possible, open loop at a fixed rate, or closed
//! loop with a fixed number of packets in flight.
//!
//! The open-loop schedule is coordinated-omission aware: packet `k` has an
//! intended send time `start + k / rate`, fixed in advance. When the
//! generator falls behind it sends the overdue packets back to back (catch-up
//! bursts) and stamps each with its *intended* time, so the time it spent
//! behind shows up as latency instead of silently vanishing.

/// How the generator paces its sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// Full bursts whenever the transmit ring has room.
    Max,
    /// Open loop at this many packets per second.
    Rate(u64),
    /// Closed loop: keep this many packets in flight.
    Closed(u32),
}

impl Pacing {
    /// A short name for reports: `max`, `open-loop` or `closed-loop`.
    pub fn mode(&self) -> &'static str {
        match self {
            Pacing::Max => "max",
            Pacing::Rate(_) => "open-loop",
            Pacing::Closed(_) => "closed-loop",
        }
    }
}

/// The intended send times of an open-loop schedule, exact to the
/// nanosecond with no drift: `intended(k) = start + floor(k * 1e9 / rate)`,
/// advanced by integer steps (no division per packet).
#[derive(Debug, Clone)]
pub struct OpenLoop {
    rate: u64,
    step: u64,
    rem: u64,
    frac: u64,
    next: u64,
    issued: u64,
}

const NS: u64 = 1_000_000_000;

impl OpenLoop {
    /// A schedule of `rate` packets per second (at least 1) whose first
    /// packet is due at `start_ns`.
    pub fn new(start_ns: u64, rate: u64) -> Self {
        let rate = rate.max(1);
        Self {
            rate,
            step: NS / rate,
            rem: NS % rate,
            frac: 0,
            next: start_ns,
            issued: 0,
        }
    }

    /// The intended send time of the next packet.
    #[inline]
    pub fn next_intended(&self) -> u64 {
        self.next
    }

    /// The rate, packets per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Packets issued so far.
    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// How many packets, up to `max`, are due at `now_ns` and not yet issued.
    pub fn due(&self, now_ns: u64, max: usize) -> usize {
        let mut probe = self.clone();
        let mut n = 0;
        while n < max && probe.take_due(now_ns).is_some() {
            n += 1;
        }
        n
    }

    /// If the next packet is due at `now_ns`, issues it and returns its
    /// intended send time.
    #[inline]
    pub fn take_due(&mut self, now_ns: u64) -> Option<u64> {
        if self.next > now_ns {
            return None;
        }
        let t = self.next;
        self.next += self.step;
        self.frac += self.rem;
        if self.frac >= self.rate {
            self.frac -= self.rate;
            self.next += 1;
        }
        self.issued += 1;
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_advance_at_one_over_rate() {
        let mut s = OpenLoop::new(1_000, 1_000_000); // 1 µs apart
        let times: Vec<u64> = (0..5).map(|_| s.take_due(u64::MAX).unwrap()).collect();
        assert_eq!(times, [1_000, 2_000, 3_000, 4_000, 5_000]);
        assert_eq!(s.next_intended(), 6_000);
    }

    #[test]
    fn nothing_is_due_before_its_time() {
        let mut s = OpenLoop::new(10_000, 1_000);
        assert_eq!(s.take_due(9_999), None);
        assert_eq!(s.take_due(10_000), Some(10_000));
        assert_eq!(s.take_due(10_000 + 999_999), None);
        assert_eq!(s.take_due(10_000 + 1_000_000), Some(1_010_000));
    }

    #[test]
    fn falling_behind_yields_catch_up_sends_stamped_with_intended_times() {
        let mut s = OpenLoop::new(0, 100_000); // 10 µs apart
        // The generator wakes up 1 ms late: 101 packets are due at once,
        // each carrying its own intended time, none skipped.
        let mut burst = Vec::new();
        while let Some(t) = s.take_due(1_000_000) {
            burst.push(t);
        }
        assert_eq!(burst.len(), 101);
        assert_eq!(OpenLoop::new(0, 100_000).due(1_000_000, 64), 64);
        assert_eq!(OpenLoop::new(0, 100_000).due(1_000_000, 500), 101);
        assert_eq!(burst[0], 0);
        assert_eq!(burst[1], 10_000);
        assert_eq!(*burst.last().unwrap(), 1_000_000);
        // After catching up the schedule carries on where it was.
        assert_eq!(s.next_intended(), 1_010_000);
        assert_eq!(s.issued(), 101);
    }

    #[test]
    fn rates_that_do_not_divide_a_second_do_not_drift() {
        let rate = 3_000_000; // 333.33 ns apart
        let mut s = OpenLoop::new(0, rate);
        let mut last = 0;
        for k in 0..(3 * rate) {
            last = s.take_due(u64::MAX).unwrap();
            assert_eq!(last, k * NS / rate);
        }
        // Three seconds' worth of packets end within a step of 3 s.
        assert!(3 * NS - last <= 334, "{last}");
    }

    #[test]
    fn mode_names() {
        assert_eq!(Pacing::Max.mode(), "max");
        assert_eq!(Pacing::Rate(5).mode(), "open-loop");
        assert_eq!(Pacing::Closed(5).mode(), "closed-loop");
    }
}
