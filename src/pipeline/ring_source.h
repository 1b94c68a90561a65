// Feeds the bus from BPF ring buffers: one thread, one epoll set over every ring, records
// decoded and published in batches (one batch per wake-up).
#pragma once

#include <array>
#include <atomic>
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
  static Result<std::unique_ptr<RingSource>> start(EventBus& bus, const std::vector<Ring>& rings);
  ~RingSource();  // stops the thread
  RingSource(const RingSource&) = delete;
  RingSource& operator=(const RingSource&) = delete;

  // Records read per source, and records that did not decode.
  uint64_t received(Source s) const {
    return received_[static_cast<size_t>(s)].load(std::memory_order_relaxed);
  }
  uint64_t malformed() const { return malformed_.load(std::memory_order_relaxed); }

 private:
  RingSource(EventBus& bus) : bus_(bus) {}
  void run();

  EventBus& bus_;
  bpf::RingReader reader_;
  std::vector<UniqueFd> fds_;
  ClockOffset clock_;
  std::vector<Event> batch_;
  std::array<std::atomic<uint64_t>, 3> received_{};
  std::atomic<uint64_t> malformed_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace edgeward::pipeline
