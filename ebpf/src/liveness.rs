//! Passive liveness (`bpf/liveness.c`): when each watched source address
//! last sent a packet through the NFVI ports, read without a system call.
//!
//! One copy of the program runs on each port ([`Liveness::attach`]), each
//! with its own maps; a watched address has the same slot in every copy,
//! and [`Liveness::last_seen`] takes the latest time over the ports. Each
//! copy's `last_seen` array is mapped into this process, so that reading a
//! slot is one memory load: the failure detector scans every watched
//! process each millisecond, and a `bpf(MAP_LOOKUP)` per process would cost
//! more than the detector itself.

use std::collections::HashMap as StdHashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use aya::maps::{HashMap, Map, MapData};

use crate::attach::{AttachMode, Attached};
use crate::counters::Counters;
use crate::error::EbpfError;

/// Addresses that can be watched at once (`MAX_WATCHED` in liveness.c).
pub const MAX_WATCHED: u32 = 65_536;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/liveness.o"));

const PROGRAM: &str = "liveness";
const WATCHED: &str = "watched";
const LAST_SEEN: &str = "last_seen";
const COUNTERS: &str = "counters";

// Indices into `counters`, as `enum liveness_counter` in liveness.c.
const SEEN: u32 = 0;
const OTHER: u32 = 1;

/// What the liveness programs saw, summed over ports, since attached.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LivenessCounters {
    /// Frames from a watched source.
    pub seen: u64,
    /// Every other frame.
    pub other: u64,
}

/// A slot's `last_seen` array, mapped into this process.
struct SeenMap {
    base: NonNull<AtomicU64>,
    len: usize,
    // Keeps the map (and so the mapping's backing) alive.
    _map: MapData,
}

// SAFETY: the mapping is shared memory owned by the kernel for as long as
// `_map` holds the map; it is only accessed through atomics.
unsafe impl Send for SeenMap {}

impl SeenMap {
    fn new(map: Map) -> Result<Self, EbpfError> {
        let Map::Array(data) = map else {
            return Err(EbpfError::ObjectMismatch {
                program: PROGRAM,
                what: format!("{LAST_SEEN} is not an array"),
            });
        };
        let len = MAX_WATCHED as usize * size_of::<u64>();
        // SAFETY: mapping a BPF array created with BPF_F_MMAPABLE, whose
        // size is MAX_WATCHED u64 values (a multiple of the page size); the
        // kernel refuses (EINVAL) if the flag is missing.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(EbpfError::Mmap {
                map: LAST_SEEN,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Self {
            base: NonNull::new(p.cast()).ok_or(EbpfError::Mmap {
                map: LAST_SEEN,
                source: std::io::Error::other("mmap returned null"),
            })?,
            len,
            _map: data,
        })
    }

    fn slot(&self, slot: u32) -> &AtomicU64 {
        debug_assert!(slot < MAX_WATCHED);
        // SAFETY: callers pass slots below MAX_WATCHED, inside the mapping;
        // u64 values in a page-aligned mapping are 8-byte aligned.
        unsafe { &*self.base.as_ptr().add(slot as usize) }
    }
}

impl Drop for SeenMap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// The program on one port.
struct Port {
    watched: HashMap<MapData, [u8; 4], u32>,
    seen: SeenMap,
    counters: Counters,
    attached: Attached,
}

/// Passive liveness over a set of ports. Detaches from every port when
/// dropped (or when the process dies: bpf_link).
pub struct Liveness {
    ports: Vec<Port>,
    slots: StdHashMap<Ipv4Addr, u32>,
    free: Vec<u32>,
    next: u32,
}

impl fmt::Debug for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Liveness")
            .field(
                "ports",
                &self
                    .ports
                    .iter()
                    .map(|p| p.attached.ifindex())
                    .collect::<Vec<_>>(),
            )
            .field("watched", &self.slots.len())
            .finish()
    }
}

impl Default for Liveness {
    fn default() -> Self {
        Self::new()
    }
}

impl Liveness {
    /// Watches nothing, on no port yet.
    pub fn new() -> Self {
        Self {
            ports: Vec::new(),
            slots: StdHashMap::new(),
            free: Vec::new(),
            next: 0,
        }
    }

