//! AF_XDP backend: kernel-bypass receive and transmit through XDP sockets.
//!
//! Built on `xdpilone`, a pure-Rust AF_XDP ring library, rather than `xsk-rs`:
//! `xsk-rs` wraps libxdp/libbpf, which adds a C build (and m4, libelf) to every
//! build of the workspace and hides the rings behind its own frame types,
//! whereas `xdpilone` hands us the four rings directly, which is exactly the
//! layer our [`PacketIo`] sits on, and leaves BPF loading to aya (crate
//! `ebpf`), which we use anyway.
//!
//! Shape: an [`AfXdpPort`] owns one interface: the steering XDP program (see
//! the `ebpf` crate) and its flow routes. [`AfXdpPort::open_queue`] creates one
//! [`AfXdpIo`] per NIC queue, each with its own UMEM ([`PacketMemory`]), fill,
//! completion, RX and TX rings, so each pinned worker owns its queue outright
//! and nothing is shared on the fast path.
//!
//! Buffer life cycle, which is what keeps the UMEM from leaking: every chunk
//! is in exactly one place: the fill ring, the RX ring (kernel-owned), a
//! [`Batch`], the TX ring, the completion ring, or the free list. Receive moves
//! RX → batch; send moves batch → TX; completions move → free list; the fill
//! ring is topped up from the free list on every receive; frames a VNF drops
//! go back through the batch's drop list.

use std::num::NonZeroU32;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use ebpf::{AttachMode, FlowRoute, SteerCounters, Steering};
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};

use super::{Batch, Desc, FreeList, IoCounters, IoError, PacketIo, PacketMemory, PoolError, adopt};

/// How to bind an XDP socket to its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindMode {
    /// Zero-copy where the driver supports it, copy otherwise.
    #[default]
    Auto,
    /// Copy mode: works on every driver (veth included).
    Copy,
    /// Zero-copy only: fails on drivers without support.
    ZeroCopy,
}

/// Settings of the AF_XDP sockets of a port.
#[derive(Debug, Clone, Copy)]
pub struct AfXdpConfig {
    /// Frames per receive.
    pub burst: usize,
    /// UMEM chunks per socket: half go to the fill ring, the rest are free
    /// for transmitting. A power of two, at least 64.
    pub frames: u32,
    /// Bytes per UMEM chunk (2048 or 4096).
    pub frame_size: u32,
    /// Copy or zero-copy.
    pub bind: BindMode,
    /// How the steering program is attached.
    pub attach: AttachMode,
    /// Ask the kernel to busy-poll the device queue from our receive calls
    /// (SO_PREFER_BUSY_POLL), for dedicated cores.
    pub busy_poll: bool,
}

impl Default for AfXdpConfig {
    fn default() -> Self {
        Self {
            burst: 64,
            frames: 4096,
            frame_size: 2048,
            bind: BindMode::Auto,
            attach: AttachMode::Auto,
            busy_poll: false,
        }
    }
}

/// Errors setting up or using AF_XDP.
#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    /// The interface does not exist in this network namespace.
    #[error("no interface named {0:?} in this network namespace")]
    NoInterface(String),
    /// A setting is out of range.
    #[error("invalid AF_XDP setting: {0}")]
    Config(String),
    /// The UMEM could not be allocated.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A socket, ring or bind step failed.
    #[error("AF_XDP {step} on {ifname} queue {queue} failed: {source}")]
    Socket {
        /// Which step.
        step: &'static str,
        /// The interface.
        ifname: String,
        /// The queue.
        queue: u32,
        /// The OS error.
        source: std::io::Error,
    },
    /// Loading, attaching or updating the steering program failed.
    #[error(transparent)]
    Steering(#[from] ebpf::EbpfError),
}

/// One interface under AF_XDP: the steering program and its routes.
pub struct AfXdpPort {
    ifname: String,
    ifindex: u32,
    config: AfXdpConfig,
    steering: Steering,
}

impl std::fmt::Debug for AfXdpPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfXdpPort")
            .field("ifname", &self.ifname)
            .field("ifindex", &self.ifindex)
            .finish()
    }
}

impl AfXdpPort {
    /// Attaches the steering program to `ifname` in the calling thread's
    /// network namespace.
    pub fn open(ifname: &str, config: AfXdpConfig) -> Result<Self, AfXdpError> {
        validate(&config)?;
        let ifindex = ifindex_of(ifname)?;
        let steering = Steering::attach(ifindex, config.attach)?;
        tracing::info!(ifname, ifindex, "steering program attached");
        Ok(Self {
            ifname: ifname.to_string(),
            ifindex,
            config,
            steering,
        })
    }

