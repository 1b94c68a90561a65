// Feeds the bus from BPF ring buffers: one thread, one epoll set over every ring, records
// decoded and published in batches (one batch per wake-up, at most maxBatchPerRing records
// of each ring).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "bpf/ring_reader.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "pipeline/event_bus.h"

namespace edgeward::pipeline {

class RingSource {
 public:
  struct Ring {
    Source source;  // Firewall (ew_fw_event records) or Flowmon (fm_event records)
    int mapFd;      // duplicated: the caller may close its own fd
  };
  struct Options {
    // Records taken from one ring per wake-up: bounds a batch's size and delay when a ring
    // never runs empty (sustained load), so subscribers get events while it lasts.
    size_t maxBatchPerRing = bpf::RingReader::kDefaultMaxPerRing;
    // Wake-up coalescing: when records keep arriving (a wake-up within 2 x coalesce of the
    // previous one), wait until `coalesce` after this wake-up before reading again, so that
    // one wake-up (of this thread and of every subscriber) carries many records. The first
    // record after a quiet spell is read at once; a full batch (more waiting) never waits.
    // Costs up to `coalesce` of latency under load; 0 reads on every wake-up.
    std::chrono::microseconds coalesce{1000};
  };
  static Result<std::unique_ptr<RingSource>> start(EventBus& bus, const std::vector<Ring>& rings,
                                                   Options opts);
  static Result<std::unique_ptr<RingSource>> start(EventBus& bus, const std::vector<Ring>& rings) {
    return start(bus, rings, Options{});
  }
  ~RingSource();  // stops the thread
  RingSource(const RingSource&) = delete;
  RingSource& operator=(const RingSource&) = delete;

  // Records read per source, and records that did not decode.
  uint64_t received(Source s) const {
    return received_[static_cast<size_t>(s)].load(std::memory_order_relaxed);
  }
  uint64_t malformed() const { return malformed_.load(std::memory_order_relaxed); }

 private:
  RingSource(EventBus& bus, const Options& opts)
      : bus_(bus), opts_(opts), reader_(opts.maxBatchPerRing) {}
  void run();

  EventBus& bus_;
  Options opts_;
  bpf::RingReader reader_;
  std::vector<UniqueFd> fds_;
  ClockOffset clock_;
  std::vector<Event> batch_;
  std::array<uint64_t, 3> pending_{};  // records read in this wake-up, per source
  std::array<std::atomic<uint64_t>, 3> received_{};
  std::atomic<uint64_t> malformed_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace edgeward::pipeline
