// The reference evaluator: hand-written cases of every rule in docs/firewall.md, then random
// policies and packets cross-checked against compile() read back by a C++ copy of the firewall
// program's lookup (including its fragment handling).
#include <arpa/inet.h>

#include <algorithm>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "firewall.h"
#include "policy/compiler.h"
#include "policy/evaluator.h"
#include "policy/patch.h"
#include "policy/policy.h"
#include "support/image_lookup.h"
#include "support/policy_builders.h"

namespace edgeward::policy {
namespace {

using U128 = unsigned __int128;

constexpr uint8_t kTcp = 6, kUdp = 17, kIcmp = 1, kIcmpv6 = 58, kGre = 47;

Prefix pfx(std::string_view text) {
  auto r = parsePrefix(text);
  if (!r) throw std::invalid_argument(r.error().str());
  return *r;
}

using namespace builders;

struct P {
  Policy p;
  P& def(Action a) {
    p.defaultAction = a;
    return *this;
  }
  P& id(std::string name, std::vector<std::string_view> prefixes) {
    Identity i{std::move(name), {}, 0};
    for (auto t : prefixes) i.prefixes.push_back(pfx(t));
    p.identities.push_back(std::move(i));
    return *this;
  }
  P& in(std::string name, std::vector<std::string> from, std::vector<PortSpec> ports, Action a) {
    p.ingress.push_back({std::move(name), std::move(from), std::move(ports), a, 0});
    return *this;
  }
  P& out(std::string name, std::vector<std::string> to, std::vector<PortSpec> ports, Action a) {
    p.egress.push_back({std::move(name), std::move(to), std::move(ports), a, 0});
    return *this;
  }
};

PacketFacts packet(bool ingress, std::string_view src, std::string_view dst, uint8_t proto,
                   uint16_t dport = 0) {
  PacketFacts f;
  Prefix s = pfx(src), d = pfx(dst);
  f.family = s.family;
  f.ingress = ingress;
  f.src = s.addr;
  f.dst = d.addr;
  f.proto = proto;
  f.dport = dport;
  return f;
}

PacketFacts in(std::string_view src, uint8_t proto, uint16_t dport = 0) {
  return packet(true, src, src.find(':') == std::string_view::npos ? "192.0.2.1" : "2001:db8::1",
                proto, dport);
}
PacketFacts out(std::string_view dst, uint8_t proto, uint16_t dport = 0) {
  return packet(false, dst.find(':') == std::string_view::npos ? "192.0.2.1" : "2001:db8::1", dst,
                proto, dport);
}
PacketFacts frag(PacketFacts f) {
  f.fragment = true;
  f.dport = 0;
  return f;
}

// "pass rule-allow web", "drop default-deny", ...
std::string show(const Policy& p, const Verdict& v) {
  std::string s = fmt::format("{} {}", v.pass ? "pass" : "drop", reasonName(v.reason));
  if (v.rule == EW_RULE_NONE) return s;
  const uint32_t nIn = uint32_t(p.ingress.size());
  const Rule* r = v.rule < nIn                     ? &p.ingress[v.rule]
                  : v.rule - nIn < p.egress.size() ? &p.egress[v.rule - nIn]
                                                   : nullptr;
  return r ? fmt::format("{} {}", s, r->name) : fmt::format("{} #{}", s, v.rule);
}

std::string eval(const P& p, const PacketFacts& f) { return show(p.p, evaluate(p.p, f)); }

// ---------------------------------------------------------------------------------------------
// Hand-written cases.

TEST(PolicyEvaluator, DefaultActionDecidesWhenNoRuleMatches) {
  P p;
  EXPECT_EQ(eval(p, in("10.0.0.1", kTcp, 80)), "drop default-deny");
  p.def(kAllow);
  EXPECT_EQ(eval(p, in("10.0.0.1", kTcp, 80)), "pass default-allow");
  EXPECT_EQ(eval(p, out("2001:db8::9", kUdp, 53)), "pass default-allow");
}

TEST(PolicyEvaluator, IngressMatchesTheSourceEgressTheDestination) {
  P p;
  p.id("lab", {"10.1.0.0/16", "fd00:1::/64"})
      .in("lab-in", {"lab"}, {}, kAllow)
      .out("lab-out", {"lab"}, {}, kAllow);
  EXPECT_EQ(eval(p, in("10.1.2.3", kTcp, 1)), "pass rule-allow lab-in");
  EXPECT_EQ(eval(p, in("10.2.0.1", kTcp, 1)), "drop default-deny");
  EXPECT_EQ(eval(p, in("fd00:1::5", kUdp, 1)), "pass rule-allow lab-in");
  // The destination of an ingress packet is not looked at.
  EXPECT_EQ(eval(p, packet(true, "10.2.0.1", "10.1.0.1", kTcp, 1)), "drop default-deny");
  EXPECT_EQ(eval(p, out("10.1.255.255", kTcp, 1)), "pass rule-allow lab-out");
  EXPECT_EQ(eval(p, packet(false, "10.1.0.1", "10.2.0.1", kTcp, 1)), "drop default-deny");
  // Egress rule ids follow the ingress rules.
  EXPECT_EQ(evaluate(p.p, out("10.1.0.1", kTcp, 1)).rule, 1u);
}

TEST(PolicyEvaluator, AnyMatchesEveryAddressOfBothFamilies) {
  P p;
  p.id("x", {"10.0.0.1"}).in("all", {"x", "any"}, {tcp(22)}, kAllow);
  EXPECT_EQ(eval(p, in("203.0.113.7", kTcp, 22)), "pass rule-allow all");
  EXPECT_EQ(eval(p, in("2001:db8::77", kTcp, 22)), "pass rule-allow all");
  EXPECT_EQ(eval(p, in("2001:db8::77", kTcp, 23)), "drop default-deny");
}

TEST(PolicyEvaluator, PrefixesOfTheOtherFamilyDoNotMatch) {
  P p;
  p.id("v4all", {"0.0.0.0/0"}).in("v4", {"v4all"}, {}, kAllow);
  EXPECT_EQ(eval(p, in("255.255.255.255", kGre)), "pass rule-allow v4");
  EXPECT_EQ(eval(p, in("::", kGre)), "drop default-deny");
  EXPECT_EQ(eval(p, in("::ffff:10.0.0.1", kGre)), "drop default-deny");
}

TEST(PolicyEvaluator, DenyBeatsAllowAndTheLowestRuleIdIsReported) {
  P p;
  p.id("a", {"10.0.0.0/8"})
      .id("b", {"10.1.0.0/16"})
      .in("allow-a", {"a"}, {tcp(1, 1000)}, kAllow)
      .in("allow-b", {"b"}, {tcp(80)}, kAllow)
      .in("deny-b", {"b"}, {tcp(80, 90)}, kDeny)
      .in("deny-any", {"any"}, {tcp(85)}, kDeny);
  EXPECT_EQ(eval(p, in("10.2.0.1", kTcp, 80)), "pass rule-allow allow-a");
  EXPECT_EQ(eval(p, in("10.1.0.1", kTcp, 79)), "pass rule-allow allow-a");  // lower id than b
  EXPECT_EQ(eval(p, in("10.1.0.1", kTcp, 80)), "drop rule-deny deny-b");
  EXPECT_EQ(eval(p, in("10.1.0.1", kTcp, 85)), "drop rule-deny deny-b");  // lower id than any
  EXPECT_EQ(eval(p, in("10.2.0.1", kTcp, 85)), "drop rule-deny deny-any");
  EXPECT_EQ(eval(p, in("10.1.0.1", kTcp, 91)), "pass rule-allow allow-a");
  EXPECT_EQ(eval(p, in("10.1.0.1", kTcp, 1001)), "drop default-deny");
}

TEST(PolicyEvaluator, PortsAndProtocols) {
  P p;
  p.def(kDeny)
      .in("web", {"any"}, {tcp(80), tcp(8000, 8080)}, kAllow)
      .in("dns", {"any"}, {udp(53)}, kAllow)
      .in("ping4", {"any"}, {icmp()}, kAllow)
      .in("ping6", {"any"}, {icmpv6()}, kAllow);
  EXPECT_EQ(eval(p, in("10.0.0.1", kTcp, 80)), "pass rule-allow web");
  EXPECT_EQ(eval(p, in("10.0.0.1", kTcp, 7999)), "drop default-deny");
  EXPECT_EQ(eval(p, in("10.0.0.1", kTcp, 8000)), "pass rule-allow web");
  EXPECT_EQ(eval(p, in("10.0.0.1", kTcp, 8080)), "pass rule-allow web");
  EXPECT_EQ(eval(p, in("10.0.0.1", kTcp, 8081)), "drop default-deny");
  EXPECT_EQ(eval(p, in("10.0.0.1", kUdp, 80)), "drop default-deny");
  EXPECT_EQ(eval(p, in("10.0.0.1", kUdp, 53)), "pass rule-allow dns");
  EXPECT_EQ(eval(p, in("10.0.0.1", kIcmp, 1234)), "pass rule-allow ping4");
  EXPECT_EQ(eval(p, in("fd00::1", kIcmpv6, 7)), "pass rule-allow ping6");
  // The protocol number decides, not the IP version ("icmp" means protocol 1).
  EXPECT_EQ(eval(p, in("fd00::1", kIcmp)), "pass rule-allow ping4");
  EXPECT_EQ(eval(p, in("10.0.0.1", kIcmpv6)), "pass rule-allow ping6");
  EXPECT_EQ(eval(p, in("10.0.0.1", kGre)), "drop default-deny");
}

TEST(PolicyEvaluator, OtherProtocolsMatchOnlyPortlessRulesAndProtocolAny) {
  P p;
  p.id("a", {"10.0.0.1"})
      .id("b", {"10.0.0.2"})
      .id("c", {"10.0.0.3"})
      .in("a", {"a"}, {tcp(1, 65535), udpAll(), icmp()}, kAllow)
      .in("b", {"b"}, {}, kAllow)
      .in("c", {"c"}, {anyProtocol()}, kAllow);
  EXPECT_EQ(eval(p, in("10.0.0.1", kGre)), "drop default-deny");
  EXPECT_EQ(eval(p, in("10.0.0.2", kGre)), "pass rule-allow b");
  EXPECT_EQ(eval(p, in("10.0.0.3", kGre)), "pass rule-allow c");
  EXPECT_EQ(eval(p, in("10.0.0.1", kTcp, 0)), "drop default-deny");
}

TEST(PolicyEvaluator, HostEssentials) {
  P p;
  p.def(kDeny).in("deny-all", {"any"}, {}, kDeny).out("deny-all-out", {"any"}, {}, kDeny);
  PacketFacts arp;
  arp.arp = true;
  EXPECT_EQ(eval(p, arp), "pass host-essential");
  arp.ingress = false;
  EXPECT_EQ(eval(p, arp), "pass host-essential");
  for (uint8_t type : {133, 134, 135, 136}) {
    PacketFacts nd = in("fe80::1", kIcmpv6);
    nd.icmpType = type;
    nd.hopLimit = 255;
    EXPECT_EQ(eval(p, nd), "pass host-essential") << int(type);
    nd.ingress = false;
    EXPECT_EQ(eval(p, nd), "pass host-essential") << int(type);
    nd.hopLimit = 254;
    EXPECT_EQ(eval(p, nd), "drop rule-deny deny-all-out") << int(type);
    nd.hopLimit = 255;
    EXPECT_EQ(eval(p, frag(nd)), "drop rule-deny deny-all-out") << int(type);
  }
  for (uint8_t type : {130, 131, 132, 143}) {
    PacketFacts mld = in("fe80::1", kIcmpv6);
    mld.icmpType = type;
    mld.hopLimit = 1;
    EXPECT_EQ(eval(p, mld), "pass host-essential") << int(type);
    mld.hopLimit = 255;
    EXPECT_EQ(eval(p, mld), "drop rule-deny deny-all") << int(type);
  }
  for (uint8_t type : {128, 129, 137, 142, 144}) {
    PacketFacts other = in("fe80::1", kIcmpv6);
    other.icmpType = type;
    other.hopLimit = 255;
    EXPECT_EQ(eval(p, other), "drop rule-deny deny-all") << int(type);
    other.hopLimit = 1;
    EXPECT_EQ(eval(p, other), "drop rule-deny deny-all") << int(type);
  }
  // ICMPv6 in an IPv4 packet, ICMPv4 with the same type: judged by the rules.
  PacketFacts odd = in("10.0.0.1", kIcmpv6);
  odd.icmpType = 135;
  odd.hopLimit = 255;
  EXPECT_EQ(eval(p, odd), "drop rule-deny deny-all");
  PacketFacts v4 = in("fe80::1", kIcmp);
  v4.icmpType = 135;
  v4.hopLimit = 255;
  EXPECT_EQ(eval(p, v4), "drop rule-deny deny-all");
}

TEST(PolicyEvaluator, FragmentsPassOnlyWhenEveryPortGetsTheSameVerdictFromTheSameRule) {
  P p;
  p.def(kAllow)
      .id("all", {"10.1.0.0/16"})
      .id("web", {"10.2.0.0/16"})
      .id("udp", {"10.3.0.0/16"})
      .id("split", {"10.4.0.0/16"})
      .id("one", {"10.5.0.0/16"})
      .id("bad", {"10.6.0.0/16"})
      .in("all", {"all"}, {}, kAllow)
      .in("web", {"web"}, {tcp(80)}, kAllow)
      .in("udp", {"udp"}, {udpAll(), tcp(443)}, kAllow)
      .in("low", {"split"}, {tcp(0, 100)}, kAllow)
      .in("high", {"split"}, {tcp(101, 65535)}, kAllow)
      .in("both", {"one"}, {tcp(0, 100), tcp(101, 65535)}, kAllow)
      .in("bad", {"bad"}, {}, kDeny)
      .in("https-any", {"any"}, {tcp(443)}, kAllow);
  EXPECT_EQ(eval(p, frag(in("10.1.0.1", kTcp))), "pass rule-allow all");
  EXPECT_EQ(eval(p, frag(in("10.2.0.1", kTcp))), "drop fragment");
  EXPECT_EQ(eval(p, in("10.2.0.1", kTcp, 80)), "pass rule-allow web");
  EXPECT_EQ(eval(p, frag(in("10.2.0.1", kUdp))), "pass default-allow");  // no rule covers udp
  EXPECT_EQ(eval(p, frag(in("10.3.0.1", kUdp))), "pass rule-allow udp");
  EXPECT_EQ(eval(p, frag(in("10.3.0.1", kTcp))), "drop fragment");
  EXPECT_EQ(eval(p, frag(in("10.4.0.1", kTcp))), "drop fragment");  // two rules split the ports
  EXPECT_EQ(eval(p, frag(in("10.5.0.1", kTcp))), "pass rule-allow both");
  // The port-less rule beats the any rule's port 443, so it decides every port.
  EXPECT_EQ(eval(p, frag(in("10.1.0.1", kTcp))), "pass rule-allow all");
  EXPECT_EQ(eval(p, frag(in("10.6.0.1", kTcp))), "drop rule-deny bad");
  // No rule for the peer but the any rule's 443: port-dependent.
  EXPECT_EQ(eval(p, frag(in("10.9.0.1", kTcp))), "drop fragment");
  // No rule covers the protocol: the default decides, for every port alike.
  EXPECT_EQ(eval(p, frag(in("10.9.0.1", kGre))), "pass default-allow");
  EXPECT_EQ(eval(p, frag(in("10.2.0.1", kIcmp))), "pass default-allow");
}

TEST(PolicyEvaluator, AFragmentAllowedForAllPortsLosesToALowerAllowRuleOnSomePorts) {
  // Rule 0 allows tcp/22 from any, rule 1 allows everything from "x": port 22 would be credited
  // to rule 0 and other ports to rule 1, so a fragment from x is port-dependent.
  P p;
  p.id("x", {"10.0.0.1"}).in("ssh", {"any"}, {tcp(22)}, kAllow).in("x", {"x"}, {}, kAllow);
  EXPECT_EQ(eval(p, frag(in("10.0.0.1", kTcp))), "drop fragment");
  EXPECT_EQ(eval(p, frag(in("10.0.0.1", kUdp))), "pass rule-allow x");
}

// ---------------------------------------------------------------------------------------------
// Cross-check: compile() + the program's lookup, read back from the image.

using image::Decision;
using image::groupDecide;
using image::groupOf;
using image::tableBeaten;

uint8_t slotOf(uint8_t proto) {
  switch (proto) {
    case kTcp:
      return EW_P_TCP;
    case kUdp:
      return EW_P_UDP;
    case kIcmp:
      return EW_P_ICMP;
    case kIcmpv6:
      return EW_P_ICMPV6;
  }
  return EW_P_OTHER;
}

// The verdict part of ew_process(), without conntrack and the SYN limit.
Verdict programVerdict(const CompiledPolicy& c, const PacketFacts& f) {
  if (f.arp) return {true, EW_R_HOST_ESSENTIAL, EW_RULE_NONE};
  if (f.family == Family::V6 && f.proto == kIcmpv6 && !f.fragment) {
    if (f.icmpType >= 133 && f.icmpType <= 136 && f.hopLimit == 255)
      return {true, EW_R_HOST_ESSENTIAL, EW_RULE_NONE};
    if (((f.icmpType >= 130 && f.icmpType <= 132) || f.icmpType == 143) && f.hopLimit == 1)
      return {true, EW_R_HOST_ESSENTIAL, EW_RULE_NONE};
  }
  const uint8_t dir = f.ingress ? EW_INGRESS : EW_EGRESS;
  const uint8_t slot = slotOf(f.proto);
  const uint16_t port = f.fragment ? 0 : f.dport;
  const uint32_t grp = groupOf(c, f.family, f.ingress ? f.src : f.dst, dir);
  Decision any = groupDecide(c, EW_GROUP_ANY + dir, slot, port, f.fragment);
  Decision spec = groupDecide(c, grp, slot, port, f.fragment);
  if (any.indeterminate != spec.indeterminate) {
    Decision& u = any.indeterminate ? spec : any;
    Decision& x = any.indeterminate ? any : spec;
    if (tableBeaten(c, x.off, x.cnt, u)) x = Decision{};
  }
  const bool indeterminate = any.indeterminate || spec.indeterminate;
  const Decision d = image::combine(any, spec);
  const uint8_t action = d.action;
  const uint32_t rule = d.rule;
  if (indeterminate) return {false, EW_R_FRAGMENT, EW_RULE_NONE};
  if (action == EW_ACT_DENY) return {false, EW_R_RULE_DENY, rule};
  if (action == EW_ACT_ALLOW) return {true, EW_R_RULE_ALLOW, rule};
  if (c.hdr.default_action == EW_ACT_ALLOW) return {true, EW_R_DEFAULT_ALLOW, EW_RULE_NONE};
  return {false, EW_R_DEFAULT_DENY, EW_RULE_NONE};
}

class Random {
 public:
  explicit Random(uint32_t seed) : rng_(seed) {}
  uint32_t below(uint32_t n) { return std::uniform_int_distribution<uint32_t>(0, n - 1)(rng_); }
  bool chance(uint32_t percent) { return below(100) < percent; }

