//! NFV-FD: failure detection as a network service.
//!
//! This crate is the service's protocol core and its message formats. The
//! core, [`Detector`], is a sans-IO state machine in the manner of
//! `quinn-proto`: no socket, no clock, no thread. Every input carries its
//! time ([`Time`], nanoseconds on a clock the caller picks), and the outputs
//! are pulled: [`Detector::poll_timeout`] says when to call
//! [`Detector::handle_timeout`], [`Detector::poll_event`] hands out state
//! changes. The same core runs in the dataplane binary, in deterministic
//! simulations (`tests/`) and in the benchmark (`benches/ingest.rs`).
//!
//! # States and evidence
//!
//! Each monitored process is `Correct`, `Suspected` or `Unreachable`.
//!
//! | from | to | when | [`Cause`] |
//! | --- | --- | --- | --- |
//! | `Correct` | `Suspected` | no evidence by the deadline | `Timeout` |
//! | `Suspected` | `Correct` | a heartbeat, or traffic seen after the suspicion | `Heartbeat`, `Traffic` |
//! | `Correct`, `Suspected` | `Unreachable` | the link it sits behind goes down | `LinkDown` |
//! | `Unreachable` | `Correct` | its link is up and evidence newer than that arrives | `LinkUp(Heartbeat)`, `LinkUp(Traffic)` |
//!
//! Evidence is abstract: [`Detector::heartbeat`] (a heartbeat message
//! arrived now), [`Detector::traffic_seen`] (passive liveness: the time the
//! XDP program last saw the process send anything), [`Detector::link_down`]
//! and [`Detector::link_up`] (netlink or switch port events). While a link
//! is down, evidence from behind it is ignored; once it is up, a process
//! stays `Unreachable` until evidence newer than the link's return arrives,
//! so a stale passive-liveness timestamp cannot revive it. Every transition
//! is recorded with a sequence number, time and cause, and queued for
//! [`Detector::poll_event`], which is also what subscribers are fed from.
//!
//! # The suspicion rule: Chen's estimator with a safety margin
//!
//! For each process the detector estimates when its next heartbeat should
//! arrive, and suspects it if nothing has come by that time plus a margin α:
//!
//! ```text
//! EA(l+1) = (1/n) Σ_{i = l−n+1..l} (A(i) − i·Δ)  +  (l+1)·Δ
//! deadline = EA(l+1) + α
//! ```
//!
//! `A(i)` are the arrival times of the last `n` heartbeats, `Δ` the sending
//! interval ([`Config`] has `interval`, `margin` and `window`). Why this
//! rather than phi-accrual:
//!
//! * **O(1) and integer-only per heartbeat.** The window's sum is kept
//!   running (add the new sample, subtract the evicted one), so a heartbeat
//!   costs a handful of integer operations and one division whatever the
//!   window. Phi-accrual needs the mean and variance of inter-arrival times
//!   and a normal (or exponential) tail probability, a transcendental
//!   function, evaluated against the clock; at 30 M heartbeats/s on one
//!   core that budget (≈ 33 ns) is not there.
//! * **The guarantee is a plain inequality.** With arrivals whose delay
//!   varies by less than α peak to peak (and by less than Δ/2), and none
//!   lost, no arrival is ever after its deadline: zero false suspicions by
//!   construction, which is what "jitter within the configured tolerance"
//!   means here. A process that stops is suspected at most `Δ + α` after
//!   the heartbeat that should have followed the last one was expected:
//!   millisecond detection for 10 ms heartbeats. Phi-accrual's threshold is
//!   a probability whose relation to a latency bound depends on the
//!   observed distribution; it is the better tool when the network's jitter
//!   is unknown and large (seconds-scale heartbeats across a WAN), which is
//!   not our case (one hop to the NFVI host).
//! * **Averaging the phase.** Compared with "last arrival + Δ + α", the mean
//!   over `n` arrivals absorbs one heartbeat's jitter instead of carrying it
//!   into the next deadline, so the same α tolerates twice the jitter.
//!
//! Heartbeat numbers are inferred from arrival times rather than read from
//! the message (see the `estimator` module for the rules), so a sender's
//! restart or a lost heartbeat cannot confuse the estimate, and an arrival
//! after the freshness point restarts the history.
//!
//! Passive traffic does not feed the estimator: it is not periodic, and
//! Chen's estimate assumes it is. Traffic seen at `t` keeps a process
//! correct until `t + Δ + α`; the deadline is the later of that and the
//! heartbeat deadline, so traffic can only delay a suspicion, never cause
//! one.
//!
//! # Shared silences: when the path, not the process, is late
//!
//! The inequality above assumes the path delivers. On a real host it
//! sometimes does not, for tens of milliseconds: a virtual CPU is
//! descheduled, network softirqs are deferred to a thread that waits its
//! turn, and every heartbeat behind that host or queue arrives late at
//! once. Judging each process alone would suspect hundreds of healthy
//! ones. So before suspecting, the detector asks whether the silence is
//! shared: when at least eight processes behind the same link (those behind
//! no link count as one) are overdue and the link has carried nothing from
//! any of them for half a margin, independent crashes are not the likely
//! story. Judgement is held until the link speaks again and its backlog
//! has come through (fewer than eight still overdue), and then for one
//! interval and margin, each process's own, for its catch-up heartbeat;
//! at most [`DEFAULT_MAX_HOLD`] (200 ms, configurable with
//! [`Detector::set_max_hold`]), after which a whole silent host is
//! suspected. This is HashiCorp Lifeguard's idea (a node that sees the
//! trouble is local holds its accusations) applied per link. The check is
//! a pass over the link's members at the time a deadline passes, so a
//! heartbeat costs nothing more.
//!
//! A path can also hold back only part of a link's traffic: heartbeats
//! queued on one CPU whose softirqs were deferred, while the link's other
//! processes, sent from another, pass. So a crowd of eight overdue at once
//! holds judgement even while the link speaks, until fewer than eight are
//! overdue; then each has one interval and margin from the start of the
//! episode, or one margin from the catch-up, whichever is later. The price
//! is that eight or more processes behind one link crashing within half a
//! margin of each other are suspected only after the hold limit. A process
//! held by an episode that is over never holds its link again, nor is held
//! again: heartbeats late past the margin everywhere, all the time, start
//! one episode after another, and a crash amid them is still suspected
//! within two hold limits.
//!
//! One process crashing among others that are heard, or a few crashes
//! behind a link that keeps carrying the others, are judged as before;
//! processes that send in phase leave their link quiet between bursts, but
//! then too few are overdue at once to count. The shell's own pauses
//! (woken late) are handled in `service` the same way.
//!
//! # Timers: a hashed timer wheel, re-armed lazily
//!
//! Every heartbeat moves its process's deadline about Δ later. Keeping an
//! exact timer structure in step (a heap re-sorted, or a wheel entry moved,
//! on each heartbeat) would cost more than the heartbeat itself. Instead
//! each process has one timer that is only a lower bound of its deadline: a
//! heartbeat just writes the new deadline into the process (O(1), no timer
//! access), and when a timer comes to the front (`poll_timeout`) or comes
//! due (`handle_timeout`) it is compared with its process's deadline and
//! moved there if that moved. `handle_timeout` touches only the timers that
//! are due, never the whole process table; deadlines stay exact (the wheel
//! groups them in 66 µs slots, it does not round them); and `poll_timeout`
//! moves stale timers on the way, so that the time it returns is the
//! earliest real deadline, never a spurious wake-up.
//!
//! That lazy move still happens about once per process per interval, that
//! is at the heartbeat rate, so its cost counts as much as a heartbeat's.
//! A binary heap (the first version) spent more on sifting, O(log n) with
//! unpredictable branches, than on the heartbeats; a wheel of vectors still
//! took about a hundred instructions a move. The wheel here is made of
//! intrusive lists: each process is a node in one array, each of the 1,024
//! slots the head of a singly linked list, and a move unlinks the node from
//! the list being walked and pushes it on the head of another. Timers
//! further than the wheel's 67 ms span (intervals of seconds) wait in a
//! heap, which they rarely touch, and move into the wheel as it turns.

