#include "policy/evaluator.h"

#include <algorithm>
#include <vector>

namespace edgeward::policy {
namespace {

constexpr uint8_t kTcp = 6, kUdp = 17, kIcmp = 1, kIcmpv6 = 58;

bool inPrefix(const Prefix& p, Family family, const std::array<uint8_t, 16>& addr) {
  if (p.family != family) return false;
  for (int bit = 0; bit < p.len; bit++) {
    const uint8_t mask = uint8_t(0x80u >> (bit % 8));
    if ((p.addr[bit / 8] & mask) != (addr[bit / 8] & mask)) return false;
  }
  return true;
}

// The protocol a ports entry names, as the IP protocol numbers it covers.
bool protocolCovers(Protocol p, uint8_t proto) {
  switch (p) {
    case Protocol::Any:
      return true;
    case Protocol::Tcp:
      return proto == kTcp;
    case Protocol::Udp:
      return proto == kUdp;
    case Protocol::Icmp:
      return proto == kIcmp;
    case Protocol::Icmpv6:
      return proto == kIcmpv6;
  }
  return false;
}

bool peerMatches(const Policy& policy, const Rule& rule, Family family,
                 const std::array<uint8_t, 16>& peer) {
  for (const std::string& name : rule.peers) {
    if (name == kAnyIdentity) return true;
    for (const Identity& id : policy.identities) {
      if (id.name != name) continue;
      for (const Prefix& p : id.prefixes)
        if (inPrefix(p, family, peer)) return true;
    }
  }
  return false;
}

bool portMatches(const Rule& rule, uint8_t proto, uint32_t port) {
  if (rule.ports.empty()) return true;
  for (const PortSpec& s : rule.ports)
    if (protocolCovers(s.protocol, proto) && s.range.first <= port && port <= s.range.last)
      return true;
  return false;
}

struct Decision {
  uint8_t action = EW_ACT_NONE;
  uint32_t rule = EW_RULE_NONE;
  bool operator==(const Decision&) const = default;
};

// Among the rules whose peers match, the decision for one port: deny first, then allow; the
// lowest rule id of the winning action.
Decision decide(const std::vector<std::pair<uint32_t, const Rule*>>& rules, uint8_t proto,
                uint32_t port) {
  Decision d;
  for (const auto& [id, rule] : rules) {
    if (!portMatches(*rule, proto, port)) continue;
    const uint8_t a = rule->action == Action::Deny ? EW_ACT_DENY : EW_ACT_ALLOW;
    if (a > d.action || (a == d.action && id < d.rule)) d = {a, id};
  }
  return d;
}

}  // namespace

Verdict evaluate(const Policy& policy, const PacketFacts& pkt) {
  if (pkt.arp) return {true, EW_R_HOST_ESSENTIAL, EW_RULE_NONE};
  if (pkt.family == Family::V6 && pkt.proto == kIcmpv6 && !pkt.fragment) {
    const uint8_t t = pkt.icmpType;
    if (t >= 133 && t <= 136 && pkt.hopLimit == 255)
      return {true, EW_R_HOST_ESSENTIAL, EW_RULE_NONE};
    if (((t >= 130 && t <= 132) || t == 143) && pkt.hopLimit == 1)
      return {true, EW_R_HOST_ESSENTIAL, EW_RULE_NONE};
  }

  // Rule ids: ingress rules in file order, then egress rules.
  const auto& peer = pkt.ingress ? pkt.src : pkt.dst;
  const auto& rules = pkt.ingress ? policy.ingress : policy.egress;
  const uint32_t firstId = pkt.ingress ? 0 : uint32_t(policy.ingress.size());
  std::vector<std::pair<uint32_t, const Rule*>> candidates;
  for (uint32_t i = 0; i < rules.size(); i++)
    if (peerMatches(policy, rules[i], pkt.family, peer))
      candidates.emplace_back(firstId + i, &rules[i]);

  Decision d = decide(candidates, pkt.proto, pkt.dport);
  if (pkt.fragment) {
    // The decision is constant between the edges of the port ranges, so checking every edge
    // checks every port.
    std::vector<uint32_t> edges{0};
    for (const auto& [id, rule] : candidates) {
      for (const PortSpec& s : rule->ports) {
        edges.push_back(s.range.first);
        if (s.range.last < 65535) edges.push_back(uint32_t(s.range.last) + 1);
      }
    }
    d = decide(candidates, pkt.proto, 0);
    for (uint32_t port : edges) {
      if (!(decide(candidates, pkt.proto, port) == d)) return {false, EW_R_FRAGMENT, EW_RULE_NONE};
    }
  }

  if (d.action == EW_ACT_DENY) return {false, EW_R_RULE_DENY, d.rule};
  if (d.action == EW_ACT_ALLOW) return {true, EW_R_RULE_ALLOW, d.rule};
  if (policy.defaultAction == Action::Allow) return {true, EW_R_DEFAULT_ALLOW, EW_RULE_NONE};
  return {false, EW_R_DEFAULT_DENY, EW_RULE_NONE};
}

}  // namespace edgeward::policy
