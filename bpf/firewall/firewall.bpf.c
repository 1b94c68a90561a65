// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * edgeward firewall: identity + port policy with connection tracking and a SYN limiter.
 * One core (ew_process) behind three entry points: XDP ingress, tcx ingress, tcx egress.
 * Map layouts and the lookup design are described in firewall.h.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "firewall.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Load-time switch (rodata): record each packet's verdict for `edgeward verdict`. */
const volatile __u32 record_verdict = 0;

#define ETH_P_IP_ 0x0800
#define ETH_P_IPV6_ 0x86DD
#define ETH_P_ARP_ 0x0806
#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8

#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define IPPROTO_ICMP_ 1
#define IPPROTO_ICMPV6_ 58

#define TCPF_FIN 0x01
#define TCPF_SYN 0x02
#define TCPF_RST 0x04
#define TCPF_ACK 0x10

#define TCX_NEXT_ (-1)
#define TC_ACT_SHOT_ 2

/* Packet pointers are offsets bounded by this mask so the verifier can follow variable offsets. */
#define EW_OFF_MASK 0x3ff

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_config);
} ew_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EW_GENERATIONS);
	__type(key, __u32);
	__type(value, struct ew_policy_hdr);
} ew_policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EW_GENERATIONS * EW_BUCKETS);
	__type(key, __u32);
	__type(value, struct ew_bucket);
} ew_bkt4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EW_GENERATIONS * EW_BUCKETS);
	__type(key, __u32);
	__type(value, struct ew_bucket);
} ew_bkt6 SEC(".maps");

/* Capacities of the following maps are set by the loader before load. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_iv4);
} ew_iv4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_iv6);
} ew_iv6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_grp);
} ew_grp SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_piv);
} ew_piv SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_counter);
} ew_rule_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EW_DIRS * EW_R_COUNT);
	__type(key, __u32);
	__type(value, struct ew_counter);
} ew_reason_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct ew_ct4_key);
	__type(value, struct ew_ct_val);
} ew_ct4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ew_ct6_key);
	__type(value, struct ew_ct_val);
} ew_ct6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ew_syn_key);
	__type(value, struct ew_syn_val);
} ew_syn SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_verdict_rec);
} ew_verdict SEC(".maps");

/* Drop and new-connection events (struct ew_fw_event). The loader sets the size. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} ew_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EW_EVS_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} ew_ev_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ew_syn_key);
	__type(value, struct ew_ev_limit_val);
} ew_ev_limit SEC(".maps");

/* What the parser learnt about one packet. Addresses stay in network order. */
struct ew_pkt {
	__u32 saddr[4];
	__u32 daddr[4];
	__u16 sport; /* host order; ICMP echo: the identifier */
	__u16 dport;
	__u8 family; /* 4 or 6 */
	__u8 proto;  /* IP protocol number of the transport header */
	__u8 slot;   /* enum ew_proto_slot */
	__u8 frag;   /* any fragment (first or later): ports unknown */
	__u8 tcp_flags;
	__u8 trackable;    /* TCP, UDP, ICMP echo: connection tracking applies */
	__u8 may_be_reply; /* not a TCP SYN without ACK, not an echo request */
	__u8 pad;
};

/* Results of the parser besides "an IP packet": pass or drop with a reason. */
enum {
	EW_PARSED_IP = 0,
	EW_PARSED_ESSENTIAL = 1, /* ARP, ND, MLD */
	EW_PARSED_NON_IP = 2,
	EW_PARSED_NEED_PULL = 3, /* tc only: headers lie beyond the linear part */
	EW_PARSED_DROP = 4,      /* reason in *reason */
};

/* Reads `len` bytes at data+off, or NULL. `off` is bounded so the verifier accepts it; an
 * offset beyond the mask gives NULL too (headers that far are refused as truncated), because
 * masking it would wrap around and read some earlier header in its place. */
#define EW_PTR(data, data_end, off, len)                                                \
	({                                                                               \
		__u32 __o = (off);                                                       \
		void *__p = (void *)(data) + (__o & EW_OFF_MASK);                        \
		(__o > EW_OFF_MASK || __p + (len) > (void *)(data_end)) ? (void *)0 : __p; \
	})

static __always_inline int ew_truncated(__u32 linear, __u32 pkt_len, __u8 *reason)
{
	/* A header is cut off: in a non-linear skb pulling may help, otherwise it is truncated. */
	if (pkt_len > linear)
		return EW_PARSED_NEED_PULL;
	*reason = EW_R_TRUNCATED;
	return EW_PARSED_DROP;
}

