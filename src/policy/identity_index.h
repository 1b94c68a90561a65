// Which identity an address belongs to: the most specific prefix of any identity containing
// it (ties: the identity listed first). For naming event peers, not for decisions.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "policy/policy.h"

namespace edgeward::policy {

class IdentityIndex {
 public:
  IdentityIndex() = default;
  explicit IdentityIndex(const Policy& p);
  // family 4 (addr: 4 bytes, network order) or 6 (16 bytes); "" when no identity contains it.
  const std::string& lookup(uint8_t family, const uint8_t* addr) const;

 private:
  struct Key {
    std::array<uint8_t, 16> addr;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const noexcept;
  };
  // Per family, per prefix length (longest first): masked address -> identity index.
  struct Level {
    uint8_t len;
    std::unordered_map<Key, uint32_t, KeyHash> nets;
  };
  std::array<std::vector<Level>, 2> levels_;
  std::vector<std::string> names_;
};

}  // namespace edgeward::policy
