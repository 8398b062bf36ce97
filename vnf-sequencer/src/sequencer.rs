//! The sequencer: stamps global sequence numbers, broadcasts them in
//! batches, answers NACKs from its retransmission ring, and takes over a
//! group after another sequencer (see `recovery`).

use std::collections::VecDeque;

use dataplane::wire::nfvinc::{HEADER_LEN as NFV_HEADER_LEN, NfvHeader, Service};

use crate::config::SequencerConfig;
use crate::ids::IdMap;
use crate::recovery::Recovery;
use crate::ring::Ring;
use crate::seqset::{SeqSet, WINDOW};
use crate::time::Time;
use crate::wire::{self, Message, MsgError, MsgType, batch, data, heartbeat, nack, new_epoch};
use crate::{Dest, Mode, ProcessId, Transmit};

/// What the sequencer has done, for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SequencerCounters {
    /// Messages stamped.
    pub stamped: u64,
    /// Data messages already stamped (a sender's retransmission).
    pub duplicates: u64,
    /// FIFO or causal messages held until their sender's earlier ones came.
    pub held: u64,
    /// Data messages refused: too large, beyond the sender's window, a
    /// causal barrier not yet stamped, or during an epoch change.
    pub refused: u64,
    /// Group frames sent.
    pub frames: u64,
    /// NACKs answered.
    pub nacks: u64,
    /// Messages re-sent to answer NACKs.
    pub repaired: u64,
    /// Frames for another group or epoch, or of a type it does not take.
    pub ignored: u64,
}

/// Per-sender deduplication and FIFO state.
#[derive(Debug, Default)]
pub(crate) struct SenderState {
    /// Sender sequence numbers stamped.
    pub stamped: SeqSet,
    /// FIFO and causal messages waiting for their predecessors, by
    /// `sender_seq % WINDOW`; allocated on the sender's first hold.
    pub(crate) held: Vec<Held>,
    pub(crate) held_count: u32,
}

#[derive(Debug, Default)]
pub(crate) struct Held {
    /// 0: empty.
    q: u64,
    mode: Option<Mode>,
    payload: Vec<u8>,
}

/// Unicast work waiting for `poll_transmit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Out {
    /// Re-send `[next, end)` to a member.
    Repair { to: ProcessId, next: u64, end: u64 },
    /// Tell a member the ring starts at `oldest` for what it asked.
    TooOld {
        to: ProcessId,
        oldest: u64,
        asked: u64,
    },
    /// Announce this epoch to a member.
    NewEpoch { to: ProcessId },
    /// Ask a member for `[first, first + count)` (epoch change).
    Fetch {
        to: ProcessId,
        first: u64,
        count: u32,
    },
    /// Tell the group how far stamping got.
    Heartbeat,
}

/// The sequencer: a sans-IO state machine.
///
/// Inputs: [`Sequencer::handle`] (a received frame) and
/// [`Sequencer::handle_timeout`]. Outputs: [`Sequencer::poll_transmit`]
/// (frames to send, until `None`) and [`Sequencer::poll_timeout`]. A shell
/// hands it a received burst, then drains `poll_transmit`: whatever the
/// burst stamped leaves in as few group frames as fit, which is the whole
/// of the batching policy (see the crate documentation).
#[derive(Debug)]
pub struct Sequencer {
    pub(crate) cfg: SequencerConfig,
    pub(crate) epoch: u32,
    /// First sequence number this epoch decided.
    pub(crate) base: u64,
    /// Next sequence number to stamp.
    pub(crate) next: u64,
    /// Group frames have gone out for everything below this.
    pub(crate) sent: u64,
    pub(crate) ring: Ring,
    pub(crate) senders: IdMap<SenderState>,
    pub(crate) members: Vec<ProcessId>,
    pub(crate) out: VecDeque<Out>,
    /// `Some` while taking over from another sequencer.
    pub(crate) recovery: Option<Recovery>,
    heartbeat_at: Time,
    max_payload: usize,
    pub(crate) counters: SequencerCounters,
}

