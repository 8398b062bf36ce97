//! NFV-RBCast: reliable and ordered broadcast as a network service.
//!
//! This crate is the service's protocol and its message formats, as two
//! sans-IO state machines in the manner of `quinn-proto`: no socket, no
//! clock, no thread. [`Sequencer`] is what the VNF runs; [`Member`] is what
//! `libnfvinc` embeds in every process of a group. Inputs carry their time
//! ([`Time`]): `handle(now, frame)` for a received NFVinc message,
//! `handle_timeout(now)` when `poll_timeout()` says so, and
//! [`Member::send`]. Outputs are pulled: `poll_transmit(now, buf)` writes
//! the next frame into the caller's buffer and says where it goes
//! ([`Dest::Group`]: one send the network replicates;
//! [`Dest::Process`]: one process), and [`Member::poll_event`] hands out
//! deliveries, lending each payload from the member's ring. The same cores
//! run in the dataplane binary, in the deterministic simulations
//! (`tests/`) and in the benchmark (`benches/stamp.rs`).
//!
//! # The protocol
//!
//! A member sends a Data message to the sequencer: its id, its own
//! sequence number `q` (1, 2, …), a mode, and for causal messages a
//! barrier. The sequencer stamps it with the next global sequence number
//! `g`, keeps it in its retransmission ring, and broadcasts it to the group
//! in a Batch frame. Members hold what they receive in a ring indexed by
//! `g` and deliver:
//!
//! | mode | sequencer | member delivers | promise |
//! | --- | --- | --- | --- |
//! | [`Mode::Reliable`] | stamps on arrival | at once, whatever the gaps | exactly once, no order |
//! | [`Mode::Atomic`] | stamps on arrival | in `g` order | same total order everywhere |
//! | [`Mode::Fifo`] | stamps `q` only after the sender's `1..q` | in `g` order | total order + each sender's send order |
//! | [`Mode::Causal`] | as FIFO, and only if the barrier is below the next `g` | in `g` order | total order + causal precedence |
//!
//! Why causal costs nothing more than FIFO: a message `x` that the sender
//! had delivered when it sent `m` was stamped before `m` was sent, so a
//! single sequencer stamps `m` after `x`. The barrier (the highest `g` the
//! sender had delivered) makes this checkable: a sequencer that has not
//! stamped that far (it missed part of an old epoch) refuses the message
//! instead of ordering it wrongly. Reliable messages also go through the
//! sequencer: the stamp is what deduplicates and recovers them, and a
//! member delivering them on arrival (marking their slot so the in-order
//! cursor steps over it) keeps their latency free of other messages' gaps.
//!
//! **Senders** keep each message until they have delivered it themselves,
//! retransmitting it every `rto`; at most 64 are in flight
//! ([`SendError::WindowFull`] is the back-pressure). Not an acknowledgement
//! from the sequencer: an epoch change can undo a stamp that nobody
//! received, and the sender's own delivery is the one evidence that
//! survives every sequencer. The sequencer deduplicates on `(sender, q)`
//! with a per-sender set (contiguous point + 64-bit window), so a message
//! is stamped once; FIFO and causal messages that arrive early wait in a
//! per-sender hold of 64 slots rather than being refused, so a lost
//! message does not stall a pipelining sender for a whole `rto`.
//!
//! **Gaps.** A member knows what is stamped from the frames it gets and
//! from the sequencer's Heartbeat (sent after `heartbeat` without a frame;
//! it catches loss of the last frame before a quiet spell). A gap waits
//! `nack_delay` (reordering heals itself) and is then NACKed to the
//! sequencer, again every `nack_interval` while open. The sequencer answers
//! from its ring (at most `max_repair` messages per NACK).
//!
//! **Gaps older than the ring.** The sequencer answers TooOld with the
//! oldest number it holds; the member then asks its peers in turn (NACK to
//! a member, answered with Repair frames). This costs nothing extra: a
//! member's ring keeps delivered messages until their slot is reused, so
//! every member is a retransmission buffer of `window` messages, and the
//! group's total is far larger than the sequencer's. If `peer_rounds`
//! rounds over all peers fail, the member gives the range up with
//! [`Event::Lost`] and the application must catch up by state transfer
//! (a snapshot from a peer); delivery resumes after the range. Why not
//! make the sequencer's ring durable or unbounded: the sequencer is the
//! hot path at tens of millions of messages per second, and a member that
//! far behind needs the application's state, not a replay.
//!
//! **Batching.** The shell hands the sequencer a received burst, then
//! drains `poll_transmit`: everything the burst stamped leaves in as few
//! group frames as fit (`max_batch` entries, `max_frame` bytes), built
//! straight from the ring into the transmit buffer. At low load a burst
//! holds one message and it leaves at once; at high load bursts fill and
//! so do frames. Nothing ever waits for a batch to fill, so batching adds
//! no latency; `max_batch = 1` turns it off. Members batch the other way
//! too: the messages one flush sends to one place (a window of Data
//! messages, say) leave packed back to back in as few datagrams as hold
//! them ([`wire::messages`] takes a datagram apart), each message whole
//! and tagged on its own, so the kernel paths cost per datagram rather
//! than per message and a burst reaches the sequencer in one piece.
//!
//! # Epochs: replacing the sequencer
//!
//! Every frame from a sequencer carries its epoch; a member takes frames
//! of its own epoch only. The control plane starts a replacement with
//! [`Sequencer::replacing`] and a higher epoch. It stamps nothing until:
//!
//! 1. **Collect.** It sends NewEpoch to every member (repeated every
//!    `retry`). A member adopts the epoch, from then on refuses frames of
//!    older epochs (this fences a sequencer that is only cut off, not
//!    dead), freezes, and answers EpochReport: its in-order cursor `next`,
//!    which of its own messages it has delivered (for deduplication), and
//!    a bitmap of what it has delivered from `next` on (reliable messages
//!    delivered on arrival; undelivered stamps are left out, see below).
//! 2. **Fetch.** With every report in: `lo` = lowest `next`, `max_next` =
//!    highest `next`, `end` = one past the highest number anyone has
//!    delivered (at least `max_next`).
//!    Every number below `max_next` was delivered in order by someone, so
//!    it exists and its content is final; in `[max_next, end)` nobody has
//!    delivered anything in order. The sequencer fetches (NACKs to the
//!    members, answered with Repair) everything in `[lo, end)` that exists.
//! 3. **Install.** In `[max_next, end)` reliable messages are kept (they
//!    may have been delivered on arrival) and every other number becomes a
//!    filler: delivered to nobody, its message (if any) is retransmitted
//!    by its sender, which never delivered it, and stamped anew. The
//!    deduplication state is rebuilt from the reports and the kept
//!    messages. The epoch's base is `max_next`; stamping resumes at `end`;
//!    `[lo, end)` is broadcast again. A member installs the epoch on its
//!    first frame of it: it drops everything it holds and has not
//!    delivered, below the base too, and takes the sequencer's version
//!    instead.
//!
//! Why this is safe: numbers below `max_next` keep the content the old
//! sequencer gave them (every copy anywhere is that one); numbers from
//! `max_next` on that anyone may have delivered (reliable ones) keep
//! theirs; the rest were delivered by nobody, so giving them new content
//! contradicts no delivery. FIFO survives because a FIFO message below
//! `max_next` had all its predecessors stamped before it; causality
//! survives because anything a sender had delivered is below its `next`,
//! hence below the new epoch's first stamp. A second failure during the
//! change just restarts it with the next epoch: members stay frozen, so
//! their reports stay true.
//!
//! **Only delivered content counts between epochs.** A member's
//! undelivered stamp is tentative: it came from the last epoch the member
//! installed, and a later epoch the member never installed (it was frozen
//! through it) may have decided that number afresh: a filler, its message
//! stamped again further on. Seed 16442 of the simulation found exactly
//! that: epoch 2 filled number 69 (epoch 1's stamp of a message nobody
//! had delivered) and stamped the message again at 85; one member
//! installed epoch 2 and delivered through 94, the others stayed frozen
//! with epoch 1's stamp at 69. Epoch 3 fetched 69 as final (it is below
//! the most advanced cursor) and took a frozen member's stale copy, so
//! everyone delivered the message twice. Delivered content is final,
//! whatever epochs followed (no epoch contradicts a delivery). So while
//! frozen a member reports and serves (to the new sequencer and to peers)
//! only delivered messages, and installing an epoch drops every
//! undelivered one; the new sequencer needs no more: below `max_next` the
//! most advanced member delivered everything, and from `max_next` on only
//! delivered (reliable) messages are kept. An installed member holds only
//! its epoch's decided content (from that epoch's sequencer or from peers
//! in it), so it serves everything it holds.
//!
//! Assumptions, stated: every member answers (the control plane removes a
//! dead member from the group before a replacement starts; membership
//! changes during an epoch change are not supported); senders are members;
//! the spread between the most and least advanced member at the change is
//! within a member's `window` and the sequencer's `ring` is at least twice
//! that (else the laggards' old part comes from peers or state transfer).
//!
//! # Invariants
//!
//! * A global sequence number has one content in every ring that holds it,
//!   in every epoch after it was decided (fillers included). A member's
//!   undelivered entries are not decided content until it installs an
//!   epoch; it drops them then, and never reports or serves them while
//!   frozen.
//! * `(sender, q)` is stamped at most once per decided history: the
//!   sequencer's per-sender set, rebuilt at each epoch change from facts
//!   (own deliveries, kept messages), refuses duplicates.
//! * A member delivers each number at most once (the slot's `delivered`
//!   flag; the cursor only moves forward) and ordered modes in `g` order.
//! * A sender keeps and retransmits each message until it delivers it, so
//!   every message of a correct sender is eventually stamped and kept.
//!
//! The simulations check agreement, integrity, validity and each mode's
//! order over thousands of seeds with loss, duplication, reordering, delay
//! and sequencer failures (crashed or cut off and still sending).
//!
//! # Message formats
//!
//! Every message is the payload of an NFVinc message (after the 32-byte
//! common header of `dataplane::wire::nfvinc`) with service `Sequencer` (1),
//! the group in the session id, and the type below. Integers are
//! big-endian; reserved bytes are sent as zero and ignored; trailing bytes
//! are ignored. See [`wire`] for the views and representations.
//!
//! | type | message | length | direction |
//! | --- | --- | --- | --- |
//! | 1 | Data | 32 + payload | member → sequencer |
//! | 2 | Batch | 24 + Σ (20 + payload) | sequencer → group, or to a NACKer |
//! | 3 | Repair | as Batch | member → member, member → new sequencer |
//! | 4 | Nack | 24 | member → sequencer or peer; new sequencer → member |
//! | 5 | TooOld | 24 | sequencer → member |
//! | 6 | Heartbeat | 24 | sequencer → group |
//! | 7 | NewEpoch | 16 | new sequencer → member |
//! | 8 | EpochReport | 40 + bitmap | member → new sequencer |
//!
//! ## Data (1)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | sender |
//! | 8 | 8 | sender sequence number (from 1) |
//! | 16 | 8 | causal barrier: highest global number the sender had delivered |
//! | 24 | 1 | mode: 0 reliable, 1 atomic, 2 FIFO-atomic, 3 causal-atomic |
//! | 25 | 1 | reserved |
//! | 26 | 2 | payload length |
//! | 28 | 4 | reserved |
//! | 32 | n | payload |
//!
//! ## Batch (2) and Repair (3)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | epoch |
//! | 4 | 2 | entry count |
//! | 6 | 2 | reserved |
//! | 8 | 8 | global number of the first entry (the others follow, +1 each) |
//! | 16 | 8 | epoch base |
//! | 24 | … | entries |
//!
//! Entry:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | sender |
//! | 8 | 8 | sender sequence number |
//! | 16 | 1 | mode (0–3), or 255 for a filler |
//! | 17 | 1 | reserved |
//! | 18 | 2 | payload length (0 for a filler) |
//! | 20 | n | payload |
//!
//! ## Nack (4)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | requester's epoch |
//! | 4 | 4 | count |
//! | 8 | 8 | requester |
//! | 16 | 8 | first global number asked for |
//!
//! ## TooOld (5)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | epoch |
//! | 4 | 4 | reserved |
//! | 8 | 8 | oldest global number held |
//! | 16 | 8 | first global number of the NACK answered |
//!
//! ## Heartbeat (6)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | epoch |
//! | 4 | 4 | reserved |
//! | 8 | 8 | next global number to stamp |
//! | 16 | 8 | epoch base |
//!
//! ## NewEpoch (7)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | new epoch |
//! | 4 | 4 | reserved |
//! | 8 | 8 | new sequencer's id |
//!
//! ## EpochReport (8)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | epoch answered |
//! | 4 | 2 | held bitmap length in bytes (≤ 8,192) |
//! | 6 | 2 | reserved |
//! | 8 | 8 | member |
//! | 16 | 8 | next: everything below delivered in order |
//! | 24 | 8 | own messages delivered through this sender number |
//! | 32 | 8 | own messages delivered beyond it (bit i: through + 1 + i) |
//! | 40 | n | delivered bitmap from `next` (most significant bit first) |
//!
//! # Memory and cost
//!
//! Both rings are allocated up front (slot payload buffers are reused, so
//! the message path allocates only when a slot first sees a larger
//! payload); per-sender state is a hash-map entry with a multiplicative
//! hash, plus a 64-slot hold allocated on a sender's first early FIFO
//! message. `benches/stamp.rs` measures the sequencer per stamped message,
//! parsing and frame building included.

mod config;
mod ids;
mod member;
mod receiver;
mod recovery;
mod ring;
mod sender;
mod seqset;
mod sequencer;
pub mod service;
mod time;
pub mod wire;

pub use config::{MemberConfig, SequencerConfig};
pub use ids::{Dest, Mode, ProcessId, Transmit};
pub use member::{Event, Member, MemberCounters};
pub use receiver::Delivery;
pub use sender::SendError;
pub use sequencer::{Sequencer, SequencerCounters};
pub use time::Time;
