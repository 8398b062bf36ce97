/*
 * NFVinc's C shim over DPDK 22.11.
 *
 * DPDK defines its fast-path functions (rx/tx burst, mbuf allocation, field
 * access) inline in headers, and its configuration structs (rte_eth_conf and
 * friends) are large and change between releases. Rather than mirror those
 * layouts in Rust, every call that needs them lives here, behind a handful of
 * functions taking plain integers and pointers. Rust sees frames only as
 * (offset, length) pairs into the packet memory it registered, never an mbuf
 * field. Built by dataplane/build.rs only with the `dpdk` feature.
 */
#define ALLOW_EXPERIMENTAL_API 1
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <rte_config.h>
#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

/* Headroom DPDK reserves in front of a received frame. */
unsigned nfv_headroom(void) { return RTE_PKTMBUF_HEADROOM; }

int nfv_errno(void) { return rte_errno; }

/* EAL's Linux console log writes to stdout, which our VNFs keep for their
 * READY line and counters: send DPDK's log to stderr instead. */
void nfv_log_to_stderr(void) { rte_openlog_stream(stderr); }

/* Worker threads are not EAL lcores; registering one gives it an lcore id,
 * hence a per-lcore mempool cache, which keeps mbuf get/put off the shared
 * ring. The Rust side calls this once per thread (it remembers in a
 * thread-local of its own: reading DPDK's lcore id from here costs a
 * __tls_get_addr call, as the variable lives in a shared library). */
void nfv_register_thread(void) {
	if (rte_lcore_id() == LCORE_ID_ANY)
		(void)rte_thread_register();
}

struct table_fill {
	char *base;
	size_t len;
	unsigned shift;
	struct rte_mbuf **table;
	unsigned n;
	unsigned bad;
	unsigned stagger_slots;
};

/*
 * Chunks are a power of two of bytes, 4096 and more by default, so every
 * frame's first bytes would sit at the same offset in a page and in the
 * same set of the L1 data cache (8 ways of 64 sets of 64 bytes: 4 KiB
 * apart is the same set): a burst of 32 frames whose headers a VNF reads
 * would evict one another. Each mbuf's buffer therefore starts a few cache
 * lines into its chunk (chunk i: (i % slots) lines), spreading the headers
 * over `slots` sets. At least 2048 bytes stay after the headroom, the
 * room of a standard 2 KiB mbuf.
 */
#define NFV_STAGGER_MAX_SLOTS 32u
#define NFV_MIN_ROOM 2048u

static unsigned stagger_slots(unsigned shift) {
	unsigned chunk = 1u << shift;
	if (chunk < RTE_PKTMBUF_HEADROOM + NFV_MIN_ROOM)
		return 1;
	unsigned slots = (chunk - RTE_PKTMBUF_HEADROOM - NFV_MIN_ROOM) / RTE_CACHE_LINE_SIZE + 1;
	return slots < NFV_STAGGER_MAX_SLOTS ? slots : NFV_STAGGER_MAX_SLOTS;
}

static void fill_one(struct rte_mempool *mp, void *arg, void *obj, unsigned idx) {
	(void)mp;
	(void)idx;
	struct table_fill *t = arg;
	struct rte_mbuf *m = obj;
	char *b = m->buf_addr;
	if (b < t->base || b >= t->base + t->len) {
		t->bad++;
		return;
	}
	size_t i = (size_t)(b - t->base) >> t->shift;
	if (i >= t->n || t->table[i] != NULL) {
		t->bad++;
		return;
	}
	t->table[i] = m;
	/* The buffer still ends where the chunk ends; pinned external buffers
	 * are never re-attached, so the mbuf keeps this start for good. */
	uint16_t skip = (uint16_t)((i % t->stagger_slots) * RTE_CACHE_LINE_SIZE);
	m->buf_addr = (char *)m->buf_addr + skip;
	if (m->buf_iova != RTE_BAD_IOVA)
		m->buf_iova += skip;
	m->buf_len = (uint16_t)(m->buf_len - skip);
	m->data_off = RTE_MIN((uint16_t)RTE_PKTMBUF_HEADROOM, m->buf_len);
}

/*
 * A pktmbuf pool of `n` mbufs whose data buffers are the `n` chunks of
 * `1 << shift` bytes at `base` (already registered with rte_extmem_register),
 * each buffer starting some cache lines into its chunk (see stagger_slots),
 * and `table[i]` set to the mbuf owning chunk i. NULL with rte_errno set on
 * failure.
 */
struct rte_mempool *nfv_pool_create(const char *name, unsigned n, unsigned shift, void *base,
				    int socket, struct rte_mbuf **table) {
	struct rte_pktmbuf_extmem ext = {
		.buf_ptr = base,
		/* vfio with an IOMMU runs IOVA-as-VA; virtual devices need none. */
		.buf_iova = rte_eal_iova_mode() == RTE_IOVA_VA ? (rte_iova_t)(uintptr_t)base : RTE_BAD_IOVA,
		.buf_len = (size_t)n << shift,
		.elt_size = (uint16_t)(1u << shift),
	};
	unsigned cache = n >= 1024 ? 256 : 0;
	struct rte_mempool *mp = rte_pktmbuf_pool_create_extbuf(
		name, n, cache, 0, (uint16_t)(1u << shift), socket, &ext, 1);
	if (mp == NULL)
		return NULL;
	memset(table, 0, sizeof(*table) * n);
	struct table_fill t = { base, (size_t)n << shift, shift, table, n, 0, stagger_slots(shift) };
	rte_mempool_obj_iter(mp, fill_one, &t);
	if (t.bad != 0) {
		rte_mempool_free(mp);
		rte_errno = EFAULT;
		return NULL;
	}
	return mp;
}

