// A pool of live instances of one module version: pre-warmed at load, handed out one caller at a
// time, recycled or discarded on return, never more than `maxLive` alive.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "wasm/engines.h"
#include "wasm/host/host_services.h"
#include "wasm/wasi/wasi.h"
#include "wasm/wasm_vm.h"

namespace edgeward::wasm {

// One instance and the host state bound to it. The VM is destroyed first (its callbacks point
// at the rest).
struct Instance {
  ~Instance() { vm.reset(); }
  std::unique_ptr<wasi::WasiContext> wasi;
  std::unique_ptr<host::HostServices> services;
  std::unique_ptr<WasmVm> vm;
  int entry = -1;       // ew_on_event or _start
  int alloc = -1;       // ew_alloc
  int onComplete = -1;  // ew_on_complete, if exported
  uint32_t buf = 0;     // guest buffer for host->guest data, from ew_alloc
  uint32_t bufCap = 0;
  std::thread::id lastThread;  // the thread that held it last (see InstancePool::acquire)
};

class InstancePool : public std::enable_shared_from_this<InstancePool> {
 public:
  using Create = std::function<Result<std::unique_ptr<Instance>>()>;
  // Makes a used instance fresh again (functions: a new instance of the module); null = reuse.
  using Recycle = std::function<Result<void>(Instance&)>;

  // With `recycle`, returned instances are recycled by a worker thread of the pool, off the
  // caller's path; they count as live (not idle) meanwhile.
  static std::shared_ptr<InstancePool> make(Create create, Recycle recycle, uint32_t maxLive);
  ~InstancePool();

  // Creates instances until n are idle (or maxLive are alive).
  Result<void> prewarm(uint32_t n);

  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& o) noexcept = default;
    Lease& operator=(Lease&& o) noexcept;
    ~Lease();
    Instance* operator->() const { return inst_.get(); }
    Instance& operator*() const { return *inst_; }
    // The instance is not returned to the pool (it trapped, or its state is suspect).
    void discard() { discard_ = true; }
    // The holder made the instance fresh again itself: it goes back to the idle list as it is,
    // not through the recycler.
    void markFresh() { fresh_ = true; }
    void release();

   private:
    friend class InstancePool;
    std::shared_ptr<InstancePool> pool_;
    std::unique_ptr<Instance> inst_;
    bool discard_ = false;
    bool fresh_ = false;
  };

  // An idle instance, a new one if fewer than maxLive are alive, or else waits up to `wait`.
  // An idle instance this thread held last comes first: moving a V8 isolate to another thread
  // costs tens of microseconds (its thread state is archived and restored), more than a call.
  Result<Lease> acquire(std::chrono::nanoseconds wait);
  // Drops every idle instance (failure policy "reload"); busy ones finish their call first.
  void discardAll();

  struct Stats {
    uint32_t live = 0;
    uint32_t idle = 0;
    uint64_t created = 0;
    uint64_t discarded = 0;
  };
  Stats stats() const;
  uint32_t maxLive() const { return maxLive_; }

 private:
  InstancePool(Create create, Recycle recycle, uint32_t maxLive)
      : create_(std::move(create)), recycle_(std::move(recycle)), maxLive_(maxLive) {}
  void give(std::unique_ptr<Instance> inst, bool discard, bool fresh);
  void recycleLoop();

  Create create_;
  Recycle recycle_;
  uint32_t maxLive_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Instance>> idle_;
  std::vector<std::unique_ptr<Instance>> dirty_;  // waiting for the recycler
  std::condition_variable dirtyCv_;
  std::thread recycler_;
  bool stop_ = false;
  uint32_t live_ = 0;  // idle + busy + being created
  Stats counters_;
};

}  // namespace edgeward::wasm

namespace edgeward::wasm {

// Creates one instance of `module`: a VM from `factory` with the call's CPU limit, WASI as
// configured, the edgeward host functions when `services` is given, `_initialize` run if the
// module exports it, and the indices of `entry` (and of ew_alloc/ew_on_complete if present).
Result<std::unique_ptr<Instance>> makeInstance(const VmFactory& factory,
                                               std::shared_ptr<const CompiledModule> module,
                                               uint64_t cpuLimitNs, wasi::WasiConfig wasiConfig,
                                               std::unique_ptr<host::HostServices> services,
                                               std::string_view entry);

}  // namespace edgeward::wasm
