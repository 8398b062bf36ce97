//! The batched packet I/O trait and its backends.
//!
//! Every backend owns a [`PacketMemory`] and hands out frames as descriptors
//! into it, gathered in [`Batch`]es of up to [`MAX_BURST`]. The contract:
//!
//! * [`PacketIo::recv`] appends up to `batch.spare()` received frames and
//!   never blocks.
//! * [`PacketIo::send`] transmits frames from the front of a batch and removes
//!   those the device took; frames it could not take (a full ring) stay in the
//!   batch, in order, for the caller to retry: nothing is dropped silently.
//! * Frames a VNF drops ([`Batch::retain_mut`], [`Batch::clear`]) go back to
//!   the backend on its next call with that batch.
//! * [`PacketIo::wait`] sleeps until the backend may have something to
//!   receive, for adaptive polling.

pub mod afxdp;
mod batch;
#[cfg(feature = "dpdk")]
pub mod dpdk;
mod freelist;
pub mod mem;
mod poll;
mod pool;
pub mod udp;

use std::time::Duration;

pub use batch::{Batch, Desc, FrameMut, FrameTooLong, MAX_BURST};
pub(crate) use freelist::FreeList;
pub use pool::{PacketMemory, PoolError};

/// Errors from a backend call.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The batch points into another backend's packet memory.
    #[error("batch belongs to another backend's packet memory")]
    ForeignBatch,
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Os {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Packet and byte counts of one backend instance. Plain numbers owned by the
/// worker that polls the backend; the runtime publishes snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames handed to the device for transmission.
    pub tx_packets: u64,
    /// Bytes handed to the device for transmission.
    pub tx_bytes: u64,
    /// Frames the kernel or device dropped on receive (a full ring, no
    /// buffers), as it reports them.
    pub rx_dropped: u64,
    /// Frames refused by transmit that the caller got back to retry.
    pub tx_full: u64,
    /// Frames that could not be transmitted at all (malformed for the
    /// backend, an error from the kernel) and were dropped.
    pub tx_errors: u64,
    /// Wake-up system calls made (AF_XDP need_wakeup, poll).
    pub wakeups: u64,
}

impl IoCounters {
    /// Adds `other` into `self`, field by field.
    pub fn add(&mut self, other: &IoCounters) {
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        self.tx_packets += other.tx_packets;
        self.tx_bytes += other.tx_bytes;
        self.rx_dropped += other.rx_dropped;
        self.tx_full += other.tx_full;
        self.tx_errors += other.tx_errors;
        self.wakeups += other.wakeups;
    }
}

/// A source and sink of Ethernet frames, polled in bursts by one thread.
pub trait PacketIo: Send {
    /// A short name for logs and reports (`afxdp`, `udp`, `mem`, `dpdk`).
    fn name(&self) -> &'static str;

    /// A new, empty batch over this backend's memory. Allocates: call it at
    /// set-up, not per burst.
    fn new_batch(&self) -> Batch;

    /// Appends up to `batch.spare()` received frames; returns how many.
    /// Never blocks.
    fn recv(&mut self, batch: &mut Batch) -> Result<usize, IoError>;

    /// Transmits frames from the front of `batch`, removing those taken;
    /// returns how many. Frames the device could not take stay in `batch`.
    fn send(&mut self, batch: &mut Batch) -> Result<usize, IoError>;

    /// Appends up to `n` (and at most `batch.spare()`) empty frames for the
    /// caller to fill and send; returns how many. Zero when the backend's
    /// buffers are all in use.
    fn alloc(&mut self, batch: &mut Batch, n: usize) -> usize;

    /// Gives every frame of `batch`, and its dropped ones, back unsent.
    fn release(&mut self, batch: &mut Batch) -> Result<(), IoError>;

    /// Blocks for at most `timeout` until frames may be ready to receive.
    /// May return early; a spurious return is harmless.
    fn wait(&mut self, timeout: Duration) -> Result<(), IoError>;

    /// Completes outstanding work that needs no new frames: reclaims
    /// transmitted buffers, kicks the kernel if it asked for a wake-up.
    fn flush(&mut self) -> Result<(), IoError> {
        Ok(())
    }

    /// Counters so far.
    fn counters(&self) -> IoCounters;
}

/// Checks that `batch` belongs to `mem`, and hands its dropped chunks to `give`.
pub(crate) fn adopt(
    batch: &mut Batch,
    mem: &std::sync::Arc<PacketMemory>,
    give: impl FnMut(u64),
) -> Result<(), IoError> {
    if !batch.is_over(mem) {
        return Err(IoError::ForeignBatch);
    }
    batch.take_dropped(give);
    Ok(())
}
