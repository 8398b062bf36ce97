//! Deadlines in a hashed timer wheel of intrusive lists, re-armed lazily.
//!
//! Each process that has a deadline has one timer, whose time is a lower
//! bound of the deadline. A heartbeat pushes the deadline later without
//! touching the timers; when the timer comes to the front (in
//! [`Timers::settle`]) or comes due (in [`Timers::drain_due`]), it is
//! compared with the process's current deadline and moved there. So a
//! heartbeat costs nothing here, and the timers see about one move per
//! process per interval, however many inputs arrive.
//!
//! Those moves happen at the heartbeat rate, so their cost matters as much
//! as a heartbeat's. A binary heap spent more on sifting (O(log n), with
//! unpredictable branches) than the detector spent on the heartbeats
//! themselves; a wheel of `Vec`s still spent about a hundred instructions a
//! move. Here the processes are the list nodes (one `Node` per process
//! slot, in one array), and a slot of the wheel is the head of a singly
//! linked list: a move unlinks a node from the list being walked and
//! pushes it on another list's head, a handful of stores in two small
//! arrays.
//!
//! Slots are 2^16 ns (about 66 µs) wide and the wheel spans 1,024 of them
//! (about 67 ms: the deadlines of heartbeats up to about 50 ms apart).
//! Timers beyond the span (intervals of seconds) wait in a heap, where they
//! are rare, and move into the wheel as it turns; a heap entry is valid
//! while its node still says it is in the heap at that time. Times stay
//! exact: a slot groups timers, it does not round them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Width of a slot: 2^16 ns, about 66 µs.
const SLOT_SHIFT: u32 = 16;
/// Number of slots.
const SLOTS: usize = 1024;
const MASK: u64 = SLOTS as u64 - 1;
/// "No node": the end of a list.
const NIL: u32 = u32::MAX;
/// `Node::list` of a node in no list.
const UNLINKED: u16 = u16::MAX;
/// `Node::list` of a node in the overflow heap.
const FAR: u16 = u16::MAX - 1;

/// One process's timer.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// When, in nanoseconds.
    at: u64,
    /// Next node in the same wheel slot.
    next: u32,
    /// The wheel slot whose list holds it, or `FAR` or `UNLINKED`.
    list: u16,
}

impl Node {
    const UNLINKED: Node = Node {
        at: 0,
        next: NIL,
        list: UNLINKED,
    };
}

/// The wheel and its overflow heap.
#[derive(Debug)]
pub(crate) struct Timers {
    /// Timers by process slot.
    nodes: Vec<Node>,
    /// First node of each wheel slot's list (an array, so that indices
    /// masked below `SLOTS` need no bounds check).
    heads: Box<[u32; SLOTS]>,
    /// Bit `i` set when `heads[i]` is not `NIL`.
    occupied: [u64; SLOTS / 64],
    /// Slot number (time divided by the width) of the earliest slot that
    /// may hold timers; the wheel holds slot numbers `cursor..cursor +
    /// SLOTS`, so each physical slot holds one slot number.
    cursor: u64,
    /// Timers at or beyond `cursor + SLOTS`, with stale entries.
    far: BinaryHeap<Reverse<(u64, u32)>>,
    /// Nodes in the heap (its entries that are not stale).
    far_nodes: usize,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            heads: Box::new([NIL; SLOTS]),
            occupied: [0; SLOTS / 64],
            cursor: 0,
            far: BinaryHeap::new(),
            far_nodes: 0,
        }
    }
}

impl Timers {
    /// Makes room for processes up to slot `p`.
    pub(crate) fn ensure(&mut self, p: u32) {
        let need = p as usize + 1;
        if self.nodes.len() < need {
            self.nodes.resize(need, Node::UNLINKED);
        }
    }

    /// The time of process `p`'s timer, if it has one.
    #[cfg(test)]
    pub(crate) fn armed(&self, p: u32) -> Option<u64> {
        self.nodes
            .get(p as usize)
            .filter(|n| n.list != UNLINKED)
            .map(|n| n.at)
    }