//! # Process table
//!
//! Processes live in a dense slab (vectors indexed by slot, with a free
//! list); a [`ProcessId`] is mapped to its slot by a hash map with a
//! multiplicative hash, one lookup per heartbeat. What a heartbeat touches
//! of a process (its estimator state, deadline and configuration) is one
//! 64-byte line; the rest (id, link, group, traffic, timestamps) lives in a
//! separate array that only transitions and administration touch. The
//! sample rings of all processes share one arena, a ring of `window`
//! samples allocated when a process is added. Ingesting evidence allocates
//! nothing except when a transition is queued.
//!
//! [`Detector::heartbeats`] takes a received burst: it looks all the ids up
//! and loads their lines before ingesting any, so that the cache misses of
//! a burst overlap. `benches/ingest.rs` measures both entry points.
//!
//! # Message formats
//!
//! Every message is the payload of an NFVinc message (after the 32-byte
//! common header of `dataplane::wire::nfvinc`) with service `Fd` (3) and the
//! message type below in the header's type field. Integers are big-endian,
//! times in nanoseconds; reserved bytes are sent as zero and ignored;
//! reserved flag bits must be zero; trailing bytes after a message are
//! ignored. See [`wire`] for the views and representations.
//!
//! | type | message | length | direction |
//! | --- | --- | --- | --- |
//! | 1 | Heartbeat | 24 | process → detector |
//! | 2 | Add | 48 | control → detector |
//! | 3 | Remove | 16 | control → detector |
//! | 4 | Query | 16 | application → detector |
//! | 5 | QueryReply | 8 + 32 × count | detector → application |
//! | 6 | Subscribe | 16 | application → detector |
//! | 7 | StateChange | 32 | detector → subscriber |
//! | 8 | Ack | 8 | detector → requester of 2, 3, 6 |
//!
//! ## Heartbeat (1)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | process id |
//! | 8 | 8 | sequence number, +1 per heartbeat |
//! | 16 | 8 | sender's timestamp (sender's clock) |
//!
//! ## Add (2)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | request id |
//! | 4 | 1 | flags: bit 0 link present, bit 1 group present, bit 2 configuration present |
//! | 5 | 3 | reserved |
//! | 8 | 8 | process id |
//! | 16 | 4 | link id (interface index or port) |
//! | 20 | 4 | group id |
//! | 24 | 4 | window |
//! | 28 | 4 | reserved |
//! | 32 | 8 | heartbeat interval |
//! | 40 | 8 | safety margin |
//!
//! ## Remove (3)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | request id |
//! | 4 | 4 | reserved |
//! | 8 | 8 | process id |
//!
//! ## Query (4) and Subscribe (6)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | request id |
//! | 4 | 1 | flags: bit 0 all processes (the id is ignored); Subscribe only: bit 1 unsubscribe |
//! | 5 | 3 | reserved |
//! | 8 | 8 | process id |
//!
//! ## QueryReply (5)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | request id |
//! | 4 | 2 | entry count (0: unknown process) |
//! | 6 | 1 | flags: bit 0 more replies follow |
//! | 7 | 1 | reserved |
//! | 8 | 32 × count | entries |
//!
//! Entry:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | process id |
//! | 8 | 1 | state: 0 correct, 1 suspected, 2 unreachable |
//! | 9 | 1 | flags: bit 0 link present, bit 1 group present |
//! | 10 | 2 | reserved |
//! | 12 | 4 | link id |
//! | 16 | 4 | group id |
//! | 20 | 4 | reserved |
//! | 24 | 8 | in this state since |
//!
//! ## StateChange (7)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | process id |
//! | 8 | 1 | state before |
//! | 9 | 1 | state after |
//! | 10 | 1 | cause: 0 timeout, 1 heartbeat, 2 traffic, 3 link down, 4 link up + heartbeat, 5 link up + traffic |
//! | 11 | 5 | reserved |
//! | 16 | 8 | when (detector's clock) |
//! | 24 | 8 | transition sequence number (consecutive) |
//!
//! ## Ack (8)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | request id |
//! | 4 | 1 | status: 0 done, 1 unknown process, 2 duplicate, 3 bad configuration, 4 full, 5 malformed |
//! | 5 | 3 | reserved |

mod config;
mod detector;
mod estimator;
pub mod service;
mod time;
mod timers;
pub mod wire;

pub use config::{Config, ConfigError, MAX_PERIOD, MAX_WINDOW};
pub use detector::{
    Cause, Counters, DEFAULT_MAX_HOLD, Detector, Evidence, FdError, GroupId, LinkId, ProcessId,
    ProcessInfo, ProcessSpec, State, Transition,
};
pub use time::Time;
