/* json_transform: turns the binary event record into one JSON object (the JSON-lines sink's
 * format) and hands that on instead. */
#include <stdio.h>

#include "edgeward_plugin.h"

static const char* kind_name(uint16_t k) {
  switch (k) {
    case EW_EV_DROP: return "drop";
    case EW_EV_CONN_NEW: return "conn_new";
    case EW_EV_TCP_OPEN: return "tcp_open";
    case EW_EV_TCP_CLOSE: return "tcp_close";
    case EW_EV_TCP_RETRANSMIT: return "tcp_retransmit";
    default: return "custom";
  }
}

static int addr(char* out, size_t cap, uint8_t family, const uint8_t* a) {
  if (family == 4) return snprintf(out, cap, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
  int n = 0;
  for (int i = 0; i < 16; i += 2) n += snprintf(out + n, cap - (size_t)n, "%s%x", i ? ":" : "", (a[i] << 8) | a[i + 1]);
  return n;
}

EW_EXPORT("ew_on_event") int32_t on_event(uint32_t ptr, uint32_t len) {
  const struct ew_event* ev = ew_event_of(ptr, len);
  if (!ev) return EW_PASS;
  char src[48], dst[48], json[320];
  addr(src, sizeof src, ev->family, ev->saddr);
  addr(dst, sizeof dst, ev->family, ev->daddr);
  int n = snprintf(json, sizeof json,
                   "{\"kind\":\"%s\",\"ts_ns\":%llu,\"proto\":%u,\"src\":\"%s\",\"sport\":%u,"
                   "\"dst\":\"%s\",\"dport\":%u,\"rule\":%u,\"reason\":%u,\"value\":%llu}",
                   kind_name(ev->kind), (unsigned long long)ev->ts_ns, ev->proto, src, ev->sport, dst,
                   ev->dport, ev->rule, ev->reason, (unsigned long long)ev->value);
  if (n <= 0 || n >= (int)sizeof json) return EW_PASS;
  ew_replace(json, (uint32_t)n);
  return EW_REPLACE;
}
