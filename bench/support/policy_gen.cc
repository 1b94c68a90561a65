#include "support/policy_gen.h"

#include <arpa/inet.h>

#include <algorithm>
#include <random>
#include <stdexcept>

#include <fmt/format.h>

namespace edgeward::bench {
namespace {

using policy::Action;
using policy::Family;
using policy::PortSpec;
using policy::Prefix;
using policy::Protocol;
using U128 = unsigned __int128;

// Public-looking IPv4 space: first octet 11..223, avoiding 127/8, 100.64/10 and 198.18/15
// (the benchmarks use 10/8 for local addresses and 198.18/15 for unknown peers).
bool v4Usable(uint32_t a) {
  uint32_t o1 = a >> 24;
  if (o1 < 11 || o1 > 223 || o1 == 127) return false;
  if ((a & 0xffc00000u) == 0x64400000u) return false;  // 100.64.0.0/10
  if ((a & 0xfffe0000u) == 0xc6120000u) return false;  // 198.18.0.0/15
  return true;
}

Prefix randomV4(std::mt19937_64& rng) {
  uint32_t a;
  do a = static_cast<uint32_t>(rng());
  while (!v4Usable(a));
  uint32_t r = rng() % 100, len;
  if (r < 90)
    len = 24;
  else if (r < 93)
    len = 22;
  else if (r < 95)
    len = 20;
  else if (r < 98)
    len = 26 + rng() % 3;
  else
    len = 32;
  uint32_t mask = len == 0 ? 0 : ~uint32_t{0} << (32 - len);
  a &= mask;
  Prefix p;
  p.family = Family::V4;
  p.len = static_cast<uint8_t>(len);
  for (int i = 0; i < 4; i++) p.addr[i] = static_cast<uint8_t>(a >> (24 - 8 * i));
  return p;
}

Prefix randomV6(std::mt19937_64& rng) {
  Prefix p;
  p.family = Family::V6;
  p.len = rng() % 4 == 0 ? 64 : 48;
  uint64_t hi = rng();
  hi = (hi & 0x1fffffffffffffffull) | 0x2000000000000000ull;  // 2000::/3
  for (int i = 0; i < 8; i++) p.addr[i] = static_cast<uint8_t>(hi >> (56 - 8 * i));
  for (int i = p.len / 8; i < 16; i++) p.addr[i] = 0;
  return p;
}

PortSpec randomPorts(std::mt19937_64& rng) {
  static constexpr uint16_t kCommon[] = {80, 443, 22, 25, 53, 8080, 8443, 5432, 3306, 6379, 9090};
  PortSpec s;
  s.protocol = rng() % 10 == 0 ? Protocol::Udp : Protocol::Tcp;
  uint32_t r = rng() % 100;
  if (r < 40) {
    uint16_t p = kCommon[rng() % std::size(kCommon)];
    s.range = {p, p};
  } else if (r < 80) {
    uint16_t p = static_cast<uint16_t>(1024 + rng() % 58000);
    s.range = {p, p};
  } else {
    uint16_t first = static_cast<uint16_t>(1024 + rng() % 58000);
    uint16_t width = static_cast<uint16_t>(rng() % 1000);
    s.range = {first, static_cast<uint16_t>(std::min<uint32_t>(first + width, 60000))};
  }
  return s;
}

std::string v4Text(uint32_t a) {
  return fmt::format("{}.{}.{}.{}", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff);
}

std::string v6Text(U128 a) {
  uint8_t b[16];
  for (int i = 0; i < 16; i++) b[i] = static_cast<uint8_t>(a >> (120 - 8 * i));
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(AF_INET6, b, buf, sizeof buf);
  return buf;
}

}  // namespace

size_t prefixesPerIdentity(size_t prefixes) { return prefixes <= 10000 ? 1 : 4; }

GeneratedPolicy generatePolicy(const GenSpec& spec) {
  std::mt19937_64 rng(spec.seed * 0x9e3779b97f4a7c15ull + spec.prefixes * 31 + spec.rules);
  GeneratedPolicy g;
  auto& pol = g.policy;
  pol.name = fmt::format("bench-{}p-{}r", spec.prefixes, spec.rules);
  pol.source = "generated";
  pol.defaultAction = Action::Deny;

  const size_t ppi = prefixesPerIdentity(spec.prefixes);
  const size_t nIdent = identitiesFor(spec.prefixes);
  pol.identities.resize(nIdent);
  for (size_t i = 0; i < nIdent; i++) pol.identities[i].name = fmt::format("id{}", i);
  for (size_t k = 0; k < spec.prefixes; k++) {
    bool v6 = spec.prefixes < 20 ? k == 7 : rng() % 20 == 0;
    Prefix p = v6 ? randomV6(rng) : randomV4(rng);
    pol.identities[k / ppi].prefixes.push_back(p);
  }

  policy::Rule out;
  out.name = "egress-https";
  out.peers = {std::string(policy::kAnyIdentity)};
  out.ports = {{Protocol::Tcp, {443, 443}}};
  out.action = Action::Allow;
  pol.egress.push_back(out);
  size_t made = 1;

  if (made < spec.rules) {
    policy::Rule telnet;
    telnet.name = "deny-telnet";
    telnet.peers = {std::string(policy::kAnyIdentity)};
    telnet.ports = {{Protocol::Tcp, {23, 23}}};
    telnet.action = Action::Deny;
    pol.ingress.push_back(telnet);
    g.ruleIdentities.push_back({});
    made++;
  }

  const size_t nIdRules = spec.rules > made ? spec.rules - made : 0;
  std::vector<GenRule> members(nIdRules);
  for (size_t i = 0; i < nIdent && nIdRules; i++)
    members[i % nIdRules].identities.push_back(static_cast<uint32_t>(i));
  for (size_t r = 0; r < nIdRules; r++) {
    if (r % 50 == 49 || members[r].identities.empty())
      members[r].identities.push_back(static_cast<uint32_t>(rng() % nIdent));
    policy::Rule rule;
    rule.name = fmt::format("r{}", r);
    rule.action = rng() % 8 == 0 ? Action::Deny : Action::Allow;
    rule.ports.push_back(randomPorts(rng));
    if (r % 3 == 0) rule.ports.push_back(randomPorts(rng));
    for (uint32_t id : members[r].identities) rule.peers.push_back(pol.identities[id].name);
    pol.ingress.push_back(std::move(rule));
    g.ruleIdentities.push_back(std::move(members[r]));
  }
  return g;
}

std::string hostIn(const Prefix& p, uint64_t salt) {
  const int bits = p.family == Family::V4 ? 32 : 128;
  const int hostBits = bits - p.len;
  U128 a = 0;
  for (int i = 0; i < bits / 8; i++) a = (a << 8) | p.addr[i];
  if (hostBits >= 2) {
    U128 room = hostBits >= 64 ? (U128{1} << 62) : ((U128{1} << hostBits) - 2);
    a += 1 + static_cast<U128>(salt % static_cast<uint64_t>(room));
  }
  return bits == 32 ? v4Text(static_cast<uint32_t>(a)) : v6Text(a);
}

namespace {

struct Seg {
  uint32_t first, last;
  uint8_t action;
};

// Port segments of one group+slot table with a decision.
std::vector<Seg> segments(const policy::CompiledPolicy& p, uint32_t group, uint32_t slot) {
  std::vector<Seg> out;
  const ew_grp& t = p.grp.at(size_t{group} * EW_P_COUNT + slot);
  for (uint32_t k = 0; k < t.cnt; k++) {
    const ew_piv& e = p.piv.at(t.off + k);
    uint32_t last = k + 1 < t.cnt ? p.piv.at(t.off + k + 1).start - 1u : 65535u;
    if (e.action != EW_ACT_NONE) out.push_back({e.start, last, e.action});
  }
  return out;
}

// Disjoint (start, ingress group) intervals of one family, merged, from the bucket tables.
template <typename A>
std::vector<std::pair<A, uint32_t>> intervals(const policy::CompiledPolicy& p) {
  constexpr bool kV6 = sizeof(A) == 16;
  std::vector<std::pair<A, uint32_t>> out;
  for (uint32_t b = 0; b < EW_BUCKETS; b++) {
    const ew_bucket& bk = kV6 ? p.bkt6[b] : p.bkt4[b];
    for (uint32_t k = 0; k < bk.cnt; k++) {
      A start;
      uint32_t g;
      if constexpr (kV6) {
        const ew_iv6& e = p.iv6.at(bk.off + k);
        start = k == 0 ? static_cast<A>(static_cast<A>(b) << (128 - EW_BUCKET_BITS))
                       : static_cast<A>((static_cast<U128>(e.hi) << 64) | e.lo);
        g = e.grp[EW_INGRESS];
      } else {
        const ew_iv4& e = p.iv4.at(bk.off + k);
        start = k == 0 ? static_cast<A>(b << (32 - EW_BUCKET_BITS)) : static_cast<A>(e.start);
        g = e.grp[EW_INGRESS];
      }
      if (!out.empty() && out.back().second == g) continue;
      out.push_back({start, g});
    }
  }
  return out;
}

const char* protoName(uint32_t slot) { return slot == EW_P_TCP ? "tcp" : "udp"; }

}  // namespace

NftRuleset nftRuleset(const policy::CompiledPolicy& p, const std::string& table,
                      const std::string& device, bool portExact) {
  std::vector<std::string> deny4, allow4, deny6, allow6;
  auto checkSlots = [&](uint32_t g) {
    for (uint32_t s : {EW_P_ICMP, EW_P_ICMPV6, EW_P_OTHER})
      if (p.grp.at(size_t{g} * EW_P_COUNT + s).cnt != 0)
        throw std::runtime_error("nft translation handles tcp/udp rules only");
  };
  auto emit = [&](const std::string& range, uint32_t g, std::vector<std::string>& deny,
                  std::vector<std::string>& allow) {
    if (g < EW_GROUP_FIRST) return;  // no identity-specific rules here
    checkSlots(g);
    bool anyDeny = false, anyAllow = false;
    for (uint32_t slot : {EW_P_TCP, EW_P_UDP}) {
      for (const Seg& s : segments(p, g, slot)) {
        if (s.action == EW_ACT_DENY)
          anyDeny = true;
        else
          anyAllow = true;
        if (portExact) {
          std::string ports = s.first == s.last ? fmt::format("{}", s.first)
                                                : fmt::format("{}-{}", s.first, s.last);
          (s.action == EW_ACT_DENY ? deny : allow)
              .push_back(fmt::format("{} . {} . {}", range, protoName(slot), ports));
        }
      }
    }
    if (!portExact) {
      if (anyDeny)
        deny.push_back(range);
      else if (anyAllow)
        allow.push_back(range);
    }
  };

  auto iv4 = intervals<uint32_t>(p);
  for (size_t i = 0; i < iv4.size(); i++) {
    uint32_t first = iv4[i].first;
    uint32_t last = i + 1 < iv4.size() ? iv4[i + 1].first - 1 : 0xffffffffu;
    std::string range = first == last ? v4Text(first) : v4Text(first) + "-" + v4Text(last);
    emit(range, iv4[i].second, deny4, allow4);
  }
  auto iv6 = intervals<U128>(p);
  for (size_t i = 0; i < iv6.size(); i++) {
    U128 first = iv6[i].first;
    U128 last = i + 1 < iv6.size() ? iv6[i + 1].first - 1 : ~U128{0};
    std::string range = first == last ? v6Text(first) : v6Text(first) + "-" + v6Text(last);
    emit(range, iv6[i].second, deny6, allow6);
  }

  // Rules on "any" (group 0, ingress) become plain rules: deny ones before the sets, allow
  // ones between the deny and allow sets, which keeps "deny beats allow".
  checkSlots(EW_GROUP_ANY + EW_INGRESS);
  std::vector<std::string> anyDeny, anyAllow;
  for (uint32_t slot : {EW_P_TCP, EW_P_UDP})
    for (const Seg& s : segments(p, EW_GROUP_ANY + EW_INGRESS, slot)) {
      std::string r =
          fmt::format("meta l4proto {} th dport {}-{}", protoName(slot), s.first, s.last);
      (s.action == EW_ACT_DENY ? anyDeny : anyAllow).push_back(r);
    }

  NftRuleset rs;
  rs.elements = deny4.size() + allow4.size() + deny6.size() + allow6.size();
  std::string& t = rs.text;
  t += fmt::format("table netdev {} {{\n", table);
  t += "  counter c_deny {}\n  counter c_allow {}\n  counter c_default {}\n";
  auto set = [&](const char* name, bool v6, const std::vector<std::string>& elems) {
    std::string type =
        portExact ? fmt::format("{} . inet_proto . inet_service", v6 ? "ipv6_addr" : "ipv4_addr")
                  : std::string(v6 ? "ipv6_addr" : "ipv4_addr");
    t += fmt::format("  set {} {{\n    type {}\n    flags interval\n", name, type);
    if (!elems.empty()) {
      t += "    elements = {\n";
      for (size_t i = 0; i < elems.size(); i++)
        t += fmt::format("      {}{}\n", elems[i], i + 1 < elems.size() ? "," : "");
      t += "    }\n";
    }
    t += "  }\n";
  };
  set("deny4", false, deny4);
  set("allow4", false, allow4);
  set("deny6", true, deny6);
  set("allow6", true, allow6);
  const char* key4 = portExact ? "ip saddr . meta l4proto . th dport" : "ip saddr";
  const char* key6 = portExact ? "ip6 saddr . meta l4proto . th dport" : "ip6 saddr";
  t += fmt::format(
      "  chain ingress {{\n    type filter hook ingress device \"{}\" priority -500; policy "
      "accept;\n",
      device);
  // Host essentials pass before policy, as in the firewall (ARP; IPv6 neighbour discovery).
  t += "    ether type arp accept\n";
  t += "    icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, "
       "nd-neighbor-advert, nd-redirect } accept\n";
  for (const auto& r : anyDeny) t += fmt::format("    {} counter name \"c_deny\" drop\n", r);
  t += fmt::format("    {} @deny4 counter name \"c_deny\" drop\n", key4);
  t += fmt::format("    {} @deny6 counter name \"c_deny\" drop\n", key6);
  for (const auto& r : anyAllow) t += fmt::format("    {} counter name \"c_allow\" accept\n", r);
  t += fmt::format("    {} @allow4 counter name \"c_allow\" accept\n", key4);
  t += fmt::format("    {} @allow6 counter name \"c_allow\" accept\n", key6);
  t += "    counter name \"c_default\" drop\n  }\n}\n";
  return rs;
}

}  // namespace edgeward::bench
