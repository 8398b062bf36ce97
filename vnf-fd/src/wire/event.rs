//! State change: one recorded transition, pushed to subscribers.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | process id |
//! | 8 | 1 | state before: 0 correct, 1 suspected, 2 unreachable |
//! | 9 | 1 | state after, same codes |
//! | 10 | 1 | cause: 0 timeout, 1 heartbeat, 2 traffic, 3 link down, 4 link up then heartbeat, 5 link up then traffic |
//! | 11 | 5 | reserved |
//! | 16 | 8 | when, nanoseconds on the detector's clock |
//! | 24 | 8 | transition sequence number: consecutive, so a gap means a lost message |

use super::{Field, MsgError, check_len, check_room, get_u64};
use crate::{Cause, ProcessId, State, Time, Transition};

/// Length of the message.
pub const LEN: usize = 32;

mod field {
    use super::Field;
    pub const PROCESS: Field = 0..8;
    pub const FROM: usize = 8;
    pub const TO: usize = 9;
    pub const CAUSE: usize = 10;
    pub const RESERVED: Field = 11..16;
    pub const AT: Field = 16..24;
    pub const SEQ: Field = 24..32;
}

/// A view of a state change in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it; accessors may then panic on a
    /// short buffer. Prefer [`Packet::new_checked`] for received bytes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after [`Packet::check`].
    pub fn new_checked(buffer: T) -> Result<Self, MsgError> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// Checks the length and that states and cause are defined.
    pub fn check(&self) -> Result<(), MsgError> {
        check_len("state change", LEN, self.buffer.as_ref().len())?;
        self.from()?;
        self.to()?;
        self.cause()?;
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The process id.
    pub fn process(&self) -> ProcessId {
        ProcessId(get_u64(self.buffer.as_ref(), field::PROCESS))
    }

    /// The state before (always `Ok` for a checked packet).
    pub fn from(&self) -> Result<State, MsgError> {
        State::try_from(self.buffer.as_ref()[field::FROM])
    }

    /// The state after (always `Ok` for a checked packet).
    pub fn to(&self) -> Result<State, MsgError> {
        State::try_from(self.buffer.as_ref()[field::TO])
    }

    /// The cause (always `Ok` for a checked packet).
    pub fn cause(&self) -> Result<Cause, MsgError> {
        Cause::try_from(self.buffer.as_ref()[field::CAUSE])
    }

    /// When it happened.
    pub fn at(&self) -> Time {
        Time::from_nanos(get_u64(self.buffer.as_ref(), field::AT))
    }

    /// The transition sequence number.
    pub fn seq(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::SEQ)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the process id.
    pub fn set_process(&mut self, id: ProcessId) {
        self.buffer.as_mut()[field::PROCESS].copy_from_slice(&id.0.to_be_bytes());
    }

    /// Sets the state before.
    pub fn set_from(&mut self, s: State) {
        self.buffer.as_mut()[field::FROM] = s.into();
    }

    /// Sets the state after.
    pub fn set_to(&mut self, s: State) {
        self.buffer.as_mut()[field::TO] = s.into();
    }

    /// Sets the cause.
    pub fn set_cause(&mut self, c: Cause) {
        self.buffer.as_mut()[field::CAUSE] = c.into();
    }

    /// Zeroes the reserved bytes.
    pub fn clear_reserved(&mut self) {
        self.buffer.as_mut()[field::RESERVED].fill(0);
    }

    /// Sets when it happened.
    pub fn set_at(&mut self, at: Time) {
        self.buffer.as_mut()[field::AT].copy_from_slice(&at.as_nanos().to_be_bytes());
    }

    /// Sets the transition sequence number.
    pub fn set_seq(&mut self, seq: u64) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    }
}

/// A state change, as values: the fields of a [`Transition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The transition sequence number.
    pub seq: u64,
    /// The process.
    pub process: ProcessId,
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// When.
    pub at: Time,
    /// Why.
    pub cause: Cause,
}

impl From<Transition> for Repr {
    fn from(t: Transition) -> Self {
        Self {
            seq: t.seq,
            process: t.process,
            from: t.from,
            to: t.to,
            at: t.at,
            cause: t.cause,
        }
    }
}

impl From<Repr> for Transition {
    fn from(r: Repr) -> Self {
        Self {
            seq: r.seq,
            process: r.process,
            from: r.from,
            to: r.to,
            at: r.at,
            cause: r.cause,
        }
    }
}

impl Repr {
    /// Reads a packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, MsgError> {
        check_len("state change", LEN, p.buffer.as_ref().len())?;
        Ok(Self {
            seq: p.seq(),
            process: p.process(),
            from: p.from()?,
            to: p.to()?,
            at: p.at(),
            cause: p.cause()?,
        })
    }

    /// Bytes the message takes.
    pub const fn buffer_len(&self) -> usize {
        LEN
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        check_room("state change", LEN, p.buffer.as_ref().len())?;
        p.set_process(self.process);
        p.set_from(self.from);
        p.set_to(self.to);
        p.set_cause(self.cause);
        p.clear_reserved();
        p.set_at(self.at);
        p.set_seq(self.seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Evidence;

    static BYTES: [u8; 32] = [
        0, 0, 0, 0, 0, 0, 0, 3, // process 3
        2, 0, 5, 0, 0, 0, 0, 0, // unreachable -> correct, link up then traffic
        0, 0, 0, 0, 0, 0, 0x03, 0xe8, // at 1000 ns
        0, 0, 0, 0, 0, 0, 0, 11, // seq 11
    ];

    #[test]
    fn round_trip() {
        let r = Repr::parse(&Packet::new_checked(&BYTES[..]).unwrap()).unwrap();
        assert_eq!(
            Transition::from(r),
            Transition {
                seq: 11,
                process: ProcessId(3),
                from: State::Unreachable,
                to: State::Correct,
                at: Time::from_nanos(1000),
                cause: Cause::LinkUp(Evidence::Traffic),
            }
        );
        let mut b = [0xffu8; 32];
        r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
        assert_eq!(b, BYTES);
    }

    #[test]
    fn undefined_codes_are_errors() {
        for (i, v) in [(8, 3), (9, 200), (10, 6)] {
            let mut b = BYTES;
            b[i] = v;
            assert!(matches!(
                Packet::new_checked(&b[..]),
                Err(MsgError::BadValue { .. })
            ));
        }
    }
}
