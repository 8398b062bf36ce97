//! The address book of a consensus process: which [`NodeId`] is which UDP
//! address, and which addresses a [`Dest`] fans out to.
//!
//! Members are numbered from the static configuration, the same way in
//! every process and in the client library ([`coordinator_node`],
//! [`acceptor_node`], [`learner_node`]). Anyone else who writes to the
//! process (clients, the client library's learners) gets a node id from a
//! bounded table of *guests*, so that answers can find their way back. A
//! guest that sends a `Fetch` subscribes to decisions: for
//! [`SUBSCRIPTION`] after its last fetch it counts among the learners, so
//! the leader sends it its announcements of decided values and its
//! heartbeats. This is
//! how an application embedding a learner (libnfvinc's `Consensus`) follows
//! the log without being in the VNFs' configuration.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use dataplane::wire::{FrameSpec, MacAddr};

use crate::{Dest, NodeId};

/// How long a guest's fetch keeps it subscribed to decisions.
pub const SUBSCRIPTION: Duration = Duration::from_secs(1);
/// Most guests remembered at once; the longest silent one is forgotten.
pub const MAX_GUESTS: usize = 1024;
/// Node ids of guests start here.
const GUEST_BASE: u16 = 0x1000;

/// Node id of the coordinator at `index` in the configured list (rank
/// order); ballots and leader hints carry it.
pub fn coordinator_node(index: usize) -> NodeId {
    NodeId(1 + index as u16)
}

/// Node id of the acceptor in `slot`.
pub fn acceptor_node(slot: u16) -> NodeId {
    NodeId(0x100 + slot)
}

/// Node id of the learner at `index` in the configured list.
pub fn learner_node(index: usize) -> NodeId {
    NodeId(0x200 + index as u16)
}

/// The configured members of a consensus group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    /// Coordinators, in rank order.
    pub coordinators: Vec<SocketAddrV4>,
    /// Acceptors, by slot.
    pub acceptors: Vec<SocketAddrV4>,
    /// Learners.
    pub learners: Vec<SocketAddrV4>,
}

impl Members {
    /// Every member with its node id.
    pub fn all(&self) -> impl Iterator<Item = (NodeId, SocketAddrV4)> + '_ {
        let c = self
            .coordinators
            .iter()
            .enumerate()
            .map(|(i, a)| (coordinator_node(i), *a));
        let a = self
            .acceptors
            .iter()
            .enumerate()
            .map(|(i, a)| (acceptor_node(i as u16), *a));
        let l = self
            .learners
            .iter()
            .enumerate()
            .map(|(i, a)| (learner_node(i), *a));
        c.chain(a).chain(l)
    }
}

#[derive(Debug, Clone, Copy)]
struct Peer {
    addr: SocketAddrV4,
    /// The MAC to send to: the next hop towards it.
    mac: MacAddr,
    last_heard: Instant,
    subscribed_until: Option<Instant>,
}

/// The address book (see the module docs).
#[derive(Debug)]
pub struct Peers {
    me: NodeId,
    local: SocketAddrV4,
    local_mac: MacAddr,
    members: HashMap<NodeId, Peer>,
    guests: Vec<Option<Peer>>,
    by_addr: HashMap<SocketAddrV4, NodeId>,
    /// Per destination kind, the member ids it fans out to (self excluded).
    acceptors: Vec<NodeId>,
    coordinators: Vec<NodeId>,
    learners: Vec<NodeId>,
    everyone: Vec<NodeId>,
}

impl Peers {
    /// The book of member `me`, serving on `local` with MAC `local_mac`;
    /// `mac_of` gives the next-hop MAC of each member (zero on the kernel
    /// UDP backend, where the kernel routes).
    pub fn new(
        me: NodeId,
        local: SocketAddrV4,
        local_mac: MacAddr,
        members: &Members,
        mut mac_of: impl FnMut(SocketAddrV4) -> MacAddr,
    ) -> Self {
        let now = Instant::now();
        let mut book = Peers {
            me,
            local,
            local_mac,
            members: HashMap::new(),
            guests: Vec::new(),
            by_addr: HashMap::new(),
            acceptors: Vec::new(),
            coordinators: Vec::new(),
            learners: Vec::new(),
            everyone: Vec::new(),
        };
        for (id, addr) in members.all() {
            let mac = if id == me { local_mac } else { mac_of(addr) };
            book.members.insert(
                id,
                Peer {
                    addr,
                    mac,
                    last_heard: now,
                    subscribed_until: None,
                },
            );
            book.by_addr.insert(addr, id);
            if id == me {
                continue;
            }
            book.everyone.push(id);
            match id.0 {
                0x100..0x200 => book.acceptors.push(id),
                0x200..GUEST_BASE => book.learners.push(id),
                _ => {
                    book.coordinators.push(id);
                    book.learners.push(id);
                }
            }
        }
        book
    }

