// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Event transports for ew_bench_events: each XDP program writes one drop record per run, the
 * same struct ew_fw_event the firewall writes (filled the same way as ew_emit()), through one
 * transport, and drops the packet. No parsing and no policy: only the cost of the transport.
 * probe_stats counts per CPU what became of each record (PROBE_SENT / PROBE_LOST).
 */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "firewall/firewall.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

enum { PROBE_SENT = 0, PROBE_LOST = 1, PROBE_STATS = 2 };

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* resized by user space before load */
} probe_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} probe_perf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PROBE_STATS);
	__type(key, __u32);
	__type(value, __u64);
} probe_stats SEC(".maps");

static __always_inline void probe_count(__u32 what)
{
	__u64 *v = bpf_map_lookup_elem(&probe_stats, &what);
	if (v)
		*v += 1;
}

static __always_inline void probe_fill(struct ew_fw_event *e, struct xdp_md *ctx)
{
	e->ts_ns = bpf_ktime_get_ns();
	e->ifindex = ctx->ingress_ifindex;
	e->rule = EW_RULE_NONE;
	e->pkt_len = ctx->data_end - ctx->data;
	e->sampled_out = 0;
	e->kind = EW_FW_EV_DROP;
	e->family = 4;
	e->proto = 6;
	e->dir = EW_INGRESS;
	e->reason = EW_R_DEFAULT_DENY;
	e->pad = 0;
	e->sport = 41000;
	e->dport = 2222;
	e->pad2 = 0;
	__builtin_memset(e->saddr, 0, sizeof(e->saddr));
	__builtin_memset(e->daddr, 0, sizeof(e->daddr));
	e->saddr[0] = bpf_htonl(0xc0000207); /* 192.0.2.7 */
	e->daddr[0] = bpf_htonl(0xc6336409); /* 198.51.100.9 */
}

SEC("xdp")
int probe_ev_ringbuf(struct xdp_md *ctx)
{
	struct ew_fw_event e;
	probe_fill(&e, ctx);
	probe_count(bpf_ringbuf_output(&probe_ring, &e, sizeof(e), 0) ? PROBE_LOST : PROBE_SENT);
	return XDP_DROP;
}

SEC("xdp")
int probe_ev_perf(struct xdp_md *ctx)
{
	struct ew_fw_event e;
	probe_fill(&e, ctx);
	long err = bpf_perf_event_output(ctx, &probe_perf, BPF_F_CURRENT_CPU, &e, sizeof(e));
	probe_count(err ? PROBE_LOST : PROBE_SENT);
	return XDP_DROP;
}
