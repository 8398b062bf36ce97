//! A fixed-capacity stack of free chunk addresses.

/// Free chunks of a backend's packet memory. Sized once for every chunk the
/// backend owns, so pushing never allocates.
#[derive(Debug)]
pub(crate) struct FreeList {
    addrs: Vec<u64>,
}

impl FreeList {
    /// A list holding the chunks at `addrs`, with room for `capacity`.
    pub(crate) fn new(capacity: usize, addrs: impl IntoIterator<Item = u64>) -> Self {
        let mut v = Vec::with_capacity(capacity);
        v.extend(addrs);
        assert!(v.len() <= capacity);
        Self { addrs: v }
    }

    /// Returns a chunk to the list.
    #[inline]
    pub(crate) fn put(&mut self, addr: u64) {
        // A push past capacity would mean a chunk freed twice: a bug in a
        // backend's bookkeeping, never an input error.
        debug_assert!(
            self.addrs.len() < self.addrs.capacity(),
            "chunk freed twice"
        );
        self.addrs.push(addr);
    }

    /// Takes a free chunk.
    #[inline]
    pub(crate) fn take(&mut self) -> Option<u64> {
        self.addrs.pop()
    }

    /// Number of free chunks.
    pub(crate) fn len(&self) -> usize {
        self.addrs.len()
    }
}