static __always_inline int ew_drop(__u8 *reason, __u8 r)
{
	*reason = r;
	return EW_PARSED_DROP;
}

/* Transport header at l4off, which ends no later than ip_end (offset of the end of the IP packet). */
static __always_inline int ew_parse_l4(void *data, void *data_end, __u32 l4off, __u32 ip_end,
				       __u32 pkt_len, __u8 hop_limit, struct ew_pkt *p, __u8 *reason)
{
	__u32 linear = data_end - data;
	__u8 *h;

	switch (p->proto) {
	case IPPROTO_TCP_: {
		p->slot = EW_P_TCP;
		p->trackable = 1;
		if (p->frag)
			return EW_PARSED_IP;
		if (l4off + 20 > ip_end)
			return ew_drop(reason, EW_R_TRUNCATED);
		h = EW_PTR(data, data_end, l4off, 20);
		if (!h)
			return ew_truncated(linear, pkt_len, reason);
		__u32 doff = (h[12] >> 4) * 4;
		if (doff < 20)
			return ew_drop(reason, EW_R_MALFORMED);
		if (l4off + doff > ip_end)
			return ew_drop(reason, EW_R_TRUNCATED);
		p->sport = ((__u16)h[0] << 8) | h[1];
		p->dport = ((__u16)h[2] << 8) | h[3];
		p->tcp_flags = h[13];
		p->may_be_reply = !((h[13] & (TCPF_SYN | TCPF_ACK)) == TCPF_SYN);
		return EW_PARSED_IP;
	}
	case IPPROTO_UDP_: {
		p->slot = EW_P_UDP;
		p->trackable = 1;
		if (p->frag)
			return EW_PARSED_IP;
		if (l4off + 8 > ip_end)
			return ew_drop(reason, EW_R_TRUNCATED);
		h = EW_PTR(data, data_end, l4off, 8);
		if (!h)
			return ew_truncated(linear, pkt_len, reason);
		__u16 ulen = ((__u16)h[4] << 8) | h[5];
		if (ulen < 8 || l4off + ulen > ip_end)
			return ew_drop(reason, EW_R_MALFORMED);
		p->sport = ((__u16)h[0] << 8) | h[1];
		p->dport = ((__u16)h[2] << 8) | h[3];
		p->may_be_reply = 1;
		return EW_PARSED_IP;
	}
	case IPPROTO_ICMP_:
	case IPPROTO_ICMPV6_: {
		int v6 = p->proto == IPPROTO_ICMPV6_;
		__u8 echo_req = v6 ? 128 : 8, echo_rep = v6 ? 129 : 0;

		p->slot = v6 ? EW_P_ICMPV6 : EW_P_ICMP;
		if (p->frag)
			return EW_PARSED_IP;
		if (l4off + 4 > ip_end)
			return ew_drop(reason, EW_R_TRUNCATED);
		h = EW_PTR(data, data_end, l4off, 4);
		if (!h)
			return ew_truncated(linear, pkt_len, reason);
		__u8 type = h[0];
		if (v6 && p->family == 6) {
			/* Neighbour discovery (RFC 4861: hop limit 255) and MLD (hop limit 1). */
			if (type >= 133 && type <= 136 && hop_limit == 255)
				return EW_PARSED_ESSENTIAL;
			if ((type >= 130 && type <= 132) || type == 143) {
				if (hop_limit == 1)
					return EW_PARSED_ESSENTIAL;
			}
		}
		if (type == echo_req || type == echo_rep) {
			if (l4off + 8 > ip_end)
				return ew_drop(reason, EW_R_TRUNCATED);
			h = EW_PTR(data, data_end, l4off, 8);
			if (!h)
				return ew_truncated(linear, pkt_len, reason);
			p->sport = ((__u16)h[4] << 8) | h[5];
			p->dport = p->sport;
			p->trackable = 1;
			p->may_be_reply = type == echo_rep;
		}
		return EW_PARSED_IP;
	}
	default:
		p->slot = EW_P_OTHER;
		return EW_PARSED_IP;
	}
}

/* Extension headers the parser walks: hop-by-hop, routing, fragment, destination options, AH. */
static __always_inline int ew_ipv6_ext(__u8 next)
{
	return next == 0 || next == 43 || next == 44 || next == 60 || next == 51;
}