    /// Attaches the program to interface `ifindex` of the calling thread's
    /// network namespace (a caller may enter the NFVI namespace with setns,
    /// attach, and come back: the attachment stays where it was made), and
    /// watches there every address watched so far.
    pub fn attach(&mut self, ifindex: u32, mode: AttachMode) -> Result<(), EbpfError> {
        let mut attached = Attached::new(PROGRAM, OBJECT, ifindex, mode)?;
        let watched =
            HashMap::try_from(attached.take_map(WATCHED)?).map_err(EbpfError::map(WATCHED))?;
        let seen = SeenMap::new(attached.take_map(LAST_SEEN)?)?;
        let counters = Counters::new(attached.take_map(COUNTERS)?, COUNTERS)?;
        let mut port = Port {
            watched,
            seen,
            counters,
            attached,
        };
        for (addr, slot) in &self.slots {
            port.watched
                .insert(addr.octets(), slot, 0)
                .map_err(EbpfError::map(WATCHED))?;
        }
        tracing::debug!(ifindex, mode = ?port.attached.mode(), "liveness program attached");
        self.ports.push(port);
        Ok(())
    }

    /// Starts recording packets from `addr`; returns its slot (the same
    /// slot when it is watched already).
    pub fn watch(&mut self, addr: Ipv4Addr) -> Result<u32, EbpfError> {
        if let Some(&slot) = self.slots.get(&addr) {
            return Ok(slot);
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None if self.next < MAX_WATCHED => {
                self.next += 1;
                self.next - 1
            }
            None => return Err(EbpfError::WatchFull(MAX_WATCHED)),
        };
        for p in &mut self.ports {
            // A reused slot must not report its previous owner's packets.
            p.seen.slot(slot).store(0, Ordering::Relaxed);
            if let Err(e) = p.watched.insert(addr.octets(), slot, 0) {
                self.free.push(slot);
                return Err(EbpfError::map(WATCHED)(e));
            }
        }
        self.slots.insert(addr, slot);
        Ok(slot)
    }

    /// Stops recording packets from `addr`; unknown addresses are ignored.
    pub fn unwatch(&mut self, addr: Ipv4Addr) {
        let Some(slot) = self.slots.remove(&addr) else {
            return;
        };
        for p in &mut self.ports {
            if let Err(e) = p.watched.remove(&addr.octets()) {
                tracing::warn!(%addr, error = %e, "removing a watched address failed");
            }
        }
        self.free.push(slot);
    }

    /// When the source in `slot` last sent a packet through any port, in
    /// nanoseconds of `CLOCK_MONOTONIC`; `None` if never (since watched).
    #[inline]
    pub fn last_seen(&self, slot: u32) -> Option<u64> {
        if slot >= MAX_WATCHED {
            return None;
        }
        let t = self
            .ports
            .iter()
            .map(|p| p.seen.slot(slot).load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        (t != 0).then_some(t)
    }

    /// The port (interface index) that saw the source in `slot` last, and
    /// when: where a process sits, learned from its own traffic.
    pub fn last_port(&self, slot: u32) -> Option<(u32, u64)> {
        if slot >= MAX_WATCHED {
            return None;
        }
        self.ports
            .iter()
            .map(|p| {
                (
                    p.attached.ifindex(),
                    p.seen.slot(slot).load(Ordering::Relaxed),
                )
            })
            .filter(|&(_, t)| t != 0)
            .max_by_key(|&(_, t)| t)
    }

    /// Frames seen, summed over ports.
    pub fn counters(&self) -> Result<LivenessCounters, EbpfError> {
        let mut c = LivenessCounters::default();
        for p in &self.ports {
            c.seen += p.counters.total(SEEN)?;
            c.other += p.counters.total(OTHER)?;
        }
        Ok(c)
    }

    /// The interfaces it is attached to.
    pub fn ports(&self) -> impl Iterator<Item = u32> + '_ {
        self.ports.iter().map(|p| p.attached.ifindex())
    }
}
