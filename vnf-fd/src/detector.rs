//! The detector: monitored processes, their states, and the inputs that
//! move them.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use crate::config::{Config, ConfigError};
use crate::estimator::Chen;
use crate::time::Time;
use crate::timers::Timers;

/// "No deadline": a process that is not `Correct` has no timer.
const NEVER: u64 = u64::MAX;

/// A monitored process, as applications name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessId(pub u64);

/// A link processes sit behind: an interface index or switch port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub u32);

/// A group of processes that share a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(pub u32);

/// What the detector believes about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Evidence arrives in time.
    Correct,
    /// Evidence is overdue: the process may have crashed.
    Suspected,
    /// The link the process sits behind is down: nothing could arrive.
    Unreachable,
}

/// A kind of evidence that a process is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Evidence {
    /// A heartbeat message.
    Heartbeat,
    /// Any packet from the process, seen passively on the way.
    Traffic,
}

/// Why a transition happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// No evidence by the deadline: `Correct` to `Suspected`.
    Timeout,
    /// A heartbeat: `Suspected` to `Correct`.
    Heartbeat,
    /// Traffic: `Suspected` to `Correct`.
    Traffic,
    /// The process's link went down: to `Unreachable`.
    LinkDown,
    /// The link is up again and this evidence arrived after it came up:
    /// `Unreachable` to `Correct`.
    LinkUp(Evidence),
}

/// A change of state, as recorded and handed out by
/// [`Detector::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transition {
    /// Position in the detector's sequence of transitions, from 0 without
    /// gaps, so that a subscriber can tell whether it missed one.
    pub seq: u64,
    /// The process.
    pub process: ProcessId,
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// When: the `now` of the input that caused it, or for traffic the time
    /// the traffic was seen.
    pub at: Time,
    /// Why.
    pub cause: Cause,
}

/// A process to monitor, for [`Detector::add_process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSpec {
    /// Its id.
    pub id: ProcessId,
    /// The link it sits behind, when known.
    pub link: Option<LinkId>,
    /// Its group, whose configuration it takes unless it has its own.
    pub group: Option<GroupId>,
    /// Its own configuration, overriding its group's and the default.
    pub config: Option<Config>,
}

impl ProcessSpec {
    /// A process with no link, no group and no configuration of its own.
    pub fn new(id: ProcessId) -> Self {
        Self {
            id,
            link: None,
            group: None,
            config: None,
        }
    }

    /// The same, behind `link`.
    pub fn behind(self, link: LinkId) -> Self {
        Self {
            link: Some(link),
            ..self
        }
    }

    /// The same, in `group`.
    pub fn in_group(self, group: GroupId) -> Self {
        Self {
            group: Some(group),
            ..self
        }
    }

    /// The same, with its own configuration.
    pub fn with_config(self, config: Config) -> Self {
        Self {
            config: Some(config),
            ..self
        }
    }
}

/// What the detector knows about one process, for queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Its id.
    pub id: ProcessId,
    /// Its state.
    pub state: State,
    /// When it entered that state (or was added).
    pub since: Time,
    /// The link it sits behind.
    pub link: Option<LinkId>,
    /// Its group.
    pub group: Option<GroupId>,
    /// The configuration in force.
    pub config: Config,
    /// Arrival of its latest heartbeat in the current history (none after
    /// a suspicion, a link failure or a new interval).
    pub last_heartbeat: Option<Time>,
    /// Latest time its traffic was seen.
    pub last_traffic: Option<Time>,
    /// Expected arrival of its next heartbeat (Chen's estimate), when it
    /// has a heartbeat history.
    pub expected: Option<Time>,
    /// When it will be suspected without new evidence; `None` unless
    /// `Correct`.
    pub deadline: Option<Time>,
}

/// Why an operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FdError {
    /// No process with this id is monitored.
    #[error("process {0:?} is not monitored")]
    UnknownProcess(ProcessId),
    /// A process with this id is already monitored.
    #[error("process {0:?} is already monitored")]
    DuplicateProcess(ProcessId),
    /// The configuration is out of bounds.
    #[error("bad configuration: {0}")]
    Config(#[from] ConfigError),
    /// The detector cannot index more processes.
    #[error("too many processes")]
    Full,
}

/// What the detector has seen, for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Heartbeats for monitored processes.
    pub heartbeats: u64,
    /// Traffic reports for monitored processes.
    pub traffic: u64,
    /// Evidence that changed nothing: older than what was known, or from
    /// behind a link that is down.
    pub ignored: u64,
    /// Evidence for processes that are not monitored.
    pub unknown: u64,
    /// Transitions recorded.
    pub transitions: u64,
    /// Silences shared by a whole link (or by every process behind no
    /// link) noticed: see [`Detector::set_max_hold`].
    pub shared_silences: u64,
    /// Judgements held because the process's silence was shared.
    pub held: u64,
}

/// A multiplicative hash for `ProcessId`s: a per-heartbeat lookup must
/// cost a few nanoseconds, which SipHash does not. Ids come from the
/// control plane, not from arbitrary senders, so collision flooding is not
/// a concern; a heartbeat with an unknown id only costs a failed lookup.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The table picks buckets with the low bits and tags with the top
        // ones; the product's low bits ignore the key's high bits, so fold
        // them down (ids that differ only in their upper half are common).
        self.0 ^ (self.0 >> 32)
    }
}

type IdMap = HashMap<ProcessId, u32, BuildHasherDefault<IdHasher>>;

/// A link and the processes behind it.
#[derive(Debug)]
struct Link {
    up: bool,
    /// When it last went up or down.
    changed_at: u64,
    /// Slots of the processes behind it.
    members: Vec<u32>,
    /// A silence of every process behind it, while it lasts.
    silence: Option<Silence>,
    /// Processes last heard at or before this were held by an episode
    /// that is over: they neither hold the link again nor are held again,
    /// so that crashes amid a run of episodes are still judged.
    judged_upto: u64,
}