impl Sequencer {
    /// The first sequencer of a new group (epoch 1, nothing stamped).
    pub fn new(cfg: SequencerConfig, members: &[ProcessId], now: Time) -> Self {
        let max_payload = cfg
            .max_frame
            .saturating_sub(NFV_HEADER_LEN + batch::HEADER_LEN + batch::ENTRY_HEADER_LEN);
        Self {
            cfg,
            epoch: 1,
            base: 1,
            next: 1,
            sent: 1,
            ring: Ring::new(cfg.ring),
            senders: IdMap::default(),
            members: members.to_vec(),
            out: VecDeque::with_capacity(64),
            recovery: None,
            heartbeat_at: now + cfg.heartbeat,
            max_payload,
            counters: SequencerCounters::default(),
        }
    }

    /// A sequencer that takes over `members` in `epoch`, which must be
    /// higher than any epoch the group has seen (the control plane hands
    /// them out). It stamps nothing until the members have told it where
    /// the old epoch ended (see the crate documentation).
    pub fn replacing(cfg: SequencerConfig, epoch: u32, members: &[ProcessId], now: Time) -> Self {
        let mut s = Self::new(cfg, members, now);
        s.epoch = epoch;
        s.start_recovery(now);
        s
    }

    /// Its epoch.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Next sequence number it will stamp.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// True while it is taking over from another sequencer.
    pub fn is_recovering(&self) -> bool {
        self.recovery.is_some()
    }

    /// What it has done so far.
    pub fn counters(&self) -> SequencerCounters {
        self.counters
    }

