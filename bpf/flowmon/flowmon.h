/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * flowmon.h - layouts shared by flowmon.bpf.c and user space (src/bpf/flowmon_program).
 *
 * flowmon follows TCP connections through two BTF tracepoints (no tracefs, no kprobes):
 *   tp_btf/inet_sock_set_state  state changes: open (-> ESTABLISHED) and close (-> CLOSE)
 *   tp_btf/tcp_retransmit_skb   retransmitted segments
 * It sees every TCP socket of the host, in every network namespace; events carry the
 * namespace's inode number so consumers can tell them apart.
 */
#ifndef EDGEWARD_FLOWMON_H
#define EDGEWARD_FLOWMON_H

#ifndef __BPF__
#include <linux/types.h>
#endif

#define FM_TCP_STATES 16 /* index = Linux TCP state number (1 ESTABLISHED ... 12 NEW_SYN_RECV) */

enum fm_event_kind {
	FM_EV_OPEN = 1,       /* reached ESTABLISHED */
	FM_EV_CLOSE = 2,      /* an established connection reached CLOSE */
	FM_EV_RETRANSMIT = 3, /* a segment was retransmitted */
};

struct fm_event {
	__u64 ts_ns;       /* CLOCK_MONOTONIC */
	__u64 duration_ns; /* FM_EV_CLOSE: ESTABLISHED -> CLOSE */
	__u32 netns;       /* inode number of the socket's network namespace */
	__u8 kind;         /* enum fm_event_kind */
	__u8 family;       /* 4 or 6 */
	__u8 passive;      /* 1: the remote end opened the connection (we accepted it) */
	__u8 state;        /* state before the change (OPEN/CLOSE), current state (RETRANSMIT) */
	__u16 lport;       /* local port, host order */
	__u16 rport;       /* remote port, host order */
	__u32 pad;
	__u32 laddr[4];    /* network order; IPv4 in [0] */
	__u32 raddr[4];
};

/* fm_stats [FM_S_COUNT] per CPU. */
enum fm_stat {
	FM_S_OPEN_SENT = 0,
	FM_S_OPEN_LOST = 1,  /* ring buffer full */
	FM_S_CLOSE_SENT = 2,
	FM_S_CLOSE_LOST = 3,
	FM_S_RETRANS_SENT = 4,
	FM_S_RETRANS_LOST = 5,
	FM_S_RETRANSMITS = 6,       /* every retransmitted segment, sent as an event or not */
	FM_S_CLOSE_UNTRACKED = 7,   /* closed, but opened before flowmon started (no duration) */
	FM_S_COUNT = 8,
};

/* Connection-duration histogram per service port: bucket b counts connections that lasted
 * at most FM_HIST_FIRST_NS * 4^b; the last bucket counts the longer ones. */
#define FM_HIST_BUCKETS 12
#define FM_HIST_FIRST_NS 1000000ull /* 1 ms */

struct fm_hist_key {
	__u16 port; /* service port: the local port of accepted connections, else the remote */
	__u16 bucket;
};

struct fm_hist_val {
	__u64 count;
	__u64 sum_ns;
};

/* What is known at ESTABLISHED: by CLOSE the kernel may have released the ports already. */
struct fm_conn {
	__u64 established_ns;
	__u16 lport;
	__u16 rport;
	__u8 passive;
	__u8 pad[3];
};

#endif /* EDGEWARD_FLOWMON_H */
