//! The values every role shares: node ids, ballots, acceptor identities,
//! commands and the values decided.

use std::cmp::Ordering;
use std::sync::Arc;

/// A process of the service (coordinator, acceptor, learner or client) as
/// the shell addresses it; the shell maps ids to network addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub u16);

/// A consensus instance: a slot of the replicated log.
pub type Instance = u64;

/// A client of the service, unique across its restarts (the client library
/// picks a random 64-bit id per session).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ClientId(pub u64);

/// A ballot: `(round, coordinator, incarnation)`, ordered in that order.
///
/// The incarnation makes ballots of a restarted coordinator differ from the
/// ones it used before it crashed, which it has forgotten: two different
/// values proposed in one ballot would break Paxos. The round is the only
/// part that grows; the rest breaks ties between coordinators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ballot {
    /// The round, bumped by each election.
    pub round: u32,
    /// The coordinator that owns the ballot.
    pub node: NodeId,
    /// The coordinator's incarnation (fresh at each start).
    pub incarnation: u16,
}

impl Ballot {
    /// The ballot below every real ballot: nothing promised or accepted.
    pub const ZERO: Ballot = Ballot {
        round: 0,
        node: NodeId(0),
        incarnation: 0,
    };

    /// The ballot as one ordered 64-bit number (its wire form).
    #[inline]
    pub const fn to_u64(self) -> u64 {
        ((self.round as u64) << 32) | ((self.node.0 as u64) << 16) | self.incarnation as u64
    }

    /// The ballot of a wire number.
    #[inline]
    pub const fn from_u64(v: u64) -> Self {
        Ballot {
            round: (v >> 32) as u32,
            node: NodeId((v >> 16) as u16),
            incarnation: v as u16,
        }
    }
}

impl Ord for Ballot {
    fn cmp(&self, other: &Self) -> Ordering {
        self.to_u64().cmp(&other.to_u64())
    }
}

impl PartialOrd for Ballot {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// An acceptor's identity: its slot in the acceptor group and its
/// incarnation.
///
/// An acceptor that keeps its state in memory comes back from a restart
/// with a new incarnation, which the group does not count until a leader
/// has admitted it (see the crate docs): the old identity's promises and
/// votes are gone with its memory, so that identity must never vote again.
/// An acceptor with a write-ahead log keeps its identity across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AcceptorId {
    /// Its slot, `0..acceptors`.
    pub slot: u16,
    /// Its incarnation; a higher one replaces a lower one in the slot.
    pub incarnation: u32,
}

/// One client request: a payload, named by the client and its sequence
/// number so that retries can be recognised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Command {
    /// Who submitted it.
    pub client: ClientId,
    /// The client's sequence number for it, from 1.
    pub seq: u64,
    /// The application's bytes.
    pub payload: Payload,
}

/// A command's bytes: a stretch of a shared, reference-counted buffer.
///
/// A value parsed from a message keeps its commands' payloads in one
/// buffer (a copy of the value's bytes) instead of one allocation per
/// command: with 16-byte commands, 70 to an instance, the per-command
/// allocations and frees were the leader's, the learners' and the client
/// learner's largest cost after the packets. Cloning is a reference
/// count; the buffer lives as long as any command cut from it. Compares
/// and hashes as its bytes.
///
/// Why not `bytes::Bytes`, which has this shape: a `Bytes` made from
/// copied bytes is a `Vec` that allocates its shared header again at its
/// first clone, and every payload here is cloned (into the leader's
/// batch, the client's Submit); with `Bytes`, allocation and freeing took
/// 22% of a loaded afxdp run's CPU against 11% with this one allocation.
#[derive(Clone)]
pub struct Payload {
    buf: Arc<[u8]>,
    start: u32,
    len: u32,
}

impl Payload {
    /// The bytes `start..start + len` of `buf`, shared.
    ///
    /// # Panics
    ///
    /// When the range is not inside `buf`.
    pub fn slice_of(buf: &Arc<[u8]>, start: usize, len: usize) -> Self {
        assert!(
            start.checked_add(len).is_some_and(|end| end <= buf.len()),
            "payload range outside its buffer"
        );
        Payload {
            buf: Arc::clone(buf),
            start: start as u32,
            len: len as u32,
        }
    }
}

