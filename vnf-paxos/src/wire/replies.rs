//! Replies: a coordinator tells a client what became of many of its
//! commands at once (the answer to [`super::submit`]).
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | client id |
//! | 8 | 1 | status: 0 decided, 1 not the leader (try the hint) |
//! | 9 | 1 | flags: bit 0 the hint is meaningful; other bits reserved |
//! | 10 | 2 | leader hint: the node believed to lead |
//! | 12 | 2 | run count *n* |
//! | 14 | 2 | reserved |
//! | 16 | 24 × *n* | runs: first sequence number (8), last sequence number (8, inclusive), instance (8) |
//!
//! A run names the client's commands `first..=last`. With status 0 each of
//! them is decided, in the run's instance (`u64::MAX`: decided, the
//! instance no longer remembered); with status 1 none of them is taken by
//! this coordinator, and the instance is sent as zero and ignored. A reply
//! is cumulative in that one message answers every command of the client
//! that a burst of decisions settled: consecutive numbers decided in one
//! instance are one run, so a batch of a client's commands is one run of
//! 24 bytes however many commands it holds. Runs name only commands the
//! coordinator answers for; a number between two runs is not implied
//! decided. A run whose last number is below its first is malformed.

use super::{Field, MsgError, check_flags, check_len, check_room, get_u16, get_u64};
use crate::{ClientId, Instance, NodeId};

/// Length of the fixed part.
pub const HEADER_LEN: usize = 16;
/// Length of one run.
pub const RUN_LEN: usize = 24;
/// Flag: the leader hint is meaningful.
pub const FLAG_HINT: u8 = 0x01;

mod field {
    use super::Field;
    pub const CLIENT: Field = 0..8;
    pub const STATUS: usize = 8;
    pub const FLAGS: usize = 9;
    pub const HINT: Field = 10..12;
    pub const COUNT: Field = 12..14;
    pub const RESERVED: Field = 14..16;
}

/// Bytes a reply with `runs` runs takes.
pub const fn buffer_len(runs: usize) -> usize {
    HEADER_LEN + RUN_LEN * runs
}

/// Runs that fit in `bytes` of payload (at least one).
pub const fn runs_in(bytes: usize) -> usize {
    let n = bytes.saturating_sub(HEADER_LEN) / RUN_LEN;
    if n == 0 { 1 } else { n }
}

/// What became of the commands of a reply's runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Decided, each run in its instance.
    Decided,
    /// This coordinator does not lead; the leader, if it knows one.
    NotLeader(Option<NodeId>),
}

/// A client's commands `first..=last`, and (when decided) the instance
/// that decided them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Run {
    /// The first sequence number.
    pub first: u64,
    /// The last sequence number (inclusive, not below `first`).
    pub last: u64,
    /// The instance (`u64::MAX`: not remembered; 0 when not decided).
    pub instance: Instance,
}

/// A view of a reply in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it; accessors may then panic on a
    /// short buffer. Prefer [`Packet::new_checked`] for received bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after checking its length, status, flags and runs.
    pub fn new_checked(buffer: T) -> Result<Self, MsgError> {
        let p = Self { buffer };
        let b = p.buffer.as_ref();
        check_len("replies", HEADER_LEN, b.len())?;
        check_flags("replies", b[field::FLAGS], FLAG_HINT)?;
        check_len("replies runs", buffer_len(p.count()), b.len())?;
        p.status()?;
        for k in 0..p.count() {
            let r = p.run(k);
            if r.last < r.first {
                return Err(MsgError::BadValue {
                    field: "replies run (last below first)",
                    value: 0,
                });
            }
        }
        Ok(p)
    }

    /// The client.
    pub fn client(&self) -> ClientId {
        ClientId(get_u64(self.buffer.as_ref(), field::CLIENT))
    }

    /// The status (always `Ok` for a checked packet).
    pub fn status(&self) -> Result<Status, MsgError> {
        let b = self.buffer.as_ref();
        match b[field::STATUS] {
            0 => Ok(Status::Decided),
            1 => Ok(Status::NotLeader(
                (b[field::FLAGS] & FLAG_HINT != 0).then(|| NodeId(get_u16(b, field::HINT))),
            )),
            value => Err(MsgError::BadValue {
                field: "replies status",
                value,
            }),
        }
    }

    /// The run count.
    pub fn count(&self) -> usize {
        usize::from(get_u16(self.buffer.as_ref(), field::COUNT))
    }

    /// Run `k` (`k < count`).
    pub fn run(&self, k: usize) -> Run {
        let b = self.buffer.as_ref();
        let at = HEADER_LEN + RUN_LEN * k;
        Run {
            first: get_u64(b, at..at + 8),
            last: get_u64(b, at + 8..at + 16),
            instance: get_u64(b, at + 16..at + 24),
        }
    }
}

