/* SPDX-License-Identifier: Apache-2.0 */
/*
 * XDP fault injector for tests: drops unfragmented IPv4/UDP frames at random,
 * optionally only those to one destination port. The kernel here has no
 * netem, so loss for protocol tests comes from this program.
 *
 * struct fault_config and the counter indices are mirrored in src/fault.rs.
 */
#include "parse.h"

enum fault_counter {
	FAULT_DROPPED = 0,
	FAULT_PASSED = 1,  /* eligible frames that were spared */
	FAULT_IGNORED = 2, /* frames the injector does not touch */
	FAULT_NR_COUNTERS,
};

struct fault_config {
	/*
	 * A frame is dropped when a random u32 is below this. It is 64 bits
	 * wide so that 1 << 32 can say "drop everything", which no u32 can.
	 */
	__u64 threshold;
	__be16 dst_port; /* network order; 0 means every port */
	__u16 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fault_config);
} fault_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FAULT_NR_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} fault_counters SEC(".maps");

SEC("xdp")
int fault(struct xdp_md *ctx)
{
	struct iphdr *ip;
	struct udphdr *udp;
	struct fault_config *cfg;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&fault_config, &zero);
	if (!cfg || parse_ipv4_udp(ctx, &ip, &udp) < 0)
		goto ignore;
	if (cfg->dst_port && cfg->dst_port != udp->dest)
		goto ignore;

	if ((__u64)bpf_get_prandom_u32() < cfg->threshold) {
		COUNT(fault_counters, FAULT_DROPPED);
		return XDP_DROP;
	}
	COUNT(fault_counters, FAULT_PASSED);
	return XDP_PASS;

ignore:
	COUNT(fault_counters, FAULT_IGNORED);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Apache-2.0";