impl std::ops::Deref for Payload {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        let start = self.start as usize;
        &self.buf[start..start + self.len as usize]
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<Arc<[u8]>> for Payload {
    fn from(buf: Arc<[u8]>) -> Self {
        let len = buf.len() as u32;
        Payload { buf, start: 0, len }
    }
}

impl From<&[u8]> for Payload {
    fn from(b: &[u8]) -> Self {
        Arc::<[u8]>::from(b).into()
    }
}

impl From<Vec<u8>> for Payload {
    fn from(b: Vec<u8>) -> Self {
        Arc::<[u8]>::from(b).into()
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Payload {}

impl std::hash::Hash for Payload {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl Command {
    /// Bytes it takes in a value at most (alone in its run; a command that
    /// continues its client's run takes 18 fewer, see
    /// [`crate::wire::value::command_cost`]).
    pub fn wire_len(&self) -> usize {
        crate::wire::value::RUN_HEADER_LEN
            + crate::wire::value::RUN_COMMAND_HEADER_LEN
            + self.payload.len()
    }

    /// Client `client`'s command `seq` carrying `payload`: the unit tests'
    /// shorthand.
    #[cfg(test)]
    pub(crate) fn of(client: u64, seq: u64, payload: &[u8]) -> Self {
        Command {
            client: ClientId(client),
            seq,
            payload: payload.into(),
        }
    }
}

/// What one instance decides: a batch of commands, in order. An empty batch
/// is a no-op, which a new leader uses to fill holes in the log.
///
/// Cloning is cheap (a reference count), because one value travels to
/// every acceptor and learner.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Value(pub Arc<[Command]>);

impl Value {
    /// The no-op.
    pub fn noop() -> Self {
        Value(Arc::from(Vec::new()))
    }

    /// A batch of commands.
    pub fn batch(commands: Vec<Command>) -> Self {
        Value(Arc::from(commands))
    }

    /// True for the no-op.
    pub fn is_noop(&self) -> bool {
        self.0.is_empty()
    }

    /// The commands.
    pub fn commands(&self) -> &[Command] {
        &self.0
    }

    /// Bytes it takes in a message.
    pub fn wire_len(&self) -> usize {
        crate::wire::value::commands_len(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_order_by_round_then_node_then_incarnation() {
        let b = |round, node, incarnation| Ballot {
            round,
            node: NodeId(node),
            incarnation,
        };
        assert!(b(2, 0, 0) > b(1, 9, 9));
        assert!(b(1, 2, 0) > b(1, 1, 9));
        assert!(b(1, 1, 2) > b(1, 1, 1));
        for x in [b(0, 0, 0), b(7, 3, 65535), b(u32::MAX, u16::MAX, 1)] {
            assert_eq!(Ballot::from_u64(x.to_u64()), x);
        }
    }

    #[test]
    fn a_payload_cut_from_a_shared_buffer_is_its_bytes() {
        use std::hash::BuildHasher;
        let buf: Arc<[u8]> = Arc::from(&b"..set x 1.."[..]);
        let cut = Payload::slice_of(&buf, 2, 7);
        let own = Payload::from(&b"set x 1"[..]);
        assert_eq!(&cut[..], b"set x 1");
        // Equal and hashed alike by their bytes, wherever they live: the
        // leader's duplicate check keys on them.
        assert_eq!(cut, own);
        let h = std::collections::hash_map::RandomState::new();
        assert_eq!(h.hash_one(&cut), h.hash_one(&own));
        assert_ne!(cut, Payload::slice_of(&buf, 2, 6));
        assert_eq!(Payload::slice_of(&buf, 11, 0).len(), 0);
    }

    #[test]
    #[should_panic(expected = "outside its buffer")]
    fn a_payload_range_past_its_buffer_is_refused() {
        let buf: Arc<[u8]> = Arc::from(&b"abc"[..]);
        let _ = Payload::slice_of(&buf, 2, 2);
    }
}