    /// Handles one received frame (an NFVinc message, the UDP payload).
    /// Malformed frames are an error and change nothing.
    pub fn handle(&mut self, now: Time, frame: &[u8]) -> Result<(), MsgError> {
        // Data, the steady load, straight from the view: the same checks
        // as `Message::parse_nfv`, without building a `Message`.
        let h = NfvHeader::new_checked(frame)?;
        if h.msg_type() == u8::from(MsgType::Data) && h.service_raw() == Service::Sequencer as u8 {
            let p = data::Packet::new_checked(h.payload())?;
            let d = data::Repr::parse(&p)?;
            if h.session_id() != self.cfg.group {
                self.counters.ignored += 1;
            } else {
                self.on_data(d, p.into_payload());
            }
            return Ok(());
        }
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
            Message::Data(d, payload) => self.on_data(d, payload),
            Message::Nack(n) => self.on_nack(n),
            Message::EpochReport(r, held) => self.on_report(now, r, held),
            Message::Repair(r, entries) => self.on_fetched(now, r, entries),
            _ => self.counters.ignored += 1,
        }
    }

    #[inline]
    fn on_data(&mut self, d: data::Repr, payload: &[u8]) {
        if self.recovery.is_some() || payload.len() > self.max_payload || d.sender_seq == 0 {
            self.counters.refused += 1;
            return;
        }
        let st = self.senders.entry(d.sender).or_default();
        let q = d.sender_seq;
        if st.stamped.contains(q) {
            self.counters.duplicates += 1;
            return;
        }
        // A causal barrier at or past `next` names a message this
        // sequencer has not stamped: only possible if it missed part of
        // the old epoch, so refuse rather than order it wrongly.
        if st.stamped.beyond(q) || (d.mode == Mode::Causal && d.barrier >= self.next) {
            self.counters.refused += 1;
            return;
        }
        let after_own = matches!(d.mode, Mode::Fifo | Mode::Causal);
        if after_own && st.stamped.through + 1 != q {
            hold(st, q, d.mode, payload, &mut self.counters);
            return;
        }
        stamp(
            &mut self.ring,
            &mut self.next,
            &mut self.counters,
            d.sender,
            q,
            d.mode,
            payload,
        );
        st.stamped.insert(q);
        release(
            st,
            d.sender,
            &mut self.ring,
            &mut self.next,
            &mut self.counters,
        );
    }

    fn on_nack(&mut self, n: nack::Repr) {
        if self.recovery.is_some() || n.epoch != self.epoch {
            self.counters.ignored += 1;
            return;
        }
        self.counters.nacks += 1;
        let first = n.first.max(1);
        let count = u64::from(n.count.min(self.cfg.max_repair));
        let end = first.saturating_add(count).min(self.next);
        if first >= end {
            return;
        }
        let oldest = (first..end).find(|&s| self.ring.has(s)).unwrap_or(end);
        if oldest > first {
            self.out.push_back(Out::TooOld {
                to: n.from,
                oldest,
                asked: first,
            });
        }
        if oldest < end {
            self.out.push_back(Out::Repair {
                to: n.from,
                next: oldest,
                end,
            });
        }
    }

    /// When to call [`Sequencer::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Time> {
        match &self.recovery {
            Some(r) => Some(r.retry_at),
            None => Some(self.heartbeat_at),
        }
    }

    /// Serves the timers due at `now`: heartbeats, epoch-change retries.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.recovery.is_some() {
            self.recovery_timeout(now);
        } else if now >= self.heartbeat_at {
            if !self.out.contains(&Out::Heartbeat) {
                self.out.push_back(Out::Heartbeat);
            }
            self.heartbeat_at = now + self.cfg.heartbeat;
        }
    }

    /// Writes the next frame to send into `buf` (at least `max_frame`
    /// long); `None` when there is nothing left. Fresh group frames come
    /// first, then repairs and control messages.
    pub fn poll_transmit(&mut self, now: Time, buf: &mut [u8]) -> Option<Transmit> {
        let room = buf.len().min(self.cfg.max_frame);
        let buf = &mut buf[..room];
        if self.sent < self.next {
            // A shell that let more than a ring's worth pile up lost the
            // oldest: members recover them like any loss.
            self.sent = self
                .sent
                .max(self.next.saturating_sub(self.ring.capacity()));
            if let Some((len, resume)) = self.write_batch(MsgType::Batch, self.sent, self.next, buf)
            {
                self.sent = resume;
                self.counters.frames += 1;
                self.heartbeat_at = now + self.cfg.heartbeat;
                return Some(Transmit {
                    dest: Dest::Group,
                    len,
                });
            }
            self.sent = self.next;
        }
        while let Some(o) = self.out.pop_front() {
            if let Some(t) = self.write_out(o, buf) {
                return Some(t);
            }
        }
        None
    }

    fn write_out(&mut self, o: Out, buf: &mut [u8]) -> Option<Transmit> {
        let group = self.cfg.group;
        let p = NFV_HEADER_LEN;
        let (dest, len) = match o {
            Out::Repair { to, next, end } => {
                let (len, resume) = self.write_batch(MsgType::Batch, next, end, buf)?;
                self.counters.repaired += resume - next;
                if resume < end {
                    self.out.push_front(Out::Repair {
                        to,
                        next: resume,
                        end,
                    });
                }
                (Dest::Process(to), len)
            }
            Out::TooOld { to, oldest, asked } => {
                let r = wire::too_old::Repr {
                    epoch: self.epoch,
                    oldest,
                    asked,
                };
                r.emit(&mut wire::too_old::Packet::new_unchecked(buf.get_mut(p..)?))
                    .ok()?;
                let len =
                    wire::emit_header(MsgType::TooOld, group, wire::too_old::LEN, buf).ok()?;
                (Dest::Process(to), len)
            }
            Out::NewEpoch { to } => {
                let r = new_epoch::Repr {
                    epoch: self.epoch,
                    sequencer: self.cfg.id,
                };
                r.emit(&mut new_epoch::Packet::new_unchecked(buf.get_mut(p..)?))
                    .ok()?;
                let len = wire::emit_header(MsgType::NewEpoch, group, new_epoch::LEN, buf).ok()?;
                (Dest::Process(to), len)
            }
            Out::Fetch { to, first, count } => {
                let r = nack::Repr {
                    epoch: self.epoch,
                    from: self.cfg.id,
                    first,
                    count,
                };
                r.emit(&mut nack::Packet::new_unchecked(buf.get_mut(p..)?))
                    .ok()?;
                let len = wire::emit_header(MsgType::Nack, group, nack::LEN, buf).ok()?;
                (Dest::Process(to), len)
            }
            Out::Heartbeat => {
                let r = heartbeat::Repr {
                    epoch: self.epoch,
                    next: self.next,
                    base: self.base,
                };
                r.emit(&mut heartbeat::Packet::new_unchecked(buf.get_mut(p..)?))
                    .ok()?;
                let len = wire::emit_header(MsgType::Heartbeat, group, heartbeat::LEN, buf).ok()?;
                (Dest::Group, len)
            }
        };
        Some(Transmit { dest, len })
    }

    /// Packs the held messages of `[from, end)` into one frame, from the
    /// first held one, up to `max_batch` entries, stopping at a message the
    /// ring lacks. Returns the frame's length and where the next frame
    /// should start; `None` when nothing in the range is held.
    fn write_batch(
        &self,
        msg_type: MsgType,
        from: u64,
        end: u64,
        buf: &mut [u8],
    ) -> Option<(usize, u64)> {
        let start = (from..end).find(|&s| self.ring.has(s))?;
        let payload = buf.get_mut(NFV_HEADER_LEN..)?;
        let mut w = batch::Writer::new(payload, self.epoch, start, self.base).ok()?;
        let mut seq = start;
        while seq < end && usize::from(w.count()) < self.cfg.max_batch {
            let Some(s) = self.ring.get(seq) else { break };
            if w.push(s.sender, s.sender_seq, s.mode, s.payload()).is_err() {
                break;
            }
            seq += 1;
        }
        if w.count() == 0 {
            // An entry larger than the buffer: skip it rather than stall;
            // the members will find it too old and ask their peers.
            return None;
        }
        let n = w.finish();
        let len = wire::emit_header(msg_type, self.cfg.group, n, buf).ok()?;
        Some((len, seq))
    }
}