impl Default for Link {
    /// A link nobody reported is presumed up since forever.
    fn default() -> Self {
        Self {
            up: true,
            changed_at: 0,
            members: Vec::new(),
            silence: None,
            judged_upto: 0,
        }
    }
}

/// Overdue processes behind one link needed before their silence counts
/// as shared: fewer could be a few crashes at once.
const SHARED_CROWD: usize = 8;
/// How often judgement held by a shared silence is looked at again.
const RECHECK_NS: u64 = 1_000_000;
/// [`Detector::set_max_hold`]'s default.
pub const DEFAULT_MAX_HOLD: std::time::Duration = std::time::Duration::from_millis(200);

/// A silence of every process behind a link.
#[derive(Debug, Clone, Copy)]
struct Silence {
    /// The link's latest arrival when the silence was noticed.
    since: u64,
    /// When it was noticed.
    noticed: u64,
    /// The first arrival after it, once the link speaks again.
    resumed: Option<u64>,
    /// When fewer than a crowd were still overdue after that: the queues
    /// on the way had caught up.
    settled: Option<u64>,
    /// When a crowd was last seen overdue after the link spoke again
    /// (from the start, for an episode begun by a crowd on a speaking
    /// link): what was stuck on the way is still coming through.
    crowd_seen: Option<u64>,
}

/// What to do with the processes of one link whose deadlines passed.
#[derive(Debug, Clone, Copy)]
enum Verdict {
    /// Suspect them: their silence is their own.
    Judge,
    /// The whole link is silent: look again then.
    HoldUntil(u64),
    /// The link spoke again at the first time after a shared silence, and
    /// its backlog had drained by the second: give each process one
    /// interval and margin from the first, and one margin from the second,
    /// to be heard.
    Resumed(u64, u64),
}

/// When a process was last heard, read off its expected next arrival (on
/// the line a heartbeat touches anyway).
fn last_arrival(h: &Hot) -> Option<u64> {
    Some(h.est.expected()?.saturating_sub(h.interval))
}

/// What a heartbeat touches of a process, in one cache line: with a
/// thousand processes and their heartbeats in any order, each line touched
/// is likely a cache miss, so there must be as few as possible.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Hot {
    est: Chen,
    /// When to suspect it; `NEVER` unless `Correct`.
    deadline: u64,
    interval: u64,
    margin: u64,
    /// Offset of its ring of samples in the arena.
    ring: u32,
    /// Length of that ring.
    window: u16,
    /// `None` for a vacant slot.
    state: Option<State>,
}

impl Hot {
    const VACANT: Hot = Hot {
        est: Chen::EMPTY,
        deadline: NEVER,
        interval: 0,
        margin: 0,
        ring: 0,
        window: 0,
        state: None,
    };

    /// How long evidence other than a heartbeat keeps the process correct.
    #[inline]
    fn grace(&self) -> u64 {
        self.interval.saturating_add(self.margin)
    }
}

/// The rest of a process: touched by transitions, traffic and
/// administration, not by an ordinary heartbeat.
#[derive(Debug, Clone)]
struct Cold {
    id: ProcessId,
    since: u64,
    config: Config,
    /// Set through the spec or `set_config`: group changes leave it alone.
    explicit_config: bool,
    group: Option<GroupId>,
    link: Option<LinkId>,
    /// Index in the link's member list.
    link_pos: u32,
    last_traffic: Option<u64>,
    /// Latest evidence other than the heartbeat history: being added,
    /// traffic, and heartbeats whose history a new configuration dropped.
    /// Each keeps the process correct for `interval + margin`.
    passive: u64,
}

/// The sample rings of every process, in one allocation.
#[derive(Debug, Default)]
struct Rings {
    data: Vec<i64>,
    /// Freed rings by length, for reuse.
    free: HashMap<u16, Vec<u32>>,
}

impl Rings {
    fn alloc(&mut self, window: u16) -> Result<u32, FdError> {
        if let Some(off) = self.free.get_mut(&window).and_then(Vec::pop) {
            return Ok(off);
        }
        let off = u32::try_from(self.data.len()).map_err(|_| FdError::Full)?;
        off.checked_add(u32::from(window)).ok_or(FdError::Full)?;
        self.data.resize(self.data.len() + usize::from(window), 0);
        Ok(off)
    }

    fn release(&mut self, off: u32, window: u16) {
        self.free.entry(window).or_default().push(off);
    }

    #[inline]
    fn get_mut(&mut self, off: u32, window: u16) -> &mut [i64] {
        let start = off as usize;
        self.data
            .get_mut(start..start + usize::from(window))
            .unwrap_or_default()
    }

    fn get(&self, off: u32, window: u16) -> &[i64] {
        let start = off as usize;
        self.data
            .get(start..start + usize::from(window))
            .unwrap_or_default()
    }
}

/// The transition record.
#[derive(Debug, Default)]
struct Log {
    events: VecDeque<Transition>,
    next_seq: u64,
}

impl Log {
    /// Moves a live process to `to` and records it.
    fn record(&mut self, h: &mut Hot, c: &mut Cold, to: State, at: u64, cause: Cause) {
        let Some(from) = h.state else {
            return;
        };
        h.state = Some(to);
        c.since = at;
        self.events.push_back(Transition {
            seq: self.next_seq,
            process: c.id,
            from,
            to,
            at: Time::from_nanos(at),
            cause,
        });
        self.next_seq = self.next_seq.wrapping_add(1);
    }
}

/// The later of the heartbeat deadline and the passive one.
#[inline]
fn full_deadline(h: &Hot, c: &Cold) -> u64 {
    let hb = h.est.expected().map_or(0, |e| e.saturating_add(h.margin));
    hb.max(c.passive.saturating_add(h.grace()))
}

/// Points a process at `deadline`, whatever the one before, and its timer
/// with it.
///
/// Moving a deadline later needs no timer work (the timer is a lower
/// bound, see the `timers` module); this is for the other cases (being
/// added, coming back to `Correct`, a deadline moving earlier), which are
/// rare.
fn arm(timers: &mut Timers, slot: u32, h: &mut Hot, deadline: u64) {
    h.deadline = deadline;
    timers.set(slot, deadline);
}

