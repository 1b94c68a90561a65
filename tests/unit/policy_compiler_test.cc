// Policy compiler: the map images it produces, read back by a C++ copy of the BPF lookup
// (bucket -> binary search over intervals -> group -> binary search over port intervals, the
// "any" group of the direction combined with the address group). No kernel.
//
// Policies are built as structs, not parsed, so these tests depend on the compiler alone.
#include <arpa/inet.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "firewall.h"
#include "policy/compiler.h"
#include "policy/policy.h"
#include "support/image_lookup.h"
#include "support/policy_builders.h"

namespace edgeward::policy {
namespace {

using U128 = unsigned __int128;

// ---------------------------------------------------------------------------------------------
// Building policies.

// "10.0.0.0/8", "2001:db8::/32"; without "/" a host prefix. Host bits are cleared.
Prefix pfx(std::string_view text) {
  std::string s(text);
  Prefix p;
  p.family = s.find(':') == std::string::npos ? Family::V4 : Family::V6;
  const int bits = p.family == Family::V4 ? 32 : 128;
  int len = bits;
  if (auto slash = s.find('/'); slash != std::string::npos) {
    len = std::stoi(s.substr(slash + 1));
    s.resize(slash);
  }
  if (inet_pton(p.family == Family::V4 ? AF_INET : AF_INET6, s.c_str(), p.addr.data()) != 1)
    throw std::invalid_argument("bad prefix " + std::string(text));
  p.len = static_cast<uint8_t>(len);
  for (int b = len; b < bits; b++) p.addr[b / 8] &= static_cast<uint8_t>(~(0x80 >> (b % 8)));
  return p;
}

using namespace builders;

class PolicyBuilder {
 public:
  PolicyBuilder& defaultAction(Action a) {
    p_.defaultAction = a;
    return *this;
  }
  PolicyBuilder& identity(std::string name, std::initializer_list<std::string_view> prefixes) {
    Identity id{std::move(name), {}, 0};
    for (auto t : prefixes) id.prefixes.push_back(pfx(t));
    p_.identities.push_back(std::move(id));
    return *this;
  }
  PolicyBuilder& ingress(std::string name, std::vector<std::string> from,
                         std::vector<PortSpec> ports, Action a) {
    p_.ingress.push_back({std::move(name), std::move(from), std::move(ports), a, 0});
    return *this;
  }
  PolicyBuilder& egress(std::string name, std::vector<std::string> to, std::vector<PortSpec> ports,
                        Action a) {
    p_.egress.push_back({std::move(name), std::move(to), std::move(ports), a, 0});
    return *this;
  }
  PolicyBuilder& synFlood(uint32_t pps, uint32_t burst) {
    p_.synFlood = SynFlood{pps, burst};
    return *this;
  }
  const Policy& policy() const { return p_; }

