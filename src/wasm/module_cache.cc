#include "wasm/module_cache.h"

#include <algorithm>

namespace edgeward::wasm {
namespace {

uint64_t fnv1a(std::span<const uint8_t> b) {
  uint64_t h = 1469598103934665603ull;
  for (uint8_t c : b) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace

Result<std::shared_ptr<const CompiledModule>> ModuleCache::get(std::span<const uint8_t> bytes) {
  uint64_t h = fnv1a(bytes);
  std::lock_guard l(mu_);
  for (auto it = lru_.begin(); it != lru_.end(); ++it) {
    if (it->hash == h && std::ranges::equal(it->bytes, bytes)) {
      lru_.splice(lru_.begin(), lru_, it);
      stats_.hits++;
      return lru_.front().module;
    }
  }
  stats_.misses++;
  EW_TRY(info, parseModule(bytes));
  if (!compiler_) compiler_ = factory_(VmOptions{});
  EW_TRY(mod, compiler_->compile(bytes, std::move(*info)));
  lru_.push_front({h, std::vector<uint8_t>(bytes.begin(), bytes.end()), *mod});
  while (lru_.size() > capacity_) lru_.pop_back();
  return std::move(*mod);
}

Result<std::shared_ptr<const CompiledModule>> ModuleCache::getCapped(std::span<const uint8_t> bytes,
                                                                     uint64_t memoryBytes) {
  EW_TRY(capped, capMemory(bytes, static_cast<uint32_t>(std::clamp<uint64_t>(
                                      memoryBytes / kWasmPageBytes, 1, 65536))));
  return get(*capped);
}

ModuleCache::Stats ModuleCache::stats() const {
  std::lock_guard l(mu_);
  Stats s = stats_;
  s.entries = lru_.size();
  return s;
}

}  // namespace edgeward::wasm
