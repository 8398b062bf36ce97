//! A DPDK Ethernet port: started with one receive/transmit queue pair per
//! worker, each queue with its own packet memory and mbuf pool.

use std::ffi::{CString, c_int, c_void};
use std::sync::Arc;

use super::{DpdkError, DpdkIo, ffi};
use crate::io::PacketMemory;

/// How to set up a port.
#[derive(Debug, Clone, Copy)]
pub struct PortConfig {
    /// Queue pairs (RSS spreads received flows over them where the device
    /// hashes).
    pub queues: u16,
    /// Mbufs, hence chunks of packet memory, per queue (a power of two).
    pub chunks: u32,
    /// Bytes per chunk: 2048 to 32768, a power of two. DPDK's headroom
    /// (128 bytes) comes off the front of each.
    pub chunk_size: u32,
    /// Receive descriptors per queue.
    pub rx_desc: u16,
    /// Transmit descriptors per queue.
    pub tx_desc: u16,
    /// Frames per receive.
    pub burst: usize,
}

impl Default for PortConfig {
    fn default() -> Self {
        Self {
            queues: 1,
            chunks: 4096,
            // net_af_packet wants 2016 bytes of room after the headroom.
            chunk_size: 4096,
            rx_desc: 1024,
            tx_desc: 1024,
            burst: 32,
        }
    }
}

/// One queue's memory: the region, its mbuf pool, and the mbuf of each chunk.
pub(super) struct QueuePool {
    pub mem: Arc<PacketMemory>,
    pub mp: *mut ffi::RteMempool,
    pub table: Box<[*mut ffi::RteMbuf]>,
    registered: bool,
    mapped: bool,
}

impl QueuePool {
    fn new(name: &str, port: u16, config: &PortConfig) -> Result<Self, DpdkError> {
        let mem = Arc::new(PacketMemory::new(config.chunks, config.chunk_size)?);
        let region = mem.as_non_null_slice();
        let (base, len) = (region.cast::<c_void>().as_ptr(), region.len());
        let mut pool = Self {
            mem,
            mp: std::ptr::null_mut(),
            table: vec![std::ptr::null_mut(); config.chunks as usize].into_boxed_slice(),
            registered: false,
            mapped: false,
        };
        // SAFETY: `base..base+len` is our own page-aligned mapping, alive as
        // long as `pool.mem`; 4 KiB pages.
        if unsafe { ffi::rte_extmem_register(base, len, std::ptr::null_mut(), 0, 4096) } != 0 {
            return Err(DpdkError::Call {
                op: "rte_extmem_register",
                msg: ffi::last_error(),
            });
        }
        pool.registered = true;
        // SAFETY: as above; the port id is valid.
        let r = unsafe { ffi::nfv_dma_map(port, base, len, 1) };
        if r != 0 {
            return Err(DpdkError::Call {
                op: "rte_dev_dma_map",
                msg: ffi::strerror(r),
            });
        }
        pool.mapped = true;
        let cname = CString::new(name).map_err(|_| DpdkError::Name(name.into()))?;
        // SAFETY: `table` has `chunks` slots; the region is registered and
        // holds `chunks` chunks of `1 << shift` bytes.
        pool.mp = unsafe {
            ffi::nfv_pool_create(
                cname.as_ptr(),
                config.chunks,
                config.chunk_size.trailing_zeros(),
                base,
                ffi::rte_eth_dev_socket_id(port),
                pool.table.as_mut_ptr(),
            )
        };
        if pool.mp.is_null() {
            return Err(DpdkError::Call {
                op: "rte_pktmbuf_pool_create_extbuf",
                msg: ffi::last_error(),
            });
        }
        Ok(pool)
    }

    fn release(&mut self, port: u16) {
        let region = self.mem.as_non_null_slice();
        let (base, len) = (region.cast::<c_void>().as_ptr(), region.len());
        // SAFETY: called once, after the port stopped using the pool; the
        // region is still mapped (we hold an Arc to it).
        unsafe {
            if !self.mp.is_null() {
                ffi::nfv_pool_free(self.mp);
                self.mp = std::ptr::null_mut();
            }
            if self.mapped {
                ffi::nfv_dma_map(port, base, len, 0);
            }
            if self.registered {
                ffi::rte_extmem_unregister(base, len);
            }
        }
    }
}

/// What a port's queues share; the port stops when the last queue is dropped.
pub(super) struct PortInner {
    pub id: u16,
    pub name: String,
    pub pools: Vec<QueuePool>,
    pub rss: bool,
    started: bool,
}

// SAFETY: the raw pointers name DPDK objects (pools, mbufs) that are safe to
// use from any thread; each queue's pool is polled by one thread at a time
// (its DpdkIo), and the shared parts are only read after set-up.
unsafe impl Send for PortInner {}
// SAFETY: see Send.
unsafe impl Sync for PortInner {}

impl Drop for PortInner {
    fn drop(&mut self) {
        if self.started {
            // SAFETY: a valid, started port; no queue can poll it any more
            // (they each held an Arc to us).
            unsafe { ffi::nfv_port_stop(self.id) };
        }
        // The DMA mappings go while the device still exists, then the port.
        for p in &mut self.pools {
            p.release(self.id);
        }
        // SAFETY: a valid, stopped port that nothing uses any more.
        unsafe { ffi::nfv_port_close(self.id) };
    }
}