    /// Interface name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Number of receive queues the interface has (1 when the driver does
    /// not say).
    pub fn queues(&self) -> u32 {
        crate::iface::rx_queues(&self.ifname).unwrap_or(1).max(1)
    }

    /// Opens an XDP socket on `queue` and registers it as `slot`'s socket for
    /// that queue, so routes to `slot` arriving on `queue` reach it.
    pub fn open_queue(&mut self, slot: u32, queue: u32) -> Result<AfXdpIo, AfXdpError> {
        let io = AfXdpIo::open(&self.ifname, self.ifindex, queue, self.config)?;
        self.steering.register_socket(slot, queue, io.fd())?;
        Ok(io)
    }

    /// Steers `route` to `slot`.
    pub fn add_route(&mut self, route: FlowRoute, slot: u32) -> Result<(), AfXdpError> {
        Ok(self.steering.add_route(route, slot)?)
    }

    /// Stops steering `route`.
    pub fn remove_route(&mut self, route: &FlowRoute) -> Result<(), AfXdpError> {
        Ok(self.steering.remove_route(route)?)
    }

    /// The steering program's counters.
    pub fn steer_counters(&self) -> Result<SteerCounters, AfXdpError> {
        Ok(self.steering.counters()?)
    }

    /// The steering program itself.
    pub fn steering_mut(&mut self) -> &mut Steering {
        &mut self.steering
    }
}

fn validate(c: &AfXdpConfig) -> Result<(), AfXdpError> {
    if !c.frames.is_power_of_two() || c.frames < 64 {
        return Err(AfXdpError::Config(format!(
            "frames must be a power of two >= 64, got {}",
            c.frames
        )));
    }
    if c.frame_size != 2048 && c.frame_size != 4096 {
        return Err(AfXdpError::Config(format!(
            "frame_size must be 2048 or 4096, got {}",
            c.frame_size
        )));
    }
    if c.burst == 0 || c.burst > super::MAX_BURST {
        return Err(AfXdpError::Config(format!(
            "burst must be 1..={}, got {}",
            super::MAX_BURST,
            c.burst
        )));
    }
    Ok(())
}

fn ifindex_of(ifname: &str) -> Result<u32, AfXdpError> {
    crate::iface::index(ifname).ok_or_else(|| AfXdpError::NoInterface(ifname.into()))
}

/// Transmit descriptors the kernel moves per `sendto` in copy mode; a kick
/// loops at most this many times beyond the first call.
const MAX_KICKS: usize = 4;

/// One XDP socket on one queue: its UMEM and its four rings.
pub struct AfXdpIo {
    // Field order is drop order: rings and sockets go before the UMEM
    // registration, and the memory (whose `Arc` batches may share) goes last.
    rx: RingRx,
    tx: RingTx,
    device: DeviceQueue,
    user: User,
    _umem: Umem,
    mem: Arc<PacketMemory>,
    free: FreeList,
    burst: usize,
    counters: IoCounters,
    zero_copy: bool,
    queue: u32,
}

// SAFETY: xdpilone's ring and UMEM handles hold raw pointers into mappings
// that belong to the socket, not to a thread. `AfXdpIo` owns all of them
// together and is moved as a whole; nothing else refers to its rings, so using
// it from whichever single thread holds it is sound.
unsafe impl Send for AfXdpIo {}

impl std::fmt::Debug for AfXdpIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfXdpIo")
            .field("queue", &self.queue)
            .field("zero_copy", &self.zero_copy)
            .field("free", &self.free.len())
            .field("counters", &self.counters)
            .finish()
    }
}

impl AfXdpIo {
    fn open(
        ifname: &str,
        ifindex: u32,
        queue: u32,
        config: AfXdpConfig,
    ) -> Result<Self, AfXdpError> {
        validate(&config)?;
        match config.bind {
            BindMode::Copy => Self::build(ifname, ifindex, queue, config, false),
            BindMode::ZeroCopy => Self::build(ifname, ifindex, queue, config, true),
            BindMode::Auto => Self::build(ifname, ifindex, queue, config, true).or_else(|e| {
                tracing::info!(ifname, queue, reason = %e, "zero-copy unavailable, binding in copy mode");
                Self::build(ifname, ifindex, queue, config, false)
            }),
        }
    }

