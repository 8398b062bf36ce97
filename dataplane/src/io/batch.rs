//! Bursts of frames borrowed from a backend's packet memory.
//!
//! A [`Batch`] is the unit every backend receives into and transmits from. It
//! holds descriptors (offset and length) into the backend's
//! [`PacketMemory`](super::pool::PacketMemory), never copies of the bytes, so a
//! VNF can rewrite a received frame and send the very same buffer back out.
//!
//! Invariant, kept by the backends: each descriptor names a chunk that no
//! other descriptor, ring or free list holds at the same time. That is what
//! makes handing out `&mut [u8]` for several frames at once sound.

use std::sync::Arc;

use super::pool::PacketMemory;

/// The largest burst any backend receives or transmits in one call.
pub const MAX_BURST: usize = 64;

/// A frame's place in packet memory: where its data starts and how long it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Desc {
    /// Offset of the first byte of the frame in the region.
    pub addr: u64,
    /// Length of the frame in bytes.
    pub len: u32,
}

/// A frame asked to grow past the end of its chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame length {wanted} exceeds the {room} bytes of room in its buffer")]
pub struct FrameTooLong {
    /// The length asked for.
    pub wanted: usize,
    /// The room the buffer has.
    pub room: usize,
}

/// Up to [`MAX_BURST`] frames owned by the holder, plus the chunks of frames
/// the holder dropped, which the backend reclaims on its next call.
#[derive(Debug)]
pub struct Batch {
    mem: Arc<PacketMemory>,
    frames: [Desc; MAX_BURST],
    len: usize,
    dropped: [u64; MAX_BURST],
    ndropped: usize,
    burst: usize,
}

impl Batch {
    /// An empty batch over `mem` that holds at most `burst` frames
    /// (clamped to `1..=MAX_BURST`). Backends create batches; a VNF gets them
    /// from [`PacketIo::new_batch`](super::PacketIo::new_batch).
    pub(crate) fn new(mem: Arc<PacketMemory>, burst: usize) -> Self {
        Self {
            mem,
            frames: [Desc::default(); MAX_BURST],
            len: 0,
            dropped: [0; MAX_BURST],
            ndropped: 0,
            burst: burst.clamp(1, MAX_BURST),
        }
    }

    /// Number of frames held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no frames are held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The burst size: how many frames a receive may put in this batch.
    pub fn burst(&self) -> usize {
        self.burst
    }

    /// How many more frames fit: up to the burst size, and never more chunks
    /// (held plus dropped but not yet reclaimed) than [`MAX_BURST`], which is
    /// what keeps the drop list from overflowing.
    pub fn spare(&self) -> usize {
        self.burst
            .saturating_sub(self.len)
            .min(MAX_BURST - self.len - self.ndropped)
    }

    /// The packet memory this batch points into.
    pub fn memory(&self) -> &Arc<PacketMemory> {
        &self.mem
    }

    /// The bytes of frame `i`.
    ///
    /// # Panics
    /// When `i >= self.len()`, like slice indexing.
    pub fn frame(&self, i: usize) -> &[u8] {
        let d = self.frames[..self.len][i];
        // SAFETY: `d` is owned by this batch (see the module invariant), lies
        // inside `mem` and `d.len` never exceeds the chunk's room.
        unsafe { std::slice::from_raw_parts(self.mem.ptr(d.addr), d.len as usize) }
    }

