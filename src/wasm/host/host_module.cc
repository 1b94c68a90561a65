// The "edgeward" import module: every host function a plugin may import.
#include "wasm/host/host_services.h"

namespace edgeward::wasm::host {

std::vector<HostFunction> hostFunctions(HostServices& s) {
  return {ewEmit(s), ewLog(s),     ewKvGet(s), ewKvSet(s),
          ewNow(s),  ewPublish(s), ewTimer(s), ewReplace(s)};
}

TopicData readTopicData(const HostCall& c) {
  TopicData td;
  Memory m = c.memory();
  auto topic = m.string(c.u32(0), c.u32(1));
  auto data = m.view(c.u32(2), c.u32(3));
  if (!topic || !data || topic->empty()) {
    td.error = kErrInvalid;
  } else if (topic->size() > kMaxTopic || data->size() > kMaxData) {
    td.error = kErrTooBig;
  } else {
    td.topic = *topic;
    td.data = *data;
  }
  return td;
}

}  // namespace edgeward::wasm::host
