// Applies compiled policies to the firewall's maps as one atomic switch.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

#include "bpf/firewall_program.h"
#include "common/result.h"
#include "policy/compiler.h"

namespace edgeward::dataplane {

// Capacities that fit a compiled policy (rounded up, with headroom), for sizing a program.
bpf::FirewallOptions optionsFor(const policy::CompiledPolicy& p, bpf::FirewallOptions base = {});

class Dataplane {
 public:
  explicit Dataplane(bpf::FirewallProgram& fw) : fw_(fw) {}

  // Writes the policy into the inactive generation, then makes it active with one store.
  // A packet sees either the previous policy or this one, never a mix. On error nothing
  // that packets see has changed.
  Result<void> apply(const policy::CompiledPolicy& p, uint64_t version = 0);

  // Run-time switches (no reload).
  Result<void> setFlags(uint32_t set, uint32_t clear);

  const policy::CompiledPolicy* active() const { return active_ ? &*active_ : nullptr; }
  uint32_t activeGeneration() const { return gen_; }

 private:
  bpf::FirewallProgram& fw_;
  std::optional<policy::CompiledPolicy> active_;
  uint32_t gen_ = 0;
  std::chrono::steady_clock::time_point lastSwitch_{};
  static constexpr std::chrono::milliseconds kGrace{20};
};

}  // namespace edgeward::dataplane
