/* event_filter: drops noise before it reaches the sinks.
 * Firewall drops of NetBIOS/SSDP/mDNS broadcasts (UDP 137, 138, 1900, 5353) and single
 * retransmits are dropped; everything else passes unchanged. */
#include "edgeward_plugin.h"

static int noisy_port(uint16_t port) { return port == 137 || port == 138 || port == 1900 || port == 5353; }

EW_EXPORT("ew_on_event") int32_t on_event(uint32_t ptr, uint32_t len) {
  const struct ew_event* ev = ew_event_of(ptr, len);
  if (!ev) return EW_PASS;
  if (ev->kind == EW_EV_DROP && ev->proto == 17 && noisy_port(ev->dport)) return EW_DROP;
  if (ev->kind == EW_EV_TCP_RETRANSMIT && ev->value < 2) return EW_DROP;
  return EW_PASS;
}