    /// Sets process `p`'s timer to `at`, wherever it was.
    pub(crate) fn set(&mut self, p: u32, at: u64) {
        self.clear(p);
        self.insert(p, at);
    }

    /// Removes process `p`'s timer, if any.
    pub(crate) fn clear(&mut self, p: u32) {
        let Some(&n) = self.nodes.get(p as usize) else {
            return;
        };
        match n.list {
            UNLINKED => return,
            // The heap entry goes stale and is dropped when it surfaces.
            FAR => self.far_nodes -= 1,
            w => self.unlink_walk(w as usize, p),
        }
        self.nodes[p as usize].list = UNLINKED;
    }

    /// Unlinks `p` from wheel slot `w`, finding its predecessor: slot
    /// lists are short (the processes whose deadlines fall in the same
    /// 66 µs), and this is only for timers moved earlier or dropped.
    fn unlink_walk(&mut self, w: usize, p: u32) {
        let mut prev = NIL;
        let mut cur = self.heads[w];
        while cur != NIL && cur != p {
            prev = cur;
            cur = self.nodes[cur as usize].next;
        }
        if cur == p {
            self.unlink(w, prev, p);
        }
    }

    /// Unlinks `p`, whose predecessor in wheel slot `w` is `prev`.
    #[inline]
    fn unlink(&mut self, w: usize, prev: u32, p: u32) {
        let w = w & (SLOTS - 1);
        let next = self.nodes[p as usize].next;
        if prev == NIL {
            self.heads[w] = next;
            if next == NIL {
                self.occupied[w / 64] &= !(1 << (w % 64));
            }
        } else {
            self.nodes[prev as usize].next = next;
        }
        self.nodes[p as usize].list = UNLINKED;
    }

    /// The wheel slot a timer at `at` belongs in; `None` beyond the span.
    #[inline]
    fn list_of(&self, at: u64) -> Option<usize> {
        let n = (at >> SLOT_SHIFT).max(self.cursor);
        (n - self.cursor < SLOTS as u64).then_some((n & MASK) as usize)
    }

    /// Puts an unlinked `p` at `at`: on the head of its slot's list, or in
    /// the heap beyond the span. A time already past goes into the current
    /// slot, where the next drain finds it due.
    #[inline]
    fn insert(&mut self, p: u32, at: u64) {
        self.ensure(p);
        match self.list_of(at) {
            Some(w) => self.push_front(w, p, at),
            None => self.push_far(p, at),
        }
    }

    /// Puts an unlinked `p` at `at` on the head of wheel slot `w`'s list.
    #[inline]
    fn push_front(&mut self, w: usize, p: u32, at: u64) {
        let w = w & (SLOTS - 1);
        let Some(node) = self.nodes.get_mut(p as usize) else {
            return;
        };
        let head = self.heads[w];
        *node = Node {
            at,
            next: head,
            list: w as u16,
        };
        self.heads[w] = p;
        if head == NIL {
            self.occupied[w / 64] |= 1 << (w % 64);
        }
    }

    /// Puts an unlinked `p` at `at` in the heap.
    fn push_far(&mut self, p: u32, at: u64) {
        let Some(node) = self.nodes.get_mut(p as usize) else {
            return;
        };
        node.at = at;
        node.list = FAR;
        self.far_nodes += 1;
        self.far.push(Reverse((at, p)));
        if self.far.len() > 2 * self.far_nodes + 64 {
            let nodes = &self.nodes;
            self.far.retain(|&Reverse((at, p))| is_far(nodes, p, at));
        }
    }

