/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * firewall.h - everything that crosses the kernel/user boundary of the firewall program.
 * Included by firewall.bpf.c and by user space (the policy compiler writes these layouts,
 * the loader and the CLI read them). Plain C, fixed-size types, no padding surprises.
 *
 * Lookup design (why it is not hash + LPM): an LPM trie lookup over 100k prefixes costs
 * 130-170 ns on this machine, more than the whole budget. Instead the policy compiler cuts each
 * address family into disjoint intervals (at most 2 per prefix + 1). Every interval carries
 * the ingress and egress "group" of the addresses in it: the set of identity-specific rules
 * that apply to them. A 65536-entry bucket table indexed by the top 16 address bits narrows
 * the search to the intervals that start inside that bucket, so the common case is one or two
 * array reads and the worst case a short binary search. Per group and protocol, the compiler
 * then cuts the port space into intervals, each carrying the decision (action + deciding rule)
 * of the group's rules for those ports. Rules whose peers include the identity "any" live in
 * group 0 (ingress) or 1 (egress), looked up for every packet and combined with the address
 * group: deny beats allow, and among equals the lower rule id (file order) is reported.
 *
 * Generations: each policy occupies one of two generations. User space writes the inactive
 * generation, then flips ew_config.gen with one word store; a packet reads gen once, so it
 * sees the whole old policy or the whole new one.
 */
#ifndef EDGEWARD_FIREWALL_H
#define EDGEWARD_FIREWALL_H

#ifndef __BPF__
#include <linux/types.h>
#endif

#define EW_BUCKET_BITS 16
#define EW_BUCKETS (1u << EW_BUCKET_BITS)
#define EW_GENERATIONS 2
#define EW_RULE_NONE 0xffffffffu /* the default action decided */
#define EW_GROUP_ANY 0  /* + direction: rules whose peers include "any" (0 ingress, 1 egress) */
#define EW_GROUP_NONE 2 /* addresses no identity-specific rule mentions */
#define EW_GROUP_FIRST 3
#define EW_MAX_VLAN_TAGS 2
#define EW_MAX_IPV6_EXT 8

/* Protocol slots in the group table. */
enum ew_proto_slot {
	EW_P_TCP = 0,
	EW_P_UDP = 1,
	EW_P_ICMP = 2,
	EW_P_ICMPV6 = 3,
	EW_P_OTHER = 4, /* any other IP protocol (only rules without ports match it) */
	EW_P_COUNT = 5,
};

enum ew_dir {
	EW_INGRESS = 0,
	EW_EGRESS = 1,
	EW_DIRS = 2,
};

enum ew_action {
	EW_ACT_NONE = 0, /* no rule matched */
	EW_ACT_ALLOW = 1,
	EW_ACT_DENY = 2,
};

/* Why a packet passed or was dropped. Keep in sync with ewReasonName() in user space. */
enum ew_reason {
	EW_R_RULE_ALLOW = 0,     /* pass: an allow rule matched and no deny rule did */
	EW_R_DEFAULT_ALLOW = 1,  /* pass: no rule matched, defaultAction allow */
	EW_R_CT_ESTABLISHED = 2, /* pass: part of a tracked connection (reply or later packet) */
	EW_R_HOST_ESSENTIAL = 3, /* pass: ARP, IPv6 neighbour discovery, MLD */
	EW_R_RULE_DENY = 4,      /* drop: a deny rule matched */
	EW_R_DEFAULT_DENY = 5,   /* drop: no rule matched, defaultAction deny */
	EW_R_MALFORMED = 6,      /* drop: header fields inconsistent (bad IHL, length, TCP offset) */
	EW_R_TRUNCATED = 7,      /* drop: packet ends inside a header */
	EW_R_FRAGMENT = 8,       /* drop: fragment whose verdict would depend on ports */
	EW_R_SYN_FLOOD = 9,      /* drop: new TCP SYN over the per-source rate */
	EW_R_NON_IP = 10,        /* drop: not IP, ARP under defaultAction deny */
	EW_R_IPV6_EXT = 11,      /* drop: IPv6 extension header chain too long */
	EW_R_COUNT = 12,
};

