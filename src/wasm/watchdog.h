// The CPU-time watchdog: one thread that stops guest calls running past their limit.
//
// Entering and leaving a call costs two uncontended mutex operations and no system call, so the
// watchdog stays cheap at millions of calls per second. Each tick (1 ms) it samples the CPU clock
// of the thread running each long call; a call that has used its limit is terminated through its
// VM. The error is at most one tick.
#pragma once

#include <pthread.h>
#include <time.h>

#include <cstdint>
#include <functional>
#include <mutex>

namespace edgeward::wasm {

// One VM's call slot, registered with the watchdog for the VM's lifetime.
class WatchedCall {
 public:
  // terminate: stops the running call; called with the slot locked, from the watchdog thread.
  WatchedCall(uint64_t limitNs, std::function<void()> terminate);
  ~WatchedCall();
  WatchedCall(const WatchedCall&) = delete;
  WatchedCall& operator=(const WatchedCall&) = delete;

  void setLimit(uint64_t limitNs);
  uint64_t limitNs() const { return limitNs_; }
  // Marks the calling thread as running a call; returns the call's sequence number.
  uint64_t enter();
  // Ends the call; true when the watchdog terminated it.
  bool leave(uint64_t seq);

 private:
  friend class Watchdog;
  std::mutex mu_;
  std::function<void()> terminate_;
  uint64_t limitNs_;
  bool inCall_ = false;
  uint64_t seq_ = 0;
  uint64_t firedSeq_ = 0;
  clockid_t clock_{};
  // What the watchdog saw when it first noticed the current call.
  uint64_t seenSeq_ = 0;
  uint64_t seenCpuNs_ = 0;
};

}  // namespace edgeward::wasm
