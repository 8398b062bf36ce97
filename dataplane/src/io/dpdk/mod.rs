//! DPDK backend (feature `dpdk`): poll-mode drivers through the system DPDK.
//!
//! EAL starts once per process ([`eal::init`]); a [`DpdkPort`] is a started
//! Ethernet port with one queue pair per worker; each queue is a [`DpdkIo`]
//! implementing [`PacketIo`].
//!
//! Frames without copies: each queue's [`PacketMemory`](super::PacketMemory) is registered with
//! DPDK as external memory and becomes the data buffers of that queue's mbuf
//! pool (`rte_pktmbuf_pool_create_extbuf`), chunk *i* belonging to mbuf *i*
//! for good. A received mbuf is handed to the VNF as the descriptor (offset
//! of its data, length) of its chunk; on transmit the shim points the
//! chunk's mbuf at the frame and passes it to the driver. The VNF rewrites
//! the very buffer the device filled, and the driver sends it from there.
//!
//! Each mbuf's buffer starts up to 30 cache lines into its chunk (chunk *i*:
//! *i* mod 31 lines with 4 KiB chunks), still ending where the chunk ends:
//! with every frame at the same offset of a power-of-two chunk, the headers
//! of a burst would all fall in one set of the L1 data cache and evict one
//! another as a VNF reads them.
//!
//! Counters: our own per queue, plus the port's (`rte_eth_stats_get`)
//! drops and errors, merged into queue 0's so that summing the queues
//! counts each once.

pub mod eal;
mod ffi;
mod port;

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

pub use eal::{EalConfig, HugePages};
pub use port::{DpdkPort, PortConfig};

use super::{Batch, IoCounters, IoError, MAX_BURST, PacketIo, PoolError, adopt};
use port::PortInner;

/// Errors from the DPDK backend.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    /// EAL could not start (or did not, earlier in this process).
    #[error("DPDK EAL: {0}")]
    Eal(String),
    /// A DPDK call failed.
    #[error("{op} failed: {msg}")]
    Call {
        /// The call.
        op: &'static str,
        /// DPDK's message.
        msg: String,
    },
    /// A device could not be probed.
    #[error("probing DPDK device {device:?}: {msg}")]
    Probe {
        /// The devargs.
        device: String,
        /// DPDK's message.
        msg: String,
    },
    /// No port of that name after probing.
    #[error("no DPDK port named {0:?}")]
    NoPort(String),
    /// The port could not be configured or started.
    #[error("starting DPDK port {port}: {msg}")]
    Start {
        /// The port's name.
        port: String,
        /// DPDK's message.
        msg: String,
    },
    /// A name with a NUL byte in it.
    #[error("invalid name {0:?}")]
    Name(String),
    /// Bad settings.
    #[error("{0}")]
    Config(String),
    /// The packet memory could not be created.
    #[error(transparent)]
    Pool(#[from] PoolError),
}

/// DPDK's own statistics of a port (`rte_eth_stats_get`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets transmitted.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes transmitted.
    pub obytes: u64,
    /// Packets the device dropped for lack of a receive descriptor.
    pub imissed: u64,
    /// Receive errors.
    pub ierrors: u64,
    /// Transmit errors.
    pub oerrors: u64,
    /// Receives that found no free mbuf.
    pub rx_nombuf: u64,
}

thread_local! {
    /// Whether this thread has been registered with EAL (see
    /// [`register_thread`]).
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// Registers the calling thread with EAL once: worker threads are not EAL
/// lcores, and an lcore id gives the thread a per-lcore mempool cache,
/// which keeps mbuf get and put off the pool's shared ring. Remembered in
/// a thread-local of ours, which costs a plain load to read, where DPDK's
/// own lcore id (a thread-local in a shared library) costs a call.
#[inline]
fn register_thread() {
    REGISTERED.with(|r| {
        if !r.get() {
            // SAFETY: registers the calling thread, or nothing if it is an
            // lcore already; EAL is up (a port exists).
            unsafe { ffi::nfv_register_thread() };
            r.set(true);
        }
    });
}

/// One queue pair of a DPDK port, polled by one thread.
pub struct DpdkIo {
    port: Arc<PortInner>,
    queue: u16,
    burst: usize,
    base: *const std::ffi::c_char,
    region: u64,
    shift: u32,
    chunks: Vec<u32>,
    /// Scratch for the shim's bursts, kept here so that no call zeroes a
    /// fresh array of a whole burst's size.
    addrs: [u64; MAX_BURST],
    lens: [u32; MAX_BURST],
    counters: IoCounters,
    rx_invalid: u64,
}

// SAFETY: the raw pointer is into packet memory kept alive by `port`; DPDK
// queues may be polled from any thread, one at a time, which `&mut self`
// ensures for this handle (the only one of its queue).
unsafe impl Send for DpdkIo {}

impl std::fmt::Debug for DpdkIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpdkIo")
            .field("port", &self.port.name)
            .field("queue", &self.queue)
            .finish()
    }
}

