// The V8 engine (Debian's libnode108, V8 10.2), reachable only through createV8Vm().
#pragma once

#include <memory>

#include "wasm/wasm_vm.h"

namespace edgeward::wasm {

// Process-wide V8 settings; they take effect only before the first VM is created.
struct V8Options {
  // Bounds checks by guard pages: faster guest code, but ~10 GiB of address space per memory.
  bool trapHandler = false;
  // Compile each function on its first call instead of at load (modules are still validated
  // at load): cold start drops to decoding, the first calls pay for their code.
  bool lazyCompilation = true;
};
void configureV8(const V8Options& options);

std::unique_ptr<WasmVm> createV8Vm(const VmOptions& options = {});

}  // namespace edgeward::wasm
