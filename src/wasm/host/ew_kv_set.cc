// ew_kv_set(key, key_len, val, len) -> 0 | error. The store belongs to the plugin, not the
// instance: it survives recycling, traps and replacement by a new version.
#include "wasm/host/host_services.h"

namespace edgeward::wasm::host {

HostFunction ewKvSet(HostServices& s) {
  using enum ValType;
  return {kModule, "ew_kv_set", {{I32, I32, I32, I32}, {I32}}, [&s](HostCall& c) {
            Memory m = c.memory();
            auto key = m.string(c.u32(0), c.u32(1));
            auto val = m.view(c.u32(2), c.u32(3));
            if (!key || !val || key->empty())
              return HostReturn::ok(static_cast<uint32_t>(kErrInvalid));
            if (key->size() > kMaxTopic || val->size() > kMaxData)
              return HostReturn::ok(static_cast<uint32_t>(kErrTooBig));
            return HostReturn::ok(static_cast<uint32_t>(s.kvSet(*key, *val)));
          }};
}

}  // namespace edgeward::wasm::host
