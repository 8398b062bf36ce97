//! A member of the group: what `libnfvinc` embeds. It sends its messages
//! to the sequencer (retransmitting until it delivers them itself),
//! delivers the group's messages in each mode's order, recovers gaps from
//! the sequencer or its peers, answers peers' NACKs, and takes part in
//! epoch changes.

use std::collections::VecDeque;

use dataplane::wire::nfvinc::HEADER_LEN as NFV_HEADER_LEN;

use crate::config::MemberConfig;
use crate::receiver::{Delivery, Receiver};
use crate::sender::{Outbox, SendError};
use crate::time::Time;
use crate::wire::{self, Message, MsgError, MsgType, batch, data, nack, report};
use crate::{Dest, Mode, ProcessId, Transmit};

/// What a member hands its application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A message, in its mode's order.
    Deliver(Delivery<'a>),
    /// Messages `[first, end)` could be recovered from neither the
    /// sequencer nor any peer: the application must catch up by state
    /// transfer from a peer; delivery goes on after them.
    Lost {
        /// First sequence number lost.
        first: u64,
        /// One past the last.
        end: u64,
    },
}

/// What a member has done, for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberCounters {
    /// Messages delivered.
    pub delivered: u64,
    /// Stamped messages received that it already had.
    pub duplicates: u64,
    /// NACKs sent to the sequencer.
    pub nacks: u64,
    /// NACKs sent to peers.
    pub peer_nacks: u64,
    /// Repair frames sent to peers (or to a new sequencer).
    pub repairs: u64,
    /// Data frames sent, first sends and retransmissions.
    pub data_sent: u64,
    /// Frames of another group or epoch, or of no use to a member.
    pub ignored: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    Report,
    Nack {
        to: ProcessId,
        first: u64,
        count: u32,
    },
    Repair {
        to: ProcessId,
        next: u64,
        end: u64,
    },
}

/// A member: a sans-IO state machine.
///
/// Inputs: [`Member::send`], [`Member::handle`], [`Member::handle_timeout`].
/// Outputs: [`Member::poll_transmit`], [`Member::poll_timeout`],
/// [`Member::poll_event`]. Call `poll_event` until `None` after each input:
/// delivery happens there, lazily, so that a payload can be lent straight
/// from the ring.
#[derive(Debug)]
pub struct Member {
    cfg: MemberConfig,
    epoch: u32,
    /// An epoch was announced and its first frame has not come: frames of
    /// older epochs are refused and the state is frozen for the report.
    fenced: bool,
    sequencer: ProcessId,
    peers: Vec<ProcessId>,
    rx: Receiver,
    tx: Outbox,
    out: VecDeque<Out>,
    nack_at: Option<Time>,
    /// Peer repair of the gap starting here: asks made, and whom next.
    peer_gap: u64,
    peer_asks: u64,
    peer_cursor: usize,
    max_payload: usize,
    counters: MemberCounters,
}

impl Member {
    /// A member of a group whose current sequencer is `sequencer` in
    /// `epoch` (1 for a new group), with `peers` to ask for messages the
    /// sequencer no longer holds.
    pub fn new(cfg: MemberConfig, sequencer: ProcessId, epoch: u32, peers: &[ProcessId]) -> Self {
        let window = cfg.window.clamp(64, report::MAX_HELD * 8);
        let max_payload = cfg
            .max_frame
            .saturating_sub(NFV_HEADER_LEN + batch::HEADER_LEN + batch::ENTRY_HEADER_LEN);
        Self {
            cfg,
            epoch,
            fenced: false,
            sequencer,
            peers: peers.iter().copied().filter(|&p| p != cfg.id).collect(),
            rx: Receiver::new(window),
            tx: Outbox::new(),
            out: VecDeque::with_capacity(16),
            nack_at: None,
            peer_gap: 0,
            peer_asks: 0,
            peer_cursor: 0,
            max_payload,
            counters: MemberCounters::default(),
        }
    }

    /// Its id.
    pub fn id(&self) -> ProcessId {
        self.cfg.id
    }

