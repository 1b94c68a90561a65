// Compiles a validated Policy into the map images the firewall program reads (firewall.h).
// Pure computation: the loader (src/bpf) rebases the offsets and writes one generation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "firewall.h"
#include "policy/policy.h"

namespace edgeward::policy {

// Capacities of the maps one generation may use; compile() refuses a policy that exceeds them.
struct CompileLimits {
  uint32_t maxRules = 1u << 20;
  uint32_t maxIntervals4 = 8u << 20;
  uint32_t maxIntervals6 = 8u << 20;
  uint32_t maxGroups = 1u << 20;
  uint32_t maxPortEntries = 16u << 20;
};

struct RuleInfo {
  std::string name;
  uint8_t dir = EW_INGRESS;  // enum ew_dir
  Action action = Action::Allow;
  int line = 0;
};

struct CompileStats {
  size_t identities = 0;
  size_t prefixes4 = 0;  // distinct prefixes over all identities
  size_t prefixes6 = 0;
  size_t rules = 0;
  size_t bytes = 0;  // map memory one generation needs
};

// One generation's image. Offsets inside (ew_bucket.off, ew_grp.off) are relative to the
// start of this image's iv4/iv6/piv vectors.
struct CompiledPolicy {
  ew_policy_hdr hdr{};          // bkt_base/grp_base are left 0 for the loader to set
  std::vector<ew_bucket> bkt4;  // EW_BUCKETS entries
  std::vector<ew_bucket> bkt6;  // EW_BUCKETS entries
  std::vector<ew_iv4> iv4;
  std::vector<ew_iv6> iv6;
  std::vector<ew_grp> grp;  // n_groups * EW_P_COUNT
  std::vector<ew_piv> piv;
  std::vector<RuleInfo> rules;  // indexed by rule id: ingress rules, then egress, file order
  std::vector<std::vector<uint32_t>> groupRules;  // rule ids of each group (empty: unused id)
  CompileStats stats;

  uint32_t groups() const { return hdr.n_groups; }
  // Rule id of a rule name, or EW_RULE_NONE.
  uint32_t ruleId(std::string_view name) const;
};

// With `previous`, groups keep the ids they had there, so a small change to a large policy
// changes few map entries (the data plane writes only what differs).
Result<CompiledPolicy> compile(const Policy& policy, const CompileLimits& limits = {},
                               const CompiledPolicy* previous = nullptr);

// Whether a rule's port spec covers a protocol slot (enum ew_proto_slot): tcp/udp/icmp/icmpv6
// their own slot, "any" every slot including EW_P_OTHER.
bool specCoversSlot(const PortSpec& s, uint8_t slot);

// Names of enum ew_reason values ("rule-allow", "default-deny", ...), for output and docs.
std::string_view reasonName(uint8_t reason);

}  // namespace edgeward::policy