/* ew_config[0]: run-time switches, changed without reloading the program. */
struct ew_config {
	__u32 gen;   /* active generation, 0 or 1 */
	__u32 flags; /* EW_F_* */
	/* Drop events (EW_F_EV_DROP): one drop in drop_sample is considered (0 or 1: every drop),
	 * then each peer address may send one event per drop_interval_ns with bursts of
	 * drop_burst (GCRA; drop_interval_ns 0: no per-peer limit). */
	__u32 drop_sample;
	__u32 drop_burst;
	__u64 drop_interval_ns;
};
#define EW_F_SYN_LIMIT (1u << 0) /* enforce ew_policy_hdr.syn_* (when the policy sets them) */
#define EW_F_CONNTRACK (1u << 1) /* create and consult connection tracking entries */
#define EW_F_EV_DROP (1u << 2)   /* drop events on ew_events */
#define EW_F_EV_CONN (1u << 3)   /* new-connection events on ew_events (conntrack creation) */

/* ew_policy[gen]: per-generation header. */
struct ew_policy_hdr {
	__u8 default_action; /* EW_ACT_ALLOW or EW_ACT_DENY */
	__u8 syn_limit;      /* 1 if synFlood is set */
	__u8 pad[2];
	__u32 bkt_base;     /* index of this generation's first entry in ew_bkt4 / ew_bkt6 */
	__u32 grp_base;     /* index of this generation's group 0, proto 0 in ew_grp */
	__u32 n_groups;     /* groups in this generation (lookups never exceed it) */
	__u64 syn_interval_ns;  /* 1e9 / perSourcePps */
	__u64 syn_tolerance_ns; /* burst * syn_interval_ns */
	__u64 version;          /* policy version, for user space */
};

/* ew_bkt4 / ew_bkt6 [EW_GENERATIONS * EW_BUCKETS]: intervals of one 65536th of the space. */
struct ew_bucket {
	__u32 off; /* first interval in ew_iv4 / ew_iv6 */
	__u32 cnt; /* intervals, >= 1; the first starts at or before the bucket's first address */
};

/* ew_iv4: an IPv4 interval [start, next start). Addresses in host byte order. */
struct ew_iv4 {
	__u32 start;
	__u32 grp[EW_DIRS]; /* group of these addresses as ingress source / egress destination */
};

/* ew_iv6: an IPv6 interval; the address as two host-order 64-bit halves. */
struct ew_iv6 {
	__u64 hi;
	__u64 lo;
	__u32 grp[EW_DIRS];
};

/* ew_grp [per generation: n_groups * EW_P_COUNT]: port intervals of one group and protocol. */
struct ew_grp {
	__u32 off; /* first entry in ew_piv */
	__u32 cnt; /* 0: no rule of this group covers the protocol */
};

/* ew_piv: ports [start, next start) of one group+protocol decide `action` by `rule`. */
struct ew_piv {
	__u16 start;
	__u8 action; /* enum ew_action */
	__u8 pad;
	__u32 rule; /* deciding rule id, or EW_RULE_NONE when action is EW_ACT_NONE */
};

/* Per-CPU counters: ew_rule_stats[rule id], ew_reason_stats[dir * EW_R_COUNT + reason]. */
struct ew_counter {
	__u64 packets;
	__u64 bytes;
};

/* Connection tracking. Keys are canonical: endpoint a is the numerically smaller
 * (address, port), so both directions of a connection find the same entry. */
struct ew_ct4_key {
	__u32 a_addr;
	__u32 b_addr;
	__u16 a_port;
	__u16 b_port;
	__u8 proto;
	__u8 pad[3];
};

