/* Guest side of ew_bench_wasm: an empty export (host->guest call cost), a loop of calls to an
 * empty host function (guest->host call cost) and a compute kernel (FNV-1a over a buffer). */
#include <stdint.h>

__attribute__((import_module("bench"), import_name("nop"))) void host_nop(void);

__attribute__((export_name("nop"))) void nop(void) {}

__attribute__((export_name("call_host"))) void call_host(uint32_t n) {
  for (uint32_t i = 0; i < n; i++) host_nop();
}

static uint8_t buf[65536];

__attribute__((export_name("fnv"))) uint32_t fnv(uint32_t rounds) {
  uint32_t h = 2166136261u;
  for (uint32_t r = 0; r < rounds; r++)
    for (uint32_t i = 0; i < sizeof buf; i++) {
      buf[i] = (uint8_t)(buf[i] + i + r);
      h = (h ^ buf[i]) * 16777619u;
    }
  return h;
}
