#include "policy/identity_index.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <string_view>

namespace edgeward::policy {
namespace {

std::array<uint8_t, 16> masked(const uint8_t* addr, size_t bytes, uint8_t len) {
  std::array<uint8_t, 16> out{};
  std::memcpy(out.data(), addr, bytes);
  for (size_t i = 0; i < bytes; i++) {
    const int keep = std::clamp(int(len) - int(i * 8), 0, 8);
    out[i] &= keep == 8 ? 0xff : static_cast<uint8_t>(0xff00 >> keep);
  }
  return out;
}

const std::string kNone;

}  // namespace

size_t IdentityIndex::KeyHash::operator()(const Key& k) const noexcept {
  return std::hash<std::string_view>{}(
      std::string_view(reinterpret_cast<const char*>(k.addr.data()), k.addr.size()));
}

IdentityIndex::IdentityIndex(const Policy& p) {
  std::array<std::map<uint8_t, Level, std::greater<>>, 2> byLen;
  for (const Identity& id : p.identities) {
    const auto idx = static_cast<uint32_t>(names_.size());
    names_.push_back(id.name);
    for (const Prefix& pre : id.prefixes) {
      const size_t f = pre.family == Family::V4 ? 0 : 1;
      Level& l = byLen[f][pre.len];
      l.len = pre.len;
      l.nets.try_emplace(Key{masked(pre.addr.data(), f ? 16 : 4, pre.len)}, idx);
    }
  }
  for (size_t f = 0; f < 2; f++)
    for (auto& [len, level] : byLen[f]) levels_[f].push_back(std::move(level));
}

const std::string& IdentityIndex::lookup(uint8_t family, const uint8_t* addr) const {
  if (family != 4 && family != 6) return kNone;
  const size_t f = family == 4 ? 0 : 1;
  for (const Level& l : levels_[f]) {
    auto it = l.nets.find(Key{masked(addr, f ? 16 : 4, l.len)});
    if (it != l.nets.end()) return names_[it->second];
  }
  return kNone;
}

}  // namespace edgeward::policy