    /// Brings the earliest timers up to date and returns the earliest time.
    ///
    /// `deadline` gives a process's current deadline (`None`: it has none).
    /// Timers at the front are dropped or moved to their process's
    /// deadline until the earliest slot holds only timers that stand.
    pub(crate) fn settle(&mut self, mut deadline: impl FnMut(u32) -> Option<u64>) -> Option<u64> {
        self.turn();
        while let Some(w) = self.first_slot() {
            let mut min = u64::MAX;
            let (mut prev, mut p) = (NIL, self.heads[w]);
            while p != NIL {
                let Node { at, next, .. } = self.nodes[p as usize];
                match deadline(p) {
                    Some(d) if d == at => {
                        min = min.min(at);
                        prev = p;
                    }
                    Some(d) => match self.list_of(d) {
                        // Within the same slot the node stays where it is
                        // (and must: pushed back on this list's head, it
                        // would not be counted in `min`).
                        Some(v) if v == w => {
                            self.nodes[p as usize].at = d;
                            min = min.min(d);
                            prev = p;
                        }
                        Some(v) => {
                            self.unlink(w, prev, p);
                            self.push_front(v, p, d);
                        }
                        None => {
                            self.unlink(w, prev, p);
                            self.push_far(p, d);
                        }
                    },
                    None => self.unlink(w, prev, p),
                }
                p = next;
            }
            if min != u64::MAX {
                return Some(min);
            }
        }
        while let Some(&Reverse((at, p))) = self.far.peek() {
            if !is_far(&self.nodes, p, at) {
                self.far.pop();
                continue;
            }
            match deadline(p) {
                Some(d) if d == at => return Some(at),
                d => {
                    self.far.pop();
                    self.far_nodes -= 1;
                    self.nodes[p as usize].list = UNLINKED;
                    if let Some(d) = d {
                        self.insert(p, d);
                    }
                }
            }
        }
        None
    }

    /// Hands every process whose timer is due at `now` (time at or before
    /// it) to the deadline check, and turns the wheel to `now`.
    ///
    /// `deadline` gives a process's current deadline. Timers whose
    /// deadline is at or before `now` are removed and their processes
    /// pushed on `expired` with that deadline; timers whose deadline moved
    /// later follow it; the others are dropped.
    pub(crate) fn drain_due(
        &mut self,
        now: u64,
        mut deadline: impl FnMut(u32) -> Option<u64>,
        expired: &mut Vec<(u64, u32)>,
    ) {
        let target = now >> SLOT_SHIFT;
        // Slots before `target` are entirely due, `target` partly; if time
        // went back, only the current slot can hold anything due.
        let (from, steps) = if target >= self.cursor {
            (self.cursor, (target - self.cursor + 1).min(SLOTS as u64))
        } else {
            (self.cursor, 1)
        };
        for n in from..from + steps {
            let w = (n & MASK) as usize;
            if self.occupied[w / 64] & (1 << (w % 64)) == 0 {
                continue;
            }
            let (mut prev, mut p) = (NIL, self.heads[w]);
            while p != NIL {
                let Node { at, next, .. } = self.nodes[p as usize];
                if at > now {
                    prev = p;
                    p = next;
                    continue;
                }
                match deadline(p) {
                    // Within the same slot the node stays where it is (and
                    // must: pushed back on this list's head, it would be
                    // before `prev`, which would then be wrong).
                    Some(d) if d > now && self.list_of(d) == Some(w) => {
                        self.nodes[p as usize].at = d;
                        prev = p;
                    }
                    d => {
                        self.unlink(w, prev, p);
                        match d {
                            Some(d) if d <= now => expired.push((d, p)),
                            Some(d) => self.insert(p, d),
                            None => {}
                        }
                    }
                }
                p = next;
            }
        }
        self.cursor = self.cursor.max(target);
        while let Some(&Reverse((at, p))) = self.far.peek() {
            if (at >> SLOT_SHIFT) >= self.cursor + SLOTS as u64 {
                break;
            }
            self.far.pop();
            if !is_far(&self.nodes, p, at) {
                continue;
            }
            self.far_nodes -= 1;
            self.nodes[p as usize].list = UNLINKED;
            if at > now {
                self.insert(p, at);
                continue;
            }
            match deadline(p) {
                Some(d) if d <= now => expired.push((d, p)),
                Some(d) => self.insert(p, d),
                None => {}
            }
        }
    }

