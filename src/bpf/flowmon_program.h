// flowmon: the TCP lifecycle BPF object (bpf/flowmon). Loads it, attaches its two BTF
// tracepoints, and reads its counters and duration histogram. Host-wide and unpinned: it
// observes every TCP socket while this process keeps it loaded, and attaches to no interface.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "common/result.h"
#include "flowmon.h"

struct bpf_object;
struct bpf_link;

namespace edgeward::bpf {

struct FlowmonOptions {
  uint32_t eventRingBytes = 1u << 22;  // a power of two, >= one page
};

// Connection durations of one service port: buckets[b] counts connections that lasted at most
// FM_HIST_FIRST_NS * 4^b (the last bucket: longer), not cumulative.
struct DurationHistogram {
  std::array<uint64_t, FM_HIST_BUCKETS> buckets{};
  uint64_t count = 0;
  uint64_t sumNs = 0;
};

class FlowmonProgram {
 public:
  static Result<std::unique_ptr<FlowmonProgram>> load(const FlowmonOptions& opts = {});
  ~FlowmonProgram();
  FlowmonProgram(const FlowmonProgram&) = delete;
  FlowmonProgram& operator=(const FlowmonProgram&) = delete;

  // The fm_events ring buffer (struct fm_event records).
  int eventsFd() const;
  // fm_stats summed over CPUs.
  Result<std::array<uint64_t, FM_S_COUNT>> readStats() const;
  // Transitions into each TCP state (index: Linux state number), summed over CPUs.
  Result<std::array<uint64_t, FM_TCP_STATES>> readStates() const;
  // Duration histogram per service port.
  Result<std::map<uint16_t, DurationHistogram>> readHistogram() const;
  // Upper bound of bucket b in nanoseconds (the last bucket has none: +Inf).
  static uint64_t bucketBoundNs(uint32_t b);
  // "ESTABLISHED", "SYN_SENT", ... for a Linux TCP state number.
  static const char* stateName(uint32_t state);

 private:
  FlowmonProgram() = default;
  bpf_object* obj_ = nullptr;
  std::vector<bpf_link*> links_;
  int ncpus_ = 1;
};

}  // namespace edgeward::bpf