static __always_inline int ew_parse(void *data, void *data_end, __u32 pkt_len, struct ew_pkt *p,
				    __u8 *reason)
{
	__u32 linear = data_end - data;
	__u32 off = 14;
	__u8 *h = EW_PTR(data, data_end, 0, 14);
	if (!h)
		return ew_truncated(linear, pkt_len, reason);
	__u16 eth_proto = ((__u16)h[12] << 8) | h[13];

#pragma unroll
	for (int i = 0; i < EW_MAX_VLAN_TAGS; i++) {
		if (eth_proto != ETH_P_8021Q_ && eth_proto != ETH_P_8021AD_)
			break;
		h = EW_PTR(data, data_end, off, 4);
		if (!h)
			return ew_truncated(linear, pkt_len, reason);
		eth_proto = ((__u16)h[2] << 8) | h[3];
		off += 4;
	}
	/* A third tag could hide an IP packet from the rules under defaultAction allow. */
	if (eth_proto == ETH_P_8021Q_ || eth_proto == ETH_P_8021AD_)
		return ew_drop(reason, EW_R_MALFORMED);

	if (eth_proto == ETH_P_ARP_)
		return EW_PARSED_ESSENTIAL;

	if (eth_proto == ETH_P_IP_) {
		h = EW_PTR(data, data_end, off, 20);
		if (!h)
			return ew_truncated(linear, pkt_len, reason);
		if ((h[0] >> 4) != 4)
			return ew_drop(reason, EW_R_MALFORMED);
		__u32 ihl = (h[0] & 0xf) * 4;
		__u32 tot_len = ((__u32)h[2] << 8) | h[3];
		if (ihl < 20 || tot_len < ihl)
			return ew_drop(reason, EW_R_MALFORMED);
		if (off + tot_len > pkt_len)
			return ew_drop(reason, EW_R_TRUNCATED);
		__u16 frag = ((__u16)h[6] << 8) | h[7];
		p->family = 4;
		p->proto = h[9];
		p->frag = (frag & 0x3fff) != 0; /* MF set or offset non-zero */
		__builtin_memcpy(&p->saddr[0], h + 12, 4);
		__builtin_memcpy(&p->daddr[0], h + 16, 4);
		return ew_parse_l4(data, data_end, off + ihl, off + tot_len, pkt_len, 0, p,
				   reason);
	}

	if (eth_proto == ETH_P_IPV6_) {
		h = EW_PTR(data, data_end, off, 40);
		if (!h)
			return ew_truncated(linear, pkt_len, reason);
		if ((h[0] >> 4) != 6)
			return ew_drop(reason, EW_R_MALFORMED);
		__u32 ip_end = off + 40 + (((__u32)h[4] << 8) | h[5]);
		if (ip_end > pkt_len)
			return ew_drop(reason, EW_R_TRUNCATED);
		__u8 next = h[6];
		__u8 hop_limit = h[7];
		p->family = 6;
		__builtin_memcpy(p->saddr, h + 8, 16);
		__builtin_memcpy(p->daddr, h + 24, 16);
		off += 40;

		int i;
#pragma unroll
		for (i = 0; i < EW_MAX_IPV6_EXT; i++) {
			if (next == 0 || next == 43 || next == 60 || next == 51) {
				if (off + 8 > ip_end)
					return ew_drop(reason, EW_R_TRUNCATED);
				h = EW_PTR(data, data_end, off, 2);
				if (!h)
					return ew_truncated(linear, pkt_len, reason);
				__u32 len = next == 51 ? ((__u32)h[1] + 2) * 4 : ((__u32)h[1] + 1) * 8;
				next = h[0];
				off += len;
				if (off > ip_end)
					return ew_drop(reason, EW_R_TRUNCATED);
			} else if (next == 44) {
				if (off + 8 > ip_end)
					return ew_drop(reason, EW_R_TRUNCATED);
				h = EW_PTR(data, data_end, off, 8);
				if (!h)
					return ew_truncated(linear, pkt_len, reason);
				__u16 fo = ((__u16)h[2] << 8) | h[3];
				next = h[0];
				off += 8;
				/* An atomic fragment (offset 0, no M flag) is a whole packet (RFC 6946). */
				if (fo & 0xfff9) {
					p->frag = 1;
					if (fo & 0xfff8)
						break; /* a later fragment carries no transport header */
				}
			} else {
				break;
			}
		}
		/* The loop also ends after EW_MAX_IPV6_EXT headers; only a further one is too many. */
		if (i == EW_MAX_IPV6_EXT && ew_ipv6_ext(next))
			return ew_drop(reason, EW_R_IPV6_EXT);
		p->proto = next;
		return ew_parse_l4(data, data_end, off, ip_end, pkt_len, hop_limit, p, reason);
	}

	return EW_PARSED_NON_IP;
}

