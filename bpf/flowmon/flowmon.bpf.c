// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * flowmon: TCP connection lifecycle from BTF tracepoints. Layouts in flowmon.h.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "flowmon.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET_ 2
#define AF_INET6_ 10
#define IPPROTO_TCP_ 6
#define TCP_ESTABLISHED_ 1
#define TCP_SYN_RECV_ 3
#define TCP_CLOSE_ 7

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} fm_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FM_S_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} fm_stats SEC(".maps");

/* Transitions into each TCP state. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FM_TCP_STATES);
	__type(key, __u32);
	__type(value, __u64);
} fm_states SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct fm_hist_key);
	__type(value, struct fm_hist_val);
} fm_hist SEC(".maps");

/* Established connections by socket address. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, __u64);
	__type(value, struct fm_conn);
} fm_conns SEC(".maps");

static __always_inline void fm_count(void *map, __u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(map, &idx);
	if (c)
		(*c)++;
}

static __always_inline void fm_hist_add(__u16 port, __u64 ns)
{
	__u16 b = 0;
	__u64 bound = FM_HIST_FIRST_NS;
	for (int i = 0; i < FM_HIST_BUCKETS - 1; i++) { /* a bounded loop */
		if (ns <= bound)
			break;
		bound *= 4;
		b++;
	}
	struct fm_hist_key k = {.port = port, .bucket = b};
	struct fm_hist_val *v = bpf_map_lookup_elem(&fm_hist, &k);
	if (v) {
		v->count++;
		v->sum_ns += ns;
		return;
	}
	struct fm_hist_val nv = {.count = 1, .sum_ns = ns};
	bpf_map_update_elem(&fm_hist, &k, &nv, BPF_NOEXIST);
	/* Lost a race with another CPU's insert: this CPU's slot exists now. */
	v = bpf_map_lookup_elem(&fm_hist, &k);
	if (v && v->count == 0) {
		v->count = 1;
		v->sum_ns = ns;
	}
}

/* c: the connection as it was at ESTABLISHED (ports), or NULL to read them from sk. */
static __always_inline int fm_emit(const struct sock *sk, const struct fm_conn *c, __u8 kind,
				   __u8 state, __u64 now, __u64 duration)
{
	__u32 sent = kind == FM_EV_OPEN ? FM_S_OPEN_SENT
		     : kind == FM_EV_CLOSE ? FM_S_CLOSE_SENT : FM_S_RETRANS_SENT;
	struct fm_event *e = bpf_ringbuf_reserve(&fm_events, sizeof(*e), 0);
	if (!e) {
		fm_count(&fm_stats, sent + 1); /* the _LOST counter follows each _SENT */
		return 0;
	}
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->ts_ns = now;
	e->duration_ns = duration;
	e->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	e->kind = kind;
	e->family = family == AF_INET6_ ? 6 : 4;
	e->passive = c ? c->passive : 0;
	e->state = state;
	e->lport = c ? c->lport : BPF_CORE_READ(sk, __sk_common.skc_num);
	e->rport = c ? c->rport : bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	e->pad = 0;
	if (family == AF_INET6_) {
		BPF_CORE_READ_INTO(&e->laddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32);
		BPF_CORE_READ_INTO(&e->raddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr32);
	} else {
		__builtin_memset(e->laddr, 0, sizeof(e->laddr));
		__builtin_memset(e->raddr, 0, sizeof(e->raddr));
		e->laddr[0] = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		e->raddr[0] = BPF_CORE_READ(sk, __sk_common.skc_daddr);
	}
	bpf_ringbuf_submit(e, 0);
	fm_count(&fm_stats, sent);
	return 1;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(fm_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP_)
		return 0;
	if (newstate > 0 && newstate < FM_TCP_STATES)
		fm_count(&fm_states, newstate);

	__u64 key = (__u64)(unsigned long)sk;
	__u64 now = bpf_ktime_get_ns();
	if (newstate == TCP_ESTABLISHED_) {
		struct fm_conn c = {
			.established_ns = now,
			.lport = BPF_CORE_READ(sk, __sk_common.skc_num),
			.rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport)),
			.passive = oldstate == TCP_SYN_RECV_,
		};
		bpf_map_update_elem(&fm_conns, &key, &c, BPF_ANY);
		fm_emit(sk, &c, FM_EV_OPEN, oldstate, now, 0);
		return 0;
	}
	if (newstate != TCP_CLOSE_)
		return 0;
	struct fm_conn *c = bpf_map_lookup_elem(&fm_conns, &key);
	if (!c) {
		/* Never established (a failed connect), or established before flowmon started. */
		if (oldstate != 2 /* SYN_SENT */ && oldstate != TCP_SYN_RECV_)
			fm_count(&fm_stats, FM_S_CLOSE_UNTRACKED);
		return 0;
	}
	struct fm_conn conn = *c;
	bpf_map_delete_elem(&fm_conns, &key);
	__u64 duration = now - conn.established_ns;
	fm_hist_add(conn.passive ? conn.lport : conn.rport, duration);
	fm_emit(sk, &conn, FM_EV_CLOSE, oldstate, now, duration);
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(fm_retransmit, const struct sock *sk, const struct sk_buff *skb)
{
	fm_count(&fm_stats, FM_S_RETRANSMITS);
	__u64 key = (__u64)(unsigned long)sk;
	struct fm_conn *c = bpf_map_lookup_elem(&fm_conns, &key);
	fm_emit(sk, c, FM_EV_RETRANSMIT, BPF_CORE_READ(sk, __sk_common.skc_state),
		bpf_ktime_get_ns(), 0);
	return 0;
}
