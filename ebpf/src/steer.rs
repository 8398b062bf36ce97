//! The flow-steering program (`bpf/steer.c`) and its handle.

use std::fmt;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd};

use aya::Pod;
use aya::maps::{HashMap, Map, MapData, XskMap};

use crate::attach::{AttachMode, Attached};
use crate::counters::{Counters, SteerCounters};
use crate::error::{EbpfError, map_errno};

/// Receive queues per interface that the socket map has room for.
pub const MAX_QUEUES: u32 = 64;
/// Instance slots that the socket map has room for.
pub const MAX_SLOTS: u32 = 64;
/// Flow routes the route table holds (`flow_routes` in `steer.c`).
pub const MAX_ROUTES: u32 = 4096;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steer.o"));

const PROGRAM: &str = "steer";
const ROUTES: &str = "flow_routes";
const XSKS: &str = "xsks";
const COUNTERS: &str = "counters";

// Indices into `counters`, as `enum steer_counter` in steer.c.
const REDIRECTED: u32 = 0;
const PASSED: u32 = 1;
const DROPPED: u32 = 2;

/// A UDP flow the steering program hands to the dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowRoute {
    /// Destination IPv4 address (the NFVI host's address on the interface).
    pub dst: Ipv4Addr,
    /// Destination UDP port.
    pub dst_port: u16,
    /// Only datagrams from this source, or from any source when `None`. A
    /// route with a source wins over one without.
    pub src: Option<Ipv4Addr>,
}

impl fmt::Display for FlowRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "udp {}:{} from ", self.dst, self.dst_port)?;
        match self.src {
            Some(src) => write!(f, "{src}"),
            None => f.write_str("any source"),
        }
    }
}

/// `struct route_key` in steer.c.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RouteKey {
    dst: [u8; 4],
    src: [u8; 4],
    dst_port: [u8; 2],
    pad: u16,
}

// SAFETY: repr(C), plain integers and byte arrays with no padding (12 bytes,
// every field naturally aligned), so every bit pattern is valid.
unsafe impl Pod for RouteKey {}

/// `struct route_value` in steer.c.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct RouteValue {
    slot: u32,
}

// SAFETY: repr(C) around one u32.
unsafe impl Pod for RouteValue {}

impl RouteKey {
    fn from_route(route: &FlowRoute) -> Result<Self, EbpfError> {
        let src = match route.src {
            Some(src) if src.is_unspecified() => return Err(EbpfError::UnspecifiedSource),
            Some(src) => src.octets(),
            None => [0; 4],
        };
        Ok(Self {
            dst: route.dst.octets(),
            src,
            dst_port: route.dst_port.to_be_bytes(),
            pad: 0,
        })
    }

    fn to_route(self) -> FlowRoute {
        let src = Ipv4Addr::from(self.src);
        FlowRoute {
            dst: Ipv4Addr::from(self.dst),
            dst_port: u16::from_be_bytes(self.dst_port),
            src: (!src.is_unspecified()).then_some(src),
        }
    }
}

/// The steering program attached to one interface, with its route table,
/// socket map and counters. Detaches when dropped; if the process dies
/// instead, the kernel detaches it (it is attached through a bpf_link).
///
/// Frames of routed UDP flows go to the AF_XDP socket registered for the
/// route's slot and the queue they arrived on, or are dropped when there is
/// none (the kernel has no listener for them). All other frames go on to
/// the kernel.
pub struct Steering {
    routes: HashMap<MapData, RouteKey, RouteValue>,
    xsks: Map,
    counters: Counters,
    attached: Attached,
}

impl fmt::Debug for Steering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Steering")
            .field("ifindex", &self.attached.ifindex())
            .field("mode", &self.attached.mode())
            .finish_non_exhaustive()
    }
}

