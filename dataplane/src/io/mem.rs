//! In-memory backend: frames injected by the caller are received, frames sent
//! are kept for inspection or, in loopback mode, received again.
//!
//! It serves unit tests of VNFs (inject a frame, run, look at what came out)
//! and measures the cost of a VNF's logic alone: in loopback mode a fixed set
//! of frames circulates through `recv`, the VNF and `send` with no kernel in
//! the way.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::{
    Batch, Desc, FrameTooLong, FreeList, IoCounters, IoError, PacketIo, PacketMemory, PoolError,
    adopt,
};

/// Settings of a [`MemIo`].
#[derive(Debug, Clone, Copy)]
pub struct MemConfig {
    /// Chunks of packet memory.
    pub chunks: u32,
    /// Bytes per chunk (a power of two, 2048 to 65536).
    pub chunk_size: u32,
    /// Frames per receive.
    pub burst: usize,
    /// Receive every frame that is sent, instead of keeping it aside.
    pub loopback: bool,
}

impl Default for MemConfig {
    fn default() -> Self {
        Self {
            chunks: 1024,
            chunk_size: 2048,
            burst: 32,
            loopback: false,
        }
    }
}

/// Errors specific to the in-memory backend.
#[derive(Debug, thiserror::Error)]
pub enum MemError {
    /// The packet memory could not be created.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// Every chunk is in use.
    #[error("no free buffer to inject a frame into")]
    Exhausted,
    /// The frame does not fit in a chunk.
    #[error(transparent)]
    TooLong(#[from] FrameTooLong),
}

/// The in-memory backend.
#[derive(Debug)]
pub struct MemIo {
    mem: Arc<PacketMemory>,
    free: FreeList,
    rx: VecDeque<Desc>,
    sent: VecDeque<Desc>,
    burst: usize,
    loopback: bool,
    counters: IoCounters,
}

impl MemIo {
    /// A backend with `config.chunks` free buffers.
    pub fn new(config: MemConfig) -> Result<Self, MemError> {
        let mem = Arc::new(PacketMemory::new(config.chunks, config.chunk_size)?);
        let n = config.chunks as usize;
        let free = FreeList::new(n, (0..config.chunks).rev().map(|i| mem.chunk_addr(i)));
        Ok(Self {
            mem,
            free,
            rx: VecDeque::with_capacity(n),
            sent: VecDeque::with_capacity(n),
            burst: config.burst,
            loopback: config.loopback,
            counters: IoCounters::default(),
        })
    }

    /// Queues a copy of `frame` to be received.
    pub fn inject(&mut self, frame: &[u8]) -> Result<(), MemError> {
        let addr = self.free.take().ok_or(MemError::Exhausted)?;
        let room = self.mem.chunk_size() as usize;
        if frame.len() > room {
            self.free.put(addr);
            return Err(FrameTooLong {
                wanted: frame.len(),
                room,
            }
            .into());
        }
        // SAFETY: `addr` came off the free list, so nothing else refers to
        // its chunk, and `frame.len()` fits in it.
        unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), self.mem.ptr(addr), frame.len()) };
        self.rx.push_back(Desc {
            addr,
            len: frame.len() as u32,
        });
        Ok(())
    }

    /// Hands each transmitted frame (outside loopback mode), oldest first, to
    /// `f`, and frees its buffer.
    pub fn drain_sent(&mut self, mut f: impl FnMut(&[u8])) {
        while let Some(d) = self.sent.pop_front() {
            // SAFETY: descriptors in `sent` are owned by the backend and lie
            // inside its memory.
            f(unsafe { std::slice::from_raw_parts(self.mem.ptr(d.addr), d.len as usize) });
            self.free.put(self.mem.chunk_base(d.addr));
        }
    }

    /// Frames waiting to be received.
    pub fn pending_rx(&self) -> usize {
        self.rx.len()
    }

    /// Buffers neither queued nor lent out: when every batch is empty and
    /// every sent frame drained, this equals the configured chunk count.
    pub fn free_buffers(&self) -> usize {
        self.free.len()
    }
}

