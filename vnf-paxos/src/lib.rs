//! VNF-Consensus: Multi-Paxos as a network service.
//!
//! This crate is the service's protocol core and its message formats. Each
//! role is a sans-IO state machine in the manner of `quinn-proto`: no
//! socket, no clock, no thread. The shell feeds received messages with
//! `handle(now, from, message)`, pulls what to send with `poll_transmit()`
//! (a [`Transmit`]: a [`Dest`] and a [`wire::Message`], which
//! [`wire::Message::emit`] writes into a frame), serves timers with
//! `poll_timeout()` / `handle_timeout(now)`, and takes application events
//! with `poll_event()`. The same cores run in the dataplane binaries, in
//! the deterministic simulations (`tests/simulation.rs`) and in the
//! benchmark (`benches/decide.rs`).
//!
//! | role | type | input | output |
//! | --- | --- | --- | --- |
//! | coordinator (leader, standby) | [`Coordinator`] | promises, votes, nacks, heartbeats, requests and submits, fetches, joins | prepares, accepts, heartbeats, replies, admits, announcements of decided values |
//! | acceptor (2f + 1, default 3) | [`Acceptor`] | prepares, accepts, fetches, heartbeats, admits | promises, votes, nacks, joins; [`PersistBatch`]es |
//! | learner | [`Learner`] | decided values (the leader's announcements, fetch answers), votes (fetch answers), heartbeats, fetches | [`Delivery`] events in instance order; fetches |
//! | client side | [`Client`] | replies | submits (or requests); [`Committed`] events |
//!
//! The shell maps [`NodeId`]s and [`Dest`]s to addresses: `Acceptors` is
//! every acceptor slot, `Learners` every learner *and* every coordinator
//! (coordinators learn decisions too), `Everyone` acceptors, coordinators
//! and learners.
//!
//! # Protocol
//!
//! **Ballots** are `(round, coordinator, incarnation)`, ordered in that
//! order ([`Ballot`]). The incarnation is fresh at every start of a
//! coordinator (the shell supplies it), because a restarted coordinator has
//! forgotten which ballots it used, and one ballot must never carry two
//! different values for an instance.
//!
//! **Election.** The leader sends a heartbeat every 5 ms to everyone. A
//! follower that hears none for `election_timeout × (rank + 1)` plus random
//! jitter (rank: its position in the coordinator list) stands: it picks a
//! ballot whose round is one above every round it has seen and runs
//! phase 1. Ranked timeouts make the preferred standby win without a duel; a
//! candidate that does not finish in time stands again with a higher round.
//! Any higher ballot heard of (a nack, a heartbeat, a vote) makes a leader
//! or candidate step down. Two coordinators may both believe they lead for
//! a while; only the higher ballot gets votes, since acceptors refuse the
//! lower one: at most one leader makes progress.
//!
//! **Phase 1** (leader change, recovery). The candidate sends
//! `Prepare(ballot, from)`, `from` being its commit point (every instance
//! below it is decided and known to it). An acceptor whose promise is not
//! higher promises the ballot and reports every value it accepted from
//! `from` on, with the ballot it accepted it in, in pages of a datagram's
//! size; the candidate counts an acceptor once its pages cover `[from, ∞)`,
//! whatever order they arrive in. With promises from a majority of slots it
//! leads: for every instance from `max(from, trim points reported)` to the
//! highest reported, it re-proposes the value of the highest ballot
//! reported, or a no-op where nothing was reported (a hole), then proposes
//! new instances after them.
//!
//! **Phase 2** (steady state). Client commands queue at the leader; while
//! fewer than `window` (256) instances are in flight it takes what is
//! queued, up to 256 commands and [`MAX_VALUE_BYTES`] (1,340) bytes of
//! them (with 16-byte commands in runs, 73 a packet), into the next
//! instance. It fills the window once per burst of input, when it is next
//! polled, so that what a burst brought (several submits) shares
//! instances, and never waits longer for a batch to fill: at low load an
//! instance holds one command and leaves at once; at high load the window
//! is full, commands accumulate, and batches grow by themselves. New
//! instances are packed several to an `Accept` packet (up to 1,340 bytes of
//! values) as `poll_transmit` drains them, which again only happens at high
//! load, when a burst produced several. An acceptor whose promise is not
//! above the ballot accepts and sends its vote, every instance of the
//! accept in one message. With the log the vote goes to the coordinators
//! only and names the instances without their values (`Voted`): the
//! leader counts votes in its own ballot against the values it proposed,
//! so three copies of every value would cross the wire, and be checked
//! there, for nothing (this took a loaded run from 1.02 to 1.10 M
//! decisions/s). The accepts of a burst are synced together, and their
//! votes leave together, one `Voted` per ballot and datagram (in a loaded
//! run 15 accepts a sync, each of which had sent a frame of its own: the
//! acceptors' CPU per decision fell by a fifth). In memory the vote is an
//! `Accepted` with the values, to
//! the coordinators and the learners (see Learning). Instances without a
//! majority of votes after the retransmission timeout are sent again: the
//! timeout is `retransmit` (20 ms) or four smoothed propose-to-decide
//! times of instances sent once, whichever is longer (at most 16 times
//! `retransmit`), so that a loaded window, whose votes queue behind the
//! acceptors' log syncs, is not sent twice for nothing.
//!
//! **Learning.** Every coordinator counts votes per instance and ballot;
//! votes from a majority of acceptor slots in one ballot decide the value
//! (one ballot carries one value per instance, so a coordinator reading
//! votes from their bytes builds the value from the first vote of a
//! ballot and only counts the others; the leader counts votes in its own
//! ballot against the value it proposed; a `Voted` counts only where its
//! ballot's value is known, and a standby learns the rest from the
//! leader's announcements, or, should the leader fail, its own phase 1). The leader **announces** what it
//! learns decided: a `Decided` message, several instances to a packet, to
//! every learner, standby coordinator and subscribed client. Learners thus
//! take one message per instance from the leader instead of a vote from
//! each acceptor (on this one-host deployment, 9 frames per instance where
//! 15 went: 3 accepts, 3 votes, 3 announcements), at the price of one hop
//! (acceptor, leader, learner instead of acceptor, learner). Why it is
//! safe: a coordinator announces (or answers a fetch with) a value only
//! once it counted a majority of votes for it in one ballot, or was told
//! it decided by another process that did; so a `Decided` names a chosen
//! value, exactly as a majority of votes does, and learners apply the same
//! rule to votes when they receive them (acceptors answer fetches with
//! their votes). A lost announcement is a gap like any other: with the
//! log, every acceptor keeps its votes, so a majority's votes for any
//! decided instance can always be fetched again. In memory they cannot:
//! an acceptor replaced under a new identity takes its votes along, and
//! once the leader that knew an instance below the new identity's trim
//! point fails, learners that missed its announcement would find no
//! majority's votes and no process that knows the value (the simulations
//! found such a run). So in-memory acceptors also send their votes to the
//! learners, as they are cast, and learners decide from whichever comes
//! first. Decisions
//! are delivered in instance order. A
//! gap (a later instance decided, or the leader's heartbeat reporting a
//! commit point ahead) that does not fill within `fetch_timeout` is
//! fetched: coordinators and other learners answer with values they know
//! decided (`Decided`), acceptors re-send their votes. If the leader fails
//! between the votes and its announcement, its successor's phase 1 finds
//! the value (a majority voted for it) and proposes, decides and announces
//! it again. Commands are
//! delivered at most once: a retried command can be in the log twice (a
//! new leader may re-propose an instance it recovered while also receiving
//! the client's retry), and every learner drops the later copy; they all
//! see the same log, so they all drop the same one.
//!
//! **Clients** number their commands 1, 2, 3…, send them to the coordinator
//! they believe leads, follow `NotLeader` hints, and after `retry` (30 ms)
//! without an answer send them again to the next coordinator. The leader
//! answers once it learns a command decided, naming the instance; it does
//! not propose a command already decided or already in flight. The client
//! library pairs a [`Client`] with a [`Learner`] for the stream of decided
//! values.
//!
//! Commands travel **many to a datagram** both ways. A `Submit` carries
//! any number of commands (each with its own client and sequence number,
//! deduplicated one by one exactly as a single `Request` is), and the
//! leader queues them together and fills the window once, so they share
//! instances. Answers are **cumulative**: the leader gathers the commands
//! it learns decided while it handles a burst of input and, when polled,
//! sends each client one `Replies` message of runs `(first, last,
//! instance)`: consecutive sequence numbers decided in one instance are one
//! run, so a client's batch is answered in 24 bytes. Clients coalesce in
//! the manner of Nagle's algorithm ([`Client`]): a command submitted while
//! none of the client's sent commands awaits an answer leaves at once,
//! alone (no latency added at low load); commands submitted meanwhile
//! queue and leave together when the next answer arrives, or at once when
//! the caller hands over a burst and flushes it. Under load one datagram
//! thus goes each way per answer rather than per command. The single-value
//! `Request`/`Reply` pair is still served (a client with
//! [`ClientConfig::coalesce`] off uses it), and the leader answers each
//! command in the form it came in.
//!
//! # Acceptor durability
//!
//! [`Durability::Wal`], the default, keeps promises and votes in a
//! write-ahead log. The acceptor core does no I/O: each state change is a
//! [`Record`]; [`Acceptor::poll_persist`] hands out what a burst of input
//! produced as one [`PersistBatch`] (framed for the log already; an
//! accept's record is copied from the accept's bytes), and every answer
//! produced meanwhile is held until the shell reports the batch synced with
//! [`Acceptor::persisted`]. The shell writes the batch with
//! [`wal::Wal::write_batch`] (one `write`, one `fdatasync`: group commit)
//! and replays the log with [`wal::Wal::open`] and [`Acceptor::recover`]
//! after a restart. Records are framed with a length and a CRC-32; a torn
//! or corrupt tail is cut off on replay, losing only records of a batch
//! that was never synced, hence never answered.
//!
//! [`Durability::Memory`] (P4xos's choice: acceptors in switch memory) skips
//! the disk. A restart loses the promises and votes, and an acceptor that
//! forgot them must never vote under the same identity again, or a value
//! could be chosen twice. So an acceptor identity is its slot plus an
//! incarnation ([`AcceptorId`]): after a restart the shell builds it with
//! [`Acceptor::rejoin`] under a new incarnation; it votes on nothing and
//! asks the coordinators to admit it (`Join`). The leader admits it as
//! follows: (1) it stops proposing and waits until every instance it
//! proposed is decided, so that every instance below its next one, *N*, is
//! decided; (2) it runs phase 1 with a new ballot *b* from *N* on the
//! current members; (3) if no member reports a value at or above *N*, it
//! sends `Admit(b, trim = N)`: the new identity promises *b*, votes only on
//! instances ≥ *N*, and reports *N* as its trim point in promises, so a
//! later leader never proposes below it. If something was reported, the
//! leader finishes those instances and tries again. Why this is safe:
//! nothing at or above *N* can have been chosen in a ballot below *b*
//! (phase 1 on a majority found nothing, and that majority has promised
//! *b*), so the new identity's empty state is an honest state for every
//! instance it may vote on; below *N* everything is decided and the trim
//! point keeps leaders off. A slot's two identities never vote in the same
//! ballot, so votes are counted per slot. The price: a group in memory
//! survives only one lost identity at a time (the second restart before the
//! first is admitted leaves no majority of live identities, and the group
//! stops, safely).
//!
//! Why the log is the default: the service's promise is that decisions
//! survive, and with the log any minority of acceptors can crash at once
//! (power loss of a rack included) and come back with their state; in
//! memory, a correlated restart of a majority loses the decided log's
//! guarantees for instances in flight. The log costs one `fdatasync` per
//! burst, not per message, which group commit amortises over up to 64
//! packets; deployments that accept the weaker guarantee for the latency
//! choose memory.
//!
//! # Invariants
//!
//! * An acceptor never promises or votes below a ballot it promised, and
//!   (with the log) never sends a promise or vote before its record is
//!   synced.
//! * A coordinator proposes in a ballot only after a majority of slots
//!   promised it, and for instances reported in phase 1 only the value of
//!   the highest ballot reported.
//! * A coordinator sends a value as decided (an announcement or a fetch
//!   answer) only after counting a majority of slots' votes for it in one
//!   ballot, or after another coordinator or learner told it so.
//! * A value is decided in an instance when a majority of slots voted for
//!   it in one ballot; no two values are decided in one instance
//!   (agreement); only proposed commands or no-ops are decided (validity);
//!   a command is delivered at most once (integrity).
//! * Every instance below an acceptor's trim point is decided.
//! * A learner delivers instance *i* only after every instance below *i*.
//! * A coordinator tells a client a command is decided (a `Reply`, or a
//!   `Replies` run that names it) only after it learned an instance whose
//!   value holds the command decided, and names that instance (or
//!   `u64::MAX` when it no longer remembers which); a run names only
//!   commands of its client, each decided in the run's instance, and says
//!   nothing of the numbers between runs. A client forgets a command once
//!   told it is decided and retries every other one, so each command is
//!   reported decided to its client at most once and, while a leader can
//!   be elected, eventually.
//!
//! The simulations check agreement, validity, integrity and (after the
//! faults stop) liveness over thousands of seeds with loss, duplication,
//! reordering, partitions and crashes, for both durabilities, with clients
//! that submit in bursts through `Submit`/`Replies` (and one through the
//! single-value messages); they also check that every command a client is
//! told decided is told so once, in an instance that holds it.
//!
//! # Limits
//!
//! * Acceptors keep `retain` (65,536) instances below the commit point,
//!   coordinators and learners as many decided values; a learner further
//!   behind than that cannot catch up from the service and needs a snapshot
//!   of the application's state (not provided).
//! * The write-ahead log is never compacted; it grows with every vote.
//! * Membership is fixed to the slot count; only identities change.
//!
//! # Running the service
//!
//! The `vnf-paxos` binary runs one role per process on the dataplane
//! (AF_XDP by default, `--backend udp` for kernel sockets), through the
//! shell in [`service`]: every process of a group gets the same member
//! lists and its own `--role` and `--index`:
//!
//! ```text
//! vnf-paxos --role acceptor --index 0 --wal /var/lib/nfvinc/a0.wal \
//!     --coordinators 10.0.0.1,10.0.0.2 --acceptors 10.0.1.1,10.0.1.2,10.0.1.3 \
//!     --learners 10.0.2.1 --control /run/nfvinc/a0.sock
//! ```
//!
//! Coordinators are ranked by their position in `--coordinators` (the
//! first live one leads, the next takes over when its heartbeats stop); an
//! in-memory acceptor that lost its state comes back with
//! `--durability memory --join`. The control socket answers `health`,
//! `counters`, `membership`, `leader` (leader, ballot) and, on learners,
//! `deliveries`. Applications use libnfvinc's `Consensus` handle, which
//! submits values and, by sending fetches (which the VNFs take as a
//! one-second subscription), also receives the announcements and heartbeats a
//! learner needs. Under `--auth required` (how `nfvinc serve` runs them)
//! every message, between the processes as from clients, carries the
//! instance's session (`--session`) and a tag under its key, checked on
//! arrival; why one key for both: [`service`]'s docs.
//! `tests/paxos_net.rs` runs a group on network namespaces
//! through failures; `tests/kv_linearizability.rs` checks a replicated
//! key-value store built on it; `nfvinc-perf paxos` measures it.
//!
//! # Message formats
//!
//! Every message is the payload of an NFVinc message (after the 32-byte
//! common header of `dataplane::wire::nfvinc`) with service `Consensus` (2)
//! and the message type below. Integers are big-endian; a ballot is a
//! 64-bit number, round (32) · coordinator (16) · incarnation (16); an
//! acceptor id is slot (2) · reserved (2) · incarnation (4); reserved bytes
//! are sent as zero and ignored; reserved flag bits must be zero; bytes
//! after a message are ignored. Malformed input is a [`wire::MsgError`],
//! never a panic. See [`wire`] for the views and representations.
//!
//! | type | message | length | direction |
//! | --- | --- | --- | --- |
//! | 1 | Prepare (1A) | 16 | coordinator → acceptors |
//! | 2 | Promise (1B) | 48 + entries | acceptor → coordinator |
//! | 3 | Accept (2A) | 24 + entries | leader → acceptors |
//! | 4 | Accepted (2B) | 24 + entries | acceptor in memory → coordinators and learners; acceptor → a fetcher |
//! | 5 | Nack | 24 | acceptor → coordinator |
//! | 6 | Heartbeat | 24 + 4 × acceptors | leader → everyone |
//! | 7 | Request | 24 + payload | client → coordinator |
//! | 8 | Reply | 32 | coordinator → client |
//! | 9 | Fetch | 16 | learner, coordinator → learners, coordinators, acceptors |
//! | 10 | Decided | 8 + entries | leader → learners, coordinators, subscribers; learner, coordinator → fetcher |
//! | 11 | Join | 8 | new acceptor identity → coordinators |
//! | 12 | Admit | 24 | leader → new acceptor identity |
//! | 13 | Submit | 4 + commands | client → coordinator |
//! | 14 | Replies | 16 + 24 × runs | coordinator → client |
//! | 15 | Voted (2B, no values) | 24 + 8 × instances | acceptor with a log → coordinators |
//!
//! ## Values and entries
//!
//! A value: command count (2), format (1), reserved (1), then the
//! commands. Format 1 (runs, what is sent): runs of one client's
//! consecutive commands, each run client id (8), first sequence number
//! (8), command count *n* (2), then *n* times payload length (2) and
//! payload; the *k*-th command of a run has the first number plus *k*.
//! Format 0 (plain, still read: older logs hold it): per command client id
//! (8), sequence number (8), payload length (2), payload. Zero commands is
//! the no-op. A client's batch thus costs 18 bytes plus 2 per command
//! beyond its payloads (a 16-byte command takes 18 bytes, not 34), which
//! nearly doubles the commands a datagram carries. An entry: instance (8),
//! in a promise the ballot it was accepted in (8), then a value.
//!
//! ## Prepare (1)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | ballot |
//! | 8 | 8 | first instance asked about |
//!
//! ## Promise (2)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | ballot promised |
//! | 8 | 8 | acceptor id |
//! | 16 | 8 | trim point |
//! | 24 | 8 | page start |
//! | 32 | 8 | page end, exclusive (`u64::MAX`: last page) |
//! | 40 | 2 | entry count |
//! | 42 | 6 | reserved |
//! | 48 | … | entries with ballots |
//!
//! ## Accept (3)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | ballot |
//! | 8 | 8 | commit point |
//! | 16 | 2 | entry count |
//! | 18 | 6 | reserved |
//! | 24 | … | entries |
//!
//! ## Accepted (4)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | ballot |
//! | 8 | 8 | acceptor id |
//! | 16 | 2 | entry count |
//! | 18 | 6 | reserved |
//! | 24 | … | entries |
//!
//! ## Nack (5)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | ballot refused |
//! | 8 | 8 | ballot promised |
//! | 16 | 8 | acceptor id |
//!
//! ## Heartbeat (6)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | leader's ballot |
//! | 8 | 8 | commit point |
//! | 16 | 1 | acceptor count *n* |
//! | 17 | 7 | reserved |
//! | 24 | 4 × *n* | incarnation per slot |
//!
//! ## Request (7)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | client id |
//! | 8 | 8 | sequence number |
//! | 16 | 2 | payload length |
//! | 18 | 6 | reserved |
//! | 24 | … | payload |
//!
//! ## Reply (8)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | client id |
//! | 8 | 8 | sequence number |
//! | 16 | 8 | instance (decided only) |
//! | 24 | 1 | status: 0 decided, 1 not the leader |
//! | 25 | 1 | flags: bit 0 leader hint present |
//! | 26 | 2 | leader hint (node id) |
//! | 28 | 4 | reserved |
//!
//! ## Fetch (9)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | first instance wanted |
//! | 8 | 8 | end, exclusive |
//!
//! ## Decided (10)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 2 | entry count |
//! | 2 | 6 | reserved |
//! | 8 | … | entries |
//!
//! ## Join (11)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | acceptor id (new incarnation) |
//!
//! ## Admit (12)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | ballot |
//! | 8 | 8 | trim point |
//! | 16 | 8 | acceptor id |
//!
//! ## Submit (13)
//!
//! The layout of a value (at least one command): several commands, each
//! with its own client id and sequence number (runs: a client's
//! consecutive numbers share one header).
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 2 | command count (≥ 1) |
//! | 2 | 1 | format: 0 plain, 1 runs |
//! | 3 | 1 | reserved |
//! | 4 | … | commands in the format's layout (see values above) |
//!
//! ## Replies (14)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | client id |
//! | 8 | 1 | status: 0 decided, 1 not the leader |
//! | 9 | 1 | flags: bit 0 leader hint present |
//! | 10 | 2 | leader hint (node id) |
//! | 12 | 2 | run count *n* |
//! | 14 | 2 | reserved |
//! | 16 | 24 × *n* | runs: first sequence number (8), last (8, inclusive, not below the first), instance (8; status 0 only, `u64::MAX`: not remembered) |
//!
//! ## Voted (15)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | ballot |
//! | 8 | 8 | acceptor id |
//! | 16 | 2 | instance count *n* |
//! | 18 | 6 | reserved |
//! | 24 | 8 × *n* | instances voted for |

mod acceptor;
mod client;
mod config;
mod coordinator;
mod dedup;
mod learner;
mod pending;
pub mod service;
mod store;
mod time;
mod transmit;
mod types;
mod votes;
pub mod wal;
pub mod wire;

pub use acceptor::{Acceptor, Counters as AcceptorCounters, PersistBatch, Record};
pub use client::{Client, Committed};
pub use config::{
    AcceptorConfig, ClientConfig, CoordinatorConfig, Durability, LearnerConfig, MAX_VALUE_BYTES,
};
pub use coordinator::{Coordinator, Counters as CoordinatorCounters};
pub use learner::{Delivery, Learner};
pub use time::Time;
pub use transmit::{Dest, Transmit};
pub use types::{AcceptorId, Ballot, ClientId, Command, Instance, NodeId, Payload, Value};
