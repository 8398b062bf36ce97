//! The crate's one error type.

use crate::attach::AttachMode;
use crate::steer::FlowRoute;

/// Errors loading, attaching or driving the XDP programs.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// The embedded object could not be parsed or its maps created.
    #[error("loading the {program} object failed: {source}")]
    Load {
        /// Which program.
        program: &'static str,
        /// What aya reported.
        source: Box<aya::EbpfError>,
    },
    /// The embedded object lacks a map or program the handle needs, or has
    /// one of the wrong shape: `build.rs` and the handle disagree.
    #[error("the {program} object does not match its handle: {what}")]
    ObjectMismatch {
        /// Which program.
        program: &'static str,
        /// What is missing or different.
        what: String,
    },
    /// The verifier refused the program, or a program operation failed.
    #[error("the {program} program: {source}")]
    Program {
        /// Which program.
        program: &'static str,
        /// What aya reported (the verifier log, for a refusal).
        source: Box<aya::programs::ProgramError>,
    },
    /// No interface has this index in the calling thread's network namespace.
    #[error("no network interface with index {ifindex} in this network namespace")]
    NoSuchInterface {
        /// The index asked for.
        ifindex: u32,
    },
    /// The interface already runs an XDP program through a live bpf_link (a
    /// running process's steering or fault program, or a pinned link),
    /// which cannot be replaced from outside.
    #[error(
        "interface {ifindex} already runs XDP program id {prog_id} through a bpf_link; \
         its owner has to release it first"
    )]
    Busy {
        /// The interface.
        ifindex: u32,
        /// The kernel's id of the program in the way.
        prog_id: u32,
    },
    /// The kernel refused the attachment.
    #[error(
        "attaching the {program} program to interface {ifindex} in {mode:?} mode failed: {source}"
    )]
    Attach {
        /// Which program.
        program: &'static str,
        /// The interface.
        ifindex: u32,
        /// The mode tried last.
        mode: AttachMode,
        /// The kernel's answer.
        source: std::io::Error,
    },
    /// A netlink request about the interface's XDP state failed.
    #[error("netlink {op} on interface {ifindex} failed: {source}")]
    Netlink {
        /// What was asked.
        op: &'static str,
        /// The interface.
        ifindex: u32,
        /// The kernel's answer, with its extended message when it gave one.
        source: std::io::Error,
    },
    /// A slot beyond [`crate::MAX_SLOTS`].
    #[error("slot {slot} is out of range: slots are 0..{max}")]
    SlotOutOfRange {
        /// The slot asked for.
        slot: u32,
        /// The number of slots.
        max: u32,
    },
    /// A queue beyond [`crate::MAX_QUEUES`].
    #[error("queue {queue} is out of range: queues are 0..{max}")]
    QueueOutOfRange {
        /// The queue asked for.
        queue: u32,
        /// The number of queues.
        max: u32,
    },
    /// The route table has no room for another route.
    #[error("the flow route table is full ({capacity} routes)")]
    RouteTableFull {
        /// How many routes it holds.
        capacity: u32,
    },
    /// Removing a route that is not in the table.
    #[error("no flow route {0}")]
    RouteNotFound(FlowRoute),
    /// A route whose source is 0.0.0.0, which the table uses for "any
    /// source"; say `src: None` instead.
    #[error("flow route source 0.0.0.0 is ambiguous: use None for any source")]
    UnspecifiedSource,
    /// A drop probability outside 0..=1 (or NaN).
    #[error("drop probability {0} is not within 0..=1")]
    BadProbability(f64),
    /// Port 0, which the fault injector's configuration uses for "every
    /// port"; say `None` instead.
    #[error("UDP port 0 cannot be targeted: use None for every port")]
    BadPort,
    /// Every passive-liveness slot is taken.
    #[error("passive liveness watches at most {0} addresses")]
    WatchFull(u32),
    /// Mapping a map's memory into the process failed.
    #[error("mmap of map {map}: {source}")]
    Mmap {
        /// Which map.
        map: &'static str,
        /// The kernel's answer.
        source: std::io::Error,
    },
    /// Reading or writing a map failed.
    #[error("map {map}: {source}")]
    Map {
        /// Which map.
        map: &'static str,
        /// What aya reported.
        source: Box<aya::maps::MapError>,
    },
}

impl EbpfError {
    pub(crate) fn map(map: &'static str) -> impl FnOnce(aya::maps::MapError) -> Self {
        move |source| Self::Map {
            map,
            source: Box::new(source),
        }
    }

    pub(crate) fn program(
        program: &'static str,
    ) -> impl FnOnce(aya::programs::ProgramError) -> Self {
        move |source| Self::Program {
            program,
            source: Box::new(source),
        }
    }
}

/// The errno inside an aya map error, when it carries one.
pub(crate) fn map_errno(e: &aya::maps::MapError) -> Option<i32> {
    match e {
        aya::maps::MapError::SyscallError(s) => s.io_error.raw_os_error(),
        aya::maps::MapError::IoError(io) => io.raw_os_error(),
        _ => None,
    }
}