    fn build(
        ifname: &str,
        ifindex: u32,
        queue: u32,
        config: AfXdpConfig,
        zero_copy: bool,
    ) -> Result<Self, AfXdpError> {
        let err = |step: &'static str| {
            let ifname = ifname.to_string();
            move |e: xdpilone::Errno| AfXdpError::Socket {
                step,
                ifname,
                queue,
                source: std::io::Error::from_raw_os_error(e.get_raw()),
            }
        };
        let mem = Arc::new(PacketMemory::new(config.frames, config.frame_size)?);
        let ring = config.frames / 2;
        let umem_config = UmemConfig {
            fill_size: ring,
            complete_size: ring,
            frame_size: config.frame_size,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: the area is a page-aligned mapping of the configured size
        // that `mem` keeps alive; `mem` is declared after `_umem` in the
        // struct, so it outlives every kernel reference to the area.
        let umem = unsafe { Umem::new(umem_config, mem.as_non_null_slice()) }
            .map_err(err("umem registration"))?;
        let mut info = IfInfo::invalid();
        info.from_ifindex(ifindex)
            .map_err(err("interface lookup"))?;
        info.set_queue(queue);
        let sock = Socket::with_shared(&info, &umem).map_err(err("socket"))?;
        let mut device = umem.fq_cq(&sock).map_err(err("fill/completion rings"))?;
        let mut bind_flags = SocketConfig::XDP_BIND_NEED_WAKEUP;
        bind_flags |= if zero_copy {
            SocketConfig::XDP_BIND_ZEROCOPY
        } else {
            SocketConfig::XDP_BIND_COPY
        };
        let user = umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: NonZeroU32::new(ring),
                    tx_size: NonZeroU32::new(ring),
                    bind_flags,
                },
            )
            .map_err(err("rx/tx rings"))?;
        let rx = user.map_rx().map_err(err("rx ring mmap"))?;
        let tx = user.map_tx().map_err(err("tx ring mmap"))?;
        umem.bind(&user).map_err(err("bind"))?;
        if config.busy_poll {
            set_busy_poll(user.as_raw_fd(), config.burst).map_err(|source| AfXdpError::Socket {
                step: "busy-poll socket options",
                ifname: ifname.to_string(),
                queue,
                source,
            })?;
        }
        // Half the chunks prime the fill ring; the other half are free for
        // transmitting frames that did not arrive on this socket.
        let mut filled = 0;
        {
            let mut w = device.fill(ring);
            filled += w.insert((0..ring).map(|i| mem.chunk_addr(i)));
            w.commit();
        }
        let free = FreeList::new(
            config.frames as usize,
            (filled..config.frames).rev().map(|i| mem.chunk_addr(i)),
        );
        tracing::debug!(
            ifname,
            queue,
            zero_copy,
            frames = config.frames,
            "XDP socket bound"
        );
        Ok(Self {
            rx,
            tx,
            device,
            user,
            _umem: umem,
            mem,
            free,
            burst: config.burst,
            counters: IoCounters::default(),
            zero_copy,
            queue,
        })
    }

    /// The socket, for registering in an XSKMAP.
    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor is owned by `self.user` and stays open for
        // as long as `self` is borrowed.
        unsafe { BorrowedFd::borrow_raw(self.user.as_raw_fd()) }
    }

    /// True when bound in zero-copy mode.
    pub fn is_zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// The NIC queue this socket is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Chunks on the free list (not in a ring, not lent to a batch).
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }

    /// Chunks at rest: on the free list or waiting in the fill ring. Once
    /// traffic stops, every batch is released and completions are reclaimed
    /// ([`PacketIo::flush`]), this equals the configured frame count unless a
    /// buffer leaked. (A zero-copy driver may hold fill-ring chunks in its own
    /// cache, so the check is exact in copy mode.)
    pub fn frames_at_rest(&self) -> usize {
        self.free.len() + self.device.pending() as usize
    }

    /// Moves transmitted chunks from the completion ring to the free list.
    fn reclaim(&mut self) {
        let mut c = self.device.complete(u32::MAX);
        while let Some(addr) = c.read() {
            self.free.put(self.mem.chunk_base(addr));
        }
        c.release();
    }

    /// Tops the fill ring up from the free list, keeping enough free chunks
    /// for one transmit burst so originating traffic is never starved.
    fn refill(&mut self) {
        let spare = self.free.len().saturating_sub(self.burst) as u32;
        if spare == 0 {
            return;
        }
        let mut w = self.device.fill(spare);
        let n = w.capacity() as usize;
        let free = &mut self.free;
        w.insert(std::iter::from_fn(|| free.take()).take(n));
        w.commit();
    }

    /// Makes the kernel transmit what is on the TX ring. In copy mode the
    /// kernel sends only in the context of this call, a bounded number per
    /// call, so it may take a few.
    fn kick_tx(&mut self) -> Result<(), IoError> {
        for _ in 0..=MAX_KICKS {
            if self.tx.pending() == 0 || !self.tx.needs_wakeup() {
                return Ok(());
            }
            self.counters.wakeups += 1;
            // SAFETY: a zero-length, non-blocking sendto on our own socket.
            let r = unsafe {
                libc::sendto(
                    self.tx.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    // The kernel is busy or out of room: the frames stay on
                    // the ring and go out on a later kick.
                    Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS) => return Ok(()),
                    _ => {
                        return Err(IoError::Os {
                            op: "AF_XDP tx wake-up",
                            source: e,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

fn set_busy_poll(fd: RawFd, budget: usize) -> std::io::Result<()> {
    // Values from <asm-generic/socket.h>; libc lacks the last two on some targets.
    const SO_PREFER_BUSY_POLL: libc::c_int = 69;
    const SO_BUSY_POLL_BUDGET: libc::c_int = 70;
    for (opt, val) in [
        (SO_PREFER_BUSY_POLL, 1),
        (libc::SO_BUSY_POLL, 20),
        (SO_BUSY_POLL_BUDGET, budget as libc::c_int),
    ] {
        // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `&val`.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&val as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

impl PacketIo for AfXdpIo {
    fn name(&self) -> &'static str {
        "afxdp"
    }

    fn new_batch(&self) -> Batch {
        Batch::new(self.mem.clone(), self.burst)
    }

    fn recv(&mut self, batch: &mut Batch) -> Result<usize, IoError> {
        adopt(batch, &self.mem, |a| self.free.put(a))?;
        self.reclaim();
        self.refill();
        let mut r = self.rx.receive(batch.spare() as u32);
        let mut n = 0;
        while let Some(d) = r.read() {
            self.counters.rx_bytes += u64::from(d.len);
            batch.push(Desc {
                addr: d.addr,
                len: d.len,
            });
            n += 1;
        }
        r.release();
        drop(r);
        self.counters.rx_packets += n as u64;
        if n == 0 && self.device.needs_wakeup() {
            self.counters.wakeups += 1;
            self.device.wake();
        }
        Ok(n)
    }

    fn send(&mut self, batch: &mut Batch) -> Result<usize, IoError> {
        adopt(batch, &self.mem, |a| self.free.put(a))?;
        self.reclaim();
        let want = batch.len();
        // xdpilone serves a reservation from its cached view of the kernel's
        // consumer index while that shows any room at all, so the first
        // reservation may come up short of what the ring really has; the
        // second one refreshes the view. Only then is the ring really full.
        let (mut n, mut bytes) = (0, 0u64);
        for _ in 0..2 {
            let rest = &batch.descs()[n..];
            if rest.is_empty() {
                break;
            }
            let mut w = self.tx.transmit(rest.len() as u32);
            let k = (w.capacity() as usize).min(rest.len());
            w.insert(rest[..k].iter().map(|d| {
                bytes += u64::from(d.len);
                xdpilone::xdp::XdpDesc {
                    addr: d.addr,
                    len: d.len,
                    options: 0,
                }
            }));
            w.commit();
            n += k;
        }
        batch.consume_front(n);
        self.counters.tx_packets += n as u64;
        self.counters.tx_bytes += bytes;
        self.counters.tx_full += (want - n) as u64;
        self.kick_tx()?;
        Ok(n)
    }

    fn alloc(&mut self, batch: &mut Batch, n: usize) -> usize {
        self.reclaim();
        self.free.alloc(batch, &self.mem, n)
    }

    fn release(&mut self, batch: &mut Batch) -> Result<(), IoError> {
        self.free.release(batch, &self.mem)
    }

    fn wait(&mut self, timeout: Duration) -> Result<(), IoError> {
        self.flush()?;
        super::poll::wait_readable(self.rx.as_raw_fd(), timeout, "poll on XDP socket")
    }

    fn flush(&mut self) -> Result<(), IoError> {
        self.reclaim();
        self.refill();
        self.kick_tx()
    }

    fn counters(&self) -> IoCounters {
        let mut c = self.counters;
        if let Ok(s) = self.user.statistics_v2() {
            c.rx_dropped = s.rx_dropped + s.rx_ring_full;
        }
        c
    }
}