/// A reply, as values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The client.
    pub client: ClientId,
    /// What became of the commands.
    pub status: Status,
    /// The commands, as runs of sequence numbers.
    pub runs: Vec<Run>,
}

impl Repr {
    /// Reads a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, MsgError> {
        Ok(Self {
            client: p.client(),
            status: p.status()?,
            runs: (0..p.count()).map(|k| p.run(k)).collect(),
        })
    }

    /// Bytes the message takes.
    pub fn buffer_len(&self) -> usize {
        buffer_len(self.runs.len())
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        let count = u16::try_from(self.runs.len()).map_err(|_| MsgError::TooMany {
            what: "runs in a reply",
        })?;
        let b = p.buffer.as_mut();
        check_room("replies", self.buffer_len(), b.len())?;
        let (status, flags, hint) = match self.status {
            Status::Decided => (0, 0, 0),
            Status::NotLeader(None) => (1, 0, 0),
            Status::NotLeader(Some(n)) => (1, FLAG_HINT, n.0),
        };
        b[field::CLIENT].copy_from_slice(&self.client.0.to_be_bytes());
        b[field::STATUS] = status;
        b[field::FLAGS] = flags;
        b[field::HINT].copy_from_slice(&hint.to_be_bytes());
        b[field::COUNT].copy_from_slice(&count.to_be_bytes());
        b[field::RESERVED].fill(0);
        for (k, r) in self.runs.iter().enumerate() {
            let at = HEADER_LEN + RUN_LEN * k;
            let instance = match self.status {
                Status::Decided => r.instance,
                Status::NotLeader(_) => 0,
            };
            b[at..at + 8].copy_from_slice(&r.first.to_be_bytes());
            b[at + 8..at + 16].copy_from_slice(&r.last.to_be_bytes());
            b[at + 16..at + 24].copy_from_slice(&instance.to_be_bytes());
        }
        Ok(())
    }
}

/// Adds `seq` (decided in `instance`) to `runs`: it extends the last run
/// when it follows it in the same instance, else starts a new one.
#[inline]
pub fn push_run(runs: &mut Vec<Run>, seq: u64, instance: Instance) {
    if let Some(r) = runs.last_mut()
        && r.instance == instance
        && r.last.checked_add(1) == Some(seq)
    {
        r.last = seq;
        return;
    }
    runs.push(Run {
        first: seq,
        last: seq,
        instance,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        for status in [
            Status::Decided,
            Status::NotLeader(None),
            Status::NotLeader(Some(NodeId(3))),
        ] {
            let decided = status == Status::Decided;
            let r = Repr {
                client: ClientId(9),
                status,
                runs: vec![
                    Run {
                        first: 1,
                        last: 40,
                        instance: if decided { 7 } else { 0 },
                    },
                    Run {
                        first: 42,
                        last: 42,
                        instance: if decided { u64::MAX } else { 0 },
                    },
                ],
            };
            let mut b = [0xffu8; 16 + 48];
            r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
            assert_eq!(Repr::parse(&Packet::new_checked(&b[..]).unwrap()), Ok(r));
            assert!(Packet::new_checked(&b[..63]).is_err(), "truncated run");
            let mut bad = b;
            bad[8] = 2;
            assert!(Packet::new_checked(&bad[..]).is_err(), "status");
            let mut bad = b;
            bad[9] = 2;
            assert!(Packet::new_checked(&bad[..]).is_err(), "flags");
            let mut bad = b;
            bad[16 + 15] = 0; // last = 0 < first = 1
            assert!(Packet::new_checked(&bad[..]).is_err(), "inverted run");
        }
    }

    #[test]
    fn consecutive_numbers_in_one_instance_make_one_run() {
        let mut runs = Vec::new();
        for (seq, i) in [(1, 5), (2, 5), (3, 5), (4, 6), (6, 6), (7, 6)] {
            push_run(&mut runs, seq, i);
        }
        let r = |first, last, instance| Run {
            first,
            last,
            instance,
        };
        assert_eq!(runs, vec![r(1, 3, 5), r(4, 4, 6), r(6, 7, 6)]);
        assert_eq!(runs_in(1200), 49);
        assert_eq!(runs_in(0), 1);
    }
}
