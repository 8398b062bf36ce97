//! Which client commands have been seen, by client id and sequence number.
//!
//! A client numbers its commands 1, 2, 3… and keeps a bounded number
//! outstanding, so per client a watermark (every number up to it seen) and
//! the few numbers seen above it describe everything; both grow with the
//! number of clients, not of commands.

use std::collections::{BTreeMap, HashMap};

use crate::{ClientId, Command, Instance};

/// A hash map with a fast hasher, keyed per process (the keys are client
/// ids and sequence numbers, which clients choose).
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// How many numbers above a client's watermark are remembered; a client
/// that leaves a hole longer than this has the hole treated as seen.
const MAX_ABOVE: usize = 4096;

#[derive(Debug, Default, Clone)]
struct Seen {
    /// Every number up to this one has been seen.
    low: u64,
    /// Numbers seen above `low`, with the instance that decided them.
    above: BTreeMap<u64, Instance>,
}

/// Commands seen, per client.
#[derive(Debug, Default, Clone)]
pub(crate) struct Dedup {
    clients: FastMap<ClientId, Seen>,
}

impl Dedup {
    /// Whether `(client, seq)` was seen, and in which instance when still
    /// remembered.
    pub(crate) fn get(&self, client: ClientId, seq: u64) -> Option<Option<Instance>> {
        let s = self.clients.get(&client)?;
        if seq <= s.low {
            return Some(None);
        }
        s.above.get(&seq).map(|&i| Some(i))
    }

    /// Records `(client, seq)` as decided in `instance`; false when it was
    /// already seen.
    pub(crate) fn insert(&mut self, client: ClientId, seq: u64, instance: Instance) -> bool {
        let s = self.clients.entry(client).or_default();
        if seq <= s.low {
            return false;
        }
        if seq == s.low + 1 && s.above.is_empty() {
            // A client's commands mostly come in order: no tree work.
            s.low = seq;
            return true;
        }
        if s.above.contains_key(&seq) {
            return false;
        }
        s.above.insert(seq, instance);
        while s.above.remove(&(s.low + 1)).is_some() {
            s.low += 1;
        }
        while s.above.len() > MAX_ABOVE {
            if let Some((seq, _)) = s.above.pop_first() {
                s.low = seq;
            }
        }
        true
    }

    /// Records `client`'s numbers `first..first + n` as seen in one step
    /// when they directly follow its watermark and nothing above it was
    /// seen (numbers under the watermark keep no instance) (the steady case: a value carries each
    /// client's commands as such a run); true then, as `n` calls of
    /// [`Dedup::insert`] would all have been. Otherwise records nothing
    /// and returns false, for the caller to insert them one by one.
    fn insert_run(&mut self, client: ClientId, first: u64, n: u64) -> bool {
        let Some(last) = n.checked_sub(1) else {
            return true;
        };
        let s = self.clients.entry(client).or_default();
        if !s.above.is_empty() || s.low.checked_add(1) != Some(first) {
            return false;
        }
        let Some(last) = first.checked_add(last) else {
            return false;
        };
        s.low = last;
        true
    }