/// An opened, started DPDK port, before its queues are handed out.
pub struct DpdkPort {
    inner: Arc<PortInner>,
    burst: usize,
}

impl std::fmt::Debug for DpdkPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpdkPort")
            .field("id", &self.inner.id)
            .field("name", &self.inner.name)
            .field("queues", &self.inner.pools.len())
            .field("rss", &self.inner.rss)
            .finish()
    }
}

impl DpdkPort {
    /// Opens and starts the port `device`: the name of a port EAL already
    /// probed (a `--vdev` name, a PCI address), or a devargs string
    /// (`net_null7`, `net_af_packet_v0,iface=veth0`) hot-plugged now. EAL
    /// must be started ([`super::eal::init`]).
    pub fn open(device: &str, config: PortConfig) -> Result<Self, DpdkError> {
        if super::eal::started_with().is_none() {
            return Err(DpdkError::Eal("EAL is not started".into()));
        }
        if !config.chunk_size.is_power_of_two() || !(2048..=32768).contains(&config.chunk_size) {
            return Err(DpdkError::Config(format!(
                "chunk size {} is not a power of two in 2048..=32768",
                config.chunk_size
            )));
        }
        if config.queues == 0 || !config.chunks.is_power_of_two() || config.chunks < 64 {
            return Err(DpdkError::Config(format!(
                "{} queues of {} mbufs: need at least one queue and a power of two of \
                 at least 64 mbufs",
                config.queues, config.chunks
            )));
        }
        let name = device.split(',').next().unwrap_or(device).to_string();
        let id = match port_by_name(&name)? {
            Some(id) => id,
            None => {
                let devargs = CString::new(device).map_err(|_| DpdkError::Name(device.into()))?;
                // SAFETY: a NUL-terminated string.
                let r = unsafe { ffi::rte_dev_probe(devargs.as_ptr()) };
                if r != 0 {
                    return Err(DpdkError::Probe {
                        device: device.into(),
                        msg: ffi::strerror(r),
                    });
                }
                port_by_name(&name)?.ok_or_else(|| DpdkError::NoPort(name.clone()))?
            }
        };
        // SAFETY: a valid port id.
        let max = unsafe { ffi::nfv_max_queues(id) };
        if max < 0 {
            return Err(DpdkError::Start {
                port: name,
                msg: ffi::strerror(max),
            });
        }
        if i32::from(config.queues) > max {
            return Err(DpdkError::Start {
                port: name,
                msg: format!("{} queues asked for, the device has {max}", config.queues),
            });
        }
        let mut inner = PortInner {
            id,
            name: name.clone(),
            pools: Vec::new(),
            rss: false,
            started: false,
        };
        for q in 0..config.queues {
            // Pool names are global to EAL and at most 25 characters.
            let pool_name = format!("nfv{}q{q}p{}", id, std::process::id() % 100_000);
            inner.pools.push(QueuePool::new(&pool_name, id, &config)?);
        }
        let pools: Vec<*mut ffi::RteMempool> = inner.pools.iter().map(|p| p.mp).collect();
        let mut rss: c_int = 0;
        // SAFETY: one valid pool per queue; the port id is valid.
        let r = unsafe {
            ffi::nfv_port_start(
                id,
                config.queues,
                pools.as_ptr(),
                config.rx_desc,
                config.tx_desc,
                &mut rss,
            )
        };
        if r != 0 {
            // Stop whatever part of the set-up happened before the pools go.
            inner.started = true;
            return Err(DpdkError::Start {
                port: name,
                msg: ffi::strerror(r),
            });
        }
        inner.started = true;
        inner.rss = rss != 0;
        tracing::info!(port = %inner.name, id, queues = config.queues, rss = inner.rss, "DPDK port started");
        Ok(Self {
            inner: Arc::new(inner),
            burst: config.burst,
        })
    }

    /// DPDK's port id.
    pub fn id(&self) -> u16 {
        self.inner.id
    }

    /// Queue pairs.
    pub fn queues(&self) -> u16 {
        self.inner.pools.len() as u16
    }

    /// True when the device spreads received flows over the queues by RSS.
    pub fn rss(&self) -> bool {
        self.inner.rss
    }

    /// Every queue's backend, in order, each to be polled by one thread.
    /// Consumes the port: each queue has exactly one handle, and the port
    /// stops when the last of them is dropped.
    pub fn into_queues(self) -> Vec<DpdkIo> {
        (0..self.queues())
            .map(|q| DpdkIo::new(self.inner.clone(), q, self.burst))
            .collect()
    }
}

fn port_by_name(name: &str) -> Result<Option<u16>, DpdkError> {
    let c = CString::new(name).map_err(|_| DpdkError::Name(name.into()))?;
    let mut id = 0u16;
    // SAFETY: a NUL-terminated name and a valid out pointer.
    let r = unsafe { ffi::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
    Ok((r == 0).then_some(id))
}
