//! Taking over a group: how a new sequencer learns where the old epoch
//! ended before it stamps anything (the protocol and why are in the crate
//! documentation, "Epochs").
//!
//! 1. Collect: announce the epoch to every member until each has answered
//!    with its report (delivery cursor, own delivered messages, bitmap of
//!    what it holds beyond the cursor). A member that answers stops
//!    accepting the old epoch, so its report stays true.
//! 2. Fetch: from the reports, `lo` (lowest cursor), `max_next` (highest
//!    cursor) and `end` (one past the highest message anyone delivered).
//!    Every message in `[lo, max_next)` has been delivered by someone; in
//!    `[max_next, end)` only the ones some bitmap shows were (reliable
//!    messages). Ask the members for them until the ring has them all;
//!    frozen members answer with delivered messages only, the one content
//!    known final (see the crate documentation).
//! 3. Install: in `[max_next, end)` keep reliable messages (someone may
//!    have delivered them already) and put fillers everywhere else (no one
//!    has delivered those; their senders send them again). Rebuild the
//!    deduplication state from the reports and the kept messages. The new
//!    epoch's base is `max_next`; stamping resumes at `end`.

use crate::ids::IdMap;
use crate::seqset::SeqSet;
use crate::sequencer::{Out, SenderState, Sequencer};
use crate::time::Time;
use crate::wire::batch::{self, Entries};
use crate::wire::report::{self, held_bit};
use crate::{Mode, ProcessId};

/// What a member reported.
#[derive(Debug)]
struct Report {
    next: u64,
    stable: SeqSet,
    held: Vec<u8>,
}

/// The range being fetched.
#[derive(Debug, Clone, Copy)]
struct Fetch {
    lo: u64,
    max_next: u64,
    end: u64,
    /// Needed messages the ring still lacks.
    missing: u64,
    rounds: u32,
}

/// State of an epoch change in progress.
#[derive(Debug)]
pub(crate) struct Recovery {
    reports: IdMap<Report>,
    fetch: Option<Fetch>,
    pub retry_at: Time,
}

impl Sequencer {
    pub(crate) fn start_recovery(&mut self, now: Time) {
        self.recovery = Some(Recovery {
            reports: IdMap::default(),
            fetch: None,
            retry_at: now + self.cfg.retry,
        });
        for &m in &self.members {
            self.out.push_back(Out::NewEpoch { to: m });
        }
    }

    pub(crate) fn on_report(&mut self, now: Time, r: report::Repr, held: &[u8]) {
        let members = &self.members;
        let Some(rec) = self.recovery.as_mut() else {
            self.counters.ignored += 1;
            return;
        };
        if r.epoch != self.epoch || !members.contains(&r.member) || rec.fetch.is_some() {
            self.counters.ignored += 1;
            return;
        }
        rec.reports.insert(
            r.member,
            Report {
                next: r.next.max(1),
                stable: SeqSet {
                    through: r.stable_through,
                    bits: r.stable_bits & !1,
                },
                held: held.to_vec(),
            },
        );
        if rec.reports.len() == members.len() {
            self.begin_fetch(now);
        }
    }

    fn begin_fetch(&mut self, now: Time) {
        let Some(rec) = self.recovery.as_mut() else {
            return;
        };
        let lo = rec.reports.values().map(|r| r.next).min().unwrap_or(1);
        let max_next = rec.reports.values().map(|r| r.next).max().unwrap_or(1);
        let end = rec
            .reports
            .values()
            .map(|r| {
                let bits = r.held.len() as u64 * 8;
                (0..bits)
                    .rev()
                    .find(|&i| held_bit(&r.held, i))
                    .map_or(r.next, |i| r.next + i + 1)
            })
            .max()
            .unwrap_or(1)
            .max(max_next);
        // What does not fit the ring is left to peers.
        let lo = lo.max(end.saturating_sub(self.ring.capacity()));
        let mut f = Fetch {
            lo,
            max_next,
            end,
            missing: 0,
            rounds: 0,
        };
        f.missing = (lo..end).filter(|&g| needed(rec, &f, g)).count() as u64;
        rec.fetch = Some(f);
        rec.retry_at = now + self.cfg.retry;
        if f.missing == 0 {
            self.install(now);
        } else {
            self.ask_missing();
        }
    }