    /// Keeps, in order, the commands not seen before and records them as
    /// decided in `instance`: exactly what
    /// `commands.retain(|c| self.insert(c.client, c.seq, instance))` keeps
    /// and records, but with one lookup per run of a client's consecutive
    /// numbers rather than one per command.
    pub(crate) fn retain_new(&mut self, commands: &mut Vec<Command>, instance: Instance) {
        let len = commands.len();
        // Commands kept so far, moved to the front.
        let mut kept = 0;
        let mut start = 0;
        while start < len {
            let (client, first) = (commands[start].client, commands[start].seq);
            let mut end = start + 1;
            while end < len
                && commands[end].client == client
                && commands[end - 1].seq.checked_add(1) == Some(commands[end].seq)
            {
                end += 1;
            }
            let all_new = self.insert_run(client, first, (end - start) as u64);
            if all_new && kept == start {
                // Nothing dropped so far: nothing to move.
                kept = end;
            } else {
                for i in start..end {
                    let c = &commands[i];
                    if all_new || self.insert(c.client, c.seq, instance) {
                        commands.swap(kept, i);
                        kept += 1;
                    }
                }
            }
            start = end;
        }
        commands.truncate(kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn command(client: u64, seq: u64) -> Command {
        Command::of(client, seq, b"pay")
    }

    /// Every answer `get` gives over the numbers the tests use.
    fn seen(d: &Dedup) -> Vec<Option<Option<Instance>>> {
        (0..4)
            .flat_map(|c| (0..80).map(move |s| (c, s)))
            .map(|(c, s)| d.get(ClientId(c), s))
            .collect()
    }

    #[test]
    fn a_run_on_the_watermark_moves_it_at_once() {
        let c = ClientId(7);
        let mut d = Dedup::default();
        assert!(d.insert_run(c, 1, 5));
        assert_eq!(d.get(c, 5), Some(None));
        assert_eq!(d.get(c, 6), None);
        // Not on the watermark, or with numbers above it: left to insert.
        assert!(!d.insert_run(c, 8, 2));
        assert!(!d.insert_run(c, 3, 4));
        assert!(d.insert(c, 8, 2));
        assert!(!d.insert_run(c, 6, 1));
        assert_eq!(d.get(c, 6), None, "a refused run records nothing");
        assert!(d.insert_run(c, 6, 0), "an empty run");
        assert!(!d.insert_run(c, u64::MAX, 2));
    }

    #[test]
    fn retain_new_drops_what_was_seen_in_order() {
        let mut d = Dedup::default();
        let mut first = vec![command(1, 1), command(1, 2), command(2, 5)];
        d.retain_new(&mut first, 1);
        assert_eq!(first.len(), 3);
        let mut again = vec![
            command(1, 2),
            command(1, 3),
            command(2, 5),
            command(2, 6),
            command(1, 3),
        ];
        d.retain_new(&mut again, 2);
        let kept: Vec<_> = again.iter().map(|c| (c.client.0, c.seq)).collect();
        assert_eq!(kept, [(1, 3), (2, 6)]);
    }

    proptest! {
        /// Values as runs (with repeats, overlaps and holes): retain_new
        /// keeps and records exactly what per-command inserts do.
        #[test]
        fn retain_new_is_per_command_insert(
            values in prop::collection::vec(
                prop::collection::vec((0u64..4, 0u64..60, 1u64..12), 0..6),
                1..30,
            ),
        ) {
            let mut fast = Dedup::default();
            let mut model = Dedup::default();
            for (instance, runs) in values.iter().enumerate() {
                let instance = instance as Instance;
                let commands: Vec<Command> = runs
                    .iter()
                    .flat_map(|&(c, first, n)| (first..first + n).map(move |s| command(c, s)))
                    .collect();
                let mut expect = commands.clone();
                expect.retain(|c| model.insert(c.client, c.seq, instance));
                let mut got = commands;
                fast.retain_new(&mut got, instance);
                prop_assert_eq!(&got, &expect);
                prop_assert_eq!(seen(&fast), seen(&model));
            }
        }
    }

    #[test]
    fn out_of_order_numbers_compact_into_the_watermark() {
        let c = ClientId(1);
        let mut d = Dedup::default();
        assert!(d.insert(c, 2, 20));
        assert_eq!(d.get(c, 2), Some(Some(20)));
        assert_eq!(d.get(c, 1), None);
        assert!(d.insert(c, 1, 10));
        assert!(!d.insert(c, 2, 30));
        assert_eq!(d.get(c, 2), Some(None), "under the watermark");
        assert_eq!(d.get(ClientId(2), 1), None);
        // In order: straight onto the watermark.
        assert!(d.insert(c, 3, 40));
        assert!(!d.insert(c, 3, 41));
        assert_eq!(d.get(c, 3), Some(None));
        assert_eq!(d.get(c, 4), None);
    }
}
