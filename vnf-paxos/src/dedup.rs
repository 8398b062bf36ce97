//! Which client commands have been seen, by client id and sequence number.
//!
//! A client numbers its commands 1, 2, 3… and keeps a bounded number
//! outstanding, so per client a watermark (every number up to it seen) and
//! the few numbers seen above it describe everything; both grow with the
//! number of clients, not of commands.

use std::collections::{BTreeMap, HashMap};

use crate::{ClientId, Instance};

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
}

#[cfg(test)]
mod tests {
    use super::*;

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