    /// Turns the wheel, without `now`, as far as its earliest timer: none
    /// lies before it, so nothing is skipped, and heap timers that come
    /// within the span move in. Without this, a shell that only ever calls
    /// `poll_timeout` (deadlines keep moving, none passes) would leave the
    /// wheel behind and every timer in the heap.
    fn turn(&mut self) {
        let target = match self.first_slot() {
            Some(w) => self.cursor + ((w as u64).wrapping_sub(self.cursor) & MASK),
            None => match self.far.peek() {
                Some(&Reverse((at, _))) => at >> SLOT_SHIFT,
                None => return,
            },
        };
        if target <= self.cursor {
            return;
        }
        self.cursor = target;
        while let Some(&Reverse((at, p))) = self.far.peek() {
            if (at >> SLOT_SHIFT) >= self.cursor + SLOTS as u64 {
                break;
            }
            self.far.pop();
            if is_far(&self.nodes, p, at) {
                self.far_nodes -= 1;
                self.nodes[p as usize].list = UNLINKED;
                self.insert(p, at);
            }
        }
    }

    /// Index of the earliest non-empty wheel slot.
    fn first_slot(&self) -> Option<usize> {
        let start = (self.cursor & MASK) as usize;
        let words = SLOTS / 64;
        let (w0, b0) = (start / 64, start % 64);
        // The start word twice: its high bits first, its low bits (the
        // slots one lap later) last.
        let first = self.occupied[w0] & (!0u64 << b0);
        if first != 0 {
            return Some(w0 * 64 + first.trailing_zeros() as usize);
        }
        for k in 1..=words {
            let w = (w0 + k) % words;
            let mut bits = self.occupied[w];
            if k == words {
                bits &= !(!0u64 << b0);
            }
            if bits != 0 {
                return Some(w * 64 + bits.trailing_zeros() as usize);
            }
        }
        None
    }
}

