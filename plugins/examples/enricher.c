/* enricher: counts firewall drops per source address in the plugin's kv store (which survives
 * instance recycling and new versions), writes the running count into each drop event's
 * `value` field (0 in drop events as the firewall sends them), and publishes an alert on
 * "alerts" at every 100th drop from one source. The agent acknowledges each alert through
 * ew_on_complete once its publish destination has it; alerts that failed are counted in kv
 * under "alerts-failed". */
#include <stdio.h>

#include "edgeward_plugin.h"

EW_EXPORT("ew_on_event") int32_t on_event(uint32_t ptr, uint32_t len) {
  const struct ew_event* ev = ew_event_of(ptr, len);
  if (!ev || ev->kind != EW_EV_DROP) return EW_PASS;
  uint8_t key[17];
  key[0] = ev->family;
  memcpy(key + 1, ev->saddr, 16);
  uint32_t count = 0;
  if (ew_kv_get((const char*)key, sizeof key, &count, sizeof count) != (int32_t)sizeof count) count = 0;
  count++;
  ew_kv_set((const char*)key, sizeof key, &count, sizeof count);

  if (count % 100 == 0) {
    char msg[96];
    const uint8_t* a = ev->saddr;
    int n = ev->family == 4 ? snprintf(msg, sizeof msg, "{\"source\":\"%u.%u.%u.%u\",\"drops\":%u}", a[0], a[1], a[2], a[3], count)
                            : snprintf(msg, sizeof msg, "{\"source\":\"ipv6\",\"drops\":%u}", count);
    ew_publish_str("alerts", msg, (uint32_t)n);
  }
  struct ew_event out = *ev;
  out.value = count;
  ew_replace(&out, sizeof out);
  return EW_REPLACE;
}

EW_EXPORT("ew_on_complete") void on_complete(int32_t token, int32_t status, uint32_t ptr, uint32_t len) {
  (void)token, (void)ptr, (void)len;
  if (status == EW_OK) return;
  static const char kKey[] = "alerts-failed";
  uint32_t failed = 0;
  if (ew_kv_get(kKey, sizeof kKey - 1, &failed, sizeof failed) != (int32_t)sizeof failed) failed = 0;
  failed++;
  ew_kv_set(kKey, sizeof kKey - 1, &failed, sizeof failed);
}