impl DpdkIo {
    fn new(port: Arc<PortInner>, queue: u16, burst: usize) -> Self {
        let pool = &port.pools[usize::from(queue)];
        let region = pool.mem.as_non_null_slice();
        let shift = pool.mem.chunk_size().trailing_zeros();
        let base = region.cast::<std::ffi::c_char>().as_ptr().cast_const();
        let region = region.len() as u64;
        Self {
            port,
            queue,
            burst: burst.clamp(1, MAX_BURST),
            base,
            region,
            shift,
            chunks: Vec::with_capacity(2 * MAX_BURST),
            addrs: [0; MAX_BURST],
            lens: [0; MAX_BURST],
            counters: IoCounters::default(),
            rx_invalid: 0,
        }
    }

    /// The port's name.
    pub fn port_name(&self) -> &str {
        &self.port.name
    }

    /// This queue's index.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Bytes DPDK keeps in front of a received or freshly allocated frame,
    /// from the start of its mbuf's buffer (which may itself start a few
    /// cache lines into the chunk; see the module's notes).
    pub fn headroom() -> usize {
        // SAFETY: returns a constant.
        unsafe { ffi::nfv_headroom() as usize }
    }

    /// Mbufs of this queue's pool that are free (neither in the device's
    /// rings nor lent out in batches).
    pub fn free_buffers(&self) -> usize {
        // SAFETY: a valid pool, alive while `port` is.
        unsafe { ffi::nfv_pool_avail(self.pool().mp) as usize }
    }

    /// Writes `frame` at the data offset of every chunk of this queue's
    /// memory, for devices that receive without writing data (`net_null`):
    /// each frame they deliver then reads as `frame`. Call before traffic
    /// flows; fails if `frame` does not fit a chunk after its mbuf's
    /// headroom (and the cache lines a buffer may start into its chunk).
    pub fn prefill(&mut self, frame: &[u8]) -> Result<(), DpdkError> {
        let pool = self.pool();
        let mem = &pool.mem;
        let base = mem.as_non_null_slice().cast::<u8>();
        for i in 0..mem.chunks() {
            // SAFETY: `i` is a chunk of this pool, whose table holds its mbuf.
            let at = unsafe { ffi::nfv_chunk_data(pool.table.as_ptr(), i, self.base) };
            let end = mem.chunk_addr(i) + u64::from(mem.chunk_size());
            if at + frame.len() as u64 > end {
                return Err(DpdkError::Config(format!(
                    "a {}-byte frame does not fit chunk {i} after {} bytes of headroom",
                    frame.len(),
                    at - mem.chunk_addr(i)
                )));
            }
            // SAFETY: inside chunk i (checked above); no frame is in flight
            // as documented, so no one else reads or writes these bytes now.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    frame.as_ptr(),
                    base.as_ptr().add(at as usize),
                    frame.len(),
                );
            }
        }
        Ok(())
    }

    /// DPDK's statistics of the whole port.
    pub fn port_stats(&self) -> Result<PortStats, DpdkError> {
        let mut s = [0u64; 9];
        // SAFETY: a valid port and a 9-slot array.
        let r = unsafe { ffi::nfv_stats(self.port.id, self.queue, s.as_mut_ptr()) };
        if r != 0 {
            return Err(DpdkError::Call {
                op: "rte_eth_stats_get",
                msg: ffi::strerror(r),
            });
        }
        Ok(PortStats {
            ipackets: s[0],
            opackets: s[1],
            ibytes: s[2],
            obytes: s[3],
            imissed: s[4],
            ierrors: s[5],
            oerrors: s[6],
            rx_nombuf: s[7],
        })
    }

    fn pool(&self) -> &port::QueuePool {
        &self.port.pools[usize::from(self.queue)]
    }

    /// Gives the chunks of `batch`'s dropped frames back to the pool. Every
    /// operation on frames starts here, so it also registers the thread.
    #[inline]
    fn reclaim(&mut self, batch: &mut Batch) -> Result<(), IoError> {
        register_thread();
        let shift = self.shift;
        let chunks = &mut self.chunks;
        chunks.clear();
        adopt(batch, &self.port.pools[usize::from(self.queue)].mem, |a| {
            chunks.push((a >> shift) as u32)
        })?;
        self.free_chunks();
        Ok(())
    }

    fn free_chunks(&mut self) {
        if self.chunks.is_empty() {
            return;
        }
        // SAFETY: every index names a chunk of this queue's pool that the
        // caller owned and gives up here, each once.
        unsafe {
            ffi::nfv_free_chunks(
                self.pool().table.as_ptr(),
                self.chunks.as_ptr(),
                self.chunks.len() as u32,
            )
        };
        self.chunks.clear();
    }
}