/// The deadline of the process in `slot`, for the timers.
#[inline]
fn deadline_of(hot: &[Hot], slot: u32) -> Option<u64> {
    hot.get(slot as usize)
        .map(|h| h.deadline)
        .filter(|&d| d != NEVER)
}

/// Whether evidence at `t` may bring a process back from `Unreachable`:
/// its link is up, and the evidence is newer than both the link coming up
/// and the process becoming unreachable (a passive-liveness timestamp from
/// before the link went down proves nothing).
fn may_leave_unreachable(links: &HashMap<LinkId, Link>, c: &Cold, t: u64) -> bool {
    let link_ok = c
        .link
        .and_then(|l| links.get(&l))
        .is_none_or(|l| l.up && t >= l.changed_at);
    link_ok && t >= c.since
}

/// The failure detector: a sans-IO state machine.
///
/// Inputs: [`Detector::heartbeat`], [`Detector::traffic_seen`],
/// [`Detector::link_down`], [`Detector::link_up`] and
/// [`Detector::handle_timeout`], each with the time it happens. Outputs:
/// [`Detector::poll_timeout`] (when to call `handle_timeout` next) and
/// [`Detector::poll_event`] (the transitions, in order). See the crate
/// documentation for the rules.
#[derive(Debug)]
pub struct Detector {
    default: Config,
    groups: HashMap<GroupId, Config>,
    index: IdMap,
    hot: Vec<Hot>,
    cold: Vec<Cold>,
    free: Vec<u32>,
    live: usize,
    rings: Rings,
    links: HashMap<LinkId, Link>,
    timers: Timers,
    /// Scratch for `handle_timeout`: deadlines passed, and whose.
    expired: Vec<(u64, u32)>,
    /// Scratch for `handle_timeout`: each link's verdict, once per call.
    /// Per link met in one timeout pass: its verdict and `judged_upto`.
    verdicts: Vec<(Option<LinkId>, Verdict, u64)>,
    /// Processes behind no link, as one link that never goes down.
    unlinked: Link,
    /// How long a shared silence may hold judgement, in nanoseconds; 0
    /// never holds.
    max_hold: u64,
    log: Log,
    counters: Counters,
}

impl Detector {
    /// An empty detector whose processes get `default` unless their group
    /// or they themselves have another configuration.
    pub fn new(default: Config) -> Result<Self, FdError> {
        Self::with_capacity(default, 0)
    }

    /// [`Detector::new`] with room for `processes` processes of the default
    /// configuration, so that adding that many does not reallocate.
    pub fn with_capacity(default: Config, processes: usize) -> Result<Self, FdError> {
        default.validate()?;
        Ok(Self {
            default,
            groups: HashMap::new(),
            index: IdMap::with_capacity_and_hasher(processes, Default::default()),
            hot: Vec::with_capacity(processes),
            cold: Vec::with_capacity(processes),
            free: Vec::new(),
            live: 0,
            rings: Rings {
                data: Vec::with_capacity(processes * default.window as usize),
                free: HashMap::new(),
            },
            links: HashMap::new(),
            timers: Timers::default(),
            expired: Vec::new(),
            verdicts: Vec::new(),
            unlinked: Link::default(),
            max_hold: crate::time::duration_nanos(DEFAULT_MAX_HOLD),
            log: Log {
                events: VecDeque::with_capacity(processes.max(16)),
                next_seq: 0,
            },
            counters: Counters::default(),
        })
    }

    /// The configuration of processes with neither their own nor a group's.
    pub fn default_config(&self) -> Config {
        self.default
    }

