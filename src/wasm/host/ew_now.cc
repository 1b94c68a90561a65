// ew_now() -> CLOCK_REALTIME nanoseconds (the clock of ew_event.ts_ns).
#include <time.h>

#include "wasm/host/host_services.h"

namespace edgeward::wasm::host {

HostFunction ewNow(HostServices&) {
  return {kModule, "ew_now", {{}, {ValType::I64}}, [](HostCall&) {
            timespec ts{};
            clock_gettime(CLOCK_REALTIME, &ts);
            return HostReturn::ok(uint64_t(ts.tv_sec) * 1'000'000'000u + ts.tv_nsec);
          }};
}

}  // namespace edgeward::wasm::host
