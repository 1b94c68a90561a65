// ew_publish(topic, topic_len, data, len) -> token | error: completed later by ew_on_complete.
#include "wasm/host/host_services.h"

namespace edgeward::wasm::host {

HostFunction ewPublish(HostServices& s) {
  using enum ValType;
  return {kModule, "ew_publish", {{I32, I32, I32, I32}, {I32}}, [&s](HostCall& c) {
            TopicData td = readTopicData(c);
            if (td.error) return HostReturn::ok(static_cast<uint32_t>(td.error));
            return HostReturn::ok(static_cast<uint32_t>(s.publish(td.topic, td.data)));
          }};
}

}  // namespace edgeward::wasm::host
