// Applies compiled policies to the firewall's maps as one atomic switch, writing only what
// differs from what the target generation already holds.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "bpf/firewall_program.h"
#include "common/result.h"
#include "policy/compiler.h"

namespace edgeward::dataplane {

// Capacities that fit a compiled policy (rounded up, with headroom), for sizing a program.
bpf::FirewallOptions optionsFor(const policy::CompiledPolicy& p, bpf::FirewallOptions base = {});

// What one apply wrote, for logs, tests and benchmarks.
struct ApplyStats {
  uint32_t generation = 0;
  size_t entriesWritten = 0;  // map entries written in total
  size_t entriesKept = 0;     // interval and port entries reused in place
  bool fullRewrite = false;   // the generation was laid out from scratch
  double writeMs = 0;         // map writes
  double switchUs = 0;        // the one-word switch packets see
};

class Dataplane {
 public:
  explicit Dataplane(bpf::FirewallProgram& fw) : fw_(fw) {}

  // Writes the policy into the inactive generation, then makes it active with one store.
  // A packet sees either the previous policy or this one, never a mix. Interval and port
  // blocks that the generation already holds (same content) stay where they are, so a small
  // change writes a few entries, not the whole map. On error nothing that packets see changed.
  Result<ApplyStats> apply(const policy::CompiledPolicy& p, uint64_t version = 0);

  // Makes the previous generation active again (it still holds the previous policy).
  Result<void> revert();

  // Version recorded in the active generation's header (0 when none was applied).
  Result<uint64_t> pinnedVersion() const;

  // After a restart on pinned maps that already enforce `p`: learns what the active generation
  // holds without writing anything.
  Result<void> adopt(const policy::CompiledPolicy& p);

  // Run-time switches (no reload).
  Result<void> setFlags(uint32_t set, uint32_t clear);

  uint32_t activeGeneration() const { return gen_; }

 private:
  // What one generation holds, mirrored in user space: content-addressed blocks per array.
  struct Blocks {
    std::unordered_map<std::string, uint32_t> at;  // block bytes -> first index
  };
  struct Generation {
    bool known = false;
    std::vector<ew_bucket> bkt4, bkt6;  // absolute offsets
    std::vector<ew_grp> grp;            // absolute offsets
    Blocks iv4, iv6, piv;
    // Content hashes of what each bucket and group slot points at (CompiledPolicy's), and the
    // end of the used part of each array region: nothing at or above it is referenced, and
    // nothing below it is overwritten until the generation is laid out afresh, so every block
    // in `at` keeps its content.
    std::vector<uint64_t> h4, h6, hg;
    uint32_t end4 = 0, end6 = 0, endP = 0;
  };
  // Lays out a compiled image in generation g, reusing its blocks; fills `out` and the writes.
  struct Plan;
  Result<void> plan(const policy::CompiledPolicy& p, uint32_t g, Plan& out, bool fresh) const;
  // The same, visiting only buckets and group slots whose hash differs from what generation g
  // holds; new blocks go above the used part. False when it cannot (unknown generation, no room).
  bool planChanges(const policy::CompiledPolicy& p, uint32_t g, Plan& out) const;
  Result<void> write(const Plan& plan, ApplyStats& st);

  bpf::FirewallProgram& fw_;
  Generation gens_[EW_GENERATIONS];
  uint32_t gen_ = 0;
  std::chrono::steady_clock::time_point lastSwitch_{};
  static constexpr std::chrono::milliseconds kGrace{20};
};

}  // namespace edgeward::dataplane
