/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Passive liveness (the FDMod idea): on the NFVI host's ports, note when each
 * monitored source last sent any IPv4 packet, so that a process that talks
 * needs no heartbeats. It never changes traffic: every frame passes.
 *
 * `watched` maps a monitored source address to its slot; `last_seen[slot]`
 * holds bpf_ktime_get_ns() (CLOCK_MONOTONIC) of its latest packet. The array
 * is mmapable so that the detector reads a thousand slots a millisecond
 * without a system call. Unknown sources cost one failed lookup and never
 * grow a map, so spoofed addresses cannot flood it.
 *
 * Mirrored in src/liveness.rs: MAX_WATCHED and the counter indices.
 */
#include "parse.h"

#define MAX_WATCHED 65536

enum liveness_counter {
	LIVE_SEEN = 0,	/* frames from a watched source */
	LIVE_OTHER = 1,	/* every other frame */
	LIVE_NR_COUNTERS,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_WATCHED);
	__type(key, __be32);
	__type(value, __u32);
} watched SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, MAX_WATCHED);
	__type(key, __u32);
	__type(value, __u64);
} last_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LIVE_NR_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

SEC("xdp")
int liveness(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	__u32 *slot;
	__u64 *seen;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		goto other;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		goto other;
	slot = bpf_map_lookup_elem(&watched, &ip->saddr);
	if (!slot)
		goto other;
	seen = bpf_map_lookup_elem(&last_seen, slot);
	if (!seen)
		goto other;
	/* An aligned 8-byte store: readers never see half of it. */
	*seen = bpf_ktime_get_ns();
	COUNT(counters, LIVE_SEEN);
	return XDP_PASS;
other:
	COUNT(counters, LIVE_OTHER);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Apache-2.0";
