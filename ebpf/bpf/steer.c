/* SPDX-License-Identifier: Apache-2.0 */
/*
 * XDP flow steering: frames of registered UDP flows go to the AF_XDP socket
 * of the instance that owns them; everything else goes on to the kernel.
 *
 * The layouts of struct route_key, struct route_value and the counter
 * indices are mirrored in src/steer.rs and src/counters.rs.
 */
#include "parse.h"

/* Queues per interface and instance slots the socket map has room for. */
#define MAX_QUEUES 64
#define MAX_SLOTS 64
#define MAX_ROUTES 4096

enum steer_counter {
	STEER_REDIRECTED = 0,
	STEER_PASSED = 1,
	STEER_DROPPED = 2,
	STEER_NR_COUNTERS,
};

struct route_key {
	__be32 dst;	/* IPv4 destination, network order */
	__be32 src;	/* IPv4 source, network order; 0 matches any source */
	__be16 dst_port; /* UDP destination port, network order */
	__u16 pad;	/* always 0, so that keys compare as bytes */
};

struct route_value {
	__u32 slot;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ROUTES);
	__type(key, struct route_key);
	__type(value, struct route_value);
} flow_routes SEC(".maps");

/*
 * One entry per (slot, queue): an XSK only accepts frames redirected from
 * the queue it is bound to, so each instance needs a socket per queue.
 */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_SLOTS * MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STEER_NR_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

SEC("xdp")
int steer(struct xdp_md *ctx)
{
	struct iphdr *ip;
	struct udphdr *udp;
	struct route_key key = {};
	struct route_value *route;
	__u32 queue = ctx->rx_queue_index;
	__u32 index;
	long action;

	if (parse_ipv4_udp(ctx, &ip, &udp) < 0)
		goto pass;

	key.dst = ip->daddr;
	key.src = ip->saddr;
	key.dst_port = udp->dest;
	route = bpf_map_lookup_elem(&flow_routes, &key);
	if (!route) {
		key.src = 0;
		route = bpf_map_lookup_elem(&flow_routes, &key);
	}
	if (!route)
		goto pass;

	/*
	 * From here on the flow belongs to the dataplane: if no socket can take
	 * it, drop it, since the kernel has no listener and would only answer
	 * with ICMP port unreachable.
	 */
	if (route->slot >= MAX_SLOTS || queue >= MAX_QUEUES)
		goto drop;
	index = route->slot * MAX_QUEUES + queue;
	if (!bpf_map_lookup_elem(&xsks, &index))
		goto drop;

	/* The fallback covers a socket removed since the lookup above. */
	action = bpf_redirect_map(&xsks, index, XDP_DROP);
	if (action != XDP_REDIRECT)
		goto drop;
	COUNT(counters, STEER_REDIRECTED);
	return XDP_REDIRECT;

drop:
	COUNT(counters, STEER_DROPPED);
	return XDP_DROP;
pass:
	COUNT(counters, STEER_PASSED);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Apache-2.0";
