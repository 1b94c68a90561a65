// Compiles a validated Policy into the map images the firewall program reads (firewall.h).
// Pure computation: the loader (src/bpf) rebases the offsets and writes one generation.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
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

// What compile() keeps for compileChange(): identity and group numbering, shared entries and an
// index of prefixes by bucket. Opaque outside the compiler.
struct CompileState;

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
  // A 64-bit content hash of each bucket's interval block and of each group slot's port block
  // (0 for an empty slot): the data plane compares these with what a generation holds, so a
  // small change is found without comparing whole images.
  std::vector<uint64_t> bkt4Hash, bkt6Hash, grpHash;
  // For compileChange(); shared by copies of this image, never modified once shared.
  std::shared_ptr<CompileState> state;

  uint32_t groups() const { return hdr.n_groups; }
  // Rule id of a rule name, or EW_RULE_NONE.
  uint32_t ruleId(std::string_view name) const;
};

// With `previous`, groups keep the ids they had there, so a small change to a large policy
// changes few map entries (the data plane writes only what differs).
Result<CompiledPolicy> compile(const Policy& policy, const CompileLimits& limits = {},
                               const CompiledPolicy* previous = nullptr);

// Recompiles only what `changes` touch: the buckets (top 16 address bits) their prefixes
// overlap, and the port tables of groups that did not exist before. `policy` is the policy after
// the changes, whose rules, identities and order are those `image` was compiled from (only
// prefix lists differ); `image` is consumed. Blocks of recomputed buckets are appended, their old
// ones left unused; when those grow past the live size, or a change touches more than a few
// thousand buckets, this recompiles the whole policy (with `image` as previous) instead. The
// result decides every packet as compile(policy) does.
Result<CompiledPolicy> compileChange(const Policy& policy, CompiledPolicy image,
                                     std::span<const PrefixChange> changes,
                                     const CompileLimits& limits = {});

// Whether a rule's port spec covers a protocol slot (enum ew_proto_slot): tcp/udp/icmp/icmpv6
// their own slot, "any" every slot including EW_P_OTHER.
bool specCoversSlot(const PortSpec& s, uint8_t slot);

// Names of enum ew_reason values ("rule-allow", "default-deny", ...), for output and docs.
std::string_view reasonName(uint8_t reason);

}  // namespace edgeward::policy
