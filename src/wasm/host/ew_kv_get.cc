// ew_kv_get(key, key_len, buf, cap) -> full value length | EW_ERR_NOT_FOUND | error.
#include "wasm/host/host_services.h"

namespace edgeward::wasm::host {

HostFunction ewKvGet(HostServices& s) {
  using enum ValType;
  return {kModule, "ew_kv_get", {{I32, I32, I32, I32}, {I32}}, [&s](HostCall& c) {
            Memory m = c.memory();
            auto key = m.string(c.u32(0), c.u32(1));
            auto buf = m.view(c.u32(2), c.u32(3));
            if (!key || !buf) return HostReturn::ok(static_cast<uint32_t>(kErrInvalid));
            auto v = s.kvGet(*key);
            if (!v) return HostReturn::ok(static_cast<uint32_t>(kErrNotFound));
            std::memcpy(buf->data(), v->data(), std::min(v->size(), buf->size()));
            return HostReturn::ok(static_cast<uint32_t>(v->size()));
          }};
}

}  // namespace edgeward::wasm::host