/* Group of an IPv4 address (host order): bucket, then binary search among its intervals. */
static __always_inline __u32 ew_group_v4(__u32 bkt_base, __u32 addr, __u32 dir)
{
	__u32 key = bkt_base + (addr >> (32 - EW_BUCKET_BITS));
	struct ew_bucket *b = bpf_map_lookup_elem(&ew_bkt4, &key);
	struct ew_iv4 *iv;
	if (!b)
		return EW_GROUP_NONE;
	__u32 lo = b->off, n = b->cnt;
	for (int i = 0; i < 24 && n > 1; i++) {
		__u32 half = n / 2, mid = lo + half;
		iv = bpf_map_lookup_elem(&ew_iv4, &mid);
		if (!iv)
			return EW_GROUP_NONE;
		if (iv->start <= addr) {
			lo = mid;
			n -= half;
		} else {
			n = half;
		}
	}
	iv = bpf_map_lookup_elem(&ew_iv4, &lo);
	if (!iv)
		return EW_GROUP_NONE;
	return iv->grp[dir & 1];
}

static __always_inline __u32 ew_group_v6(__u32 bkt_base, const __u32 *a, __u32 dir)
{
	__u64 hi = ((__u64)bpf_ntohl(a[0]) << 32) | bpf_ntohl(a[1]);
	__u64 lo64 = ((__u64)bpf_ntohl(a[2]) << 32) | bpf_ntohl(a[3]);
	__u32 key = bkt_base + (__u32)(hi >> (64 - EW_BUCKET_BITS));
	struct ew_bucket *b = bpf_map_lookup_elem(&ew_bkt6, &key);
	struct ew_iv6 *iv;
	if (!b)
		return EW_GROUP_NONE;
	__u32 lo = b->off, n = b->cnt;
	for (int i = 0; i < 24 && n > 1; i++) {
		__u32 half = n / 2, mid = lo + half;
		iv = bpf_map_lookup_elem(&ew_iv6, &mid);
		if (!iv)
			return EW_GROUP_NONE;
		if (iv->hi < hi || (iv->hi == hi && iv->lo <= lo64)) {
			lo = mid;
			n -= half;
		} else {
			n = half;
		}
	}
	iv = bpf_map_lookup_elem(&ew_iv6, &lo);
	if (!iv)
		return EW_GROUP_NONE;
	return iv->grp[dir & 1];
}

struct ew_decision {
	__u32 rule;
	__u8 action;
	__u8 indeterminate; /* a fragment whose decision depends on the port */
	__u32 off, cnt;     /* indeterminate: the port table, for ew_table_beaten() */
};

/* Decision of one group for one protocol and port. */
static __always_inline void ew_group_decide(__u32 idx, __u16 port, __u8 frag, struct ew_decision *d)
{
	struct ew_grp *g = bpf_map_lookup_elem(&ew_grp, &idx);
	struct ew_piv *pv;
	d->action = EW_ACT_NONE;
	d->rule = EW_RULE_NONE;
	d->indeterminate = 0;
	if (!g || g->cnt == 0)
		return;
	__u32 lo = g->off, n = g->cnt;
	if (frag && n > 1) {
		d->indeterminate = 1;
		d->off = lo;
		d->cnt = n;
		return;
	}
	for (int i = 0; i < 17 && n > 1; i++) {
		__u32 half = n / 2, mid = lo + half;
		pv = bpf_map_lookup_elem(&ew_piv, &mid);
		if (!pv)
			return;
		if (pv->start <= port) {
			lo = mid;
			n -= half;
		} else {
			n = half;
		}
	}
	pv = bpf_map_lookup_elem(&ew_piv, &lo);
	if (!pv)
		return;
	d->action = pv->action;
	d->rule = pv->rule;
}

struct ew_beat_ctx {
	__u32 off;
	__u32 rule;
	__u8 action;
	__u8 beaten; /* every entry so far loses to (action, rule) or equals it */
};

static long ew_beat_entry(__u64 i, void *arg)
{
	struct ew_beat_ctx *c = arg;
	__u32 idx = c->off + (__u32)i;
	struct ew_piv *pv = bpf_map_lookup_elem(&ew_piv, &idx);
	if (!pv || pv->action > c->action || (pv->action == c->action && pv->rule < c->rule)) {
		c->beaten = 0;
		return 1;
	}
	return 0;
}

/* Whether decision `d` beats (deny over allow, then the lower rule) every entry of a port
 * table, so that combined with it `d` decides every port. Walks the table: fragments only. */
static __always_inline int ew_table_beaten(__u32 off, __u32 cnt, const struct ew_decision *d)
{
	struct ew_beat_ctx c = {.off = off, .rule = d->rule, .action = d->action, .beaten = 1};
	if (bpf_loop(cnt, ew_beat_entry, &c, 0) < 0)
		return 0;
	return c.beaten;
}

