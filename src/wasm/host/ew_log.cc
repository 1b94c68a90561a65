// ew_log(level, msg, len): a line in the agent's log. A bad pointer traps: it is a guest bug.
#include "wasm/host/host_services.h"

namespace edgeward::wasm::host {

HostFunction ewLog(HostServices& s) {
  using enum ValType;
  return {kModule, "ew_log", {{I32, I32, I32}, {}}, [&s](HostCall& c) {
            auto msg = c.memory().string(c.u32(1), c.u32(2));
            if (!msg) return HostReturn::fail("message outside guest memory");
            s.log(std::clamp(c.i32(0), 0, 3), msg->substr(0, 4096));
            return HostReturn::ok();
          }};
}

}  // namespace edgeward::wasm::host
