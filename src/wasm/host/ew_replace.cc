// ew_replace(data, len) -> 0 | error: the bytes handed on when ew_on_event returns EW_REPLACE.
#include "wasm/host/host_services.h"

namespace edgeward::wasm::host {

HostFunction ewReplace(HostServices& s) {
  using enum ValType;
  return {kModule, "ew_replace", {{I32, I32}, {I32}}, [&s](HostCall& c) {
            auto data = c.memory().view(c.u32(0), c.u32(1));
            if (!data) return HostReturn::ok(static_cast<uint32_t>(kErrInvalid));
            if (data->size() > kMaxData) return HostReturn::ok(static_cast<uint32_t>(kErrTooBig));
            return HostReturn::ok(static_cast<uint32_t>(s.replace(*data)));
          }};
}

}  // namespace edgeward::wasm::host