impl Steering {
    /// Loads the steering program and attaches it to interface `ifindex` of
    /// the calling thread's network namespace, with no routes.
    ///
    /// A program attached to the interface the old way (netlink, e.g. by
    /// `ip link set dev X xdp obj ...` or by an older version of us) is
    /// removed first and logged. A program held by a live bpf_link (another
    /// running owner, or our own fault injector) makes this fail with
    /// [`EbpfError::Busy`].
    pub fn attach(ifindex: u32, mode: AttachMode) -> Result<Steering, EbpfError> {
        let mut attached = Attached::new(PROGRAM, OBJECT, ifindex, mode)?;
        let routes =
            HashMap::try_from(attached.take_map(ROUTES)?).map_err(EbpfError::map(ROUTES))?;
        let mut xsks = attached.take_map(XSKS)?;
        let len = XskMap::try_from(&mut xsks)
            .map_err(EbpfError::map(XSKS))?
            .len();
        if len != MAX_SLOTS * MAX_QUEUES {
            return Err(EbpfError::ObjectMismatch {
                program: PROGRAM,
                what: format!("{XSKS} has {len} entries, expected MAX_SLOTS * MAX_QUEUES"),
            });
        }
        let counters = Counters::new(attached.take_map(COUNTERS)?, COUNTERS)?;
        tracing::info!(ifindex, mode = ?attached.mode(), "steering program attached");
        Ok(Steering {
            routes,
            xsks,
            counters,
            attached,
        })
    }

    /// Registers the AF_XDP socket that receives slot `slot`'s frames
    /// arriving on receive queue `queue`; the socket must be bound to that
    /// queue of this interface, or the kernel drops what is redirected to it.
    /// Replaces an earlier registration.
    pub fn register_socket(
        &mut self,
        slot: u32,
        queue: u32,
        xsk_fd: BorrowedFd<'_>,
    ) -> Result<(), EbpfError> {
        let index = socket_index(slot, queue)?;
        XskMap::try_from(&mut self.xsks)
            .map_err(EbpfError::map(XSKS))?
            .set(index, xsk_fd, 0)
            .map_err(EbpfError::map(XSKS))
    }

    /// Removes the socket for slot `slot` on queue `queue`; from then on that
    /// slot's frames arriving on that queue are dropped. Removing a socket
    /// that is not registered does nothing.
    pub fn unregister_socket(&mut self, slot: u32, queue: u32) -> Result<(), EbpfError> {
        let index = socket_index(slot, queue)?;
        let Map::XskMap(data) = &self.xsks else {
            return Err(EbpfError::ObjectMismatch {
                program: PROGRAM,
                what: format!("{XSKS} is not an XSKMAP"),
            });
        };
        // Deleting an empty XSKMAP entry succeeds, which makes this idempotent.
        crate::sys::map_delete(data.fd().as_fd(), &index).map_err(|io_error| EbpfError::Map {
            map: XSKS,
            source: Box::new(aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                call: "bpf_map_delete_elem",
                io_error,
            })),
        })
    }

    /// Steers `route` to `slot`, replacing the slot of an existing route.
    pub fn add_route(&mut self, route: FlowRoute, slot: u32) -> Result<(), EbpfError> {
        if slot >= MAX_SLOTS {
            return Err(EbpfError::SlotOutOfRange {
                slot,
                max: MAX_SLOTS,
            });
        }
        let key = RouteKey::from_route(&route)?;
        self.routes
            .insert(key, RouteValue { slot }, 0)
            .map_err(|e| match map_errno(&e) {
                Some(libc::E2BIG) => EbpfError::RouteTableFull {
                    capacity: MAX_ROUTES,
                },
                _ => EbpfError::map(ROUTES)(e),
            })
    }

    /// Stops steering `route`; [`EbpfError::RouteNotFound`] if it was not
    /// steered.
    pub fn remove_route(&mut self, route: &FlowRoute) -> Result<(), EbpfError> {
        let key = RouteKey::from_route(route)?;
        self.routes.remove(&key).map_err(|e| match map_errno(&e) {
            Some(libc::ENOENT) => EbpfError::RouteNotFound(*route),
            _ => EbpfError::map(ROUTES)(e),
        })
    }

    /// Every route with its slot, in no particular order.
    pub fn routes(&self) -> Result<Vec<(FlowRoute, u32)>, EbpfError> {
        self.routes
            .iter()
            .map(|r| {
                r.map(|(k, v)| (k.to_route(), v.slot))
                    .map_err(EbpfError::map(ROUTES))
            })
            .collect()
    }

    /// The program's counters, summed over CPUs.
    pub fn counters(&self) -> Result<SteerCounters, EbpfError> {
        Ok(SteerCounters {
            redirected: self.counters.total(REDIRECTED)?,
            passed: self.counters.total(PASSED)?,
            dropped: self.counters.total(DROPPED)?,
        })
    }

    /// The interface the program is attached to.
    pub fn ifindex(&self) -> u32 {
        self.attached.ifindex()
    }

    /// The mode the program runs in: [`AttachMode::Driver`] or
    /// [`AttachMode::Generic`], never `Auto`.
    pub fn attach_mode(&self) -> AttachMode {
        self.attached.mode()
    }
}