impl PacketIo for MemIo {
    fn name(&self) -> &'static str {
        "mem"
    }

    fn new_batch(&self) -> Batch {
        Batch::new(self.mem.clone(), self.burst)
    }

    fn recv(&mut self, batch: &mut Batch) -> Result<usize, IoError> {
        adopt(batch, &self.mem, |a| self.free.put(a))?;
        let n = batch.spare().min(self.rx.len());
        for d in self.rx.drain(..n) {
            self.counters.rx_bytes += u64::from(d.len);
            batch.push(d);
        }
        self.counters.rx_packets += n as u64;
        Ok(n)
    }

    fn send(&mut self, batch: &mut Batch) -> Result<usize, IoError> {
        adopt(batch, &self.mem, |a| self.free.put(a))?;
        let n = batch.len();
        let queue = if self.loopback {
            &mut self.rx
        } else {
            &mut self.sent
        };
        for &d in batch.descs() {
            self.counters.tx_bytes += u64::from(d.len);
            queue.push_back(d);
        }
        self.counters.tx_packets += n as u64;
        batch.consume_front(n);
        Ok(n)
    }

    fn alloc(&mut self, batch: &mut Batch, n: usize) -> usize {
        self.free.alloc(batch, &self.mem, n)
    }

    fn release(&mut self, batch: &mut Batch) -> Result<(), IoError> {
        self.free.release(batch, &self.mem)
    }

    fn wait(&mut self, timeout: Duration) -> Result<(), IoError> {
        // Nothing external can make frames appear while the only thread that
        // could inject them is waiting here, so just yield the time slice.
        if self.rx.is_empty() {
            std::thread::sleep(timeout.min(Duration::from_millis(1)));
        }
        Ok(())
    }

    fn counters(&self) -> IoCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> MemIo {
        MemIo::new(MemConfig {
            chunks: 8,
            burst: 4,
            ..MemConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn injected_frames_are_received_in_order_and_sent_frames_come_out() {
        let mut io = small();
        for i in 0..6u8 {
            io.inject(&[i; 60]).unwrap();
        }
        let mut b = io.new_batch();
        assert_eq!(io.recv(&mut b).unwrap(), 4, "burst caps a receive");
        assert_eq!(b.frame(0), &[0u8; 60][..]);
        assert_eq!(b.frame(3), &[3u8; 60][..]);
        for mut f in b.iter_mut() {
            f.data_mut()[0] = 0xee;
        }
        assert_eq!(io.send(&mut b).unwrap(), 4);
        assert!(b.is_empty());
        let mut out = Vec::new();
        io.drain_sent(|f| out.push(f.to_vec()));
        assert_eq!(out.len(), 4);
        assert_eq!(out[2][0], 0xee);
        assert_eq!(out[2][1], 2);
        assert_eq!(io.counters().tx_packets, 4);
    }

    #[test]
    fn dropped_frames_return_to_the_pool() {
        let mut io = small();
        for i in 0..4u8 {
            io.inject(&[i; 10]).unwrap();
        }
        let mut b = io.new_batch();
        io.recv(&mut b).unwrap();
        b.retain_mut(|f| f.data()[0] % 2 == 0);
        assert_eq!(b.len(), 2);
        assert_eq!(b.frame(1)[0], 2);
        io.send(&mut b).unwrap();
        io.drain_sent(|_| {});
        assert_eq!(io.free_buffers(), 8, "every buffer is back");
    }

    #[test]
    fn truncated_frames_return_to_the_pool() {
        let mut io = small();
        let mut b = io.new_batch();
        let n = b.burst();
        assert!(n >= 2);
        assert_eq!(io.alloc(&mut b, n), n);
        b.frame_mut(0).fill(&[7; 20]).unwrap();
        b.truncate(1);
        assert_eq!(b.len(), 1);
        b.truncate(5);
        assert_eq!(b.len(), 1, "truncate never grows");
        io.send(&mut b).unwrap();
        let mut sent = Vec::new();
        io.drain_sent(|f| sent.push(f.to_vec()));
        assert_eq!(sent, vec![vec![7; 20]]);
        assert_eq!(io.free_buffers(), 8, "every buffer is back");
    }

    #[test]
    fn exhaustion_is_an_error_not_a_panic() {
        let mut io = small();
        for _ in 0..8 {
            io.inject(&[1; 10]).unwrap();
        }
        assert!(matches!(io.inject(&[1; 10]), Err(MemError::Exhausted)));
        let mut b = io.new_batch();
        assert_eq!(io.alloc(&mut b, 4), 0);
        assert!(matches!(io.inject(&[0; 5000]), Err(MemError::Exhausted)));
    }

    #[test]
    fn too_long_frames_are_refused() {
        let mut io = small();
        assert!(matches!(io.inject(&[0; 5000]), Err(MemError::TooLong(_))));
        assert_eq!(io.free_buffers(), 8);
        let mut b = io.new_batch();
        assert_eq!(io.alloc(&mut b, 1), 1);
        let mut f = b.frame_mut(0);
        assert!(f.set_len(2049).is_err());
        f.fill(&[7; 100]).unwrap();
        assert_eq!(b.frame(0).len(), 100);
        io.release(&mut b).unwrap();
        assert_eq!(io.free_buffers(), 8);
    }

    #[test]
    fn foreign_batches_are_refused() {
        let mut a = small();
        let b = small();
        let mut foreign = b.new_batch();
        assert!(matches!(a.recv(&mut foreign), Err(IoError::ForeignBatch)));
        assert!(matches!(a.send(&mut foreign), Err(IoError::ForeignBatch)));
        assert_eq!(a.alloc(&mut foreign, 1), 0);
        assert!(matches!(
            a.release(&mut foreign),
            Err(IoError::ForeignBatch)
        ));
        let mut other = b.new_batch();
        assert_eq!(foreign.move_to(&mut other), 0);
    }

    #[test]
    fn loopback_recirculates_frames() {
        let mut io = MemIo::new(MemConfig {
            chunks: 4,
            loopback: true,
            ..MemConfig::default()
        })
        .unwrap();
        io.inject(&[9; 64]).unwrap();
        let mut b = io.new_batch();
        for _ in 0..100 {
            assert_eq!(io.recv(&mut b).unwrap(), 1);
            io.send(&mut b).unwrap();
        }
        assert_eq!(io.counters().rx_packets, 100);
        assert_eq!(io.pending_rx(), 1);
    }
}