/// Whether a heap entry is current: its node is in the heap at that time.
fn is_far(nodes: &[Node], p: u32, at: u64) -> bool {
    nodes
        .get(p as usize)
        .is_some_and(|n| n.list == FAR && n.at == at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOT_NS: u64 = 1 << SLOT_SHIFT;
    const SPAN_NS: u64 = SLOT_NS * SLOTS as u64;

    /// Timers whose process's deadline is its timer's time, for these
    /// tests: `deadlines[p]`.
    fn fixed(deadlines: &[Option<u64>]) -> impl FnMut(u32) -> Option<u64> + '_ {
        |p| deadlines[p as usize]
    }

    #[test]
    fn drains_exactly_what_is_due() {
        let mut t = Timers::default();
        let times = [
            5,
            SLOT_NS + 1,
            SLOT_NS + 9,
            3 * SLOT_NS,
            SPAN_NS * 3,
            SPAN_NS * 3 + 1,
        ];
        let d: Vec<_> = times.iter().map(|&x| Some(x)).collect();
        for (p, &at) in times.iter().enumerate() {
            t.set(p as u32, at);
        }
        let mut out = Vec::new();
        t.drain_due(SLOT_NS + 5, fixed(&d), &mut out);
        out.sort();
        assert_eq!(out, [(5, 0), (SLOT_NS + 1, 1)]);
        assert_eq!((t.armed(0), t.armed(2)), (None, Some(SLOT_NS + 9)));
        out.clear();
        t.drain_due(SPAN_NS * 3, fixed(&d), &mut out);
        out.sort();
        assert_eq!(out, [(SLOT_NS + 9, 2), (3 * SLOT_NS, 3), (SPAN_NS * 3, 4)]);
        out.clear();
        t.drain_due(u64::MAX, fixed(&d), &mut out);
        assert_eq!(out, [(SPAN_NS * 3 + 1, 5)]);
        assert_eq!(t.settle(fixed(&d)), None);
    }

    #[test]
    fn due_timers_follow_deadlines_that_moved() {
        let mut t = Timers::default();
        t.set(0, 10);
        t.set(1, 20);
        let mut out = Vec::new();
        // 0 moved to 2 slots later, 1 has no deadline any more.
        let d = [Some(2 * SLOT_NS), None];
        t.drain_due(30, fixed(&d), &mut out);
        assert!(out.is_empty());
        assert_eq!((t.armed(0), t.armed(1)), (Some(2 * SLOT_NS), None));
        t.drain_due(2 * SLOT_NS, fixed(&d), &mut out);
        assert_eq!(out, [(2 * SLOT_NS, 0)]);
    }

    #[test]
    fn settle_drops_and_moves_until_a_timer_stands() {
        let mut t = Timers::default();
        for (p, at) in [(0, 10), (1, 20), (2, SLOT_NS + 5), (3, SPAN_NS * 2)] {
            t.set(p, at);
        }
        // 0 has no deadline, 1 moved within its slot to 30, which stands.
        let mut d = vec![None, Some(30), Some(SLOT_NS + 5), Some(SPAN_NS * 2)];
        assert_eq!(t.settle(fixed(&d)), Some(30));
        assert_eq!(t.armed(0), None);
        // 1 moves past 2.
        d[1] = Some(5 * SLOT_NS);
        assert_eq!(t.settle(fixed(&d)), Some(SLOT_NS + 5));
        d[1] = None;
        d[2] = None;
        assert_eq!(t.settle(fixed(&d)), Some(SPAN_NS * 2));
        d[3] = Some(SPAN_NS * 5);
        assert_eq!(t.settle(fixed(&d)), Some(SPAN_NS * 5));
        d[3] = None;
        assert_eq!(t.settle(fixed(&d)), None);
    }

    #[test]
    fn set_and_clear_anywhere() {
        let mut t = Timers::default();
        for p in 0..5 {
            t.set(p, 100 + u64::from(p));
        }
        t.clear(2);
        t.set(4, SPAN_NS * 9);
        t.set(4, 50);
        t.clear(9);
        let d = [Some(100), Some(101), None, Some(103), Some(50)];
        let mut out = Vec::new();
        t.drain_due(200, fixed(&d), &mut out);
        out.sort();
        assert_eq!(out, [(50, 4), (100, 0), (101, 1), (103, 3)]);
        // The stale heap entry of 4 is dropped, not reported.
        t.drain_due(SPAN_NS * 10, fixed(&d), &mut out);
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn first_slot_wraps_around() {
        let mut t = Timers::default();
        t.drain_due(1000 * SLOT_NS, |_| None, &mut Vec::new());
        // 1000 + 30 wraps to physical slot 6.
        t.set(0, 1030 * SLOT_NS);
        t.set(1, 1020 * SLOT_NS);
        assert_eq!(t.first_slot(), Some(1020 % SLOTS));
        t.clear(1);
        assert_eq!(t.first_slot(), Some(1030 % SLOTS));
    }

    #[test]
    fn time_going_back_is_harmless() {
        let mut t = Timers::default();
        let mut out = Vec::new();
        t.drain_due(50 * SLOT_NS, |_| None, &mut out);
        t.set(0, 3);
        t.drain_due(2, |_| Some(3), &mut out);
        assert!(out.is_empty());
        t.drain_due(3, |_| Some(3), &mut out);
        assert_eq!(out, [(3, 0)]);
    }

    #[test]
    fn heap_churn_stays_bounded() {
        let mut t = Timers::default();
        for i in 0..10_000u64 {
            t.set(0, SPAN_NS * 2 + i);
        }
        assert!(t.far.len() <= 2 * t.far_nodes + 65);
        assert_eq!(t.armed(0), Some(SPAN_NS * 2 + 9_999));
    }
}