/// Stamps one message: the next sequence number, into the ring.
#[inline]
fn stamp(
    ring: &mut Ring,
    next: &mut u64,
    counters: &mut SequencerCounters,
    sender: ProcessId,
    q: u64,
    mode: Mode,
    payload: &[u8],
) {
    let seq = *next;
    *next += 1;
    ring.put(seq, sender, q, Some(mode), payload);
    counters.stamped += 1;
}

/// Keeps a FIFO or causal message until its sender's earlier ones are
/// stamped. Holding (rather than refusing and waiting for the
/// retransmission) keeps a pipelining sender's throughput when one of its
/// messages is lost or overtaken.
fn hold(st: &mut SenderState, q: u64, mode: Mode, payload: &[u8], c: &mut SequencerCounters) {
    if st.held.is_empty() {
        st.held.resize_with(WINDOW as usize, Held::default);
    }
    let h = &mut st.held[(q % WINDOW) as usize];
    if h.q == q {
        c.duplicates += 1;
        return;
    }
    if h.q == 0 {
        st.held_count += 1;
    }
    h.q = q;
    h.mode = Some(mode);
    h.payload.clear();
    h.payload.extend_from_slice(payload);
    c.held += 1;
}

/// Stamps the held messages that have become next in their sender's order.
fn release(
    st: &mut SenderState,
    sender: ProcessId,
    ring: &mut Ring,
    next: &mut u64,
    c: &mut SequencerCounters,
) {
    while st.held_count > 0 {
        let q = st.stamped.through + 1;
        let Some(h) = st.held.get_mut((q % WINDOW) as usize) else {
            return;
        };
        let (true, Some(mode)) = (h.q == q, h.mode) else {
            return;
        };
        h.q = 0;
        st.held_count -= 1;
        stamp(ring, next, c, sender, q, mode, &h.payload);
        st.stamped.insert(q);
    }
}