    /// The epoch it is in.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The sequencer its messages go to.
    pub fn sequencer(&self) -> ProcessId {
        self.sequencer
    }

    /// Every global sequence number below this is delivered.
    pub fn next_seq(&self) -> u64 {
        self.rx.next
    }

    /// Its own messages not yet delivered back to it.
    pub fn outstanding(&self) -> usize {
        self.tx.outstanding()
    }

    /// Whether [`Member::send`] would take a message now (of at most
    /// [`Member::max_payload`] bytes): the send window is not full.
    pub fn can_send(&self) -> bool {
        self.tx.has_room()
    }

    /// The largest payload [`Member::send`] takes.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// What it has done so far.
    pub fn counters(&self) -> MemberCounters {
        self.counters
    }

    /// Broadcasts `payload` in `mode`; returns its sender sequence number.
    /// A causal message carries, as its barrier, the highest sequence
    /// number delivered so far.
    pub fn send(&mut self, mode: Mode, payload: &[u8]) -> Result<u64, SendError> {
        if payload.len() > self.max_payload {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max: self.max_payload,
            });
        }
        self.tx.send(mode, self.rx.max_delivered, payload)
    }

    /// Handles one received frame. Malformed frames are an error and
    /// change nothing.
    pub fn handle(&mut self, now: Time, frame: &[u8]) -> Result<(), MsgError> {
        let (h, msg) = Message::parse_nfv(frame)?;
        if h.session_id != self.cfg.group {
            self.counters.ignored += 1;
            return Ok(());
        }
        self.handle_message(now, msg);
        Ok(())
    }

    /// Handles one parsed message of this group.
    pub fn handle_message(&mut self, now: Time, msg: Message<'_>) {
        match msg {
            Message::NewEpoch(r) => {
                if r.epoch > self.epoch || (r.epoch == self.epoch && self.fenced) {
                    self.epoch = r.epoch;
                    self.fenced = true;
                    self.sequencer = r.sequencer;
                    self.nack_at = None;
                    // Only reports: other pending output belongs to the
                    // old epoch.
                    self.out.retain(|o| matches!(o, Out::Repair { .. }));
                    self.out.push_back(Out::Report);
                } else {
                    self.counters.ignored += 1;
                }
            }
            Message::Batch(r, entries) => {
                if self.enter_epoch(r.epoch, r.base) {
                    self.rx.note_end(r.first.saturating_add(u64::from(r.count)));
                    self.take(entries);
                }
            }
            Message::Heartbeat(r) => {
                if self.enter_epoch(r.epoch, r.base) {
                    self.rx.note_end(r.next);
                }
            }
            Message::Repair(r, entries) => {
                if !self.fenced && r.epoch == self.epoch {
                    self.take(entries);
                } else {
                    self.counters.ignored += 1;
                }
            }
            Message::Nack(r) => {
                // Delivered messages are the same in every ring that holds
                // them, whatever the asker's epoch; what is served while
                // frozen is restricted to them (see `write_out`), and the
                // asker filters by epoch.
                let count = u64::from(r.count.min(self.cfg.max_nack));
                let end = r.first.saturating_add(count);
                if !self.out.contains(&Out::Repair {
                    to: r.from,
                    next: r.first,
                    end,
                }) {
                    self.out.push_back(Out::Repair {
                        to: r.from,
                        next: r.first,
                        end,
                    });
                }
            }
            Message::TooOld(r) => {
                if r.epoch == self.epoch && !self.fenced {
                    self.rx.too_old_below = self.rx.too_old_below.max(r.oldest);
                }
            }
            Message::Data(..) | Message::EpochReport(..) => self.counters.ignored += 1,
        }
        self.arm_nack(now);
    }

    /// Whether frames of `epoch` are taken; the first frame of an announced
    /// epoch installs it.
    fn enter_epoch(&mut self, epoch: u32, base: u64) -> bool {
        if epoch != self.epoch {
            self.counters.ignored += 1;
            return false;
        }
        if self.fenced {
            self.fenced = false;
            self.rx.install(base);
            self.rx.too_old_below = 0;
            self.out.retain(|o| !matches!(o, Out::Report));
            // The new sequencer has none of our messages in flight.
            self.tx.handle_timeout(Time::ZERO, true);
        }
        true
    }

    fn take(&mut self, entries: batch::Entries<'_>) {
        for (e, payload) in entries {
            if !self.rx.accept(&e, payload) {
                self.counters.duplicates += 1;
            }
        }
    }

    fn arm_nack(&mut self, now: Time) {
        if self.fenced || self.rx.gap(1).is_none() {
            self.nack_at = None;
        } else if self.nack_at.is_none() {
            self.nack_at = Some(now + self.cfg.nack_delay);
        }
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event<'_>> {
        if let Some((first, end)) = self.rx.lost.pop_front() {
            return Some(Event::Lost { first, end });
        }
        let g = self.rx.next_delivery()?;
        let (sender, q) = self.rx.ring.get(g).map(|s| (s.sender, s.sender_seq))?;
        if sender == self.cfg.id {
            self.tx.delivered(q);
        }
        self.counters.delivered += 1;
        let s = self.rx.ring.get(g)?;
        Some(Event::Deliver(Delivery {
            seq: g,
            sender: s.sender,
            sender_seq: s.sender_seq,
            mode: s.mode?,
            payload: s.payload(),
        }))
    }

    /// When to call [`Member::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Time> {
        let tx = if self.fenced {
            None
        } else {
            self.tx.poll_timeout()
        };
        match (tx, self.nack_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Serves the timers due at `now`: retransmissions and NACKs.
    pub fn handle_timeout(&mut self, now: Time) {
        if !self.fenced {
            self.tx.handle_timeout(now, false);
        }
        let Some(at) = self.nack_at.filter(|&t| t <= now) else {
            return;
        };
        let _ = at;
        let Some((first, end)) = self.rx.gap(self.cfg.max_nack) else {
            self.nack_at = None;
            return;
        };
        self.nack_at = Some(now + self.cfg.nack_interval);
        if first >= self.rx.too_old_below {
            self.counters.nacks += 1;
            self.push_nack(self.sequencer, first, end);
            return;
        }
        // The sequencer has none of it: ask the peers in turn, then give up.
        let end = end.min(self.rx.too_old_below);
        if self.peer_gap != first {
            self.peer_gap = first;
            self.peer_asks = 0;
        }
        let limit = self.peers.len() as u64 * u64::from(self.cfg.peer_rounds);
        if self.peer_asks >= limit {
            self.rx.skip_lost(first, end);
            self.peer_asks = 0;
            return;
        }
        let peer = self.peers[self.peer_cursor % self.peers.len()];
        self.peer_cursor += 1;
        self.peer_asks += 1;
        self.counters.peer_nacks += 1;
        self.push_nack(peer, first, end);
    }

    fn push_nack(&mut self, to: ProcessId, first: u64, end: u64) {
        let count = u32::try_from(end - first).unwrap_or(u32::MAX);
        self.out.retain(|o| !matches!(o, Out::Nack { .. }));
        self.out.push_back(Out::Nack { to, first, count });
    }

    /// Writes the next frame to send into `buf` (at least `max_frame`
    /// long); `None` when there is nothing left.
    pub fn poll_transmit(&mut self, now: Time, buf: &mut [u8]) -> Option<Transmit> {
        let room = buf.len().min(self.cfg.max_frame);
        let buf = &mut buf[..room];
        while let Some(o) = self.out.pop_front() {
            if let Some(t) = self.write_out(o, buf) {
                return Some(t);
            }
        }
        if self.fenced {
            return None;
        }
        let o = self.tx.next_to_send(now, self.cfg.rto)?;
        let r = data::Repr {
            sender: self.cfg.id,
            sender_seq: o.q,
            barrier: o.barrier,
            mode: o.mode?,
        };
        let mut p = data::Packet::new_unchecked(buf.get_mut(NFV_HEADER_LEN..)?);
        r.emit(&mut p, o.payload.len()).ok()?;
        p.payload_mut().copy_from_slice(&o.payload);
        let n = data::HEADER_LEN + o.payload.len();
        let len = wire::emit_header(MsgType::Data, self.cfg.group, n, buf).ok()?;
        self.counters.data_sent += 1;
        Some(Transmit {
            dest: Dest::Process(self.sequencer),
            len,
        })
    }

    fn write_out(&mut self, o: Out, buf: &mut [u8]) -> Option<Transmit> {
        let group = self.cfg.group;
        let body = buf.get_mut(NFV_HEADER_LEN..)?;
        match o {
            Out::Report => {
                let r = report::Repr {
                    epoch: self.epoch,
                    member: self.cfg.id,
                    next: self.rx.next,
                    stable_through: self.tx.stable.through,
                    stable_bits: self.tx.stable.bits,
                };
                let room = body.len().checked_sub(report::HEADER_LEN)?;
                let held_room = room.min((self.cfg.window / 8).max(1)).min(report::MAX_HELD);
                let held = body.get_mut(report::HEADER_LEN..report::HEADER_LEN + held_room)?;
                let n = self.rx.write_held(held);
                r.emit(&mut report::Packet::new_unchecked(&mut *body), n)
                    .ok()?;
                let len =
                    wire::emit_header(MsgType::EpochReport, group, report::HEADER_LEN + n, buf)
                        .ok()?;
                Some(Transmit {
                    dest: Dest::Process(self.sequencer),
                    len,
                })
            }
            Out::Nack { to, first, count } => {
                let r = nack::Repr {
                    epoch: self.epoch,
                    from: self.cfg.id,
                    first,
                    count,
                };
                r.emit(&mut nack::Packet::new_unchecked(body)).ok()?;
                let len = wire::emit_header(MsgType::Nack, group, nack::LEN, buf).ok()?;
                Some(Transmit {
                    dest: Dest::Process(to),
                    len,
                })
            }
            Out::Repair { to, next, end } => {
                // Between epochs only final (delivered) content is served:
                // an undelivered entry may be a tentative stamp of an epoch
                // whose successor, unseen here, gave its number to another
                // message. Once an epoch is installed everything held is
                // that epoch's decided content.
                let fenced = self.fenced;
                let rx = &self.rx;
                let servable = |g: u64| {
                    if fenced {
                        rx.is_final(g)
                    } else {
                        rx.ring.has(g)
                    }
                };
                let start = (next..end).find(|&g| servable(g))?;
                let mut w = batch::Writer::new(body, self.epoch, start, 0).ok()?;
                let mut g = start;
                while g < end && servable(g) {
                    let Some(s) = rx.ring.get(g) else { break };
                    if w.push(s.sender, s.sender_seq, s.mode, s.payload()).is_err() {
                        break;
                    }
                    g += 1;
                }
                if w.count() == 0 {
                    return None;
                }
                let n = w.finish();
                if g < end {
                    self.out.push_front(Out::Repair { to, next: g, end });
                }
                self.counters.repairs += 1;
                let len = wire::emit_header(MsgType::Repair, group, n, buf).ok()?;
                Some(Transmit {
                    dest: Dest::Process(to),
                    len,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{nack, new_epoch};

    const GROUP: u64 = 7;
    const ME: ProcessId = ProcessId(2);
    const PEER: ProcessId = ProcessId(3);

    type Entry<'a> = (u64, u64, Option<Mode>, &'a [u8]);

    fn frame(ty: MsgType, epoch: u32, first: u64, base: u64, entries: &[Entry<'_>]) -> Vec<u8> {
        let mut buf = vec![0u8; 2048];
        let mut w = batch::Writer::new(&mut buf[NFV_HEADER_LEN..], epoch, first, base).unwrap();
        for &(sender, q, mode, payload) in entries {
            w.push(ProcessId(sender), q, mode, payload).unwrap();
        }
        let n = w.finish();
        let len = wire::emit_header(ty, GROUP, n, &mut buf).unwrap();
        buf.truncate(len);
        buf
    }

    fn message(m: &Message<'_>) -> Vec<u8> {
        let mut buf = vec![0u8; 2048];
        let len = m.emit(GROUP, &mut buf).unwrap();
        buf.truncate(len);
        buf
    }

    fn new_epoch(epoch: u32, sequencer: u64) -> Vec<u8> {
        message(&Message::NewEpoch(new_epoch::Repr {
            epoch,
            sequencer: ProcessId(sequencer),
        }))
    }

    /// Every frame the member has to send, as owned bytes.
    fn drain(m: &mut Member) -> Vec<Vec<u8>> {
        let mut buf = vec![0u8; 2048];
        let mut out = Vec::new();
        while let Some(t) = m.poll_transmit(Time::ZERO, &mut buf) {
            out.push(buf[..t.len].to_vec());
        }
        out
    }

    fn delivered(m: &mut Member) -> Vec<(u64, u64, u64)> {
        let mut v = Vec::new();
        while let Some(e) = m.poll_event() {
            if let Event::Deliver(d) = e {
                v.push((d.seq, d.sender.0, d.sender_seq));
            }
        }
        v
    }

    /// The scenario of simulation seed 16442, reduced: a member holds a
    /// stamp of epoch 1 it has not delivered (number 3, behind a gap) and
    /// sits frozen through epoch 2, which it never installs. Epoch 2 gave
    /// number 3 to nobody (a filler) and the message was stamped again
    /// later. Neither its report, nor its answers to a peer or to the next
    /// sequencer, nor its own delivery in epoch 3 may use the stale stamp.
    #[test]
    fn stale_undelivered_stamps_are_never_served_nor_delivered() {
        let t = Time::ZERO;
        let mut m = Member::new(
            MemberConfig::new(ME, GROUP),
            ProcessId(1001),
            1,
            &[ME, PEER],
        );
        let b1 = frame(
            MsgType::Batch,
            1,
            1,
            1,
            &[(PEER.0, 1, Some(Mode::Atomic), b"one")],
        );
        m.handle(t, &b1).unwrap();
        let b3 = frame(
            MsgType::Batch,
            1,
            3,
            1,
            &[(PEER.0, 3, Some(Mode::Atomic), b"stale")],
        );
        m.handle(t, &b3).unwrap();
        assert_eq!(delivered(&mut m), vec![(1, PEER.0, 1)]);

        // Epoch 2 collects: the report shows nothing past the cursor.
        m.handle(t, &new_epoch(2, 1002)).unwrap();
        let out = drain(&mut m);
        let Some((_, Message::EpochReport(r, held))) =
            out.iter().find_map(|f| Message::parse_nfv(f).ok())
        else {
            panic!("a report");
        };
        assert_eq!((r.epoch, r.next), (2, 2));
        assert!(
            !(0..64).any(|i| report::held_bit(held, i)),
            "undelivered stamps are not reported: {held:?}"
        );

        // Epoch 3 starts before epoch 2 reached this member. A peer (or
        // the new sequencer) asks for 1..4: only the delivered 1 comes.
        m.handle(t, &new_epoch(3, 1003)).unwrap();
        drain(&mut m);
        let ask = message(&Message::Nack(nack::Repr {
            epoch: 3,
            from: PEER,
            first: 1,
            count: 3,
        }));
        m.handle(t, &ask).unwrap();
        let out = drain(&mut m);
        let repairs: Vec<u64> = out
            .iter()
            .filter_map(|f| match Message::parse_nfv(f) {
                Ok((_, Message::Repair(_, entries))) => Some(entries.map(|(e, _)| e.seq)),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(repairs, vec![1], "only final content is served");

        // Epoch 3 installs with base 4: 2 is the message, 3 a filler.
        let b = frame(
            MsgType::Batch,
            3,
            2,
            4,
            &[(PEER.0, 2, Some(Mode::Atomic), b"two"), (0, 0, None, b"")],
        );
        m.handle(t, &b).unwrap();
        let b4 = frame(
            MsgType::Batch,
            3,
            4,
            4,
            &[(PEER.0, 3, Some(Mode::Atomic), b"three")],
        );
        m.handle(t, &b4).unwrap();
        assert_eq!(
            delivered(&mut m),
            vec![(2, PEER.0, 2), (4, PEER.0, 3)],
            "the stale stamp of (3, 3) at number 3 is not delivered"
        );
    }
}
