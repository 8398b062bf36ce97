//! A fixed-capacity stack of free chunk addresses.

use std::sync::Arc;

use super::{Batch, Desc, IoError, PacketMemory, adopt};

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

    /// Pushes free chunks onto `batch` as empty frames: `n` of them, or
    /// fewer if the batch or the list runs out first; returns how many.
    /// Takes back the chunks the batch dropped first; a batch over another
    /// backend's memory `mem` gets none. [`crate::io::PacketIo::alloc`] of
    /// the backends that own their chunks.
    #[inline]
    pub(crate) fn alloc(&mut self, batch: &mut Batch, mem: &Arc<PacketMemory>, n: usize) -> usize {
        if adopt(batch, mem, |a| self.put(a)).is_err() {
            return 0;
        }
        // Fixed before the loop: `spare` shrinks as frames are pushed.
        let want = n.min(batch.spare());
        let mut got = 0;
        while got < want {
            let Some(addr) = self.take() else { break };
            batch.push(Desc { addr, len: 0 });
            got += 1;
        }
        got
    }

    /// Takes back every frame of `batch`, and those it dropped, leaving it
    /// empty; refuses a batch over another backend's memory `mem`.
    /// [`crate::io::PacketIo::release`] of the backends that own their
    /// chunks.
    pub(crate) fn release(
        &mut self,
        batch: &mut Batch,
        mem: &Arc<PacketMemory>,
    ) -> Result<(), IoError> {
        adopt(batch, mem, |a| self.put(a))?;
        for d in batch.descs() {
            self.put(mem.chunk_base(d.addr));
        }
        let n = batch.len();
        batch.consume_front(n);
        Ok(())
    }
}