struct ew_ct6_key {
	__u32 a_addr[4];
	__u32 b_addr[4];
	__u16 a_port;
	__u16 b_port;
	__u8 proto;
	__u8 pad[3];
};

struct ew_ct_val {
	__u64 last_seen_ns;
	__u32 rule;        /* rule that allowed the first packet */
	__u8 dir;          /* direction of the first packet (enum ew_dir) */
	__u8 init_is_a;    /* 1 if endpoint a sent the first packet */
	__u8 closing;      /* TCP FIN or RST seen */
	__u8 pad;
};

/* Idle timeouts, nanoseconds. */
#define EW_CT_TCP_TIMEOUT (3600ull * 1000000000ull)
#define EW_CT_TCP_CLOSING_TIMEOUT (10ull * 1000000000ull)
#define EW_CT_UDP_TIMEOUT (60ull * 1000000000ull)
#define EW_CT_ICMP_TIMEOUT (30ull * 1000000000ull)
/* An entry's last_seen is refreshed at most this often, to keep the hot path read-mostly. */
#define EW_CT_REFRESH_NS (1000000000ull)

/* SYN flood limiter state per source address (IPv4 mapped into ::ffff:0:0/96). */
struct ew_syn_key {
	__u32 addr[4];
};
struct ew_syn_val {
	__u64 tat_ns; /* GCRA theoretical arrival time */
};

/* Written per packet only when the program is loaded with record_verdict (edgeward verdict). */
struct ew_verdict_rec {
	__u32 rule;
	__u8 action; /* EW_ACT_ALLOW (pass) or EW_ACT_DENY (drop) */
	__u8 reason; /* enum ew_reason */
	__u8 pad[2];
	__u64 seq;   /* incremented per recorded packet */
};

/* Events on the ew_events ring buffer. ts_ns is CLOCK_MONOTONIC (bpf_ktime_get_ns). */
enum ew_fw_event_kind {
	EW_FW_EV_DROP = 1,
	EW_FW_EV_CONN_NEW = 2,
};

struct ew_fw_event {
	__u64 ts_ns;
	__u32 ifindex;
	__u32 rule;        /* deciding rule, EW_RULE_NONE if none */
	__u32 pkt_len;
	__u32 sampled_out; /* drops of this peer the per-peer limit suppressed since its last event */
	__u8 kind;         /* enum ew_fw_event_kind */
	__u8 family;       /* 4, 6, or 0 when the packet was not parsed that far */
	__u8 proto;
	__u8 dir;          /* enum ew_dir */
	__u8 reason;       /* enum ew_reason */
	__u8 pad;
	__u16 sport;       /* host order */
	__u16 dport;
	__u16 pad2;
	__u32 saddr[4];    /* network order; IPv4 in [0] */
	__u32 daddr[4];
};

/* ew_ev_stats [EW_EVS_COUNT] (per CPU, __u64): what became of every event the program wanted
 * to send. For drops, with EW_F_EV_DROP on:
 *   drops = DROP_SENT + DROP_SAMPLED_OUT + DROP_RATE_LIMITED + DROP_LOST. */
enum ew_ev_stat {
	EW_EVS_DROP_SENT = 0,
	EW_EVS_DROP_SAMPLED_OUT = 1,  /* not picked by 1-in-drop_sample sampling */
	EW_EVS_DROP_RATE_LIMITED = 2, /* over the per-peer event rate */
	EW_EVS_DROP_LOST = 3,         /* ring buffer full */
	EW_EVS_CONN_SENT = 4,
	EW_EVS_CONN_LOST = 5,         /* ring buffer full */
	EW_EVS_COUNT = 6,
};

/* ew_ev_limit: per-peer drop event limiter (key as ew_syn_key). */
struct ew_ev_limit_val {
	__u64 tat_ns;
	__u32 suppressed; /* drops suppressed since the last event of this peer */
	__u32 pad;
};

#endif /* EDGEWARD_FIREWALL_H */
