#pragma once

#include <string>
#include <string_view>

#include <fmt/format.h>

namespace edgeward {

// Text from outside (a YAML string, a name inside a WebAssembly module, an engine's message) as
// it may appear in a one-line error: newlines, tabs and other control characters are shown
// escaped. Escaping twice changes nothing, since backslashes are left as they are.
inline std::string oneLine(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace edgeward