/// The socket map index of (slot, queue), as steer.c computes it.
fn socket_index(slot: u32, queue: u32) -> Result<u32, EbpfError> {
    if slot >= MAX_SLOTS {
        return Err(EbpfError::SlotOutOfRange {
            slot,
            max: MAX_SLOTS,
        });
    }
    if queue >= MAX_QUEUES {
        return Err(EbpfError::QueueOutOfRange {
            queue,
            max: MAX_QUEUES,
        });
    }
    Ok(slot * MAX_QUEUES + queue)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout_matches_c() {
        assert_eq!(std::mem::size_of::<RouteKey>(), 12);
        let route = FlowRoute {
            dst: Ipv4Addr::new(198, 18, 0, 2),
            dst_port: 0x1f40,
            src: Some(Ipv4Addr::new(198, 18, 0, 1)),
        };
        let key = RouteKey::from_route(&route).unwrap();
        // Network order throughout, as the packet carries it.
        assert_eq!(key.dst, [198, 18, 0, 2]);
        assert_eq!(key.src, [198, 18, 0, 1]);
        assert_eq!(key.dst_port, [0x1f, 0x40]);
        assert_eq!(key.to_route(), route);
    }

    #[test]
    fn any_source_is_zero_and_zero_source_is_refused() {
        let mut route = FlowRoute {
            dst: Ipv4Addr::new(10, 0, 0, 1),
            dst_port: 9000,
            src: None,
        };
        let key = RouteKey::from_route(&route).unwrap();
        assert_eq!(key.src, [0; 4]);
        assert_eq!(key.to_route().src, None);
        route.src = Some(Ipv4Addr::UNSPECIFIED);
        assert!(matches!(
            RouteKey::from_route(&route),
            Err(EbpfError::UnspecifiedSource)
        ));
    }

    #[test]
    fn socket_index_bounds() {
        assert_eq!(socket_index(0, 0).unwrap(), 0);
        assert_eq!(socket_index(2, 5).unwrap(), 2 * 64 + 5);
        assert_eq!(
            socket_index(MAX_SLOTS - 1, MAX_QUEUES - 1).unwrap(),
            MAX_SLOTS * MAX_QUEUES - 1
        );
        assert!(matches!(
            socket_index(MAX_SLOTS, 0),
            Err(EbpfError::SlotOutOfRange { slot: 64, max: 64 })
        ));
        assert!(matches!(
            socket_index(0, MAX_QUEUES),
            Err(EbpfError::QueueOutOfRange { queue: 64, max: 64 })
        ));
    }

    #[test]
    fn route_display() {
        let r = FlowRoute {
            dst: Ipv4Addr::new(198, 18, 0, 2),
            dst_port: 7000,
            src: None,
        };
        assert_eq!(r.to_string(), "udp 198.18.0.2:7000 from any source");
    }
}