 private:
  Policy p_;
};

CompiledPolicy compileOk(const Policy& p, const CompileLimits& limits = {}) {
  auto c = compile(p, limits);
  if (!c) throw std::runtime_error("compile failed: " + c.error().str());
  return std::move(*c);
}

// ---------------------------------------------------------------------------------------------
// The lookup of firewall.bpf.c, over the image.

struct Addr {
  Family family = Family::V4;
  U128 value = 0;  // V4: the low 32 bits
};

Addr addr(std::string_view text) {
  Prefix p = pfx(text);
  Addr a{p.family, 0};
  const int n = p.family == Family::V4 ? 4 : 16;
  for (int i = 0; i < n; i++) a.value = (a.value << 8) | p.addr[i];
  return a;
}

uint32_t groupOf(const CompiledPolicy& c, const Addr& a, uint8_t dir) {
  if (a.family == Family::V4) return image::groupOfV4(c, static_cast<uint32_t>(a.value), dir);
  return image::groupOfV6(c, static_cast<uint64_t>(a.value >> 64), static_cast<uint64_t>(a.value),
                          dir);
}

using image::combine;
using image::Decision;

Decision decide(const CompiledPolicy& c, uint32_t group, uint8_t slot, uint16_t port) {
  return image::groupDecide(c, group, slot, port);
}

std::string show(const CompiledPolicy& c, Decision d) {
  if (d.action == EW_ACT_NONE) return d.rule == EW_RULE_NONE ? "none" : "none?";
  std::string name = d.rule < c.rules.size() ? c.rules[d.rule].name : fmt::format("#{}", d.rule);
  return fmt::format("{} {}", d.action == EW_ACT_DENY ? "deny" : "allow", name);
}

// "allow <rule>", "deny <rule>" or "none" (the default action decides).
std::string lookup(const CompiledPolicy& c, uint8_t dir, std::string_view address, uint8_t slot,
                   uint16_t port = 0) {
  Addr a = addr(address);
  Decision any = decide(c, EW_GROUP_ANY + dir, slot, port);
  Decision spec = decide(c, groupOf(c, a, dir), slot, port);
  return show(c, combine(any, spec));
}

std::string in(const CompiledPolicy& c, std::string_view a, uint8_t slot, uint16_t port = 0) {
  return lookup(c, EW_INGRESS, a, slot, port);
}
std::string out(const CompiledPolicy& c, std::string_view a, uint8_t slot, uint16_t port = 0) {
  return lookup(c, EW_EGRESS, a, slot, port);
}

// Intervals as the lookup sees them: bucket by bucket, equal neighbours joined.
struct LogicalIv {
  U128 start;
  uint32_t gin, gout;
  bool operator==(const LogicalIv&) const = default;
};

std::vector<LogicalIv> logicalIntervals(const CompiledPolicy& c, Family f) {
  std::vector<LogicalIv> v;
  const auto& bkt = f == Family::V4 ? c.bkt4 : c.bkt6;
  const int shift = (f == Family::V4 ? 32 : 128) - EW_BUCKET_BITS;
  for (uint32_t b = 0; b < EW_BUCKETS; b++) {
    for (uint32_t i = 0; i < bkt[b].cnt; i++) {
      LogicalIv iv;
      if (f == Family::V4) {
        const ew_iv4& e = c.iv4.at(bkt[b].off + i);
        iv = {i == 0 ? U128{b} << shift : U128{e.start}, e.grp[0], e.grp[1]};
      } else {
        const ew_iv6& e = c.iv6.at(bkt[b].off + i);
        iv = {i == 0 ? U128{b} << shift : (U128{e.hi} << 64) | e.lo, e.grp[0], e.grp[1]};
      }
      if (v.empty() || v.back().gin != iv.gin || v.back().gout != iv.gout) v.push_back(iv);
    }
  }
  return v;
}

// Structural invariants every image must satisfy for the BPF lookup to be right.
void checkInvariants(const CompiledPolicy& c) {
  ASSERT_EQ(c.bkt4.size(), EW_BUCKETS);
  ASSERT_EQ(c.bkt6.size(), EW_BUCKETS);
  ASSERT_EQ(c.grp.size(), size_t{c.hdr.n_groups} * EW_P_COUNT);
  ASSERT_GE(c.hdr.n_groups, uint32_t{EW_GROUP_FIRST});
  for (uint32_t b = 0; b < EW_BUCKETS; b++) {
    const ew_bucket& k4 = c.bkt4[b];
    ASSERT_GE(k4.cnt, 1u) << "bucket4 " << b;
    ASSERT_LE(size_t{k4.off} + k4.cnt, c.iv4.size()) << "bucket4 " << b;
    const uint32_t base = b << 16;
    if (k4.cnt > 1) {
      EXPECT_EQ(c.iv4[k4.off].start, base) << "bucket4 " << b;
      for (uint32_t i = 1; i < k4.cnt; i++) {
        EXPECT_LT(c.iv4[k4.off + i - 1].start, c.iv4[k4.off + i].start) << "bucket4 " << b;
        EXPECT_EQ(c.iv4[k4.off + i].start >> 16, b) << "bucket4 " << b;
      }
    }
    const ew_bucket& k6 = c.bkt6[b];
    ASSERT_GE(k6.cnt, 1u) << "bucket6 " << b;
    ASSERT_LE(size_t{k6.off} + k6.cnt, c.iv6.size()) << "bucket6 " << b;
    if (k6.cnt > 1) {
      EXPECT_EQ(c.iv6[k6.off].hi, uint64_t{b} << 48) << "bucket6 " << b;
      EXPECT_EQ(c.iv6[k6.off].lo, 0u) << "bucket6 " << b;
      for (uint32_t i = k6.off + 1; i < k6.off + k6.cnt; i++) {
        U128 prev = (U128{c.iv6[i - 1].hi} << 64) | c.iv6[i - 1].lo;
        U128 cur = (U128{c.iv6[i].hi} << 64) | c.iv6[i].lo;
        EXPECT_LT(prev, cur) << "bucket6 " << b;
        EXPECT_EQ(c.iv6[i].hi >> 48, b) << "bucket6 " << b;
      }
    }
  }
  for (const auto& iv : c.iv4)
    for (uint32_t g : iv.grp) EXPECT_LT(g, c.hdr.n_groups);
  for (const auto& iv : c.iv6)
    for (uint32_t g : iv.grp) EXPECT_LT(g, c.hdr.n_groups);
  for (size_t i = 0; i < c.grp.size(); i++) {
    const ew_grp& g = c.grp[i];
    if (g.cnt == 0) continue;
    ASSERT_LE(size_t{g.off} + g.cnt, c.piv.size()) << "group table " << i;
    EXPECT_EQ(c.piv[g.off].start, 0) << "group table " << i << " must start at port 0";
    for (uint32_t k = g.off + 1; k < g.off + g.cnt; k++) {
      EXPECT_LT(c.piv[k - 1].start, c.piv[k].start) << "group table " << i;
      EXPECT_FALSE(c.piv[k - 1].action == c.piv[k].action && c.piv[k - 1].rule == c.piv[k].rule)
          << "group table " << i << ": equal neighbours at entries " << k - 1 << " and " << k;
    }
    for (uint32_t k = g.off; k < g.off + g.cnt; k++) {
      if (c.piv[k].action == EW_ACT_NONE) {
        EXPECT_EQ(c.piv[k].rule, EW_RULE_NONE);
      } else {
        EXPECT_LT(c.piv[k].rule, c.rules.size());
      }
    }
  }
  // Groups 0 and 1 hold only rules of their direction; so does every other group.
  for (uint32_t g = 0; g < c.hdr.n_groups; g++)
    for (uint8_t s = 0; s < EW_P_COUNT; s++) {
      const ew_grp& t = c.grp[size_t{g} * EW_P_COUNT + s];
      for (uint32_t k = t.off; k < t.off + t.cnt; k++) {
        if (c.piv[k].rule != EW_RULE_NONE && g <= EW_GROUP_ANY + EW_EGRESS) {
          EXPECT_EQ(c.rules[c.piv[k].rule].dir, g) << "group " << g;
        }
      }
    }
}

// Port table entries of a group and slot, as "start:action:rule" strings.
std::vector<std::string> table(const CompiledPolicy& c, uint32_t group, uint8_t slot) {
  std::vector<std::string> v;
  const ew_grp& g = c.grp.at(size_t{group} * EW_P_COUNT + slot);
  for (uint32_t k = g.off; k < g.off + g.cnt; k++) {
    const ew_piv& e = c.piv[k];
    v.push_back(fmt::format("{}:{}", e.start, show(c, {e.action, e.rule})));
  }
  return v;
}

using Strings = std::vector<std::string>;

// ---------------------------------------------------------------------------------------------

TEST(PolicyCompiler, EmptyPolicyHasTheFixedGroupsAndOneIntervalPerFamily) {
  Policy p;
  auto c = compileOk(p);
  checkInvariants(c);
  EXPECT_EQ(c.groups(), uint32_t{EW_GROUP_FIRST});
  EXPECT_EQ(c.hdr.default_action, EW_ACT_DENY);
  EXPECT_EQ(c.hdr.syn_limit, 0);
  EXPECT_EQ(c.iv4.size(), 1u);
  EXPECT_EQ(c.iv6.size(), 1u);
  EXPECT_TRUE(c.piv.empty());
  EXPECT_TRUE(c.rules.empty());
  for (const auto& g : c.grp) EXPECT_EQ(g.cnt, 0u);
  EXPECT_EQ(c.iv4[0].grp[0], uint32_t{EW_GROUP_NONE});
  EXPECT_EQ(c.iv6[0].grp[1], uint32_t{EW_GROUP_NONE});
  EXPECT_EQ(in(c, "1.2.3.4", EW_P_TCP, 80), "none");
  EXPECT_EQ(out(c, "2001:db8::1", EW_P_UDP, 53), "none");
  EXPECT_EQ(c.stats.rules, 0u);
  EXPECT_EQ(c.ruleId("anything"), EW_RULE_NONE);
}

TEST(PolicyCompiler, HeaderCarriesDefaultActionAndSynFlood) {
  auto c = compileOk(PolicyBuilder().defaultAction(kAllow).synFlood(1000, 200).policy());
  EXPECT_EQ(c.hdr.default_action, EW_ACT_ALLOW);
  EXPECT_EQ(c.hdr.syn_limit, 1);
  EXPECT_EQ(c.hdr.syn_interval_ns, 1000000u);
  EXPECT_EQ(c.hdr.syn_tolerance_ns, 200u * 1000000u);
  auto fast = compileOk(PolicyBuilder().synFlood(10'000'000, 3).policy());
  EXPECT_EQ(fast.hdr.syn_interval_ns, 100u);
  EXPECT_EQ(fast.hdr.syn_tolerance_ns, 300u);
}

TEST(PolicyCompiler, RuleIdsAreIngressThenEgressInFileOrder) {
  auto c = compileOk(PolicyBuilder()
                         .identity("x", {"10.0.0.0/8"})
                         .egress("e0", {"x"}, {}, kAllow)
                         .ingress("i0", {"x"}, {}, kDeny)
                         .ingress("i1", {"any"}, {tcp(1)}, kAllow)
                         .egress("e1", {"any"}, {}, kDeny)
                         .policy());
  ASSERT_EQ(c.rules.size(), 4u);
  EXPECT_EQ(c.rules[0].name, "i0");
  EXPECT_EQ(c.rules[1].name, "i1");
  EXPECT_EQ(c.rules[2].name, "e0");
  EXPECT_EQ(c.rules[3].name, "e1");
  EXPECT_EQ(c.rules[0].dir, EW_INGRESS);
  EXPECT_EQ(c.rules[2].dir, EW_EGRESS);
  EXPECT_EQ(c.rules[0].action, kDeny);
  EXPECT_EQ(c.ruleId("e1"), 3u);
  EXPECT_EQ(c.ruleId("nope"), EW_RULE_NONE);
}

TEST(PolicyCompiler, AnyRulesLiveInGroupsZeroAndOneAndNeedNoIntervals) {
  auto c = compileOk(PolicyBuilder()
                         .ingress("https-in", {"any"}, {tcp(443)}, kAllow)
                         .egress("dns-out", {"any"}, {udp(53)}, kAllow)
                         .policy());
  checkInvariants(c);
  EXPECT_EQ(c.groups(), uint32_t{EW_GROUP_FIRST});
  EXPECT_EQ(c.iv4.size(), 1u);
  EXPECT_EQ(c.iv6.size(), 1u);
  EXPECT_EQ(table(c, EW_GROUP_ANY + EW_INGRESS, EW_P_TCP),
            (Strings{"0:none", "443:allow https-in", "444:none"}));
  EXPECT_EQ(table(c, EW_GROUP_ANY + EW_EGRESS, EW_P_UDP),
            (Strings{"0:none", "53:allow dns-out", "54:none"}));
  EXPECT_TRUE(table(c, EW_GROUP_ANY + EW_INGRESS, EW_P_UDP).empty());
  EXPECT_EQ(in(c, "0.0.0.0", EW_P_TCP, 443), "allow https-in");
  EXPECT_EQ(in(c, "255.255.255.255", EW_P_TCP, 443), "allow https-in");
  EXPECT_EQ(in(c, "::", EW_P_TCP, 443), "allow https-in");
  EXPECT_EQ(in(c, "10.0.0.1", EW_P_TCP, 442), "none");
  EXPECT_EQ(in(c, "10.0.0.1", EW_P_UDP, 53), "none");  // the egress rule
  EXPECT_EQ(out(c, "2001:db8::1", EW_P_UDP, 53), "allow dns-out");
}

TEST(PolicyCompiler, AnyAmongOtherPeersMakesTheRuleAnAnyRule) {
  auto c = compileOk(PolicyBuilder()
                         .identity("x", {"10.0.0.0/8"})
                         .ingress("mixed", {"x", "any"}, {tcp(22)}, kAllow)
                         .policy());
  checkInvariants(c);
  EXPECT_EQ(c.groups(), uint32_t{EW_GROUP_FIRST});
  EXPECT_EQ(in(c, "192.0.2.1", EW_P_TCP, 22), "allow mixed");
  EXPECT_EQ(in(c, "10.1.1.1", EW_P_TCP, 22), "allow mixed");
}

TEST(PolicyCompiler, OverlappingIdentitiesCombineTheirRules) {
  auto c = compileOk(PolicyBuilder()
                         .identity("corp", {"10.0.0.0/8"})
                         .identity("dc", {"10.20.0.0/16"})
                         .identity("db", {"10.20.30.40"})
                         .ingress("corp-ssh", {"corp"}, {tcp(22)}, kAllow)
                         .ingress("dc-web", {"dc"}, {tcp(80)}, kAllow)
                         .ingress("db-no-web", {"db"}, {tcp(80)}, kDeny)
                         .ingress("db-pg", {"db"}, {tcp(5432)}, kAllow)
                         .policy());
  checkInvariants(c);
  // Groups: {corp}, {corp, dc}, {corp, dc, db} -> 3 + 3.
  EXPECT_EQ(c.groups(), 6u);
  EXPECT_EQ(in(c, "9.255.255.255", EW_P_TCP, 22), "none");
  EXPECT_EQ(in(c, "10.0.0.0", EW_P_TCP, 22), "allow corp-ssh");
  EXPECT_EQ(in(c, "10.19.255.255", EW_P_TCP, 80), "none");
  EXPECT_EQ(in(c, "10.20.0.0", EW_P_TCP, 80), "allow dc-web");
  EXPECT_EQ(in(c, "10.20.0.0", EW_P_TCP, 22), "allow corp-ssh");
  EXPECT_EQ(in(c, "10.20.30.39", EW_P_TCP, 80), "allow dc-web");
  EXPECT_EQ(in(c, "10.20.30.40", EW_P_TCP, 80), "deny db-no-web");
  EXPECT_EQ(in(c, "10.20.30.40", EW_P_TCP, 5432), "allow db-pg");
  EXPECT_EQ(in(c, "10.20.30.40", EW_P_TCP, 22), "allow corp-ssh");
  EXPECT_EQ(in(c, "10.20.30.41", EW_P_TCP, 5432), "none");
  EXPECT_EQ(in(c, "10.20.30.41", EW_P_TCP, 80), "allow dc-web");
  EXPECT_EQ(in(c, "10.20.255.255", EW_P_TCP, 80), "allow dc-web");
  EXPECT_EQ(in(c, "10.21.0.0", EW_P_TCP, 80), "none");
  EXPECT_EQ(in(c, "10.21.0.0", EW_P_TCP, 22), "allow corp-ssh");
  EXPECT_EQ(in(c, "10.255.255.255", EW_P_TCP, 22), "allow corp-ssh");
  EXPECT_EQ(in(c, "11.0.0.0", EW_P_TCP, 22), "none");
  // Exactly the boundaries of the three prefixes.
  auto ivs = logicalIntervals(c, Family::V4);
  std::vector<U128> starts;
  for (auto& iv : ivs) starts.push_back(iv.start);
  EXPECT_EQ(starts, (std::vector<U128>{0, 0x0a000000, 0x0a140000, 0x0a141e28, 0x0a141e29,
                                       0x0a150000, 0x0b000000}));
  EXPECT_EQ(ivs.front().gin, uint32_t{EW_GROUP_NONE});
  EXPECT_EQ(ivs.back().gin, uint32_t{EW_GROUP_NONE});
  EXPECT_EQ(ivs[1].gin, ivs[5].gin);  // corp alone, before and after dc
  EXPECT_EQ(ivs[2].gin, ivs[4].gin);  // corp + dc, around db
}

TEST(PolicyCompiler, NestedPrefixesInOneIdentityAddNoIntervals) {
  auto nested = compileOk(PolicyBuilder()
                              .identity("dc", {"10.20.0.0/16", "10.20.30.0/24", "10.20.30.40"})
                              .ingress("dc-web", {"dc"}, {tcp(80)}, kAllow)
                              .policy());
  auto plain = compileOk(PolicyBuilder()
                             .identity("dc", {"10.20.0.0/16"})
                             .ingress("dc-web", {"dc"}, {tcp(80)}, kAllow)
                             .policy());
  checkInvariants(nested);
  EXPECT_EQ(logicalIntervals(nested, Family::V4), logicalIntervals(plain, Family::V4));
  EXPECT_EQ(logicalIntervals(nested, Family::V4).size(), 3u);
  EXPECT_EQ(nested.iv4.size(), plain.iv4.size());
  EXPECT_EQ(nested.groups(), 4u);
  EXPECT_EQ(in(nested, "10.20.30.40", EW_P_TCP, 80), "allow dc-web");
  EXPECT_EQ(in(nested, "10.20.30.41", EW_P_TCP, 80), "allow dc-web");
  EXPECT_EQ(nested.stats.prefixes4, 3u);
}

TEST(PolicyCompiler, AdjacentIntervalsWithEqualGroupsAreMerged) {
  // Two halves of a /24 in one identity, then two identities named by the same rule.
  auto c = compileOk(PolicyBuilder()
                         .identity("halves", {"10.0.0.0/25", "10.0.0.128/25"})
                         .identity("left", {"10.0.1.0/25"})
                         .identity("right", {"10.0.1.128/25"})
                         .ingress("web", {"halves", "left", "right"}, {tcp(80)}, kAllow)
                         .policy());
  checkInvariants(c);
  auto ivs = logicalIntervals(c, Family::V4);
  ASSERT_EQ(ivs.size(), 3u);
  EXPECT_EQ(ivs[1].start, U128{0x0a000000});
  EXPECT_EQ(ivs[2].start, U128{0x0a000200});
  // In the image: the 10.0/16 bucket holds exactly [10.0.0.0 web) [10.0.2.0 none).
  const ew_bucket& b = c.bkt4[0x0a00];
  ASSERT_EQ(b.cnt, 2u);
  EXPECT_EQ(c.iv4[b.off].start, 0x0a000000u);
  EXPECT_EQ(c.iv4[b.off + 1].start, 0x0a000200u);
  EXPECT_EQ(c.groups(), 4u);
}

TEST(PolicyCompiler, IdentitiesNoRuleNamesAddNoIntervals) {
  auto c = compileOk(PolicyBuilder()
                         .identity("unused", {"10.0.0.0/8", "2001:db8::/32"})
                         .identity("used", {"192.0.2.0/24"})
                         .ingress("r", {"used"}, {}, kAllow)
                         .policy());
  checkInvariants(c);
  EXPECT_EQ(logicalIntervals(c, Family::V4).size(), 3u);
  EXPECT_EQ(logicalIntervals(c, Family::V6).size(), 1u);
  EXPECT_EQ(in(c, "10.1.1.1", EW_P_TCP, 1), "none");
  EXPECT_EQ(c.stats.prefixes4, 2u);
  EXPECT_EQ(c.stats.prefixes6, 1u);
  EXPECT_EQ(c.stats.identities, 2u);
}

TEST(PolicyCompiler, PortRangeEdges) {
  auto c = compileOk(PolicyBuilder()
                         .identity("x", {"10.0.0.0/8"})
                         .ingress("range", {"x"}, {tcp(1000, 2000)}, kAllow)
                         .ingress("zero", {"x"}, {udp(0)}, kAllow)
                         .ingress("max", {"x"}, {udp(65535)}, kAllow)
                         .policy());
  checkInvariants(c);
  const uint32_t g = groupOf(c, addr("10.0.0.1"), EW_INGRESS);
  EXPECT_EQ(table(c, g, EW_P_TCP), (Strings{"0:none", "1000:allow range", "2001:none"}));
  EXPECT_EQ(table(c, g, EW_P_UDP), (Strings{"0:allow zero", "1:none", "65535:allow max"}));
  EXPECT_EQ(in(c, "10.0.0.1", EW_P_TCP, 0), "none");
  EXPECT_EQ(in(c, "10.0.0.1", EW_P_TCP, 999), "none");
  EXPECT_EQ(in(c, "10.0.0.1", EW_P_TCP, 1000), "allow range");
  EXPECT_EQ(in(c, "10.0.0.1", EW_P_TCP, 2000), "allow range");
  EXPECT_EQ(in(c, "10.0.0.1", EW_P_TCP, 2001), "none");
  EXPECT_EQ(in(c, "10.0.0.1", EW_P_TCP, 65535), "none");
  EXPECT_EQ(in(c, "10.0.0.1", EW_P_UDP, 0), "allow zero");
  EXPECT_EQ(in(c, "10.0.0.1", EW_P_UDP, 1), "none");
  EXPECT_EQ(in(c, "10.0.0.1", EW_P_UDP, 65534), "none");
  EXPECT_EQ(in(c, "10.0.0.1", EW_P_UDP, 65535), "allow max");
}

TEST(PolicyCompiler, FullRangesAndPortlessRulesAreOneEntry) {
  auto c = compileOk(PolicyBuilder()
                         .identity("x", {"10.0.0.0/8"})
                         .ingress("all-udp", {"x"}, {udp(0, 65535)}, kAllow)
                         .ingress("everything", {"x"}, {}, kAllow)
                         .policy());
  checkInvariants(c);
  const uint32_t g = groupOf(c, addr("10.0.0.1"), EW_INGRESS);
  EXPECT_EQ(table(c, g, EW_P_UDP), (Strings{"0:allow all-udp"}));
  EXPECT_EQ(table(c, g, EW_P_TCP), (Strings{"0:allow everything"}));
  EXPECT_EQ(table(c, g, EW_P_OTHER), (Strings{"0:allow everything"}));
  EXPECT_EQ(table(c, g, EW_P_ICMPV6), (Strings{"0:allow everything"}));
}

TEST(PolicyCompiler, DenyBeatsAllowThenTheLowerRuleWins) {
  auto c = compileOk(PolicyBuilder()
                         .identity("x", {"10.0.0.0/8"})
                         .ingress("allow-0-100", {"x"}, {tcp(0, 100)}, kAllow)
                         .ingress("deny-50-60", {"x"}, {tcp(50, 60)}, kDeny)
                         .ingress("deny-55-70", {"x"}, {tcp(55, 70)}, kDeny)
                         .ingress("allow-90-200", {"x"}, {tcp(90, 200)}, kAllow)
                         .policy());
  checkInvariants(c);
  const uint32_t g = groupOf(c, addr("10.0.0.1"), EW_INGRESS);
  EXPECT_EQ(table(c, g, EW_P_TCP),
            (Strings{"0:allow allow-0-100", "50:deny deny-50-60", "61:deny deny-55-70",
                     "71:allow allow-0-100", "101:allow allow-90-200", "201:none"}));
}

TEST(PolicyCompiler, AnyGroupAndAddressGroupCombineLikeTheProgram) {
  auto c = compileOk(PolicyBuilder()
                         .identity("b", {"192.168.1.128/25"})
                         .identity("d", {"192.168.1.10"})
                         .ingress("deny-b-web", {"b"}, {tcp(80, 90)}, kDeny)
                         .ingress("deny-any-81", {"any"}, {tcp(81)}, kDeny)
                         .ingress("deny-d-all", {"d"}, {}, kDeny)
                         .ingress("allow-any-udp", {"any"}, {udpAll()}, kAllow)
                         .ingress("allow-b-udp", {"b"}, {udpAll()}, kAllow)
                         .policy());
  checkInvariants(c);
  EXPECT_EQ(in(c, "192.168.1.130", EW_P_TCP, 81), "deny deny-b-web");  // identity first
  EXPECT_EQ(in(c, "192.168.1.10", EW_P_TCP, 81), "deny deny-any-81");  // any first
  EXPECT_EQ(in(c, "192.168.1.10", EW_P_TCP, 82), "deny deny-d-all");
  EXPECT_EQ(in(c, "192.168.1.10", EW_P_UDP, 5), "deny deny-d-all");       // deny over any allow
  EXPECT_EQ(in(c, "192.168.1.130", EW_P_UDP, 5), "allow allow-any-udp");  // lower allow
  EXPECT_EQ(in(c, "8.8.8.8", EW_P_TCP, 81), "deny deny-any-81");
  EXPECT_EQ(in(c, "8.8.8.8", EW_P_TCP, 82), "none");
}

TEST(PolicyCompiler, AdjacentPortRangesOfOneRuleMerge) {
  auto c = compileOk(PolicyBuilder()
                         .identity("x", {"10.0.0.0/8"})
                         .ingress("split", {"x"}, {tcp(80, 89), tcp(90, 99), tcp(95, 120)}, kAllow)
                         .policy());
  checkInvariants(c);
  const uint32_t g = groupOf(c, addr("10.0.0.1"), EW_INGRESS);
  EXPECT_EQ(table(c, g, EW_P_TCP), (Strings{"0:none", "80:allow split", "121:none"}));
}

TEST(PolicyCompiler, IdenticalPortTablesAreStoredOnce) {
  auto c = compileOk(PolicyBuilder()
                         .identity("a", {"10.1.0.0/16"})
                         .identity("b", {"10.2.0.0/16"})
                         .ingress("web", {"a", "b"}, {tcp(80), tcp(443)}, kAllow)
                         .ingress("b-dns", {"b"}, {udp(53)}, kAllow)
                         .ingress("all", {"any"}, {}, kAllow)
                         .policy());
  checkInvariants(c);
  const uint32_t ga = groupOf(c, addr("10.1.0.1"), EW_INGRESS);
  const uint32_t gb = groupOf(c, addr("10.2.0.1"), EW_INGRESS);
  ASSERT_NE(ga, gb);  // {web} and {web, b-dns}
  EXPECT_EQ(c.grp[ga * EW_P_COUNT + EW_P_TCP].off, c.grp[gb * EW_P_COUNT + EW_P_TCP].off);
  EXPECT_EQ(c.grp[ga * EW_P_COUNT + EW_P_TCP].cnt, 5u);
  // The port-less "any" rule: one entry shared by all five protocol slots.
  const ew_grp& first = c.grp[EW_GROUP_ANY * EW_P_COUNT];
  for (uint8_t s = 0; s < EW_P_COUNT; s++) {
    EXPECT_EQ(c.grp[EW_GROUP_ANY * EW_P_COUNT + s].off, first.off) << "slot " << int{s};
    EXPECT_EQ(c.grp[EW_GROUP_ANY * EW_P_COUNT + s].cnt, 1u) << "slot " << int{s};
  }
  // 5 (web) + 3 (b-dns) + 1 (all).
  EXPECT_EQ(c.piv.size(), 9u);
}

TEST(PolicyCompiler, GroupsAreDeduplicatedByRuleSet) {
  auto c = compileOk(PolicyBuilder()
                         .identity("a", {"10.1.0.0/16", "2001:db8:1::/48"})
                         .identity("b", {"10.2.0.0/16"})
                         .identity("c", {"10.3.0.0/16"})
                         .identity("c-inner", {"10.3.3.0/24"})
                         .ingress("web", {"a", "b", "c"}, {tcp(80)}, kAllow)
                         .ingress("inner", {"c-inner", "c"}, {tcp(81)}, kAllow)
                         .egress("out", {"a", "c"}, {}, kAllow)
                         .policy());
  checkInvariants(c);
  const uint32_t ga = groupOf(c, addr("10.1.0.1"), EW_INGRESS);
  EXPECT_EQ(groupOf(c, addr("10.2.0.1"), EW_INGRESS), ga);       // same rules: {web}
  EXPECT_EQ(groupOf(c, addr("2001:db8:1::1"), EW_INGRESS), ga);  // across families
  const uint32_t gc = groupOf(c, addr("10.3.0.1"), EW_INGRESS);  // {web, inner}
  EXPECT_EQ(groupOf(c, addr("10.3.3.3"), EW_INGRESS), gc);       // c + c-inner: same rules
  EXPECT_NE(gc, ga);
  EXPECT_EQ(groupOf(c, addr("10.2.0.1"), EW_EGRESS), uint32_t{EW_GROUP_NONE});
  const uint32_t gout = groupOf(c, addr("10.1.0.1"), EW_EGRESS);
  EXPECT_EQ(groupOf(c, addr("10.3.3.3"), EW_EGRESS), gout);
  // 3 fixed + {web} + {web, inner} + {out}.
  EXPECT_EQ(c.groups(), 6u);
}

TEST(PolicyCompiler, SlashZeroCoversEveryAddress) {
  auto c = compileOk(PolicyBuilder()
                         .identity("all4", {"0.0.0.0/0"})
                         .identity("all6", {"::/0"})
                         .ingress("v4", {"all4"}, {icmp()}, kAllow)
                         .ingress("v6", {"all6"}, {icmpv6()}, kAllow)
                         .policy());
  checkInvariants(c);
  EXPECT_EQ(logicalIntervals(c, Family::V4).size(), 1u);
  EXPECT_EQ(logicalIntervals(c, Family::V6).size(), 1u);
  EXPECT_EQ(c.iv4.size(), 1u);  // every bucket shares one entry
  EXPECT_EQ(c.iv6.size(), 1u);
  for (auto a : {"0.0.0.0", "10.0.0.1", "128.0.0.0", "255.255.255.255"})
    EXPECT_EQ(in(c, a, EW_P_ICMP), "allow v4") << a;
  for (auto a : {"::", "::ffff:10.0.0.1", "8000::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"})
    EXPECT_EQ(in(c, a, EW_P_ICMPV6), "allow v6") << a;
  EXPECT_EQ(in(c, "10.0.0.1", EW_P_ICMPV6), "none");
  EXPECT_EQ(in(c, "::1", EW_P_ICMP), "none");
}

TEST(PolicyCompiler, HostPrefixesAtTheEndsOfTheAddressSpace) {
  auto c = compileOk(
      PolicyBuilder()
          .identity("low", {"0.0.0.0/32", "::/128"})
          .identity("high", {"255.255.255.255/32", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"})
          .ingress("low", {"low"}, {}, kDeny)
          .ingress("high", {"high"}, {}, kDeny)
          .policy());
  checkInvariants(c);
  EXPECT_EQ(in(c, "0.0.0.0", EW_P_TCP, 1), "deny low");
  EXPECT_EQ(in(c, "0.0.0.1", EW_P_TCP, 1), "none");
  EXPECT_EQ(in(c, "0.0.255.255", EW_P_TCP, 1), "none");
  EXPECT_EQ(in(c, "255.255.255.254", EW_P_TCP, 1), "none");
  EXPECT_EQ(in(c, "255.255.255.255", EW_P_TCP, 1), "deny high");
  EXPECT_EQ(in(c, "255.255.0.0", EW_P_TCP, 1), "none");
  EXPECT_EQ(in(c, "::", EW_P_UDP, 1), "deny low");
  EXPECT_EQ(in(c, "::1", EW_P_UDP, 1), "none");
  EXPECT_EQ(in(c, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", EW_P_UDP, 1), "none");
  EXPECT_EQ(in(c, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", EW_P_UDP, 1), "deny high");
  auto ivs = logicalIntervals(c, Family::V4);
  ASSERT_EQ(ivs.size(), 3u);
  EXPECT_EQ(ivs[1].start, U128{1});
  EXPECT_EQ(ivs[2].start, U128{0xffffffff});
  auto ivs6 = logicalIntervals(c, Family::V6);
  ASSERT_EQ(ivs6.size(), 3u);
  EXPECT_EQ(ivs6[1].start, U128{1});
  EXPECT_EQ(ivs6[2].start, ~U128{0});
}

TEST(PolicyCompiler, Ipv6PrefixesAcrossAndInsideBuckets) {
  auto c = compileOk(PolicyBuilder()
                         .identity("wide", {"2000::/12"})    // buckets 0x2000-0x200f
                         .identity("bucket", {"2001::/16"})  // exactly bucket 0x2001
                         .identity("narrow", {"2001:db8:0:1::/64"})
                         .identity("host", {"2001:db8:0:1::10"})
                         .ingress("wide", {"wide"}, {tcp(1)}, kAllow)
                         .ingress("narrow", {"narrow"}, {tcp(2)}, kAllow)
                         .ingress("host", {"host"}, {tcp(2)}, kDeny)
                         .ingress("bucket", {"bucket"}, {tcp(3)}, kAllow)
                         .policy());
  checkInvariants(c);
  EXPECT_EQ(in(c, "1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", EW_P_TCP, 1), "none");
  EXPECT_EQ(in(c, "2000::", EW_P_TCP, 1), "allow wide");
  EXPECT_EQ(in(c, "200f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", EW_P_TCP, 1), "allow wide");
  EXPECT_EQ(in(c, "2010::", EW_P_TCP, 1), "none");
  EXPECT_EQ(in(c, "2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", EW_P_TCP, 3), "none");
  EXPECT_EQ(in(c, "2001::", EW_P_TCP, 3), "allow bucket");
  EXPECT_EQ(in(c, "2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", EW_P_TCP, 3), "allow bucket");
  EXPECT_EQ(in(c, "2002::", EW_P_TCP, 3), "none");
  EXPECT_EQ(in(c, "2001:db8:0:1::f", EW_P_TCP, 2), "allow narrow");
  EXPECT_EQ(in(c, "2001:db8:0:1::10", EW_P_TCP, 2), "deny host");
  EXPECT_EQ(in(c, "2001:db8:0:1::10", EW_P_TCP, 1), "allow wide");
  EXPECT_EQ(in(c, "2001:db8:0:1::10", EW_P_TCP, 3), "allow bucket");
  EXPECT_EQ(in(c, "2001:db8:0:1::11", EW_P_TCP, 2), "allow narrow");
  EXPECT_EQ(in(c, "2001:db8:0:1:ffff:ffff:ffff:ffff", EW_P_TCP, 2), "allow narrow");
  EXPECT_EQ(in(c, "2001:db8:0:2::", EW_P_TCP, 2), "none");
  // Bucket 0x2001: wide+bucket, +narrow, +host, narrow again, wide+bucket again.
  EXPECT_EQ(c.bkt6[0x2001].cnt, 5u);
  EXPECT_EQ(c.bkt6[0x2000].cnt, 1u);
  EXPECT_EQ(c.bkt6[0x2000].off, c.bkt6[0x200f].off);
}

TEST(PolicyCompiler, PrefixSpanningManyBucketsSharesOneEntry) {
  auto c = compileOk(
      PolicyBuilder().identity("x", {"10.0.0.0/8"}).ingress("r", {"x"}, {}, kAllow).policy());
  checkInvariants(c);
  // One entry for "no group", one for the /8, shared by all of its 256 buckets.
  EXPECT_EQ(c.iv4.size(), 2u);
  EXPECT_EQ(c.bkt4[0x0a00].off, c.bkt4[0x0aff].off);
  EXPECT_NE(c.bkt4[0x0a00].off, c.bkt4[0x0b00].off);
}

TEST(PolicyCompiler, OtherProtocolsMatchOnlyPortlessRulesAndProtocolAny) {
  auto c = compileOk(PolicyBuilder()
                         .identity("x", {"10.0.0.0/8"})
                         .identity("y", {"10.1.0.0/16"})
                         .ingress("tcp-only", {"x"}, {tcp(0, 65535)}, kAllow)
                         .ingress("proto-any", {"y"}, {anyProtocol()}, kAllow)
                         .policy());
  checkInvariants(c);
  EXPECT_EQ(in(c, "10.2.0.1", EW_P_OTHER), "none");
  EXPECT_EQ(in(c, "10.2.0.1", EW_P_TCP, 5), "allow tcp-only");
  EXPECT_EQ(in(c, "10.1.0.1", EW_P_OTHER), "allow proto-any");
  EXPECT_EQ(in(c, "10.1.0.1", EW_P_ICMP), "allow proto-any");
  EXPECT_EQ(in(c, "10.1.0.1", EW_P_TCP, 5), "allow tcp-only");
}

TEST(PolicyCompiler, EgressLooksAtItsOwnGroup) {
  auto c = compileOk(PolicyBuilder()
                         .identity("lab", {"10.1.0.0/16"})
                         .ingress("in", {"lab"}, {tcp(22)}, kAllow)
                         .egress("out", {"lab"}, {tcp(443)}, kAllow)
                         .policy());
  checkInvariants(c);
  EXPECT_EQ(in(c, "10.1.0.1", EW_P_TCP, 22), "allow in");
  EXPECT_EQ(in(c, "10.1.0.1", EW_P_TCP, 443), "none");
  EXPECT_EQ(out(c, "10.1.0.1", EW_P_TCP, 443), "allow out");
  EXPECT_EQ(out(c, "10.1.0.1", EW_P_TCP, 22), "none");
}

TEST(PolicyCompiler, LimitsExceededGiveAClearError) {
  const Policy p = PolicyBuilder()
                       .identity("a", {"10.0.0.0/8", "2001:db8::/32"})
                       .identity("b", {"10.1.0.0/16"})
                       .ingress("r1", {"a"}, {tcp(80)}, kAllow)
                       .ingress("r2", {"b"}, {tcp(81)}, kAllow)
                       .policy();
  auto errorWith = [&](CompileLimits l) {
    auto r = compile(p, l);
    return r ? std::string("(compiled)") : r.error().str();
  };
  EXPECT_EQ(errorWith({.maxRules = 1}), "policy has 2 rules; the limit is 1");
  auto full = compileOk(p);
  const auto n4 = full.iv4.size(), n6 = full.iv6.size(), np = full.piv.size();
  EXPECT_EQ(errorWith({.maxIntervals4 = static_cast<uint32_t>(n4 - 1)}),
            fmt::format("policy needs {} IPv4 intervals; the capacity is {}", n4, n4 - 1));
  EXPECT_EQ(errorWith({.maxIntervals6 = static_cast<uint32_t>(n6 - 1)}),
            fmt::format("policy needs {} IPv6 intervals; the capacity is {}", n6, n6 - 1));
  EXPECT_EQ(errorWith({.maxGroups = 4}), "policy needs 5 rule groups; the capacity is 4");
  EXPECT_EQ(errorWith({.maxPortEntries = static_cast<uint32_t>(np - 1)}),
            fmt::format("policy needs {} port entries; the capacity is {}", np, np - 1));
  // Exactly at the limits compiles.
  EXPECT_EQ(errorWith({.maxRules = 2,
                       .maxIntervals4 = static_cast<uint32_t>(n4),
                       .maxIntervals6 = static_cast<uint32_t>(n6),
                       .maxGroups = 5,
                       .maxPortEntries = static_cast<uint32_t>(np)}),
            "(compiled)");
}

TEST(PolicyCompiler, StatsDescribeThePolicy) {
  auto c = compileOk(PolicyBuilder()
                         .identity("a", {"10.0.0.0/8", "2001:db8::/32"})
                         .identity("b", {"10.0.0.0/8", "192.0.2.1"})
                         .ingress("r", {"a", "b"}, {}, kAllow)
                         .egress("s", {"any"}, {}, kAllow)
                         .policy());
  EXPECT_EQ(c.stats.identities, 2u);
  EXPECT_EQ(c.stats.prefixes4, 2u);  // 10.0.0.0/8 counted once
  EXPECT_EQ(c.stats.prefixes6, 1u);
  EXPECT_EQ(c.stats.rules, 2u);
  const size_t bytes = 2 * EW_BUCKETS * sizeof(ew_bucket) + c.iv4.size() * sizeof(ew_iv4) +
                       c.iv6.size() * sizeof(ew_iv6) + c.grp.size() * sizeof(ew_grp) +
                       c.piv.size() * sizeof(ew_piv);
  EXPECT_EQ(c.stats.bytes, bytes);
}

TEST(PolicyCompiler, ReasonNames) {
  const std::set<std::string_view> expected = {
      "rule-allow", "default-allow", "established", "host-essential",
      "rule-deny",  "default-deny",  "malformed",   "truncated",
      "fragment",   "syn-flood",     "non-ip",      "ipv6-ext-headers"};
  std::set<std::string_view> got;
  for (uint8_t r = 0; r < EW_R_COUNT; r++) got.insert(reasonName(r));
  EXPECT_EQ(got, expected);
  EXPECT_EQ(reasonName(EW_R_SYN_FLOOD), "syn-flood");
  EXPECT_EQ(reasonName(EW_R_COUNT), "unknown");
}

// ---------------------------------------------------------------------------------------------
// The image against a literal reading of the policy, at every boundary the policy creates.

U128 firstOf(const Prefix& p) {
  U128 first = 0;
  for (int i = 0; i < (p.family == Family::V4 ? 4 : 16); i++) first = (first << 8) | p.addr[i];
  return first;
}

bool contains(const Prefix& p, const Addr& a) {
  if (p.family != a.family) return false;
  const int bits = p.family == Family::V4 ? 32 : 128;
  const U128 first = firstOf(p);
  if (p.len == 0) return true;
  const int host = bits - p.len;
  return (a.value >> host) == (first >> host);
}

std::string literal(const Policy& p, uint8_t dir, const Addr& a, uint8_t slot, uint16_t port) {
  const auto& rules = dir == EW_INGRESS ? p.ingress : p.egress;
  std::string allow, deny;
  for (size_t i = 0; i < rules.size(); i++) {
    const Rule& r = rules[i];
    bool peer = false;
    for (const auto& name : r.peers) {
      if (name == kAnyIdentity) peer = true;
      for (const auto& id : p.identities)
        if (id.name == name)
          for (const auto& pf : id.prefixes) peer = peer || contains(pf, a);
    }
    bool ports = r.ports.empty();
    for (const auto& s : r.ports)
      ports = ports || (specCoversSlot(s, slot) && s.range.first <= port && port <= s.range.last);
    if (!peer || !ports) continue;
    auto& first = r.action == Action::Deny ? deny : allow;
    if (first.empty())
      first = fmt::format("{} {}", r.action == Action::Deny ? "deny" : "allow", r.name);
  }
  return !deny.empty() ? deny : !allow.empty() ? allow : "none";
}

TEST(PolicyCompiler, MatchesALiteralReadingAtEveryBoundary) {
  const Policy p = PolicyBuilder()
                       .identity("corp", {"10.0.0.0/8", "2001:db8::/32"})
                       .identity("dc", {"10.20.0.0/16", "10.20.30.0/24", "2001:db8:20::/48"})
                       .identity("db", {"10.20.30.40", "2001:db8:20::40"})
                       .identity("edge", {"0.0.0.0/32", "255.255.255.255/32", "::/128",
                                          "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"})
                       .identity("split", {"10.255.255.0/25", "10.255.255.128/25", "11.0.0.0/9"})
                       .ingress("corp-ssh", {"corp"}, {tcp(22)}, kAllow)
                       .ingress("dc-web", {"dc"}, {tcp(80), tcp(8000, 8080)}, kAllow)
                       .ingress("db-deny", {"db"}, {tcp(80, 8000)}, kDeny)
                       .ingress("any-https", {"any"}, {tcp(443), udp(443)}, kAllow)
                       .ingress("edge-deny", {"edge"}, {}, kDeny)
                       .ingress("split-udp", {"split", "db"}, {udpAll(), icmp()}, kAllow)
                       .ingress("any-deny-8080", {"any"}, {tcp(8080)}, kDeny)
                       .ingress("corp-other", {"corp"}, {anyProtocol()}, kAllow)
                       .egress("out-dns", {"any"}, {udp(53)}, kAllow)
                       .egress("out-dc", {"dc"}, {tcp(0, 1023)}, kAllow)
                       .egress("out-db-deny", {"db"}, {}, kDeny)
                       .policy();
  auto c = compileOk(p);
  checkInvariants(c);

  std::vector<Addr> probes;
  for (const auto& id : p.identities)
    for (const auto& pf : id.prefixes) {
      const Addr a{pf.family, firstOf(pf)};
      const int bits = pf.family == Family::V4 ? 32 : 128;
      const U128 max = bits == 32 ? U128{0xffffffff} : ~U128{0};
      const U128 host = pf.len == 0 ? max : (U128{1} << (bits - pf.len)) - 1;
      const U128 last = a.value | host;
      for (U128 v : {a.value, last, a.value - 1, last + 1, a.value + 1, last - 1})
        probes.push_back({pf.family, v & max});
    }
  probes.push_back(addr("192.0.2.1"));
  probes.push_back(addr("2001:db9::1"));
  const std::vector<uint16_t> ports = {0,    1,    21,   22,   23,   52,    53,   54,   79,
                                       80,   81,   442,  443,  444,  1022,  1023, 1024, 7999,
                                       8000, 8001, 8079, 8080, 8081, 65534, 65535};
  size_t checked = 0;
  for (const Addr& a : probes)
    for (uint8_t dir : {EW_INGRESS, EW_EGRESS})
      for (uint8_t slot = 0; slot < EW_P_COUNT; slot++)
        for (uint16_t port : ports) {
          std::string want = literal(p, dir, a, slot, port);
          Decision any = decide(c, EW_GROUP_ANY + dir, slot, port);
          Decision spec = decide(c, groupOf(c, a, dir), slot, port);
          std::string got = show(c, combine(any, spec));
          ASSERT_EQ(got, want) << (a.family == Family::V4 ? "v4 " : "v6 ")
                               << fmt::format("{:x}{:016x}", static_cast<uint64_t>(a.value >> 64),
                                              static_cast<uint64_t>(a.value))
                               << " dir " << int{dir} << " slot " << int{slot} << " port " << port;
          checked++;
        }
  EXPECT_GT(checked, 10000u);
}

}  // namespace
}  // namespace edgeward::policy