void nfv_pool_free(struct rte_mempool *mp) { rte_mempool_free(mp); }

/*
 * Configures and starts `port` with `queues` rx/tx queue pairs, receive queue
 * q filling from pools[q]; RSS over IP and UDP/TCP ports across the queues
 * where the device hashes. Returns 0 or a negative errno.
 */
int nfv_port_start(uint16_t port, uint16_t queues, struct rte_mempool **pools, uint16_t rxd,
		   uint16_t txd, int *rss_on) {
	struct rte_eth_dev_info info;
	int r = rte_eth_dev_info_get(port, &info);
	if (r != 0)
		return r;
	if (queues > info.max_rx_queues || queues > info.max_tx_queues)
		return -EINVAL;
	struct rte_eth_conf conf;
	memset(&conf, 0, sizeof(conf));
	uint64_t hf = (RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP | RTE_ETH_RSS_TCP) &
		      info.flow_type_rss_offloads;
	*rss_on = 0;
	if (queues > 1 && hf != 0) {
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf.rx_adv_conf.rss_conf.rss_hf = hf;
		*rss_on = 1;
	}
	if (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE)
		conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
	r = rte_eth_dev_configure(port, queues, queues, &conf);
	if (r != 0)
		return r;
	r = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rxd, &txd);
	if (r != 0)
		return r;
	int socket = rte_eth_dev_socket_id(port);
	for (uint16_t q = 0; q < queues; q++) {
		r = rte_eth_rx_queue_setup(port, q, rxd, socket, NULL, pools[q]);
		if (r != 0)
			return r;
		struct rte_eth_txconf txc = info.default_txconf;
		txc.offloads = conf.txmode.offloads;
		r = rte_eth_tx_queue_setup(port, q, txd, socket, &txc);
		if (r != 0)
			return r;
	}
	r = rte_eth_dev_start(port);
	if (r != 0)
		return r;
	/* Not every virtual device has a promiscuous mode; that is fine. */
	(void)rte_eth_promiscuous_enable(port);
	return 0;
}

/* The most queue pairs `port` can have, or a negative errno. */
int nfv_max_queues(uint16_t port) {
	struct rte_eth_dev_info info;
	int r = rte_eth_dev_info_get(port, &info);
	if (r != 0)
		return r;
	return info.max_rx_queues < info.max_tx_queues ? info.max_rx_queues : info.max_tx_queues;
}

/* Stops `port`, giving back every mbuf its rings hold. */
void nfv_port_stop(uint16_t port) { (void)rte_eth_dev_stop(port); }

/* Closes a stopped `port` for good. */
void nfv_port_close(uint16_t port) { (void)rte_eth_dev_close(port); }

/*
 * Receives up to n frames from (port, queue) and writes each one's offset
 * from `base` and length. Chained (multi-segment) frames and frames outside
 * the region are freed and counted in *dropped.
 *
 * The common burst, every frame good, is one pass without a branch per
 * frame: each frame's descriptor is written, its faults are or-ed into
 * `bad`, and only a burst with a fault goes through the second, compacting
 * pass. (A single pass that frees as it goes kept its output count and
 * pointers on the stack, a store and reload per frame.)
 */
uint16_t nfv_rx(uint16_t port, uint16_t queue, const char *base, uint64_t region,
		uint64_t *restrict addrs, uint32_t *restrict lens, uint16_t n,
		uint64_t *dropped) {
	struct rte_mbuf *pkts[64];
	if (n > 64)
		n = 64;
	unsigned got = rte_eth_rx_burst(port, queue, pkts, n);
	unsigned bad = 0;
	for (unsigned i = 0; i < got; i++) {
		const struct rte_mbuf *m = pkts[i];
		/* Below `base` wraps to a huge offset: caught by the same test. */
		uint64_t off = (uint64_t)((const char *)m->buf_addr + m->data_off - base);
		uint32_t len = m->data_len;
		addrs[i] = off;
		lens[i] = len;
		bad |= (unsigned)(m->nb_segs != 1) | (unsigned)(off >= region) |
		       (unsigned)(len > region - off);
	}
	if (likely(bad == 0))
		return (uint16_t)got;
	unsigned out = 0;
	for (unsigned i = 0; i < got; i++) {
		struct rte_mbuf *m = pkts[i];
		uint64_t off = addrs[i];
		uint32_t len = lens[i];
		if (m->nb_segs != 1 || off >= region || len > region - off) {
			rte_pktmbuf_free(m);
			(*dropped)++;
			continue;
		}
		addrs[out] = off;
		lens[out] = len;
		out++;
	}
	return (uint16_t)out;
}