  // Prefixes clustered in a few /8s (and 2001:db8::/32) so that random addresses hit them.
  Prefix prefix(Family f) {
    Prefix p;
    p.family = f;
    if (f == Family::V4) {
      p.addr[0] = uint8_t(10 + below(3));
      for (int i = 1; i < 4; i++) p.addr[i] = uint8_t(below(4) * 64 + below(2));
      p.len = uint8_t(below(4) == 0 ? below(33) : 8 + below(25));
    } else {
      p.addr = {0x20, 0x01, 0x0d, 0xb8};
      for (int i = 4; i < 16; i++) p.addr[i] = uint8_t(below(3) == 0 ? below(256) : 0);
      p.len = uint8_t(below(5) == 0 ? below(129) : 32 + below(97));
    }
    const int bits = f == Family::V4 ? 32 : 128;
    for (int b = p.len; b < bits; b++) p.addr[b / 8] &= uint8_t(~(0x80u >> (b % 8)));
    return p;
  }

  // An address inside or next to one of the policy's prefixes, or anywhere in the clusters.
  std::array<uint8_t, 16> address(const Policy& pol, Family f) {
    std::vector<const Prefix*> all;
    for (const auto& id : pol.identities)
      for (const auto& p : id.prefixes)
        if (p.family == f) all.push_back(&p);
    std::array<uint8_t, 16> a{};
    const int bits = f == Family::V4 ? 32 : 128;
    if (all.empty() || chance(20)) {
      a = prefix(f).addr;
      for (int b = 8; b < bits; b++)
        if (chance(50)) a[b / 8] ^= uint8_t(0x80u >> (b % 8));
      return a;
    }
    const Prefix& p = *all[below(uint32_t(all.size()))];
    a = p.addr;
    switch (below(4)) {
      case 0:  // first address
        break;
      case 1:  // last address
        for (int b = p.len; b < bits; b++) a[b / 8] |= uint8_t(0x80u >> (b % 8));
        break;
      case 2:  // just outside (before the first or after the last)
        if (p.len > 0) {
          U128 v = 0;
          for (int i = 0; i < bits / 8; i++) v = (v << 8) | a[i];
          const U128 size = p.len == bits ? U128{1} : U128{1} << (bits - p.len);
          v = chance(50) ? v - 1 : v + size;
          for (int i = bits / 8 - 1; i >= 0; i--, v >>= 8) a[i] = uint8_t(v);
        }
        break;
      default:  // random inside
        for (int b = p.len; b < bits; b++)
          if (chance(50)) a[b / 8] |= uint8_t(0x80u >> (b % 8));
    }
    return a;
  }