    /// Frame `i`, writable.
    ///
    /// # Panics
    /// When `i >= self.len()`, like slice indexing.
    pub fn frame_mut(&mut self, i: usize) -> FrameMut<'_> {
        FrameMut {
            desc: &mut self.frames[..self.len][i],
            mem: &self.mem,
        }
    }

    /// Every frame, writable, in order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = FrameMut<'_>> {
        let mem = &*self.mem;
        self.frames[..self.len]
            .iter_mut()
            .map(move |desc| FrameMut { desc, mem })
    }

    /// Keeps the frames for which `keep` returns true, in order; the others
    /// are dropped and their buffers go back to the backend on its next call.
    pub fn retain_mut(&mut self, mut keep: impl FnMut(&mut FrameMut<'_>) -> bool) {
        let mut kept = 0;
        for i in 0..self.len {
            let mut f = FrameMut {
                desc: &mut self.frames[i],
                mem: &self.mem,
            };
            if keep(&mut f) {
                self.frames[kept] = self.frames[i];
                kept += 1;
            } else {
                self.drop_chunk(self.frames[i].addr);
            }
        }
        self.len = kept;
    }

    /// Drops every frame; their buffers go back to the backend on its next call.
    pub fn clear(&mut self) {
        for i in 0..self.len {
            self.drop_chunk(self.frames[i].addr);
        }
        self.len = 0;
    }

    /// Keeps the first `n` frames and drops the rest (their buffers go back to
    /// the backend on its next call). For a VNF that was handed more empty
    /// frames than it had messages to write.
    pub fn truncate(&mut self, n: usize) {
        for i in n.min(self.len)..self.len {
            self.drop_chunk(self.frames[i].addr);
        }
        self.len = self.len.min(n);
    }

    /// Moves frames from the front of `self` to the back of `to`, as many as
    /// fit in `to`'s burst. Both batches must share packet memory (as the
    /// stages of one pipeline do); returns how many moved, 0 when they do not.
    pub fn move_to(&mut self, to: &mut Batch) -> usize {
        if !Arc::ptr_eq(&self.mem, &to.mem) {
            return 0;
        }
        let n = self.len.min(to.spare());
        to.frames[to.len..to.len + n].copy_from_slice(&self.frames[..n]);
        to.len += n;
        self.frames.copy_within(n..self.len, 0);
        self.len -= n;
        n
    }

    fn drop_chunk(&mut self, addr: u64) {
        // Cannot overflow: `len + ndropped <= MAX_BURST` always holds (see
        // `spare`), and dropping moves one chunk from one side to the other.
        self.dropped[self.ndropped] = self.mem.chunk_base(addr);
        self.ndropped += 1;
    }

    /// True when `self` points into `mem`.
    pub(crate) fn is_over(&self, mem: &Arc<PacketMemory>) -> bool {
        Arc::ptr_eq(&self.mem, mem)
    }

    /// Appends a frame handed over by the backend.
    pub(crate) fn push(&mut self, desc: Desc) {
        assert!(
            self.len + self.ndropped < MAX_BURST,
            "backend overfilled a batch"
        );
        self.frames[self.len] = desc;
        self.len += 1;
    }

    /// The frames held, for the backend to transmit.
    pub(crate) fn descs(&self) -> &[Desc] {
        &self.frames[..self.len]
    }

    /// Forgets the first `n` frames: the backend has taken ownership of them.
    pub(crate) fn consume_front(&mut self, n: usize) {
        let n = n.min(self.len);
        self.frames.copy_within(n..self.len, 0);
        self.len -= n;
    }

    /// Hands the chunks of dropped frames back to the backend.
    pub(crate) fn take_dropped(&mut self, mut give: impl FnMut(u64)) {
        for &a in &self.dropped[..self.ndropped] {
            give(a);
        }
        self.ndropped = 0;
    }
}

/// One frame of a batch, writable in place.
#[derive(Debug)]
pub struct FrameMut<'a> {
    desc: &'a mut Desc,
    mem: &'a PacketMemory,
}

impl FrameMut<'_> {
    /// The frame's bytes.
    pub fn data(&self) -> &[u8] {
        // SAFETY: the descriptor is owned by the batch this frame borrows
        // from, lies inside `mem`, and its length never exceeds its room.
        unsafe { std::slice::from_raw_parts(self.mem.ptr(self.desc.addr), self.desc.len as usize) }
    }

    /// The frame's bytes, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`; `&mut self` borrows the batch's descriptor
        // exclusively, and no other descriptor names the same chunk.
        unsafe {
            std::slice::from_raw_parts_mut(self.mem.ptr(self.desc.addr), self.desc.len as usize)
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.desc.len as usize
    }

    /// True for a zero-length frame (a freshly allocated one).
    pub fn is_empty(&self) -> bool {
        self.desc.len == 0
    }

    /// The most bytes this frame can hold.
    pub fn room(&self) -> usize {
        self.mem.room(self.desc.addr) as usize
    }

    /// Grows or shrinks the frame; new bytes keep whatever the buffer held.
    pub fn set_len(&mut self, len: usize) -> Result<(), FrameTooLong> {
        let room = self.room();
        if len > room {
            return Err(FrameTooLong { wanted: len, room });
        }
        self.desc.len = len as u32;
        Ok(())
    }

    /// Replaces the frame's contents with `bytes`.
    pub fn fill(&mut self, bytes: &[u8]) -> Result<(), FrameTooLong> {
        self.set_len(bytes.len())?;
        self.data_mut().copy_from_slice(bytes);
        Ok(())
    }
}
