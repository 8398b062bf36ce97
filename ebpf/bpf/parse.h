/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Header parsing shared by the XDP programs. Every access is checked against
 * data_end right before it, in a form the verifier can follow.
 */
#ifndef NFVINC_PARSE_H
#define NFVINC_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* More-fragments flag and fragment offset of iphdr.frag_off. */
#define IP_MF_OFFSET 0x3fff

/*
 * Finds the IPv4 and UDP headers of an unfragmented IPv4/UDP frame. Returns 0
 * and fills *ip and *udp, or -1 for anything else (other protocols, IP
 * options that run past the frame, fragments, truncated frames). Fragments
 * are refused because only the first carries a UDP header: steering the
 * first and passing the rest would split one datagram across two paths.
 */
static __always_inline int parse_ipv4_udp(struct xdp_md *ctx, struct iphdr **ip,
					  struct udphdr **udp)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph;
	struct udphdr *udph;
	__u32 ihl_bytes;

	if ((void *)(eth + 1) > data_end)
		return -1;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return -1;

	iph = (void *)(eth + 1);
	if ((void *)(iph + 1) > data_end)
		return -1;
	if (iph->version != 4 || iph->ihl < 5)
		return -1;
	if (iph->protocol != IPPROTO_UDP)
		return -1;
	if (iph->frag_off & bpf_htons(IP_MF_OFFSET))
		return -1;

	ihl_bytes = (__u32)iph->ihl * 4;
	udph = (void *)iph + ihl_bytes;
	if ((void *)(udph + 1) > data_end)
		return -1;

	*ip = iph;
	*udp = udph;
	return 0;
}

/* Adds one to a per-CPU counter; per-CPU slots need no atomics. */
#define COUNT(map, index)                                                      \
	do {                                                                   \
		__u32 __k = (index);                                           \
		__u64 *__v = bpf_map_lookup_elem(&(map), &__k);                \
		if (__v)                                                       \
			*__v += 1;                                             \
	} while (0)

#endif /* NFVINC_PARSE_H */