    /// Asks every member for the span of what is still missing.
    fn ask_missing(&mut self) {
        let Some(rec) = self.recovery.as_ref() else {
            return;
        };
        let Some(f) = rec.fetch else { return };
        let ring = &self.ring;
        let missing = |g: &u64| needed(rec, &f, *g) && !ring.has(*g);
        let (Some(first), Some(last)) = (
            (f.lo..f.end).find(missing),
            (f.lo..f.end).rev().find(missing),
        ) else {
            return;
        };
        let count = u32::try_from(last - first + 1).unwrap_or(u32::MAX);
        for &m in &self.members {
            self.out.push_back(Out::Fetch {
                to: m,
                first,
                count,
            });
        }
    }

    pub(crate) fn on_fetched(&mut self, now: Time, r: batch::Repr, entries: Entries<'_>) {
        let Some(rec) = self.recovery.as_mut() else {
            self.counters.ignored += 1;
            return;
        };
        let Some(mut f) = rec.fetch else {
            self.counters.ignored += 1;
            return;
        };
        if r.epoch != self.epoch {
            self.counters.ignored += 1;
            return;
        }
        for (e, payload) in entries {
            if e.seq >= f.lo && e.seq < f.end && !self.ring.has(e.seq) && needed(rec, &f, e.seq) {
                self.ring
                    .put(e.seq, e.sender, e.sender_seq, e.mode, payload);
                f.missing = f.missing.saturating_sub(1);
            }
        }
        rec.fetch = Some(f);
        if f.missing == 0 {
            self.install(now);
        }
    }

    pub(crate) fn recovery_timeout(&mut self, now: Time) {
        let retry = self.cfg.retry;
        let fetch_rounds = self.cfg.fetch_rounds;
        let Some(rec) = self.recovery.as_mut() else {
            return;
        };
        if now < rec.retry_at {
            return;
        }
        rec.retry_at = now + retry;
        let Some(mut f) = rec.fetch else {
            let silent: Vec<ProcessId> = self
                .members
                .iter()
                .copied()
                .filter(|m| !rec.reports.contains_key(m))
                .collect();
            for m in silent {
                if !self.out.contains(&Out::NewEpoch { to: m }) {
                    self.out.push_back(Out::NewEpoch { to: m });
                }
            }
            return;
        };
        f.rounds += 1;
        rec.fetch = Some(f);
        // Messages past every cursor (reliable ones, delivered on arrival)
        // are waited for without limit: a member reported holding them,
        // and frozen with its cursor behind them it still does and will
        // answer. Those below the most advanced cursor may have left every
        // ring; after enough rounds the laggards that need them are left
        // to their peers and state transfer.
        let ring = &self.ring;
        let tail_missing = (f.max_next..f.end).any(|g| needed(rec, &f, g) && !ring.has(g));
        if f.rounds >= fetch_rounds && !tail_missing {
            self.install(now);
        } else {
            self.out.retain(|o| !matches!(o, Out::Fetch { .. }));
            self.ask_missing();
        }
    }

    /// Decides the old epoch's tail and starts stamping.
    fn install(&mut self, now: Time) {
        let Some(rec) = self.recovery.take() else {
            return;
        };
        let Some(f) = rec.fetch else {
            return;
        };
        for g in f.max_next..f.end {
            let keep = self
                .ring
                .get(g)
                .is_some_and(|s| s.mode == Some(Mode::Reliable));
            if !keep {
                self.ring.put(g, ProcessId(0), 0, None, &[]);
            }
        }
        self.senders.clear();
        for (&id, r) in &rec.reports {
            self.senders.insert(
                id,
                SenderState {
                    stamped: r.stable,
                    ..SenderState::default()
                },
            );
        }
        for g in f.lo..f.end {
            if let Some(s) = self.ring.get(g).filter(|s| s.mode.is_some()) {
                let st = self.senders.entry(s.sender).or_default();
                st.stamped.insert(s.sender_seq);
            }
        }
        self.out
            .retain(|o| !matches!(o, Out::Fetch { .. } | Out::NewEpoch { .. }));
        self.next = f.end;
        self.base = f.max_next;
        // Members drop what they held undelivered when they install the
        // epoch (it may be stale), so the laggards get the decided content
        // from their cursor on at once rather than after a NACK.
        self.sent = f.lo;
        self.out.push_back(Out::Heartbeat);
        let _ = now;
    }
}

/// Whether the new sequencer must have message `g` before it installs.
fn needed(rec: &Recovery, f: &Fetch, g: u64) -> bool {
    g < f.max_next
        || rec
            .reports
            .values()
            .any(|r| g >= r.next && held_bit(&r.held, g - r.next))
}