  uint16_t port() {
    static constexpr uint16_t kEdges[] = {0, 1, 22, 79, 80, 81, 443, 1023, 1024, 65534, 65535};
    return chance(60) ? kEdges[below(std::size(kEdges))] : uint16_t(below(65536));
  }

  PortSpec spec() {
    switch (below(8)) {
      case 0:
        return icmp();
      case 1:
        return icmpv6();
      case 2:
        return anyProtocol();
      default: {
        PortSpec s{chance(60) ? Protocol::Tcp : Protocol::Udp, {0, 65535}};
        if (chance(85)) {
          uint16_t a = port(), b = chance(50) ? a : port();
          s.range = {std::min(a, b), std::max(a, b)};
        }
        return s;
      }
    }
  }

  Policy policy() {
    Policy p;
    p.defaultAction = chance(50) ? kAllow : kDeny;
    const uint32_t ids = below(6);
    for (uint32_t i = 0; i < ids; i++) {
      Identity id{fmt::format("id{}", i), {}, 0};
      const uint32_t n = 1 + below(6);
      for (uint32_t k = 0; k < n; k++) {
        Prefix pr = prefix(chance(60) ? Family::V4 : Family::V6);
        if (std::find(id.prefixes.begin(), id.prefixes.end(), pr) == id.prefixes.end())
          id.prefixes.push_back(pr);
      }
      p.identities.push_back(std::move(id));
    }
    for (bool ingress : {true, false}) {
      const uint32_t rules = below(7);
      for (uint32_t r = 0; r < rules; r++) {
        Rule rule;
        rule.name = fmt::format("{}{}", ingress ? "in" : "out", r);
        rule.action = chance(35) ? kDeny : kAllow;
        if (ids == 0 || chance(20)) {
          rule.peers.push_back("any");
        } else {
          for (uint32_t i = 0; i < ids; i++)
            if (chance(35)) rule.peers.push_back(fmt::format("id{}", i));
          if (rule.peers.empty()) rule.peers.push_back(fmt::format("id{}", below(ids)));
        }
        if (chance(80)) {
          const uint32_t n = 1 + below(3);
          for (uint32_t k = 0; k < n; k++) rule.ports.push_back(spec());
        }
        (ingress ? p.ingress : p.egress).push_back(std::move(rule));
      }
    }
    return p;
  }

