// ew_emit(topic, topic_len, data, len) -> 0 | error: a new event into the pipeline.
#include "wasm/host/host_services.h"

namespace edgeward::wasm::host {

HostFunction ewEmit(HostServices& s) {
  using enum ValType;
  return {kModule, "ew_emit", {{I32, I32, I32, I32}, {I32}}, [&s](HostCall& c) {
            TopicData td = readTopicData(c);
            if (td.error) return HostReturn::ok(static_cast<uint32_t>(td.error));
            return HostReturn::ok(static_cast<uint32_t>(s.emit(td.topic, td.data)));
          }};
}

}  // namespace edgeward::wasm::host