/*
 * Transmits n frames given as (offset, length) in the region whose chunk i
 * belongs to table[i]: points each chunk's mbuf at its frame and hands the
 * burst to the device. Returns how many the device took (a prefix).
 *
 * Only the first cache line of each mbuf is written. Its `next` and
 * `nb_segs` (`next` is on the second line) are already NULL and 1: every
 * mbuf we hold came single-segment from nfv_rx (chained ones are freed
 * there) or empty from the pool, and DPDK returns mbufs to their pool only
 * with next = NULL and nb_segs = 1.
 */
uint16_t nfv_tx(uint16_t port, uint16_t queue, const char *base,
		struct rte_mbuf *const *restrict table, unsigned shift,
		const uint64_t *restrict addrs, const uint32_t *restrict lens, uint16_t n) {
	struct rte_mbuf *pkts[64];
	if (n > 64)
		n = 64;
	for (uint16_t i = 0; i < n; i++) {
		struct rte_mbuf *m = table[addrs[i] >> shift];
		/* Frames start where rx or alloc put them, at or after buf_addr. */
		m->data_off = (uint16_t)(base + addrs[i] - (const char *)m->buf_addr);
		m->data_len = (uint16_t)lens[i];
		m->pkt_len = lens[i];
		pkts[i] = m;
	}
	return rte_eth_tx_burst(port, queue, pkts, n);
}

/* Where the data of chunk i's mbuf starts when received or allocated, as
 * an offset from `base`. */
uint64_t nfv_chunk_data(struct rte_mbuf *const *table, unsigned i, const char *base) {
	const struct rte_mbuf *m = table[i];
	return (uint64_t)((const char *)m->buf_addr +
			  RTE_MIN((uint16_t)RTE_PKTMBUF_HEADROOM, m->buf_len) - base);
}

/* Takes up to n empty mbufs from `mp`; writes their data offsets. */
unsigned nfv_alloc(struct rte_mempool *mp, const char *base, uint64_t *addrs, unsigned n) {
	struct rte_mbuf *pkts[64];
	if (n > 64)
		n = 64;
	/* All or nothing in DPDK: step down so a nearly empty pool still gives. */
	while (n > 0 && rte_pktmbuf_alloc_bulk(mp, pkts, n) != 0)
		n /= 2;
	for (unsigned i = 0; i < n; i++)
		addrs[i] = (uint64_t)(rte_pktmbuf_mtod(pkts[i], const char *) - base);
	return n;
}

/* Gives the mbufs of chunks `chunks[0..n]` (chunk indices) back to their pool. */
void nfv_free_chunks(struct rte_mbuf *const *table, const uint32_t *chunks, unsigned n) {
	struct rte_mbuf *pkts[64];
	while (n > 0) {
		unsigned k = n > 64 ? 64 : n;
		for (unsigned i = 0; i < k; i++)
			pkts[i] = table[chunks[i]];
		rte_pktmbuf_free_bulk(pkts, k);
		chunks += k;
		n -= k;
	}
}

/*
 * Makes `len` bytes at `base` reachable by the device of `port` for DMA
 * (IOVA = VA, as vfio-pci with an IOMMU runs). 0 when mapped or when the
 * device's bus needs no mapping (virtual devices), else a negative errno.
 */
int nfv_dma_map(uint16_t port, void *base, size_t len, int map) {
	struct rte_eth_dev_info info;
	int r = rte_eth_dev_info_get(port, &info);
	if (r != 0)
		return r;
	if (rte_eal_iova_mode() != RTE_IOVA_VA)
		return 0;
	r = map ? rte_dev_dma_map(info.device, base, (uint64_t)(uintptr_t)base, len)
		: rte_dev_dma_unmap(info.device, base, (uint64_t)(uintptr_t)base, len);
	if (r != 0 && (rte_errno == ENOTSUP || rte_errno == 0))
		return 0;
	return r != 0 ? -rte_errno : 0;
}

/* Free mbufs left in the pool (including per-lcore caches). */
unsigned nfv_pool_avail(const struct rte_mempool *mp) { return rte_mempool_avail_count(mp); }

/*
 * The port's statistics: out[0..9] = ipackets, opackets, ibytes, obytes,
 * imissed, ierrors, oerrors, rx_nombuf, and out[8] = the queue's own
 * received packets where the device counts per queue. 0 or negative errno.
 */
int nfv_stats(uint16_t port, uint16_t queue, uint64_t *out) {
	struct rte_eth_stats s;
	int r = rte_eth_stats_get(port, &s);
	if (r != 0)
		return r;
	out[0] = s.ipackets;
	out[1] = s.opackets;
	out[2] = s.ibytes;
	out[3] = s.obytes;
	out[4] = s.imissed;
	out[5] = s.ierrors;
	out[6] = s.oerrors;
	out[7] = s.rx_nombuf;
	out[8] = queue < RTE_ETHDEV_QUEUE_STAT_CNTRS ? s.q_ipackets[queue] : 0;
	return 0;
}