  PacketFacts facts(const Policy& pol) {
    PacketFacts f;
    if (chance(2)) {
      f.arp = true;
      return f;
    }
    f.family = chance(55) ? Family::V4 : Family::V6;
    f.ingress = chance(50);
    (f.ingress ? f.src : f.dst) = address(pol, f.family);
    (f.ingress ? f.dst : f.src) = address(pol, f.family);
    static constexpr uint8_t kProtos[] = {kTcp, kTcp, kTcp, kUdp, kUdp, kIcmp, kIcmpv6, kGre};
    f.proto = kProtos[below(std::size(kProtos))];
    f.fragment = chance(20);
    if (!f.fragment && (f.proto == kTcp || f.proto == kUdp || chance(30))) f.dport = port();
    if (f.proto == kIcmp || f.proto == kIcmpv6) {
      static constexpr uint8_t kTypes[] = {0, 8, 128, 129, 130, 131, 132, 133, 134, 135, 136, 143};
      f.icmpType = kTypes[below(std::size(kTypes))];
    }
    f.hopLimit = chance(40) ? 255 : chance(50) ? 1 : uint8_t(below(256));
    return f;
  }

 private:
  std::mt19937 rng_;
};

std::string describe(const PacketFacts& f) {
  auto text = [&](const std::array<uint8_t, 16>& a) {
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(f.family == Family::V4 ? AF_INET : AF_INET6, a.data(), buf, sizeof buf);
    return std::string(buf);
  };
  if (f.arp) return "arp";
  return fmt::format("{} {} -> {} proto {} dport {}{} type {} hop {}",
                     f.ingress ? "ingress" : "egress", text(f.src), text(f.dst), f.proto, f.dport,
                     f.fragment ? " fragment" : "", f.icmpType, f.hopLimit);
}

std::string describe(const Policy& p) {
  std::string s = fmt::format("default {}\n", actionName(p.defaultAction));
  for (const auto& id : p.identities) {
    s += "  " + id.name + ":";
    for (const auto& pr : id.prefixes) s += " " + pr.str();
    s += "\n";
  }
  for (bool ingress : {true, false})
    for (const auto& r : ingress ? p.ingress : p.egress) {
      s += fmt::format("  {} {} {} peers", ingress ? "in" : "out", r.name, actionName(r.action));
      for (const auto& peer : r.peers) s += " " + peer;
      s += " ports";
      for (const auto& ps : r.ports)
        s += fmt::format(" {}/{}-{}", protocolName(ps.protocol), ps.range.first, ps.range.last);
      s += "\n";
    }
  return s;
}

TEST(PolicyEvaluator, AgreesWithTheCompiledImageOnRandomPolicies) {
  Random rnd(20261201);
  size_t checked = 0, fragments = 0, ruleVerdicts = 0;
  std::array<size_t, EW_R_COUNT> reasons{};
  for (int round = 0; round < 300; round++) {
    const Policy pol = rnd.policy();
    auto compiled = compile(pol);
    ASSERT_TRUE(compiled.has_value()) << compiled.error().str();
    for (int k = 0; k < 400; k++) {
      const PacketFacts f = rnd.facts(pol);
      const Verdict want = programVerdict(*compiled, f);
      const Verdict got = evaluate(pol, f);
      ASSERT_EQ(show(pol, got), show(pol, want)) << "round " << round << ": " << describe(f) << "\n"
                                                 << describe(pol);
      checked++;
      fragments += f.fragment;
      ruleVerdicts += got.rule != EW_RULE_NONE;
      reasons[got.reason]++;
    }
  }
  for (uint8_t r : {EW_R_RULE_ALLOW, EW_R_DEFAULT_ALLOW, EW_R_HOST_ESSENTIAL, EW_R_RULE_DENY,
                    EW_R_DEFAULT_DENY, EW_R_FRAGMENT})
    EXPECT_GT(reasons[r], checked / 100) << reasonName(r);
  // The generator must exercise the interesting paths, not just the default.
  EXPECT_GT(fragments, checked / 10);
  EXPECT_GT(ruleVerdicts, checked / 4);
}

// compileChange() after each of a run of patches decides every packet as the evaluator does on
// the patched policy, and as a full compile of it; the rendered text reads back to the policy.
TEST(PolicyEvaluator, PatchedImageAgreesWithTheEvaluatorAndAFullCompile) {
  Random rnd(20261202);
  size_t checked = 0, incremental = 0;
  for (int round = 0; round < 120; round++) {
    Policy pol = rnd.policy();
    pol.name = "patched";
    if (pol.identities.empty()) continue;
    auto image = compile(pol);
    ASSERT_TRUE(image.has_value()) << image.error().str();
    for (int step = 0; step < 6; step++) {
      Identity& id = pol.identities[rnd.below(uint32_t(pol.identities.size()))];
      IdentityPatch patch{id.name, {}, {}};
      for (const Prefix& p : id.prefixes)
        if (patch.remove.size() + 1 < id.prefixes.size() && rnd.chance(40))
          patch.remove.push_back(p.str());
      for (uint32_t k = rnd.below(4); k > 0; k--) {
        Prefix p = rnd.prefix(rnd.chance(60) ? Family::V4 : Family::V6);
        bool fresh = std::ranges::find(id.prefixes, p) == id.prefixes.end() &&
                     std::ranges::find(patch.add, p.str()) == patch.add.end();
        if (fresh) patch.add.push_back(p.str());
      }
      if (patch.add.empty() && patch.remove.empty()) continue;
      auto changes = planPatch(pol, std::span(&patch, 1));
      ASSERT_TRUE(changes.has_value()) << changes.error().str();
      const std::string text = applyPatch(pol, "", *changes);
      auto reread = parsePolicy(text, "rendered.yaml");
      ASSERT_TRUE(reread.has_value()) << reread.error().str() << "\n" << text;
      ASSERT_EQ(describe(*reread), describe(pol));

      const bool wasIncremental = image->state != nullptr;
      image = compileChange(pol, std::move(*image), *changes);
      ASSERT_TRUE(image.has_value()) << image.error().str();
      incremental += wasIncremental;
      auto full = compile(pol);
      ASSERT_TRUE(full.has_value());
      EXPECT_EQ(image->stats.prefixes4, full->stats.prefixes4);
      EXPECT_EQ(image->stats.prefixes6, full->stats.prefixes6);
      for (int k = 0; k < 150; k++) {
        const PacketFacts f = rnd.facts(pol);
        const Verdict want = evaluate(pol, f);
        ASSERT_EQ(show(pol, programVerdict(*image, f)), show(pol, want))
            << "round " << round << " step " << step << ": " << describe(f) << "\n"
            << describe(pol);
        ASSERT_EQ(show(pol, programVerdict(*full, f)), show(pol, want));
        checked++;
      }
    }
  }
  EXPECT_GT(checked, 20000u);
  EXPECT_GT(incremental, 300u);
}

}  // namespace
}  // namespace edgeward::policy
