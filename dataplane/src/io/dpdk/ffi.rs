//! Hand-written declarations for the few DPDK functions we call, and for the
//! C shim (`csrc/dpdk_shim.c`) that wraps DPDK's inline fast path.
//!
//! Why not bindgen: it would need libclang on every machine that builds with
//! the feature, and would mirror hundreds of DPDK structs whose layout
//! changes between releases. The shim keeps every struct on the C side; the
//! Rust side passes integers and opaque pointers only, so these declarations
//! are layout-free and stable across DPDK versions.

use std::ffi::{c_char, c_int, c_uint, c_void};

/// Opaque `struct rte_mempool`.
#[repr(C)]
pub struct RteMempool {
    _private: [u8; 0],
}

/// Opaque `struct rte_mbuf`.
#[repr(C)]
pub struct RteMbuf {
    _private: [u8; 0],
}

#[link(name = "nfvinc_dpdk_shim", kind = "static")]
unsafe extern "C" {
    pub fn nfv_headroom() -> c_uint;
    pub fn nfv_errno() -> c_int;
    pub fn nfv_log_to_stderr();
    pub fn nfv_register_thread();
    pub fn nfv_pool_create(
        name: *const c_char,
        n: c_uint,
        shift: c_uint,
        base: *mut c_void,
        socket: c_int,
        table: *mut *mut RteMbuf,
    ) -> *mut RteMempool;
    pub fn nfv_pool_free(mp: *mut RteMempool);
    pub fn nfv_pool_avail(mp: *const RteMempool) -> c_uint;
    pub fn nfv_port_start(
        port: u16,
        queues: u16,
        pools: *const *mut RteMempool,
        rxd: u16,
        txd: u16,
        rss_on: *mut c_int,
    ) -> c_int;
    pub fn nfv_port_stop(port: u16);
    pub fn nfv_port_close(port: u16);
    pub fn nfv_max_queues(port: u16) -> c_int;
    pub fn nfv_dma_map(port: u16, base: *mut c_void, len: usize, map: c_int) -> c_int;
    pub fn nfv_rx(
        port: u16,
        queue: u16,
        base: *const c_char,
        region: u64,
        addrs: *mut u64,
        lens: *mut u32,
        n: u16,
        dropped: *mut u64,
    ) -> u16;
    pub fn nfv_tx(
        port: u16,
        queue: u16,
        base: *const c_char,
        table: *const *mut RteMbuf,
        shift: c_uint,
        addrs: *const u64,
        lens: *const u32,
        n: u16,
    ) -> u16;
    pub fn nfv_alloc(
        mp: *mut RteMempool,
        base: *const c_char,
        addrs: *mut u64,
        n: c_uint,
    ) -> c_uint;
    pub fn nfv_chunk_data(table: *const *mut RteMbuf, chunk: c_uint, base: *const c_char) -> u64;
    pub fn nfv_free_chunks(table: *const *mut RteMbuf, chunks: *const u32, n: c_uint);
    pub fn nfv_stats(port: u16, queue: u16, out: *mut u64) -> c_int;
}

unsafe extern "C" {
    pub fn rte_eal_init(argc: c_int, argv: *mut *mut c_char) -> c_int;
    pub fn rte_strerror(errnum: c_int) -> *const c_char;
    pub fn rte_eth_dev_get_port_by_name(name: *const c_char, port_id: *mut u16) -> c_int;
    pub fn rte_eth_dev_socket_id(port_id: u16) -> c_int;
    pub fn rte_dev_probe(devargs: *const c_char) -> c_int;
    pub fn rte_extmem_register(
        va: *mut c_void,
        len: usize,
        iova: *mut u64,
        n_pages: c_uint,
        page_sz: usize,
    ) -> c_int;
    pub fn rte_extmem_unregister(va: *mut c_void, len: usize) -> c_int;
}

/// DPDK's message for `rte_errno` (or a negative return's errno).
pub fn strerror(errnum: c_int) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local
    // NUL-terminated string for any errno value.
    unsafe { std::ffi::CStr::from_ptr(rte_strerror(errnum.abs())) }
        .to_string_lossy()
        .into_owned()
}

/// DPDK's message for the current `rte_errno`.
pub fn last_error() -> String {
    // SAFETY: reads a thread-local integer.
    strerror(unsafe { nfv_errno() })
}
