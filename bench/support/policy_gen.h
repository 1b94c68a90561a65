// Synthetic policies for the benchmarks, and their nftables translation.
//
// Shape: `prefixes` CIDR prefixes (about 90% IPv4 /24, some /20-/22 supernets that overlap
// others, some /26-/32, and one prefix in 20 an IPv6 /48-/64) spread over public unicast
// space, grouped into identities (1 prefix each up to 10k prefixes, 4 each above). Rules:
//   rule 0  egress  allow tcp 443 to any       (lets the bench open an outbound connection)
//   rule 1  ingress deny  tcp 23  from any
//   rule 2+ ingress, each naming identities (identities are partitioned over the rules so every
//           prefix matters, every 50th rule also names one extra random identity), with one or
//           two port specs (tcp 90%, udp 10%; single ports or ranges, always <= 60000), about
//           1 in 8 of them deny.
// defaultAction deny. Everything is derived from the seed: the same spec gives the same policy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "policy/compiler.h"
#include "policy/policy.h"

namespace edgeward::bench {

struct GenSpec {
  size_t prefixes = 10;
  size_t rules = 10;
  uint64_t seed = 1;
};

// Prefixes per identity for a prefix count (1 up to 10k, 4 above).
size_t prefixesPerIdentity(size_t prefixes);
inline size_t identitiesFor(size_t prefixes) {
  return (prefixes + prefixesPerIdentity(prefixes) - 1) / prefixesPerIdentity(prefixes);
}

// Ports the generator never uses in rules: packets to them hit the default action.
inline constexpr uint16_t kUnusedPortBase = 61000;

struct GenRule {
  std::vector<uint32_t> identities;  // indexes into Policy::identities
};

struct GeneratedPolicy {
  policy::Policy policy;
  std::vector<GenRule> ruleIdentities;  // parallel to policy.ingress (empty for "any" rules)
};

GeneratedPolicy generatePolicy(const GenSpec& spec);

// A host address inside a prefix (text), not the network address when the prefix has room.
std::string hostIn(const policy::Prefix& p, uint64_t salt);

// nftables translation of a compiled policy's IPv4/IPv6 ingress decisions, for the netdev
// ingress hook of `device`. The compiled image already holds disjoint address intervals with
// their port decisions (deny beats allow, overlaps resolved), so the sets below have no
// overlapping elements:
//   set deny4/deny6   : { addr-range . l4proto . port-range } whose decision is deny
//   set allow4/allow6 : the same for allow
//   chain: deny sets -> drop (counter c_deny), allow sets -> accept (counter c_allow),
//          ARP accept, everything else -> drop (counter c_default).
// `portExact` false gives a cheaper, looser ruleset: source-address-only sets (an address
// interval lands in deny4 if any of its port decisions is deny, otherwise in allow4 if any is
// allow). It is a lower bound on nftables' cost, not the same policy.
struct NftRuleset {
  std::string text;
  size_t elements = 0;
};
NftRuleset nftRuleset(const policy::CompiledPolicy& p, const std::string& table,
                      const std::string& device, bool portExact);

}  // namespace edgeward::bench
