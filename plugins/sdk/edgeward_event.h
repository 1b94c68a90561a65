/* edgeward event record: the one binary layout every event has on its way from a source
 * (firewall ring buffer, flowmon tracepoints, a plugin's ew_emit) to subscribers and plugins.
 *
 * Plain C, fixed size, little-endian, no pointers, so the same bytes are read by the agent
 * (C++), by guests (wasm32) and by anything reading the JSON-lines sink's binary twin.
 * A consumer checks `version` and `size` and ignores bytes beyond the fields it knows:
 * later versions only append fields. */
#ifndef EDGEWARD_EVENT_H
#define EDGEWARD_EVENT_H

#include <stdint.h>

#define EW_EVENT_VERSION 1

enum ew_event_kind {
  EW_EV_DROP = 1,           /* firewall dropped a packet (reason, rule)               */
  EW_EV_CONN_NEW = 2,       /* firewall created a conntrack entry (an allowed flow)    */
  EW_EV_TCP_OPEN = 3,       /* flowmon: a TCP connection reached ESTABLISHED           */
  EW_EV_TCP_CLOSE = 4,      /* flowmon: a TCP connection closed (value = duration ns)  */
  EW_EV_TCP_RETRANSMIT = 5, /* flowmon: a segment was retransmitted                    */
  EW_EV_CUSTOM = 100,       /* emitted by a plugin                                     */
};

enum ew_event_direction { EW_DIR_INGRESS = 0, EW_DIR_EGRESS = 1 };

struct ew_event {
  uint16_t kind;     /* enum ew_event_kind */
  uint8_t version;   /* EW_EVENT_VERSION */
  uint8_t size;      /* sizeof(struct ew_event) as written by the producer */
  uint8_t family;    /* 4 or 6 */
  uint8_t proto;     /* IPPROTO_TCP, IPPROTO_UDP, ... */
  uint8_t direction; /* enum ew_event_direction */
  uint8_t reason;    /* drop: firewall reason code; tcp events: TCP state (linux numbering) */
  uint32_t ifindex;  /* interface the packet was seen on (0 for flowmon) */
  uint32_t rule;     /* rule id of the verdict; 0xffffffff when no rule decided */
  uint64_t ts_ns;    /* CLOCK_REALTIME, nanoseconds */
  uint8_t saddr[16]; /* IPv4 uses the first 4 bytes, network order */
  uint8_t daddr[16];
  uint16_t sport; /* host order */
  uint16_t dport;
  uint32_t pkt_len;     /* packet length for firewall events */
  uint64_t value;       /* TCP_CLOSE: duration ns; RETRANSMIT: count; CONN_NEW/DROP: 0 */
  uint32_t sampled_out; /* DROP: drops from this source not reported since its last event */
  uint32_t netns;       /* tcp events: inode number of the socket's network namespace; else 0 */
};

#ifdef __cplusplus
static_assert(sizeof(struct ew_event) == 80, "ew_event is a fixed 80-byte wire format");
#else
_Static_assert(sizeof(struct ew_event) == 80, "ew_event is a fixed 80-byte wire format");
#endif

#endif
