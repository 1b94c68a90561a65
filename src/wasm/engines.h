// The engines this build has, for code and tests that run over all of them.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "wasm/runtime/v8/v8_vm.h"

namespace edgeward::wasm {

using VmFactory = std::function<std::unique_ptr<WasmVm>(const VmOptions&)>;

struct Engine {
  std::string name;
  VmFactory create;
};

inline std::vector<Engine> availableEngines() {
  return {{"v8", [](const VmOptions& o) { return createV8Vm(o); }}};
}

}  // namespace edgeward::wasm
