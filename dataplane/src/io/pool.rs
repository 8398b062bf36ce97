//! Packet memory shared by a backend and the batches it hands out.
//!
//! A [`PacketMemory`] is one contiguous region cut into equal, power-of-two
//! chunks. The AF_XDP backend registers it as its UMEM; the other backends use
//! it the same way, so every backend's frames look alike. Batches hold an
//! `Arc` to the region (one clone per batch, made once, never per packet), so
//! a frame can never outlive the memory it points into.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

/// Identity of a region; batches record it so a frame cannot be handed to a
/// backend that does not own its memory.
static NEXT_REGION_ID: AtomicU64 = AtomicU64::new(1);

/// Errors creating packet memory.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The chunk size must be a power of two between 2 KiB and 64 KiB (the
    /// AF_XDP aligned-mode rule, which every backend follows).
    #[error("chunk size {0} is not a power of two in 2048..=65536")]
    ChunkSize(u32),
    /// No chunks were requested, or the region would not fit in `usize`.
    #[error("invalid chunk count {0}")]
    ChunkCount(u32),
    /// `mmap` refused the region.
    #[error("mmap of {bytes} bytes failed: {source}")]
    Mmap {
        /// Size asked for.
        bytes: usize,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A page-aligned, zero-initialised region of `chunks * chunk_size` bytes.
#[derive(Debug)]
pub struct PacketMemory {
    base: NonNull<u8>,
    len: usize,
    chunk_size: u32,
    chunks: u32,
    id: u64,
}

// SAFETY: the region is plain memory. Access to each chunk is serialised by
// the ownership protocol of descriptors: a chunk belongs to exactly one of the
// kernel, a backend's free list, or one slot of one batch at a time.
unsafe impl Send for PacketMemory {}
// SAFETY: see `Send`; shared references never touch chunk contents by
// themselves, only through a batch that owns the chunk's descriptor.
unsafe impl Sync for PacketMemory {}

impl PacketMemory {
    /// Maps a new region of `chunks` chunks of `chunk_size` bytes each.
    pub fn new(chunks: u32, chunk_size: u32) -> Result<Self, PoolError> {
        if !chunk_size.is_power_of_two() || !(2048..=65536).contains(&chunk_size) {
            return Err(PoolError::ChunkSize(chunk_size));
        }
        let len = (chunks as usize)
            .checked_mul(chunk_size as usize)
            .filter(|&l| l > 0)
            .ok_or(PoolError::ChunkCount(chunks))?;
        // SAFETY: an anonymous private mapping with no address hint has no
        // preconditions; the result is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(PoolError::Mmap {
                bytes: len,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Self {
            base: NonNull::new(ptr.cast()).expect("mmap never returns null on success"),
            len,
            chunk_size,
            chunks,
            id: NEXT_REGION_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Size of one chunk in bytes.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Number of chunks.
    pub fn chunks(&self) -> u32 {
        self.chunks
    }

    /// Total size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a region has at least one chunk.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Start of the region, for registering it with the kernel.
    pub fn as_non_null_slice(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.base, self.len)
    }

    /// A process-unique identity of this region.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Offset of the start of chunk `index`.
    pub fn chunk_addr(&self, index: u32) -> u64 {
        u64::from(index) * u64::from(self.chunk_size)
    }

    /// Offset of the chunk containing `addr`.
    pub fn chunk_base(&self, addr: u64) -> u64 {
        addr & !(u64::from(self.chunk_size) - 1)
    }

    /// Room from `addr` to the end of its chunk.
    pub fn room(&self, addr: u64) -> u32 {
        (self.chunk_base(addr) + u64::from(self.chunk_size) - addr) as u32
    }

    /// Raw pointer to byte `addr` of the region.
    ///
    /// # Safety
    /// `addr` must lie inside the region.
    pub(crate) unsafe fn ptr(&self, addr: u64) -> *mut u8 {
        debug_assert!((addr as usize) < self.len);
        // SAFETY: the caller guarantees `addr < len`.
        unsafe { self.base.as_ptr().add(addr as usize) }
    }
}

impl Drop for PacketMemory {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly the mapping made in `new`, and no
        // batch can still point into it because each holds an `Arc` to us.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_geometry() {
        assert!(matches!(
            PacketMemory::new(4, 1000),
            Err(PoolError::ChunkSize(1000))
        ));
        assert!(matches!(
            PacketMemory::new(4, 1024),
            Err(PoolError::ChunkSize(1024))
        ));
        assert!(matches!(
            PacketMemory::new(0, 2048),
            Err(PoolError::ChunkCount(0))
        ));
    }

    #[test]
    fn chunk_arithmetic() {
        let m = PacketMemory::new(8, 4096).unwrap();
        assert_eq!(m.len(), 8 * 4096);
        assert_eq!(m.chunk_addr(3), 3 * 4096);
        assert_eq!(m.chunk_base(3 * 4096 + 256), 3 * 4096);
        assert_eq!(m.room(3 * 4096 + 256), 4096 - 256);
        assert_ne!(m.id(), PacketMemory::new(1, 2048).unwrap().id());
    }
}