static __always_inline void ew_count(void *map, __u32 idx, __u32 len)
{
	struct ew_counter *c = bpf_map_lookup_elem(map, &idx);
	if (c) {
		c->packets++;
		c->bytes += len;
	}
}

static __always_inline __u64 ew_ct_timeout(__u8 proto, __u8 closing)
{
	if (proto == IPPROTO_TCP_)
		return closing ? EW_CT_TCP_CLOSING_TIMEOUT : EW_CT_TCP_TIMEOUT;
	if (proto == IPPROTO_UDP_)
		return EW_CT_UDP_TIMEOUT;
	return EW_CT_ICMP_TIMEOUT;
}

/* Builds the canonical key; returns 1 if the packet's source is endpoint a. */
static __always_inline int ew_ct_key4(const struct ew_pkt *p, struct ew_ct4_key *k)
{
	__u32 s = bpf_ntohl(p->saddr[0]), d = bpf_ntohl(p->daddr[0]);
	int src_is_a = s < d || (s == d && p->sport <= p->dport);
	k->a_addr = src_is_a ? p->saddr[0] : p->daddr[0];
	k->b_addr = src_is_a ? p->daddr[0] : p->saddr[0];
	k->a_port = src_is_a ? p->sport : p->dport;
	k->b_port = src_is_a ? p->dport : p->sport;
	k->proto = p->proto;
	return src_is_a;
}

static __always_inline int ew_addr6_cmp(const __u32 *x, const __u32 *y)
{
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u32 a = bpf_ntohl(x[i]), b = bpf_ntohl(y[i]);
		if (a != b)
			return a < b ? -1 : 1;
	}
	return 0;
}

static __always_inline int ew_ct_key6(const struct ew_pkt *p, struct ew_ct6_key *k)
{
	int c = ew_addr6_cmp(p->saddr, p->daddr);
	int src_is_a = c < 0 || (c == 0 && p->sport <= p->dport);
	__builtin_memcpy(k->a_addr, src_is_a ? p->saddr : p->daddr, 16);
	__builtin_memcpy(k->b_addr, src_is_a ? p->daddr : p->saddr, 16);
	k->a_port = src_is_a ? p->sport : p->dport;
	k->b_port = src_is_a ? p->dport : p->sport;
	k->proto = p->proto;
	return src_is_a;
}

/* Looks the packet up in connection tracking. Returns the entry if it belongs to a live
 * connection in a consistent orientation (same direction as the first packet, or the reply). */
static __always_inline struct ew_ct_val *ew_ct_find(const struct ew_pkt *p, __u32 dir, __u64 now,
						     void *key, int *src_is_a)
{
	struct ew_ct_val *v;
	if (p->family == 4) {
		*src_is_a = ew_ct_key4(p, key);
		v = bpf_map_lookup_elem(&ew_ct4, key);
		/* Keeps clang from merging the two lookups into one call on a poisoned map
		 * pointer, which the verifier cannot inline (costs ~12 ns per packet). */
		asm volatile("" : "+r"(v));
	} else {
		*src_is_a = ew_ct_key6(p, key);
		v = bpf_map_lookup_elem(&ew_ct6, key);
	}
	if (!v)
		return 0;
	if (now - v->last_seen_ns > ew_ct_timeout(p->proto, v->closing))
		return 0;
	int forward = (*src_is_a == v->init_is_a) && dir == v->dir;
	int reply = (*src_is_a != v->init_is_a) && dir != v->dir;
	if (!forward && !reply)
		return 0;
	return v;
}

static __always_inline void ew_ct_touch(struct ew_ct_val *v, const struct ew_pkt *p, __u64 now)
{
	if (now - v->last_seen_ns > EW_CT_REFRESH_NS)
		v->last_seen_ns = now;
	if ((p->tcp_flags & (TCPF_FIN | TCPF_RST)) && !v->closing)
		v->closing = 1;
}

/* GCRA: returns 1 if this SYN is within the source's rate. */
static __always_inline int ew_syn_allowed(const struct ew_pkt *p, const struct ew_policy_hdr *hdr,
					  __u64 now)
{
	struct ew_syn_key k = {};
	if (p->family == 4) {
		k.addr[2] = bpf_htonl(0xffff);
		k.addr[3] = p->saddr[0];
	} else {
		__builtin_memcpy(k.addr, p->saddr, 16);
	}
	struct ew_syn_val *v = bpf_map_lookup_elem(&ew_syn, &k);
	if (!v) {
		struct ew_syn_val nv = {.tat_ns = now + hdr->syn_interval_ns};
		bpf_map_update_elem(&ew_syn, &k, &nv, BPF_ANY);
		return 1;
	}
	__u64 tat = v->tat_ns > now ? v->tat_ns : now;
	if (tat - now + hdr->syn_interval_ns > hdr->syn_tolerance_ns)
		return 0;
	v->tat_ns = tat + hdr->syn_interval_ns;
	return 1;
}

