// What a plugin or function may be called: the manifest's `name`, which also names the module's
// directory in the agent's state (so never "." or anything with a '/'). Header-only, for the
// module store, which does not link the WebAssembly runtime.
#pragma once

#include <string_view>

namespace edgeward::wasm {

// Lower-case letters, digits and '-', 1 to 63 of them, not starting or ending with '-'.
inline bool validModuleName(std::string_view n) {
  if (n.empty() || n.size() > 63 || n.front() == '-' || n.back() == '-') return false;
  for (char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return true;
}

}  // namespace edgeward::wasm
