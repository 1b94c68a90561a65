// ew_timer(ms) -> token | error: ew_on_complete(token, EW_OK, 0, 0) after ms milliseconds.
#include "wasm/host/host_services.h"

namespace edgeward::wasm::host {

HostFunction ewTimer(HostServices& s) {
  using enum ValType;
  return {kModule, "ew_timer", {{I32}, {I32}}, [&s](HostCall& c) {
            // At most a day: anything longer is a guest bug, not a schedule.
            if (c.u32(0) > 86'400'000u) return HostReturn::ok(static_cast<uint32_t>(kErrInvalid));
            return HostReturn::ok(static_cast<uint32_t>(s.timer(c.u32(0))));
          }};
}

}  // namespace edgeward::wasm::host