impl PacketIo for DpdkIo {
    fn name(&self) -> &'static str {
        "dpdk"
    }

    fn new_batch(&self) -> Batch {
        Batch::new(self.pool().mem.clone(), self.burst)
    }

    fn recv(&mut self, batch: &mut Batch) -> Result<usize, IoError> {
        self.reclaim(batch)?;
        let want = batch.spare();
        if want == 0 {
            return Ok(0);
        }
        // SAFETY: arrays of MAX_BURST slots, `want <= MAX_BURST`; base and
        // region describe this queue's packet memory.
        let n = unsafe {
            ffi::nfv_rx(
                self.port.id,
                self.queue,
                self.base,
                self.region,
                self.addrs.as_mut_ptr(),
                self.lens.as_mut_ptr(),
                want as u16,
                &mut self.rx_invalid,
            )
        } as usize;
        let mut bytes = 0u64;
        for (&addr, &len) in self.addrs[..n].iter().zip(&self.lens[..n]) {
            bytes += u64::from(len);
            batch.push(super::Desc { addr, len });
        }
        self.counters.rx_bytes += bytes;
        self.counters.rx_packets += n as u64;
        Ok(n)
    }

    fn send(&mut self, batch: &mut Batch) -> Result<usize, IoError> {
        self.reclaim(batch)?;
        let descs = batch.descs();
        let n = descs.len();
        if n == 0 {
            return Ok(0);
        }
        let mut bytes = 0u64;
        for ((d, a), l) in descs.iter().zip(&mut self.addrs).zip(&mut self.lens) {
            *a = d.addr;
            *l = d.len;
            bytes += u64::from(d.len);
        }
        // SAFETY: each descriptor names a chunk this batch owns (the batch
        // invariant) inside this queue's memory (checked by `adopt`).
        let sent = unsafe {
            ffi::nfv_tx(
                self.port.id,
                self.queue,
                self.base,
                self.port.pools[usize::from(self.queue)].table.as_ptr(),
                self.shift,
                self.addrs.as_ptr(),
                self.lens.as_ptr(),
                n as u16,
            )
        } as usize;
        if sent < n {
            // The unsent frames' bytes are not counted.
            bytes -= self.lens[sent..n]
                .iter()
                .map(|&l| u64::from(l))
                .sum::<u64>();
            self.counters.tx_full += (n - sent) as u64;
        }
        batch.consume_front(sent);
        self.counters.tx_packets += sent as u64;
        self.counters.tx_bytes += bytes;
        Ok(sent)
    }

    fn alloc(&mut self, batch: &mut Batch, n: usize) -> usize {
        if self.reclaim(batch).is_err() {
            return 0;
        }
        let want = n.min(batch.spare());
        // SAFETY: a valid pool; `want <= MAX_BURST` slots.
        let got = unsafe {
            ffi::nfv_alloc(
                self.port.pools[usize::from(self.queue)].mp,
                self.base,
                self.addrs.as_mut_ptr(),
                want as u32,
            )
        } as usize;
        for &addr in &self.addrs[..got] {
            batch.push(super::Desc { addr, len: 0 });
        }
        got
    }

    fn release(&mut self, batch: &mut Batch) -> Result<(), IoError> {
        self.reclaim(batch)?;
        let shift = self.shift;
        self.chunks
            .extend(batch.descs().iter().map(|d| (d.addr >> shift) as u32));
        let n = batch.len();
        batch.consume_front(n);
        self.free_chunks();
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> Result<(), IoError> {
        // Poll-mode drivers have nothing to sleep on; an idle queue naps
        // briefly so an adaptive worker gives its core away.
        std::thread::sleep(timeout.min(Duration::from_micros(100)));
        Ok(())
    }

    fn counters(&self) -> IoCounters {
        let mut c = self.counters;
        c.rx_dropped += self.rx_invalid;
        if self.queue == 0 {
            if let Ok(s) = self.port_stats() {
                c.rx_dropped += s.imissed + s.ierrors + s.rx_nombuf;
                c.tx_errors += s.oerrors;
            }
        }
        c
    }
}

#[cfg(test)]
mod tests;