static __always_inline void ew_record(__u32 dir, __u32 len, __u8 pass, __u8 reason, __u32 rule)
{
	if (rule != EW_RULE_NONE)
		ew_count(&ew_rule_stats, rule, len);
	ew_count(&ew_reason_stats, (dir & 1) * EW_R_COUNT + reason, len);
	if (record_verdict) {
		__u32 zero = 0;
		struct ew_verdict_rec *r = bpf_map_lookup_elem(&ew_verdict, &zero);
		if (r) {
			r->rule = rule;
			r->action = pass ? EW_ACT_ALLOW : EW_ACT_DENY;
			r->reason = reason;
			r->seq++;
		}
	}
}

/* Where a packet was seen, and what an event about it says besides the packet. */
struct ew_evinfo {
	__u32 dir;
	__u32 ifindex;
	__u32 len;
	__u32 rule;
	__u32 sampled_out;
	__u8 kind;
	__u8 reason;
	__u8 pad[2];
};

static __always_inline void ew_ev_count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&ew_ev_stats, &idx);
	if (c)
		(*c)++;
}

/* Writes one event to the ring buffer, or counts it lost. A subprogram: verified once per
 * caller context instead of being copied into every drop path. */
static __noinline int ew_emit(const struct ew_pkt *p, const struct ew_evinfo *ei)
{
	if (!p || !ei)
		return 0;
	__u8 drop = ei->kind == EW_FW_EV_DROP;
	struct ew_fw_event *e = bpf_ringbuf_reserve(&ew_events, sizeof(*e), 0);
	if (!e) {
		ew_ev_count(drop ? EW_EVS_DROP_LOST : EW_EVS_CONN_LOST);
		return 0;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->ifindex = ei->ifindex;
	e->rule = ei->rule;
	e->pkt_len = ei->len;
	e->sampled_out = ei->sampled_out;
	e->kind = ei->kind;
	e->family = p->family;
	e->proto = p->proto;
	e->dir = ei->dir;
	e->reason = ei->reason;
	e->pad = 0;
	e->sport = p->sport;
	e->dport = p->dport;
	e->pad2 = 0;
	__builtin_memcpy(e->saddr, p->saddr, 16);
	__builtin_memcpy(e->daddr, p->daddr, 16);
	bpf_ringbuf_submit(e, 0);
	ew_ev_count(drop ? EW_EVS_DROP_SENT : EW_EVS_CONN_SENT);
	return 1;
}

/* A drop event, if drop events are on, sampling picks this drop and the peer is within its
 * event rate. Every drop ends in exactly one of the EW_EVS_DROP_* counters. */
static __always_inline void ew_drop_event(const struct ew_config *cfg, const struct ew_pkt *p,
					  struct ew_evinfo *ei)
{
	if (!(cfg->flags & EW_F_EV_DROP))
		return;
	__u32 sample = cfg->drop_sample;
	if (sample > 1 && bpf_get_prandom_u32() % sample) {
		ew_ev_count(EW_EVS_DROP_SAMPLED_OUT);
		return;
	}
	__u64 interval = cfg->drop_interval_ns;
	if (interval) {
		struct ew_syn_key k = {};
		const __u32 *peer = ei->dir == EW_INGRESS ? p->saddr : p->daddr;
		if (p->family == 6) {
			__builtin_memcpy(k.addr, peer, 16);
		} else {
			k.addr[2] = bpf_htonl(0xffff);
			k.addr[3] = peer[0];
		}
		__u64 now = bpf_ktime_get_coarse_ns();
		struct ew_ev_limit_val *v = bpf_map_lookup_elem(&ew_ev_limit, &k);
		if (!v) {
			struct ew_ev_limit_val nv = {.tat_ns = now + interval};
			bpf_map_update_elem(&ew_ev_limit, &k, &nv, BPF_ANY);
		} else {
			__u64 tat = v->tat_ns > now ? v->tat_ns : now;
			__u64 burst = cfg->drop_burst ? cfg->drop_burst : 1;
			if (tat - now + interval > interval * burst) {
				__sync_fetch_and_add(&v->suppressed, 1);
				ew_ev_count(EW_EVS_DROP_RATE_LIMITED);
				return;
			}
			v->tat_ns = tat + interval;
			ei->sampled_out = __sync_lock_test_and_set(&v->suppressed, 0);
		}
	}
	ew_emit(p, ei);
}

enum { EW_DROP = 0, EW_PASS = 1, EW_NEED_PULL = 2 };

static __always_inline int ew_verdict_of(const struct ew_config *cfg, const struct ew_pkt *p,
					 struct ew_evinfo *ei, __u8 pass, __u8 reason, __u32 rule)
{
	ew_record(ei->dir, ei->len, pass, reason, rule);
	if (pass)
		return EW_PASS;
	ei->kind = EW_FW_EV_DROP;
	ei->reason = reason;
	ei->rule = rule;
	ew_drop_event(cfg, p, ei);
	return EW_DROP;
}

/* last: no pull can follow, so headers beyond the linear part make the packet truncated. */
static __always_inline int ew_process(void *data, void *data_end, __u32 pkt_len, __u32 dir,
				      __u32 ifindex, int last)
{
	__u32 zero = 0;
	struct ew_config *cfg = bpf_map_lookup_elem(&ew_config, &zero);
	if (!cfg)
		return EW_DROP;
	__u32 gen = cfg->gen & 1;
	__u32 flags = cfg->flags;
	struct ew_policy_hdr *hdr = bpf_map_lookup_elem(&ew_policy, &gen);
	if (!hdr)
		return EW_DROP;

	struct ew_pkt p = {};
	struct ew_evinfo ei = {.dir = dir, .ifindex = ifindex, .len = pkt_len};
	__u8 reason = 0;
	int parsed = ew_parse(data, data_end, pkt_len, &p, &reason);
	if (parsed == EW_PARSED_NEED_PULL) {
		if (!last)
			return EW_NEED_PULL;
		/* Headers longer than what a pull brings in: refuse rather than guess. */
		parsed = EW_PARSED_DROP;
		reason = EW_R_TRUNCATED;
	}
	if (parsed == EW_PARSED_DROP)
		return ew_verdict_of(cfg, &p, &ei, 0, reason, EW_RULE_NONE);
	if (parsed == EW_PARSED_ESSENTIAL)
		return ew_verdict_of(cfg, &p, &ei, 1, EW_R_HOST_ESSENTIAL, EW_RULE_NONE);
	if (parsed == EW_PARSED_NON_IP) {
		if (hdr->default_action == EW_ACT_ALLOW)
			return ew_verdict_of(cfg, &p, &ei, 1, EW_R_DEFAULT_ALLOW, EW_RULE_NONE);
		return ew_verdict_of(cfg, &p, &ei, 0, EW_R_NON_IP, EW_RULE_NONE);
	}

	/* Policy: the peer address decides the group; the destination port the decision. */
	const __u32 *peer = dir == EW_INGRESS ? p.saddr : p.daddr;
	__u32 grp = p.family == 4 ? ew_group_v4(hdr->bkt_base, bpf_ntohl(peer[0]), dir)
				  : ew_group_v6(hdr->bkt_base, peer, dir);
	if (grp >= hdr->n_groups)
		grp = EW_GROUP_NONE;
	struct ew_decision any, spec;
	ew_group_decide(hdr->grp_base + (EW_GROUP_ANY + dir) * EW_P_COUNT + p.slot, p.dport, p.frag, &any);
	ew_group_decide(hdr->grp_base + grp * EW_P_COUNT + p.slot, p.dport, p.frag, &spec);
	/* A fragment's ports are unknown, so a table that varies with the port cannot decide it
	 * alone; but if the other table's decision beats all of its entries, that decision holds
	 * for every port (e.g. "allow all from X" beside "allow tcp 443 from any"). */
	if (any.indeterminate != spec.indeterminate) {
		struct ew_decision *u = any.indeterminate ? &spec : &any;
		struct ew_decision *x = any.indeterminate ? &any : &spec;
		if (ew_table_beaten(x->off, x->cnt, u)) {
			x->indeterminate = 0;
			x->action = EW_ACT_NONE;
			x->rule = EW_RULE_NONE;
		}
	}

	__u8 action = EW_ACT_NONE, indeterminate = any.indeterminate | spec.indeterminate;
	__u32 rule = EW_RULE_NONE;
	if (any.action == EW_ACT_DENY || spec.action == EW_ACT_DENY) {
		action = EW_ACT_DENY;
		rule = any.action == EW_ACT_DENY ? any.rule : EW_RULE_NONE;
		if (spec.action == EW_ACT_DENY && spec.rule < rule)
			rule = spec.rule;
	} else if (any.action == EW_ACT_ALLOW || spec.action == EW_ACT_ALLOW) {
		action = EW_ACT_ALLOW;
		rule = any.action == EW_ACT_ALLOW ? any.rule : EW_RULE_NONE;
		if (spec.action == EW_ACT_ALLOW && spec.rule < rule)
			rule = spec.rule;
	}
	__u8 pass, why;
	if (indeterminate) {
		pass = 0;
		why = EW_R_FRAGMENT;
		rule = EW_RULE_NONE;
	} else if (action == EW_ACT_DENY) {
		pass = 0;
		why = EW_R_RULE_DENY;
	} else if (action == EW_ACT_ALLOW) {
		pass = 1;
		why = EW_R_RULE_ALLOW;
	} else {
		pass = hdr->default_action == EW_ACT_ALLOW;
		why = pass ? EW_R_DEFAULT_ALLOW : EW_R_DEFAULT_DENY;
	}

	int track = (flags & EW_F_CONNTRACK) && p.trackable && !p.frag;
	union {
		struct ew_ct4_key k4;
		struct ew_ct6_key k6;
	} key = {};
	int src_is_a = 0;
	__u64 now;

	if (!pass) {
		/* A reply (or later packet) of a connection the policy allowed passes. New
		 * connection attempts cannot be replies and skip the lookup. */
		if (track && p.may_be_reply) {
			now = bpf_ktime_get_coarse_ns();
			struct ew_ct_val *v = ew_ct_find(&p, dir, now, &key, &src_is_a);
			if (v) {
				ew_ct_touch(v, &p, now);
				return ew_verdict_of(cfg, &p, &ei, 1, EW_R_CT_ESTABLISHED, v->rule);
			}
		}
		return ew_verdict_of(cfg, &p, &ei, 0, why, rule);
	}

	int syn = p.proto == IPPROTO_TCP_ && (p.tcp_flags & (TCPF_SYN | TCPF_ACK)) == TCPF_SYN;
	int limit = syn && dir == EW_INGRESS && hdr->syn_limit && (flags & EW_F_SYN_LIMIT);
	if (limit || track)
		now = bpf_ktime_get_coarse_ns(); /* once for the limiter and conntrack */
	if (limit && !ew_syn_allowed(&p, hdr, now))
		return ew_verdict_of(cfg, &p, &ei, 0, EW_R_SYN_FLOOD, EW_RULE_NONE);

	if (track) {
		struct ew_ct_val *v = ew_ct_find(&p, dir, now, &key, &src_is_a);
		if (v) {
			ew_ct_touch(v, &p, now);
		} else {
			struct ew_ct_val nv = {
				.last_seen_ns = now,
				.rule = rule,
				.dir = dir,
				.init_is_a = src_is_a,
			};
			if (p.family == 4) {
				long err = bpf_map_update_elem(&ew_ct4, &key.k4, &nv, BPF_ANY);
				asm volatile("" : "+r"(err)); /* see ew_ct_find */
			} else {
				bpf_map_update_elem(&ew_ct6, &key.k6, &nv, BPF_ANY);
			}
			if (flags & EW_F_EV_CONN) {
				ei.kind = EW_FW_EV_CONN_NEW;
				ei.reason = why;
				ei.rule = rule;
				ew_emit(&p, &ei);
			}
		}
	}
	return ew_verdict_of(cfg, &p, &ei, 1, why, rule);
}

SEC("xdp")
int ew_xdp_ingress(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	int v = ew_process(data, data_end, data_end - data, EW_INGRESS, ctx->ingress_ifindex, 1);
	return v == EW_PASS ? XDP_PASS : XDP_DROP;
}

/* A global function: the verifier checks it once, not once per call below. */
__noinline int ew_tc_core(struct __sk_buff *skb, __u32 dir, int last)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	return ew_process(data, data_end, skb->len, dir, skb->ifindex, last);
}

static __always_inline int ew_tc(struct __sk_buff *skb, __u32 dir)
{
	int v = ew_tc_core(skb, dir, 0);
	if (v == EW_NEED_PULL) {
		/* Headers continue beyond the linear part: pull them in (up to 512 bytes) and look
		 * again; this time headers still beyond make the packet truncated. */
		__u32 want = skb->len < 512 ? skb->len : 512;
		bpf_skb_pull_data(skb, want);
		v = ew_tc_core(skb, dir, 1);
	}
	return v == EW_PASS ? TCX_NEXT_ : TC_ACT_SHOT_;
}

SEC("tc")
int ew_tc_ingress(struct __sk_buff *skb)
{
	return ew_tc(skb, EW_INGRESS);
}

SEC("tc")
int ew_tc_egress(struct __sk_buff *skb)
{
	return ew_tc(skb, EW_EGRESS);
}