    /// This process's node id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// The node id of a sender, from a received frame: a member's, or a
    /// guest's (a new one for a new address). `fetch` marks a subscription.
    pub fn sender(&mut self, from: &FrameSpec, fetch: bool, now: Instant) -> NodeId {
        let addr = SocketAddrV4::new(from.dst_ip, from.dst_port);
        if let Some(&id) = self.by_addr.get(&addr) {
            let peer = if id.0 >= GUEST_BASE {
                self.guests[usize::from(id.0 - GUEST_BASE)].as_mut()
            } else {
                self.members.get_mut(&id)
            };
            if let Some(p) = peer {
                // Learn the next hop from what arrived (a member may have
                // been unresolved at start, a route may have changed).
                if from.dst_mac != [0; 6] {
                    p.mac = from.dst_mac;
                }
                p.last_heard = now;
                if fetch && id.0 >= GUEST_BASE {
                    p.subscribed_until = Some(now + SUBSCRIPTION);
                }
            }
            return id;
        }
        let peer = Peer {
            addr,
            mac: from.dst_mac,
            last_heard: now,
            subscribed_until: fetch.then_some(now + SUBSCRIPTION),
        };
        let slot = if self.guests.len() < MAX_GUESTS {
            self.guests.push(None);
            self.guests.len() - 1
        } else {
            let (i, _) = self
                .guests
                .iter()
                .enumerate()
                .min_by_key(|(_, g)| g.map(|g| g.last_heard))
                .expect("MAX_GUESTS > 0");
            if let Some(old) = self.guests[i] {
                self.by_addr.remove(&old.addr);
            }
            i
        };
        self.guests[slot] = Some(peer);
        let id = NodeId(GUEST_BASE + slot as u16);
        self.by_addr.insert(addr, id);
        id
    }

    /// The frame addresses to reach `id`, if it is known.
    pub fn spec(&self, id: NodeId) -> Option<FrameSpec> {
        let p = if id.0 >= GUEST_BASE {
            self.guests.get(usize::from(id.0 - GUEST_BASE))?.as_ref()?
        } else {
            self.members.get(&id)?
        };
        Some(FrameSpec {
            src_mac: self.local_mac,
            dst_mac: p.mac,
            src_ip: *self.local.ip(),
            dst_ip: *p.addr.ip(),
            src_port: self.local.port(),
            dst_port: p.addr.port(),
        })
    }

    /// The members `dest` names (self excluded); guests subscribed at `now`
    /// are added by [`Peers::subscriber`].
    pub fn members_of(&self, dest: Dest) -> &[NodeId] {
        match dest {
            Dest::Node(_) => &[],
            Dest::Acceptors => &self.acceptors,
            Dest::Coordinators => &self.coordinators,
            Dest::Learners => &self.learners,
            Dest::Everyone => &self.everyone,
        }
    }

    /// Whether `dest` also reaches subscribed guests.
    pub fn reaches_subscribers(dest: Dest) -> bool {
        matches!(dest, Dest::Learners | Dest::Everyone)
    }

    /// The first subscribed guest at or after guest index `from`, with its
    /// index.
    pub fn subscriber(&self, from: usize, now: Instant) -> Option<(usize, NodeId)> {
        self.guests
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, g)| g.is_some_and(|g| g.subscribed_until.is_some_and(|t| t > now)))
            .map(|(i, _)| (i, NodeId(GUEST_BASE + i as u16)))
    }

    /// Guests subscribed at `now`.
    pub fn subscribers(&self, now: Instant) -> usize {
        self.guests
            .iter()
            .filter(|g| g.is_some_and(|g| g.subscribed_until.is_some_and(|t| t > now)))
            .count()
    }

    /// Guests known.
    pub fn guests(&self) -> usize {
        self.guests.iter().filter(|g| g.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn addr(i: u8) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, i), 7400)
    }

    fn members() -> Members {
        Members {
            coordinators: vec![addr(1), addr(2)],
            acceptors: vec![addr(3), addr(4), addr(5)],
            learners: vec![addr(6)],
        }
    }

    fn from(a: SocketAddrV4) -> FrameSpec {
        FrameSpec {
            src_mac: [2; 6],
            dst_mac: [9; 6],
            src_ip: Ipv4Addr::new(10, 0, 0, 3),
            dst_ip: *a.ip(),
            src_port: 7400,
            dst_port: a.port(),
        }
    }

    #[test]
    fn destinations_fan_out_to_members_but_not_self() {
        let p = Peers::new(acceptor_node(0), addr(3), [1; 6], &members(), |_| [7; 6]);
        assert_eq!(
            p.members_of(Dest::Acceptors),
            &[acceptor_node(1), acceptor_node(2)]
        );
        assert_eq!(
            p.members_of(Dest::Learners),
            &[coordinator_node(0), coordinator_node(1), learner_node(0)]
        );
        assert_eq!(p.members_of(Dest::Everyone).len(), 5);
        let s = p.spec(coordinator_node(1)).unwrap();
        assert_eq!(
            (s.dst_ip, s.dst_mac, s.src_mac),
            (*addr(2).ip(), [7; 6], [1; 6])
        );
    }

    #[test]
    fn guests_get_ids_and_subscribe_by_fetching() {
        let mut p = Peers::new(coordinator_node(0), addr(1), [1; 6], &members(), |_| [7; 6]);
        let now = Instant::now();
        assert_eq!(p.sender(&from(addr(4)), false, now), acceptor_node(1));
        let g = SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 9), 5555);
        let id = p.sender(&from(g), false, now);
        assert!(id.0 >= GUEST_BASE);
        assert_eq!(p.sender(&from(g), false, now), id, "same address, same id");
        assert_eq!(p.spec(id).unwrap().dst_port, 5555);
        assert_eq!(p.subscriber(0, now), None);
        p.sender(&from(g), true, now);
        assert_eq!(p.subscriber(0, now), Some((0, id)));
        assert_eq!(p.subscriber(0, now + SUBSCRIPTION * 2), None, "lapses");
    }

    #[test]
    fn the_guest_table_is_bounded() {
        let mut p = Peers::new(coordinator_node(0), addr(1), [1; 6], &members(), |_| [0; 6]);
        let t0 = Instant::now();
        for i in 0..MAX_GUESTS + 10 {
            let g = SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 1), 1000 + i as u16);
            p.sender(&from(g), false, t0 + Duration::from_micros(i as u64));
        }
        assert_eq!(p.guests(), MAX_GUESTS);
        assert!(p.by_addr.len() <= MAX_GUESTS + members().all().count());
    }
}
