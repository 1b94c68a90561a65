// An LRU cache of compiled modules, keyed by their bytes, so loading a plugin that is already
// known (a reload, a replace back to an earlier version, a function redeploy) skips compilation.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "wasm/engines.h"

namespace edgeward::wasm {

class ModuleCache {
 public:
  ModuleCache(VmFactory factory, size_t capacity)
      : factory_(std::move(factory)), capacity_(capacity) {}

  // The compiled module for `bytes`: parsed (clear errors with offsets), compiled on a miss.
  Result<std::shared_ptr<const CompiledModule>> get(std::span<const uint8_t> bytes);
  // The same after capMemory(): the module's memory cannot grow past memoryBytes.
  Result<std::shared_ptr<const CompiledModule>> getCapped(std::span<const uint8_t> bytes,
                                                          uint64_t memoryBytes);

  struct Stats {
    uint64_t hits = 0;
    uint64_t misses = 0;
    size_t entries = 0;
  };
  Stats stats() const;

 private:
  struct Entry {
    uint64_t hash;
    std::vector<uint8_t> bytes;
    std::shared_ptr<const CompiledModule> module;
  };
  VmFactory factory_;
  size_t capacity_;
  mutable std::mutex mu_;
  std::unique_ptr<WasmVm> compiler_;  // compiles under mu_
  std::list<Entry> lru_;              // most recent first
  Stats stats_;
};

}  // namespace edgeward::wasm