    /// Number of monitored processes.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no process is monitored.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// What the detector has seen so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Starts monitoring a process at `now`.
    ///
    /// Being added counts as evidence: the process is `Correct` and has
    /// `interval + margin` to show itself, or `Unreachable` at once if its
    /// link is down.
    pub fn add_process(&mut self, spec: ProcessSpec, now: Time) -> Result<(), FdError> {
        let explicit_config = spec.config.is_some();
        let config = spec
            .config
            .or_else(|| spec.group.and_then(|g| self.groups.get(&g).copied()))
            .unwrap_or(self.default);
        config.validate()?;
        let window = u16::try_from(config.window).map_err(|_| ConfigError::Window)?;
        if self.index.contains_key(&spec.id) {
            return Err(FdError::DuplicateProcess(spec.id));
        }
        if self.free.is_empty() && u32::try_from(self.hot.len()).is_err() {
            return Err(FdError::Full);
        }
        let ring = self.rings.alloc(window)?;
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.hot.push(Hot::VACANT);
                self.cold.push(Cold {
                    id: spec.id,
                    since: 0,
                    config,
                    explicit_config,
                    group: None,
                    link: None,
                    link_pos: 0,
                    last_traffic: None,
                    passive: 0,
                });
                let s = (self.hot.len() - 1) as u32;
                self.timers.ensure(s);
                s
            }
        };
        let t = now.as_nanos();
        let link = self.link_entry(spec.link);
        link.members.push(slot);
        let (link_pos, down) = ((link.members.len() - 1) as u32, !link.up);
        let (Some(h), Some(c)) = (
            self.hot.get_mut(slot as usize),
            self.cold.get_mut(slot as usize),
        ) else {
            return Err(FdError::Full);
        };
        *h = Hot {
            est: Chen::EMPTY,
            deadline: NEVER,
            interval: config.interval_ns(),
            margin: config.margin_ns(),
            ring,
            window,
            state: Some(if down {
                State::Unreachable
            } else {
                State::Correct
            }),
        };
        *c = Cold {
            id: spec.id,
            since: t,
            config,
            explicit_config,
            group: spec.group,
            link: spec.link,
            link_pos,
            last_traffic: None,
            passive: t,
        };
        if !down {
            let d = full_deadline(h, c);
            arm(&mut self.timers, slot, h, d);
        }
        self.index.insert(spec.id, slot);
        self.live += 1;
        Ok(())
    }

    /// Stops monitoring a process. Transitions already recorded stay in
    /// the queue of [`Detector::poll_event`]; no new one will come.
    pub fn remove_process(&mut self, id: ProcessId) -> Result<(), FdError> {
        let slot = self.index.remove(&id).ok_or(FdError::UnknownProcess(id))?;
        let (Some(h), Some(c)) = (
            self.hot.get_mut(slot as usize),
            self.cold.get_mut(slot as usize),
        ) else {
            return Err(FdError::UnknownProcess(id));
        };
        self.rings.release(h.ring, h.window);
        *h = Hot::VACANT;
        self.timers.clear(slot);
        let (link, pos) = (c.link.take(), c.link_pos);
        self.free.push(slot);
        self.live -= 1;
        self.unlink(link, pos);
        Ok(())
    }

    /// The link `link` names (created up if never heard of), or the
    /// processes behind none.
    fn link_entry(&mut self, link: Option<LinkId>) -> &mut Link {
        match link {
            Some(l) => self.links.entry(l).or_default(),
            None => &mut self.unlinked,
        }
    }

    /// Removes the member at `pos` of `link`'s list, keeping the moved
    /// member's position right.
    fn unlink(&mut self, link: Option<LinkId>, pos: u32) {
        let l = match link {
            Some(id) => match self.links.get_mut(&id) {
                Some(l) => l,
                None => return,
            },
            None => &mut self.unlinked,
        };
        let pos = pos as usize;
        if pos < l.members.len() {
            l.members.swap_remove(pos);
            if let Some(&moved) = l.members.get(pos)
                && let Some(c) = self.cold.get_mut(moved as usize)
            {
                c.link_pos = pos as u32;
            }
        }
    }

    /// Moves a process behind another link (or none): for links learned
    /// after the process was added. Behind a link that is down, it becomes
    /// `Unreachable` at once.
    pub fn set_link(
        &mut self,
        id: ProcessId,
        link: Option<LinkId>,
        now: Time,
    ) -> Result<(), FdError> {
        let slot = *self.index.get(&id).ok_or(FdError::UnknownProcess(id))?;
        let (old, pos) = match self.cold.get(slot as usize) {
            Some(c) if c.link == link => return Ok(()),
            Some(c) => (c.link, c.link_pos),
            None => return Err(FdError::UnknownProcess(id)),
        };
        self.unlink(old, pos);
        let l = self.link_entry(link);
        l.members.push(slot);
        let (pos, down) = ((l.members.len() - 1) as u32, !l.up);
        let (Some(h), Some(c)) = (
            self.hot.get_mut(slot as usize),
            self.cold.get_mut(slot as usize),
        ) else {
            return Err(FdError::UnknownProcess(id));
        };
        c.link = link;
        c.link_pos = pos;
        if down && h.state.is_some_and(|s| s != State::Unreachable) {
            h.est.clear();
            h.deadline = NEVER;
            self.log
                .record(h, c, State::Unreachable, now.as_nanos(), Cause::LinkDown);
            self.counters.transitions += 1;
        }
        Ok(())
    }

    /// Gives one process its own configuration, which group changes no
    /// longer override. A new interval or window restarts its history, with
    /// its latest heartbeat kept as evidence.
    pub fn set_config(&mut self, id: ProcessId, config: Config) -> Result<(), FdError> {
        config.validate()?;
        let slot = *self.index.get(&id).ok_or(FdError::UnknownProcess(id))?;
        let (Some(h), Some(c)) = (
            self.hot.get_mut(slot as usize),
            self.cold.get_mut(slot as usize),
        ) else {
            return Err(FdError::UnknownProcess(id));
        };
        Self::apply_config(&mut self.timers, &mut self.rings, slot, h, c, config)?;
        c.explicit_config = true;
        Ok(())
    }

    /// Sets the configuration of a group: members added later take it, and
    /// current members without their own take it now. Returns how many
    /// current members changed.
    pub fn set_group_config(&mut self, group: GroupId, config: Config) -> Result<usize, FdError> {
        config.validate()?;
        self.groups.insert(group, config);
        // A scan: this is an administrative operation, not a per-packet one.
        let mut n = 0;
        for (slot, (h, c)) in self.hot.iter_mut().zip(&mut self.cold).enumerate() {
            if h.state.is_some() && c.group == Some(group) && !c.explicit_config {
                let (timers, rings) = (&mut self.timers, &mut self.rings);
                Self::apply_config(timers, rings, slot as u32, h, c, config)?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn apply_config(
        timers: &mut Timers,
        rings: &mut Rings,
        slot: u32,
        h: &mut Hot,
        c: &mut Cold,
        config: Config,
    ) -> Result<(), FdError> {
        if config == c.config {
            return Ok(());
        }
        let window = u16::try_from(config.window).map_err(|_| ConfigError::Window)?;
        let last = h.est.last_arrival(rings.get(h.ring, h.window));
        if window != h.window {
            let ring = rings.alloc(window)?;
            rings.release(h.ring, h.window);
            h.ring = ring;
            h.window = window;
            h.est.clear();
        } else if config.interval_ns() != h.interval {
            h.est.clear();
        }
        if h.est.expected().is_none() {
            c.passive = c.passive.max(last.unwrap_or(0));
        }
        c.config = config;
        h.interval = config.interval_ns();
        h.margin = config.margin_ns();
        if h.state == Some(State::Correct) {
            let d = full_deadline(h, c);
            arm(timers, slot, h, d);
        }
        Ok(())
    }

    /// A heartbeat from `id` arrived at `now`.
    ///
    /// It feeds the arrival history and pushes the deadline to the next
    /// expected arrival plus the margin. A `Suspected` process becomes
    /// `Correct` (cause [`Cause::Heartbeat`]); an `Unreachable` one too if
    /// its link is up (cause [`Cause::LinkUp`]), and stays put otherwise.
    /// O(1), no allocation unless a transition is recorded.
    #[inline]
    pub fn heartbeat(&mut self, id: ProcessId, now: Time) -> Result<(), FdError> {
        let Some(&slot) = self.index.get(&id) else {
            self.counters.unknown += 1;
            return Err(FdError::UnknownProcess(id));
        };
        self.ingest(slot, id, now.as_nanos())
    }

    /// The heartbeats of a received burst, in order: the same as
    /// [`Detector::heartbeat`] for each, faster. Returns how many were for
    /// monitored processes (the others are counted in
    /// [`Counters::unknown`]).
    ///
    /// With a thousand processes, a heartbeat's cost is its cache misses:
    /// the id's bucket, the process's line, the line of its sample ring,
    /// each address depending on the one before. Here the lookups of a
    /// whole group are done first and their lines loaded together, so that
    /// the misses of different heartbeats overlap instead of queueing.
    pub fn heartbeats(&mut self, burst: &[(ProcessId, Time)]) -> usize {
        const GROUP: usize = 16;
        let mut known = 0;
        for group in burst.chunks(GROUP) {
            let mut slots = [u32::MAX; GROUP];
            for (s, (id, _)) in slots.iter_mut().zip(group) {
                if let Some(&slot) = self.index.get(id) {
                    *s = slot;
                    if let Some(h) = self.hot.get(slot as usize) {
                        std::hint::black_box(h.state);
                    }
                }
            }
            for (&slot, &(id, now)) in slots.iter().zip(group) {
                if slot == u32::MAX {
                    self.counters.unknown += 1;
                } else if self.ingest(slot, id, now.as_nanos()).is_ok() {
                    known += 1;
                }
            }
        }
        known
    }

    /// A heartbeat for the process in `slot`.
    #[inline(always)]
    fn ingest(&mut self, slot: u32, id: ProcessId, t: u64) -> Result<(), FdError> {
        let Some(h) = self.hot.get_mut(slot as usize) else {
            return Err(FdError::UnknownProcess(id));
        };
        if h.state != Some(State::Correct) {
            return self.heartbeat_slow(slot, id, t);
        }
        self.counters.heartbeats += 1;
        let ring = self.rings.get_mut(h.ring, h.window);
        let d = h
            .est
            .observe(ring, t, h.interval, h.margin)
            .wrapping_add(h.margin);
        if d >= h.deadline {
            // The usual case: the deadline moves later, which the timers
            // need not hear about.
            h.deadline = d;
        } else {
            self.lower_deadline(slot, d);
        }
        Ok(())
    }

    /// A heartbeat whose deadline came out earlier than the last one: keep
    /// the passive floor and move the timer.
    #[cold]
    fn lower_deadline(&mut self, slot: u32, d: u64) {
        let (Some(h), Some(c)) = (
            self.hot.get_mut(slot as usize),
            self.cold.get_mut(slot as usize),
        ) else {
            return;
        };
        // Traffic may be what holds the deadline up; then it stays.
        let d = d.max(c.passive.saturating_add(h.grace()));
        if d >= h.deadline {
            h.deadline = d;
        } else {
            arm(&mut self.timers, slot, h, d);
        }
    }

    /// A heartbeat for a process that is not `Correct`.
    #[cold]
    fn heartbeat_slow(&mut self, slot: u32, id: ProcessId, t: u64) -> Result<(), FdError> {
        let (Some(h), Some(c)) = (
            self.hot.get_mut(slot as usize),
            self.cold.get_mut(slot as usize),
        ) else {
            return Err(FdError::UnknownProcess(id));
        };
        let Some(state) = h.state else {
            return Err(FdError::UnknownProcess(id));
        };
        self.counters.heartbeats += 1;
        let cause = match state {
            State::Suspected if t >= c.since => Some(Cause::Heartbeat),
            State::Unreachable if may_leave_unreachable(&self.links, c, t) => {
                Some(Cause::LinkUp(Evidence::Heartbeat))
            }
            State::Correct => None,
            State::Suspected | State::Unreachable => {
                self.counters.ignored += 1;
                return Ok(());
            }
        };
        if let Some(cause) = cause {
            h.est.clear();
            self.log.record(h, c, State::Correct, t, cause);
            self.counters.transitions += 1;
        }
        let ring = self.rings.get_mut(h.ring, h.window);
        h.est.observe(ring, t, h.interval, h.margin);
        let d = full_deadline(h, c);
        arm(&mut self.timers, slot, h, d);
        Ok(())
    }

    /// Passive liveness: `id` was last seen sending at `last_seen_at` (the
    /// value of its entry in the XDP program's map).
    ///
    /// Counts only when newer than the last report. It keeps the process
    /// `Correct` until `last_seen_at + interval + margin`, without feeding
    /// the heartbeat history: traffic is not periodic, and Chen's estimator
    /// assumes it is. It brings a process back to `Correct` like a
    /// heartbeat, when it is newer than the suspicion (or than the link
    /// coming up); the transition is then dated `last_seen_at`.
    pub fn traffic_seen(&mut self, id: ProcessId, last_seen_at: Time) -> Result<(), FdError> {
        let Some(&slot) = self.index.get(&id) else {
            self.counters.unknown += 1;
            return Err(FdError::UnknownProcess(id));
        };
        let (Some(h), Some(c)) = (
            self.hot.get_mut(slot as usize),
            self.cold.get_mut(slot as usize),
        ) else {
            return Err(FdError::UnknownProcess(id));
        };
        let Some(state) = h.state else {
            return Err(FdError::UnknownProcess(id));
        };
        self.counters.traffic += 1;
        let t = last_seen_at.as_nanos();
        if c.last_traffic.is_some_and(|l| t <= l) {
            self.counters.ignored += 1;
            return Ok(());
        }
        c.last_traffic = Some(t);
        let cause = match state {
            State::Correct => {
                c.passive = c.passive.max(t);
                // Only ever later: the timer entry stays a lower bound.
                h.deadline = h.deadline.max(c.passive.saturating_add(h.grace()));
                return Ok(());
            }
            State::Suspected if t >= c.since => Cause::Traffic,
            State::Unreachable if may_leave_unreachable(&self.links, c, t) => {
                Cause::LinkUp(Evidence::Traffic)
            }
            State::Suspected | State::Unreachable => {
                self.counters.ignored += 1;
                return Ok(());
            }
        };
        h.est.clear();
        self.log.record(h, c, State::Correct, t, cause);
        self.counters.transitions += 1;
        c.passive = c.passive.max(t);
        let d = full_deadline(h, c);
        arm(&mut self.timers, slot, h, d);
        Ok(())
    }

    /// `link` went down at `now`: every process behind it that is not yet
    /// `Unreachable` becomes so at once, and no other. Returns how many.
    ///
    /// Their histories are dropped: once the link is back, the first
    /// evidence starts afresh.
    pub fn link_down(&mut self, link: LinkId, now: Time) -> usize {
        let l = self.links.entry(link).or_default();
        if !l.up {
            return 0;
        }
        let t = now.as_nanos();
        l.up = false;
        l.changed_at = t;
        let mut n = 0;
        for &slot in &l.members {
            let (Some(h), Some(c)) = (
                self.hot.get_mut(slot as usize),
                self.cold.get_mut(slot as usize),
            ) else {
                continue;
            };
            if h.state.is_some_and(|s| s != State::Unreachable) {
                h.est.clear();
                h.deadline = NEVER;
                self.log
                    .record(h, c, State::Unreachable, t, Cause::LinkDown);
                n += 1;
            }
        }
        self.counters.transitions += n as u64;
        n
    }

    /// `link` came up at `now`. Its processes stay `Unreachable` until
    /// evidence from each at or after `now` arrives.
    pub fn link_up(&mut self, link: LinkId, now: Time) {
        let l = self.links.entry(link).or_default();
        if !l.up {
            l.up = true;
            l.changed_at = now.as_nanos();
        }
    }

    /// Whether `link` is up (links never reported are).
    pub fn is_link_up(&self, link: LinkId) -> bool {
        self.links.get(&link).is_none_or(|l| l.up)
    }

    /// The earliest deadline: call [`Detector::handle_timeout`] then (or
    /// later). `None` when no process is `Correct`.
    ///
    /// Takes `&mut self` to bring stale timer entries up to date on the
    /// way, so that the answer is exact, never a spurious early wake-up.
    pub fn poll_timeout(&mut self) -> Option<Time> {
        let hot = &self.hot;
        self.timers
            .settle(|slot| deadline_of(hot, slot))
            .map(Time::from_nanos)
    }

    /// Suspects every `Correct` process whose deadline is at or before
    /// `now` (cause [`Cause::Timeout`]), in the order of their deadlines,
    /// unless its silence is shared (see [`Detector::set_max_hold`]). Work
    /// is proportional to the timers that are due, plus one pass over the
    /// members of each link they sit behind, not to the number of
    /// processes.
    pub fn handle_timeout(&mut self, now: Time) {
        let t = now.as_nanos();
        let hot = &self.hot;
        self.timers
            .drain_due(t, |slot| deadline_of(hot, slot), &mut self.expired);
        if self.expired.is_empty() {
            return;
        }
        let mut expired = std::mem::take(&mut self.expired);
        expired.sort_unstable();
        self.verdicts.clear();
        for &(_, slot) in &expired {
            let Some(c) = self.cold.get(slot as usize) else {
                continue;
            };
            let link = c.link;
            let (verdict, judged_upto) = match self.verdicts.iter().find(|(l, ..)| *l == link) {
                Some(&(_, v, j)) => (v, j),
                None => {
                    let (v, j) = self.link_verdict(link, slot, t);
                    self.verdicts.push((link, v, j));
                    (v, j)
                }
            };
            let (Some(h), Some(c)) = (
                self.hot.get_mut(slot as usize),
                self.cold.get_mut(slot as usize),
            ) else {
                continue;
            };
            let held_before = judged_upto > 0 && last_arrival(h).is_some_and(|a| a <= judged_upto);
            let hold = match verdict {
                _ if held_before => None,
                Verdict::Judge => None,
                Verdict::HoldUntil(u) => Some(u),
                Verdict::Resumed(r, settled) => {
                    let until = r.saturating_add(h.grace());
                    Some(until.max(settled.saturating_add(h.margin))).filter(|&u| u > t)
                }
            };
            match hold {
                Some(until) => {
                    arm(&mut self.timers, slot, h, until);
                    self.counters.held += 1;
                }
                None => {
                    h.deadline = NEVER;
                    self.log.record(h, c, State::Suspected, t, Cause::Timeout);
                    self.counters.transitions += 1;
                }
            }
        }
        expired.clear();
        self.expired = expired;
    }

    /// How long judgement may be held while every process behind a link
    /// is silent at once (default [`DEFAULT_MAX_HOLD`]; zero never holds).
    ///
    /// When at least eight processes behind one link (the processes behind
    /// no link count as one) are overdue by half a margin and none of the
    /// link's processes has been heard for half a margin either, the
    /// silence is the path's, not theirs: a stalled host or queue on the
    /// way (a virtual CPU descheduled, network softirqs deferred), and
    /// independent crashes would not all fall silent at the same instant.
    /// Their suspicions are then held, as HashiCorp's Lifeguard holds its
    /// own when its node is the one in trouble: until the link speaks
    /// again and what queued up on the way has come through (fewer than
    /// eight still overdue), and then for one interval and margin from the
    /// link speaking again (one margin from the catch-up, if that took
    /// longer), each process's own, for its catch-up heartbeat. A process
    /// that crashed meanwhile is suspected at that point. A crowd of eight
    /// overdue at once holds judgement the same way even while the link
    /// speaks (part of its traffic is stuck on the way); a process held by
    /// an episode that is over is not held again (see the crate docs). If
    /// the link stays silent for `max_hold`, its processes are judged as
    /// usual: a whole host that died is
    /// suspected that much later than one process would be. Processes that
    /// are heard stay `Correct` throughout; a link going down still makes
    /// its processes `Unreachable` at once.
    pub fn set_max_hold(&mut self, max_hold: std::time::Duration) {
        self.max_hold = crate::time::duration_nanos(max_hold);
    }

    /// Whether the silence of the process in `slot`, whose deadline passed
    /// at `t`, is shared by its link: one pass over the link's members.
    /// Returns the link's `judged_upto` too.
    fn link_verdict(&mut self, link: Option<LinkId>, slot: u32, t: u64) -> (Verdict, u64) {
        let max_hold = self.max_hold;
        let half = self.hot.get(slot as usize).map_or(0, |h| h.margin / 2);
        let l = match link {
            Some(id) => match self.links.get_mut(&id) {
                Some(l) => l,
                None => return (Verdict::Judge, 0),
            },
            None => &mut self.unlinked,
        };
        if max_hold == 0 || l.members.len() < SHARED_CROWD {
            return (Verdict::Judge, 0);
        }
        let v = Self::episode(&self.hot, l, &mut self.counters, max_hold, half, t);
        (v, l.judged_upto)
    }

    /// [`Self::link_verdict`] for a link that may hold.
    fn episode(
        hot: &[Hot],
        l: &mut Link,
        counters: &mut Counters,
        max_hold: u64,
        half: u64,
        t: u64,
    ) -> Verdict {
        if let Some(s) = l.silence
            && s.resumed.is_some_and(|r| t.saturating_sub(r) > max_hold)
        {
            // Long over: its processes have had their chance.
            l.judged_upto = l.judged_upto.max(s.noticed);
            l.silence = None;
        }
        let since = l.silence.map_or(u64::MAX, |s| s.since);
        // A member's latest arrival is read off its expected next one, on
        // the line a heartbeat touches anyway.
        let (mut latest, mut first_after, mut overdue) = (0u64, u64::MAX, 0usize);
        for &m in &l.members {
            let Some(h) = hot.get(m as usize) else {
                continue;
            };
            let (Some(expected), Some(arrival)) = (h.est.expected(), last_arrival(h)) else {
                continue;
            };
            latest = latest.max(arrival);
            if arrival > since {
                first_after = first_after.min(arrival);
            }
            if h.state == Some(State::Correct)
                && expected.saturating_add(h.margin / 2) <= t
                && arrival > l.judged_upto
            {
                overdue += 1;
            }
        }
        let crowd = overdue >= SHARED_CROWD;
        let shared = t.saturating_sub(latest) > half && crowd;
        match l.silence {
            Some(s) if latest <= s.since => {
                if t.saturating_sub(s.noticed) >= max_hold {
                    l.judged_upto = l.judged_upto.max(s.since);
                    Verdict::Judge
                } else {
                    Verdict::HoldUntil(t.saturating_add(RECHECK_NS))
                }
            }
            Some(mut s) if !shared => {
                let r = *s.resumed.get_or_insert(first_after);
                if s.settled.is_none() && crowd && t.saturating_sub(s.noticed) < max_hold {
                    // Speaking again, but a crowd is still overdue: what
                    // queued up on the way is still coming through.
                    s.crowd_seen = Some(t);
                    l.silence = Some(s);
                    return Verdict::HoldUntil(t.saturating_add(RECHECK_NS));
                }
                // Caught up by the next look after the crowd was last seen
                // (no later: nothing may have been due to look sooner), or
                // when it spoke again if no crowd was seen waiting after.
                let caught_up = s
                    .crowd_seen
                    .map_or(r, |c| t.min(c.saturating_add(RECHECK_NS)));
                let settled = *s.settled.get_or_insert(caught_up);
                l.silence = Some(s);
                Verdict::Resumed(r, settled)
            }
            _ if shared => {
                l.silence = Some(Silence {
                    since: latest,
                    noticed: t,
                    resumed: None,
                    settled: None,
                    crowd_seen: None,
                });
                counters.shared_silences += 1;
                Verdict::HoldUntil(t.saturating_add(RECHECK_NS))
            }
            _ if crowd => {
                // The link speaks, yet a crowd fell overdue at once: their
                // heartbeats are stuck on the way (one CPU's backlog, say)
                // while the link's others pass. Held like a silence that
                // has just ended, until that backlog comes through.
                l.silence = Some(Silence {
                    since: latest,
                    noticed: t,
                    resumed: Some(t),
                    settled: None,
                    crowd_seen: Some(t),
                });
                counters.shared_silences += 1;
                Verdict::HoldUntil(t.saturating_add(RECHECK_NS))
            }
            _ => Verdict::Judge,
        }
    }

    /// The oldest transition not yet handed out.
    pub fn poll_event(&mut self) -> Option<Transition> {
        self.log.events.pop_front()
    }

    /// The state of one process.
    pub fn state(&self, id: ProcessId) -> Option<State> {
        let slot = *self.index.get(&id)?;
        self.hot.get(slot as usize)?.state
    }

    /// What is known about one process.
    pub fn process(&self, id: ProcessId) -> Option<ProcessInfo> {
        let slot = *self.index.get(&id)?;
        self.info(slot as usize)
    }

    /// Every monitored process, in no particular order.
    pub fn processes(&self) -> impl Iterator<Item = ProcessInfo> + '_ {
        (0..self.hot.len()).filter_map(|i| self.info(i))
    }

    fn info(&self, i: usize) -> Option<ProcessInfo> {
        let (h, c) = (self.hot.get(i)?, self.cold.get(i)?);
        Some(ProcessInfo {
            id: c.id,
            state: h.state?,
            since: Time::from_nanos(c.since),
            link: c.link,
            group: c.group,
            config: c.config,
            last_heartbeat: h
                .est
                .last_arrival(self.rings.get(h.ring, h.window))
                .map(Time::from_nanos),
            last_traffic: c.last_traffic.map(Time::from_nanos),
            expected: h.est.expected().map(Time::from_nanos),
            deadline: (h.deadline != NEVER).then_some(Time::from_nanos(h.deadline)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    impl Detector {
        /// Checks every internal invariant; panics on the first broken one.
        fn check(&self) {
            let live: Vec<usize> = (0..self.hot.len())
                .filter(|&i| self.hot[i].state.is_some())
                .collect();
            assert_eq!(live.len(), self.live);
            assert_eq!(self.index.len(), self.live);
            for (&id, &slot) in &self.index {
                assert_eq!(self.cold[slot as usize].id, id);
                assert!(self.hot[slot as usize].state.is_some());
            }
            for i in 0..self.hot.len() {
                let (h, c) = (&self.hot[i], &self.cold[i]);
                match h.state {
                    Some(State::Correct) => {
                        assert_ne!(h.deadline, NEVER, "a correct process has a deadline");
                        let armed = self.timers.armed(i as u32);
                        assert!(
                            armed.is_some_and(|a| a <= h.deadline),
                            "timer {armed:?} is a lower bound of {}",
                            h.deadline
                        );
                    }
                    Some(_) => assert_eq!(h.deadline, NEVER),
                    None => assert_eq!(self.timers.armed(i as u32), None),
                }
                if h.state.is_some()
                    && let Some(l) = c.link
                {
                    assert_eq!(self.links[&l].members[c.link_pos as usize], i as u32);
                }
            }
            for l in self.links.values() {
                for &m in &l.members {
                    assert!(self.hot[m as usize].state.is_some());
                }
            }
        }

        fn earliest_deadline(&self) -> Option<u64> {
            self.hot
                .iter()
                .filter(|h| h.state == Some(State::Correct))
                .map(|h| h.deadline)
                .min()
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(u8, Option<u8>, Option<u8>, Option<(u16, u16, u32)>),
        Remove(u8),
        Heartbeat(u8),
        Traffic(u8, u32),
        LinkDown(u8),
        LinkUp(u8),
        SetConfig(u8, (u16, u16, u32)),
        SetGroupConfig(u8, (u16, u16, u32)),
        SetLink(u8, Option<u8>),
        Advance(u32),
        Timeout,
        Jump(u64),
    }

    fn config(c: (u16, u16, u32)) -> Config {
        Config {
            interval: Duration::from_micros(u64::from(c.0)),
            margin: Duration::from_micros(u64::from(c.1)),
            window: c.2 % 70,
        }
    }

    fn op() -> impl Strategy<Value = Op> {
        let cfg = (any::<u16>(), any::<u16>(), any::<u32>());
        prop_oneof![
            2 => (
                0..12u8,
                prop::option::of(0..3u8),
                prop::option::of(0..3u8),
                prop::option::of(cfg)
            )
                .prop_map(|(a, b, c, d)| Op::Add(a, b, c, d)),
            1 => (0..12u8).prop_map(Op::Remove),
            6 => (0..12u8).prop_map(Op::Heartbeat),
            1 => (0..12u8, any::<u32>()).prop_map(|(a, b)| Op::Traffic(a, b)),
            1 => (0..3u8).prop_map(Op::LinkDown),
            1 => (0..3u8).prop_map(Op::LinkUp),
            1 => (0..12u8, cfg).prop_map(|(a, b)| Op::SetConfig(a, b)),
            1 => (0..3u8, cfg).prop_map(|(a, b)| Op::SetGroupConfig(a, b)),
            1 => (0..12u8, prop::option::of(0..3u8)).prop_map(|(a, b)| Op::SetLink(a, b)),
            6 => (0..40_000_000u32).prop_map(Op::Advance),
            3 => Just(Op::Timeout),
            1 => any::<u64>().prop_map(Op::Jump),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any sequence of operations, absurd times included: no panic,
        /// every invariant holds, `poll_timeout` is exact, and after
        /// `handle_timeout(now)` no correct process is overdue.
        #[test]
        fn operations_keep_the_invariants(ops in prop::collection::vec(op(), 1..200)) {
            let mut d = Detector::new(Config::default()).unwrap();
            let mut now = 0u64;
            let mut seq = 0;
            for op in ops {
                let t = Time::from_nanos(now);
                match op {
                    Op::Add(id, link, group, cfg) => {
                        let mut spec = ProcessSpec::new(ProcessId(id.into()));
                        spec.link = link.map(|l| LinkId(l.into()));
                        spec.group = group.map(|g| GroupId(g.into()));
                        spec.config = cfg.map(config);
                        let _ = d.add_process(spec, t);
                    }
                    Op::Remove(id) => { let _ = d.remove_process(ProcessId(id.into())); }
                    Op::Heartbeat(id) => { let _ = d.heartbeat(ProcessId(id.into()), t); }
                    Op::Traffic(id, back) => {
                        let seen = Time::from_nanos(now.saturating_sub(u64::from(back)));
                        let _ = d.traffic_seen(ProcessId(id.into()), seen);
                    }
                    Op::LinkDown(l) => { d.link_down(LinkId(l.into()), t); }
                    Op::LinkUp(l) => d.link_up(LinkId(l.into()), t),
                    Op::SetConfig(id, c) => { let _ = d.set_config(ProcessId(id.into()), config(c)); }
                    Op::SetGroupConfig(g, c) => { let _ = d.set_group_config(GroupId(g.into()), config(c)); }
                    Op::SetLink(id, l) => {
                        let _ = d.set_link(ProcessId(id.into()), l.map(|l| LinkId(l.into())), t);
                    }
                    Op::Advance(dt) => now = now.saturating_add(dt.into()),
                    Op::Timeout => {
                        d.handle_timeout(t);
                        if now < 1 << 62 {
                            prop_assert!(d.earliest_deadline().is_none_or(|e| e > now));
                        }
                    }
                    Op::Jump(to) => now = to,
                }
                d.check();
                if now < 1 << 62 {
                    let polled = d.poll_timeout().map(Time::as_nanos);
                    prop_assert_eq!(polled, d.earliest_deadline());
                }
                while let Some(e) = d.poll_event() {
                    prop_assert_eq!(e.seq, seq);
                    prop_assert_ne!(e.from, e.to);
                    seq += 1;
                }
            }
        }
    }
}
