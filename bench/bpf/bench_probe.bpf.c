// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Micro-probes for ew_bench_lookup's "where the time goes" table: each XDP program does one of
 * the operations the firewall does per packet and returns XDP_PASS, so its cost over the empty
 * program (xdp_pass_all) is the cost of that operation under BPF_PROG_TEST_RUN.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Same key/value layout and size as the firewall's ew_ct4 (struct ew_ct4_key / ew_ct_val). */
struct probe_key {
	__u32 a_addr;
	__u32 b_addr;
	__u16 a_port;
	__u16 b_port;
	__u8 proto;
	__u8 pad[3];
};

struct probe_val {
	__u64 last_seen_ns;
	__u32 rule;
	__u8 dir, init_is_a, closing, pad;
};

struct probe_counter {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct probe_key);
	__type(value, struct probe_val);
} probe_lru SEC(".maps");

/* A second map so that one call site can see two map pointers (see probe_lru_hit_shared). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct probe_key);
	__type(value, struct probe_val);
} probe_lru_other SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 24);
	__type(key, __u32);
	__type(value, struct probe_counter);
} probe_stats SEC(".maps");

__u64 sink = 0;

static __always_inline struct probe_key key_of(__u32 salt)
{
	struct probe_key k = {};
	k.a_addr = 0x0200000a; /* 10.0.0.2 */
	k.b_addr = 0x0b0b0b0b ^ salt;
	k.a_port = 443;
	k.b_port = 61003;
	k.proto = 6;
	return k;
}

SEC("xdp")
int probe_ktime(struct xdp_md *ctx)
{
	sink += bpf_ktime_get_ns();
	return XDP_PASS;
}

SEC("xdp")
int probe_ktime_coarse(struct xdp_md *ctx)
{
	sink += bpf_ktime_get_coarse_ns();
	return XDP_PASS;
}

/* Lookup of the key user space inserted (salt 0): a hit. */
SEC("xdp")
int probe_lru_hit(struct xdp_md *ctx)
{
	struct probe_key k = key_of(0);
	struct probe_val *v = bpf_map_lookup_elem(&probe_lru, &k);
	if (v)
		sink += v->rule;
	return XDP_PASS;
}

SEC("xdp")
int probe_lru_miss(struct xdp_md *ctx)
{
	struct probe_key k = key_of(1);
	struct probe_val *v = bpf_map_lookup_elem(&probe_lru, &k);
	if (v)
		sink += v->rule;
	return XDP_PASS;
}

/* The same hit, but the call site is reached with either of two maps (as the firewall's
 * ew_ct4/ew_ct6 lookups compile: clang merges both into one call). The verifier then cannot
 * inline the lookup ("map pointer poisoned") and calls the generic helper, which reaches the
 * map through an indirect call. The frame is never > 1000 bytes, so probe_lru is used. */
SEC("xdp")
int probe_lru_hit_shared(struct xdp_md *ctx)
{
	struct probe_key k = key_of(0);
	void *map = (ctx->data_end - ctx->data > 1000) ? (void *)&probe_lru_other : (void *)&probe_lru;
	struct probe_val *v = bpf_map_lookup_elem(map, &k);
	if (v)
		sink += v->rule;
	return XDP_PASS;
}

/* The firewall's per-packet counter update (ew_count). */
SEC("xdp")
int probe_counter(struct xdp_md *ctx)
{
	__u32 idx = 5;
	struct probe_counter *c = bpf_map_lookup_elem(&probe_stats, &idx);
	if (c) {
		c->packets++;
		c->bytes += 60;
	}
	return XDP_PASS;
}
