// Randomised differential test of the firewall program against a reference model.
//
// Random policies are compiled and applied to one loaded FirewallProgram; random packets are
// run through it with BPF_PROG_TEST_RUN (ingress on the XDP hook, egress on the tc egress hook,
// and in the second test also ingress on the tc ingress hook). Each verdict (pass/drop, reason,
// rule id) is compared with a reference model written here that evaluates the policy literally:
// every rule, every peer identity, every prefix, plain masked comparison. It shares no code with
// the policy compiler, so a bug in the interval/group/port-table construction or in the lookups
// of the BPF program shows up as a mismatch.
//
// The seed is fixed (kDefaultSeed) and printed on failure; EW_DIFF_SEED=<number> overrides it.
// A mismatch prints the policy as a policy file and the packet, enough to reproduce it with
// `edgeward verdict` or a fixture.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "bpf/firewall_program.h"
#include "dataplane/dataplane.h"
#include "firewall.h"
#include "policy/compiler.h"
#include "policy/policy.h"
#include "support/packet.h"

namespace edgeward {
namespace {

using bpf::FirewallOptions;
using bpf::FirewallProgram;
using bpf::Hook;
using policy::Action;
using policy::Family;
using policy::Identity;
using policy::Policy;
using policy::PortRange;
using policy::PortSpec;
using policy::Prefix;
using policy::Protocol;
using policy::Rule;

constexpr uint64_t kDefaultSeed = 0x6564676577617264ull;  // "edgeward"

uint64_t baseSeed() {
  if (const char* env = std::getenv("EW_DIFF_SEED"); env && *env)
    return std::strtoull(env, nullptr, 0);
  return kDefaultSeed;
}

// splitmix64: independent, reproducible seeds for each policy of each test.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : g_(seed) {}
  // Uniform in [lo, hi].
  uint64_t range(uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(g_);
  }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(g_) < p; }
  template <typename T>
  const T& pick(const std::vector<T>& v) {
    return v[range(0, v.size() - 1)];
  }
  uint8_t byte() { return static_cast<uint8_t>(range(0, 255)); }

 private:
  std::mt19937_64 g_;
};

// ---------------------------------------------------------------------------------------------
// Addresses: network-order bytes, like Prefix::addr.

struct Addr {
  Family family = Family::V4;
  std::array<uint8_t, 16> b{};
};

int bitsOf(Family f) { return f == Family::V4 ? 32 : 128; }
int bytesOf(Family f) { return f == Family::V4 ? 4 : 16; }

Addr parseAddr(const char* text) {
  Addr a;
  a.family = std::string(text).find(':') != std::string::npos ? Family::V6 : Family::V4;
  if (inet_pton(a.family == Family::V4 ? AF_INET : AF_INET6, text, a.b.data()) != 1)
    throw std::invalid_argument(text);
  return a;
}

std::string addrStr(const Addr& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(a.family == Family::V4 ? AF_INET : AF_INET6, a.b.data(), buf, sizeof buf);
  return buf;
}

// Clears (host = false) or sets (host = true) the bits beyond len.
Addr withHostBits(Addr a, int len, bool host) {
  for (int i = len; i < bitsOf(a.family); i++) {
    uint8_t m = static_cast<uint8_t>(0x80u >> (i % 8));
    a.b[i / 8] = host ? (a.b[i / 8] | m) : (a.b[i / 8] & ~m);
  }
  return a;
}

// a + 1 or a - 1, wrapping around the family's address space.
Addr step(Addr a, int delta) {
  for (int i = bytesOf(a.family) - 1; i >= 0; i--) {
    if (delta > 0) {
      if (++a.b[i] != 0) break;
    } else {
      if (a.b[i]-- != 0) break;
    }
  }
  return a;
}

Addr firstOf(const Prefix& p) { return Addr{p.family, p.addr}; }
Addr lastOf(const Prefix& p) { return withHostBits(firstOf(p), p.len, true); }

// ---------------------------------------------------------------------------------------------
// The reference model: the policy semantics, evaluated literally.

struct Packet {
  Family family = Family::V4;
  Addr src, dst;
  uint8_t proto = 6;  // IP protocol number
  uint16_t sport = 0, dport = 0;
  // Framing the policy does not look at, varied to exercise the parser's offsets.
  std::vector<uint16_t> vlans;
  uint8_t ipv4OptionWords = 0;
  std::vector<uint8_t> v6Ext;  // hop-by-hop, routing, destination options, atomic fragment
  size_t payload = 0;
};

struct Verdict {
  bool pass = false;
  uint8_t reason = 0;
  uint32_t rule = EW_RULE_NONE;
  bool operator==(const Verdict&) const = default;
};

// Plain masked comparison of the first p.len bits.
bool prefixContains(const Prefix& p, const Addr& a) {
  if (p.family != a.family) return false;
  for (int i = 0; i < p.len; i++) {
    uint8_t m = static_cast<uint8_t>(0x80u >> (i % 8));
    if ((p.addr[i / 8] & m) != (a.b[i / 8] & m)) return false;
  }
  return true;
}

bool peerMatches(const Policy& pol, const Rule& r, const Addr& peer) {
  for (const std::string& name : r.peers) {
    if (name == policy::kAnyIdentity) return true;
    for (const Identity& id : pol.identities) {
      if (id.name != name) continue;
      for (const Prefix& p : id.prefixes)
        if (prefixContains(p, peer)) return true;
    }
  }
  return false;
}

bool portsMatch(const Rule& r, const Packet& k) {
  if (r.ports.empty()) return true;
  for (const PortSpec& s : r.ports) {
    switch (s.protocol) {
      case Protocol::Any:
        return true;
      case Protocol::Tcp:
        if (k.proto == 6 && k.dport >= s.range.first && k.dport <= s.range.last) return true;
        break;
      case Protocol::Udp:
        if (k.proto == 17 && k.dport >= s.range.first && k.dport <= s.range.last) return true;
        break;
      case Protocol::Icmp:
        if (k.proto == 1) return true;
        break;
      case Protocol::Icmpv6:
        if (k.proto == 58) return true;
        break;
    }
  }
  return false;
}

Verdict reference(const Policy& pol, uint8_t dir, const Packet& k) {
  const Addr& peer = dir == EW_INGRESS ? k.src : k.dst;
  const auto& rules = dir == EW_INGRESS ? pol.ingress : pol.egress;
  const uint32_t firstId = dir == EW_INGRESS ? 0 : static_cast<uint32_t>(pol.ingress.size());
  uint32_t deny = EW_RULE_NONE, allow = EW_RULE_NONE;
  for (uint32_t i = 0; i < rules.size(); i++) {
    if (!peerMatches(pol, rules[i], peer) || !portsMatch(rules[i], k)) continue;
    uint32_t& best = rules[i].action == Action::Deny ? deny : allow;
    best = std::min(best, firstId + i);
  }
  if (deny != EW_RULE_NONE) return {false, EW_R_RULE_DENY, deny};
  if (allow != EW_RULE_NONE) return {true, EW_R_RULE_ALLOW, allow};
  if (pol.defaultAction == Action::Allow) return {true, EW_R_DEFAULT_ALLOW, EW_RULE_NONE};
  return {false, EW_R_DEFAULT_DENY, EW_RULE_NONE};
}

// ---------------------------------------------------------------------------------------------
// Random policies.

const std::vector<uint16_t> kEdgePorts = {0,    1,    2,     21,    22,    23,    53,
                                          79,   80,   81,    443,   1023,  1024,  8079,
                                          8080, 8081, 32767, 32768, 65533, 65534, 65535};
const std::vector<int> kLens4 = {1, 8, 16, 24, 31, 32, 12, 15, 17, 20, 23, 25, 28, 30};
const std::vector<int> kLens6 = {1,  8,  16, 24, 31, 32, 48, 64, 127, 128,
                                 15, 17, 33, 47, 56, 63, 65, 96, 112, 120};
const std::vector<const char*> kBases4 = {
    "10.0.0.0",      "10.0.1.0",   "10.0.255.255",   "10.1.0.0",        "10.255.255.255",
    "192.168.1.128", "172.16.0.0", "0.0.0.0",        "255.255.255.255", "127.0.0.1",
    "100.64.0.0",    "128.0.0.0",  "127.255.255.255"};
const std::vector<const char*> kBases6 = {"2001:db8::",
                                          "2001:db8:0:1::",
                                          "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
                                          "2001:db9::",
                                          "fd00::1",
                                          "fe80::1",
                                          "::",
                                          "::1",
                                          "::ffff:10.0.0.0",
                                          "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                                          "8000::",
                                          "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                                          "2001:db8:0:0:ffff:ffff:ffff:ffff",
                                          "2001:db8:0:1:8000::"};

// A handful of base addresses per family; prefixes and packets are derived from them so that
// prefixes nest and overlap and packets land inside and at the edges of them.
struct Pool {
  std::vector<Addr> v4, v6;
};

Addr randomAddr(Rng& rng, Family f) {
  Addr a{f, {}};
  for (int i = 0; i < bytesOf(f); i++) a.b[i] = rng.byte();
  return a;
}

Pool randomPool(Rng& rng) {
  Pool pool;
  for (Family f : {Family::V4, Family::V6}) {
    auto& out = f == Family::V4 ? pool.v4 : pool.v6;
    const auto& fixed = f == Family::V4 ? kBases4 : kBases6;
    int n = static_cast<int>(rng.range(3, 5));
    for (int i = 0; i < n; i++) out.push_back(parseAddr(rng.pick(fixed)));
    for (int i = static_cast<int>(rng.range(0, 2)); i > 0; i--) out.push_back(randomAddr(rng, f));
  }
  return pool;
}

Prefix randomPrefix(Rng& rng, const Pool& pool, Family f) {
  const int bits = bitsOf(f);
  int len;
  if (rng.chance(0.005))
    len = 0;
  else if (rng.chance(0.75))
    len = rng.pick(f == Family::V4 ? kLens4 : kLens6);
  else
    len = static_cast<int>(rng.range(1, bits));
  Addr a = rng.pick(f == Family::V4 ? pool.v4 : pool.v6);
  // Siblings and neighbours: flip a few bits around the prefix length.
  if (rng.chance(0.5)) {
    int flips = static_cast<int>(rng.range(1, 3));
    for (int i = 0; i < flips; i++) {
      int lo = std::max(0, len - 6), hi = std::min(bits - 1, len + 6);
      int bit = static_cast<int>(rng.range(lo, hi));
      a.b[bit / 8] ^= static_cast<uint8_t>(0x80u >> (bit % 8));
    }
  }
  a = withHostBits(a, len, false);
  Prefix p;
  p.family = f;
  p.addr = a.b;
  p.len = static_cast<uint8_t>(len);
  return p;
}

uint16_t randomPort(Rng& rng) {
  return rng.chance(0.7) ? rng.pick(kEdgePorts) : static_cast<uint16_t>(rng.range(0, 65535));
}

PortSpec randomPortSpec(Rng& rng) {
  PortSpec s;
  uint64_t r = rng.range(0, 99);
  s.protocol = r < 35   ? Protocol::Tcp
               : r < 65 ? Protocol::Udp
               : r < 75 ? Protocol::Icmp
               : r < 85 ? Protocol::Icmpv6
                        : Protocol::Any;
  if (s.protocol != Protocol::Tcp && s.protocol != Protocol::Udp) return s;  // 0-65535
  uint64_t kind = rng.range(0, 99);
  if (kind < 15) return s;  // port omitted
  uint16_t a = randomPort(rng);
  if (kind < 55) {
    s.range = {a, a};
  } else {
    uint16_t b = rng.chance(0.3) ? static_cast<uint16_t>(std::min(65535, a + int(rng.range(0, 3))))
                                 : randomPort(rng);
    s.range = {std::min(a, b), std::max(a, b)};
  }
  return s;
}

std::vector<Rule> randomRules(Rng& rng, const Policy& pol, const std::string& prefix) {
  std::vector<Rule> rules(rng.range(0, 30));
  // Deny wins over allow, so a high share of deny rules leaves little else to observe.
  const double denyShare = std::vector<double>{0.05, 0.15, 0.3, 0.5}[rng.range(0, 3)];
  const double anyShare = std::vector<double>{0.0, 0.03, 0.1}[rng.range(0, 2)];
  for (size_t i = 0; i < rules.size(); i++) {
    Rule& r = rules[i];
    r.name = fmt::format("{}{}", prefix, i);
    r.action = rng.chance(denyShare) ? Action::Deny : Action::Allow;
    int peers = static_cast<int>(rng.range(1, 3));
    for (int k = 0; k < peers; k++) {
      std::string name =
          rng.chance(anyShare) ? std::string(policy::kAnyIdentity) : rng.pick(pol.identities).name;
      if (std::ranges::find(r.peers, name) == r.peers.end()) r.peers.push_back(name);
    }
    if (rng.chance(0.75)) {
      int n = static_cast<int>(rng.range(1, 4));
      for (int k = 0; k < n; k++) r.ports.push_back(randomPortSpec(rng));
    }
    r.line = static_cast<int>(i) + 1;
  }
  return rules;
}

struct Generated {
  Policy policy;
  Pool pool;
};

Generated randomPolicy(uint64_t seed) {
  Rng rng(seed);
  Generated g;
  Policy& pol = g.policy;
  g.pool = randomPool(rng);
  pol.name = fmt::format("diff-{:016x}", seed);
  pol.source = "differential";
  pol.defaultAction = rng.chance(0.5) ? Action::Allow : Action::Deny;
  int identities = static_cast<int>(rng.range(1, 12));
  for (int i = 0; i < identities; i++) {
    Identity id;
    id.name = fmt::format("id{}", i);
    const double v4Share = std::vector<double>{0.2, 0.5, 0.8}[rng.range(0, 2)];
    int n = static_cast<int>(rng.range(1, 20));
    for (int k = 0; k < n; k++) {
      // A prefix listed twice in one identity is invalid (the parser refuses it); overlaps
      // and the same prefix in several identities are what the test wants.
      Prefix p = randomPrefix(rng, g.pool, rng.chance(v4Share) ? Family::V4 : Family::V6);
      if (std::ranges::find(id.prefixes, p) == id.prefixes.end()) id.prefixes.push_back(p);
    }
    pol.identities.push_back(std::move(id));
  }
  pol.ingress = randomRules(rng, pol, "in");
  pol.egress = randomRules(rng, pol, "eg");
  return g;
}

// ---------------------------------------------------------------------------------------------
// Random packets.

Addr addrNear(Rng& rng, const Policy& pol, const Pool& pool, Family f) {
  std::vector<const Prefix*> prefixes;
  for (const Identity& id : pol.identities)
    for (const Prefix& p : id.prefixes)
      if (p.family == f) prefixes.push_back(&p);
  uint64_t r = rng.range(0, 99);
  if (r < 75 && !prefixes.empty()) {
    const Prefix& p = *rng.pick(prefixes);
    switch (rng.range(0, 6)) {
      case 0:
        return firstOf(p);
      case 1:
        return lastOf(p);
      case 2:
        return step(firstOf(p), -1);
      case 3:
        return step(lastOf(p), +1);
      case 4:
        return step(firstOf(p), +1);
      case 5:
        return step(lastOf(p), -1);
      default: {  // random host bits
        Addr a = firstOf(p);
        Addr rnd = randomAddr(rng, f);
        for (int i = p.len; i < bitsOf(f); i++) {
          uint8_t m = static_cast<uint8_t>(0x80u >> (i % 8));
          a.b[i / 8] = (a.b[i / 8] & ~m) | (rnd.b[i / 8] & m);
        }
        return a;
      }
    }
  }
  if (r < 88) {
    Addr a = rng.pick(f == Family::V4 ? pool.v4 : pool.v6);
    return step(a, rng.chance(0.5) ? 1 : -1);
  }
  return randomAddr(rng, f);
}

uint16_t portNear(Rng& rng, const Policy& pol, uint8_t proto) {
  std::vector<PortRange> ranges;
  for (const auto* rules : {&pol.ingress, &pol.egress})
    for (const Rule& r : *rules)
      for (const PortSpec& s : r.ports)
        if ((s.protocol == Protocol::Tcp && proto == 6) ||
            (s.protocol == Protocol::Udp && proto == 17))
          ranges.push_back(s.range);
  uint64_t r = rng.range(0, 99);
  if (r < 65 && !ranges.empty()) {
    const PortRange& pr = rng.pick(ranges);
    switch (rng.range(0, 4)) {
      case 0:
        return static_cast<uint16_t>(pr.first - 1);  // wraps at 0, as intended
      case 1:
        return pr.first;
      case 2:
        return pr.last;
      case 3:
        return static_cast<uint16_t>(pr.last + 1);
      default:
        return static_cast<uint16_t>(rng.range(pr.first, pr.last));
    }
  }
  if (r < 85) return rng.pick(kEdgePorts);
  return static_cast<uint16_t>(rng.range(0, 65535));
}

const std::vector<uint8_t> kOtherProtos = {47, 132, 50, 89, 4, 103};

Packet randomPacket(Rng& rng, const Generated& g) {
  Packet k;
  k.family = rng.chance(0.5) ? Family::V4 : Family::V6;
  k.src = addrNear(rng, g.policy, g.pool, k.family);
  k.dst = addrNear(rng, g.policy, g.pool, k.family);
  const bool v6 = k.family == Family::V6;
  uint64_t r = rng.range(0, 99);
  if (r < 33)
    k.proto = 6;
  else if (r < 63)
    k.proto = 17;
  else if (r < 77)
    k.proto = v6 ? 58 : 1;  // echo request of the family's ICMP
  else if (r < 80)
    k.proto = v6 ? 1 : 58;  // the other ICMP: unusual, but the policy only looks at the number
  else
    k.proto = rng.pick(kOtherProtos);
  if (k.proto == 6 || k.proto == 17) {
    k.sport = static_cast<uint16_t>(rng.range(0, 65535));
    k.dport = portNear(rng, g.policy, k.proto);
  } else if (k.proto == 1 || k.proto == 58) {
    k.sport = k.dport = static_cast<uint16_t>(rng.range(0, 65535));  // echo identifier
  }
  if (rng.chance(0.15))
    for (int i = static_cast<int>(rng.range(1, 2)); i > 0; i--)
      k.vlans.push_back(static_cast<uint16_t>(rng.range(1, 4094)));
  if (!v6 && rng.chance(0.15)) k.ipv4OptionWords = static_cast<uint8_t>(rng.range(1, 10));
  if (v6 && rng.chance(0.15)) {
    const std::vector<uint8_t> ext = {0, 43, 60, 44};
    for (int i = static_cast<int>(rng.range(1, 3)); i > 0; i--) k.v6Ext.push_back(rng.pick(ext));
  }
  if (rng.chance(0.3)) k.payload = rng.range(1, 64);
  return k;
}

testing::PacketSpec specOf(const Packet& k) {
  testing::PacketSpec s;
  s.v6 = k.family == Family::V6;
  s.src = addrStr(k.src);
  s.dst = addrStr(k.dst);
  s.sport = k.sport;
  s.dport = k.dport;
  s.vlans = k.vlans;
  s.ipv4OptionWords = k.ipv4OptionWords;
  s.v6Ext = k.v6Ext;  // a fragment header (44) is atomic: offset 0, no M flag
  s.payload = k.payload;
  switch (k.proto) {
    case 6:
      s.l4 = testing::L4::Tcp;
      s.tcpFlags = 0x02;  // SYN
      break;
    case 17:
      s.l4 = testing::L4::Udp;
      break;
    case 1:
      s.l4 = testing::L4::Icmp;
      s.icmpType = 8;
      s.icmpId = k.dport;
      break;
    case 58:
      s.l4 = testing::L4::Icmpv6;
      s.icmpType = 128;
      s.icmpId = k.dport;
      break;
    default:
      s.l4 = testing::L4::None;
      s.ipProto = k.proto;
      break;
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Reporting.

std::string protoName(uint8_t proto) {
  switch (proto) {
    case 6:
      return "tcp";
    case 17:
      return "udp";
    case 1:
      return "icmp";
    case 58:
      return "icmpv6";
  }
  return fmt::format("ip-proto-{}", proto);
}

std::string packetStr(const Packet& k) {
  std::string s = fmt::format("IPv{} {} -> {} {}", k.family == Family::V4 ? 4 : 6, addrStr(k.src),
                              addrStr(k.dst), protoName(k.proto));
  if (k.proto == 6) s += fmt::format(" SYN sport {} dport {}", k.sport, k.dport);
  if (k.proto == 17) s += fmt::format(" sport {} dport {}", k.sport, k.dport);
  if (k.proto == 1 || k.proto == 58) s += fmt::format(" echo-request id {}", k.dport);
  if (!k.vlans.empty()) s += fmt::format(", vlans [{}]", fmt::join(k.vlans, ", "));
  if (k.ipv4OptionWords) s += fmt::format(", {} IPv4 option words", k.ipv4OptionWords);
  if (!k.v6Ext.empty()) s += fmt::format(", IPv6 extension headers [{}]", fmt::join(k.v6Ext, ", "));
  if (k.payload) s += fmt::format(", {} payload bytes", k.payload);
  return s;
}

// The policy as a policy file (docs/policy.md), so it can be saved and replayed.
std::string policyYaml(const Policy& pol) {
  std::string y = fmt::format(
      "apiVersion: edgeward.io/v1\nkind: Policy\nmetadata:\n  name: {}\nspec:\n"
      "  defaultAction: {}\n  identities:\n",
      pol.name, policy::actionName(pol.defaultAction));
  for (const Identity& id : pol.identities) {
    y += fmt::format("    {}:\n", id.name);
    for (const Prefix& p : id.prefixes) y += fmt::format("      - {}\n", p.str());
  }
  auto rules = [&](const std::vector<Rule>& rs, const char* dir, const char* peerField,
                   uint32_t firstId) {
    y += fmt::format("  {}:{}\n", dir, rs.empty() ? " []" : "");
    for (size_t i = 0; i < rs.size(); i++) {
      const Rule& r = rs[i];
      y += fmt::format("    - name: {}  # rule id {}\n      {}: [{}]\n", r.name, firstId + i,
                       peerField, fmt::join(r.peers, ", "));
      if (!r.ports.empty()) {
        y += "      ports:\n";
        for (const PortSpec& s : r.ports) {
          y += fmt::format("        - {{protocol: {}", policy::protocolName(s.protocol));
          if ((s.protocol == Protocol::Tcp || s.protocol == Protocol::Udp) &&
              !(s.range.first == 0 && s.range.last == 65535)) {
            if (s.range.first == s.range.last)
              y += fmt::format(", port: {}", s.range.first);
            else
              y += fmt::format(", port: \"{}-{}\"", s.range.first, s.range.last);
          }
          y += "}\n";
        }
      }
      y += fmt::format("      action: {}\n", policy::actionName(r.action));
    }
  };
  rules(pol.ingress, "ingress", "from", 0);
  rules(pol.egress, "egress", "to", static_cast<uint32_t>(pol.ingress.size()));
  return y;
}

std::string verdictStr(const Verdict& v, const policy::CompiledPolicy& c) {
  std::string rule = v.rule == EW_RULE_NONE ? "none"
                     : v.rule < c.rules.size()
                         ? fmt::format("{} ({})", v.rule, c.rules[v.rule].name)
                         : fmt::format("{} (out of range)", v.rule);
  return fmt::format("{} reason {} rule {}", v.pass ? "pass" : "drop", policy::reasonName(v.reason),
                     rule);
}

// ---------------------------------------------------------------------------------------------
// The differential run.

struct RunConfig {
  int test = 0;  // distinguishes the seeds of the two tests
  int policies = 0;
  int packets = 0;
  bool tcIngress = false;  // also run every packet through Hook::TcIngress
};

uint64_t seedOf(uint64_t base, int test, int index) {
  return mix(base ^ mix((uint64_t(test) << 32) | uint32_t(index)));
}

FirewallOptions maxOptions(const FirewallOptions& a, const FirewallOptions& b) {
  FirewallOptions o = a;
  o.capIntervals4 = std::max(a.capIntervals4, b.capIntervals4);
  o.capIntervals6 = std::max(a.capIntervals6, b.capIntervals6);
  o.capGroups = std::max(a.capGroups, b.capGroups);
  o.capPortEntries = std::max(a.capPortEntries, b.capPortEntries);
  o.capRules = std::max(a.capRules, b.capRules);
  return o;
}

void runDifferential(const RunConfig& cfg) {
  const uint64_t base = baseSeed();
  const auto started = std::chrono::steady_clock::now();
  SCOPED_TRACE(fmt::format("EW_DIFF_SEED={:#x} (reproduce with this environment variable)", base));

  // Size one program for the largest policy: compile everything once first. Policies are
  // regenerated from their seeds below rather than kept (each image holds 1 MiB of buckets).
  FirewallOptions opts;
  opts.recordVerdict = true;
  opts.conntrackEntries = 1024;
  for (int i = 0; i < cfg.policies; i++) {
    Generated g = randomPolicy(seedOf(base, cfg.test, i));
    auto compiled = policy::compile(g.policy);
    ASSERT_TRUE(compiled) << "policy " << i << ": " << compiled.error().str() << "\n"
                          << policyYaml(g.policy);
    opts = maxOptions(opts, dataplane::optionsFor(*compiled, opts));
  }
  auto fw = FirewallProgram::load(opts);
  ASSERT_TRUE(fw) << fw.error().str();
  dataplane::Dataplane dp(**fw);

  struct Run {
    Hook hook;
    uint8_t dir;
  };
  std::vector<Run> runs = {{Hook::XdpIngress, EW_INGRESS}, {Hook::TcEgress, EW_EGRESS}};
  if (cfg.tcIngress) runs.push_back({Hook::TcIngress, EW_INGRESS});

  size_t compared = 0, mismatches = 0;
  std::array<size_t, EW_R_COUNT> byReason{};  // reference verdicts, to show the coverage
  constexpr size_t kMaxReported = 10;
  for (int i = 0; i < cfg.policies; i++) {
    const uint64_t seed = seedOf(base, cfg.test, i);
    Generated g = randomPolicy(seed);
    auto compiled = policy::compile(g.policy);
    ASSERT_TRUE(compiled) << compiled.error().str();
    auto applied = dp.apply(*compiled, static_cast<uint64_t>(i) + 1);
    ASSERT_TRUE(applied) << "policy " << i << ": " << applied.error().str();

    Rng rng(mix(seed + 1));
    bool policyPrinted = false;
    for (int n = 0; n < cfg.packets; n++) {
      const Packet k = randomPacket(rng, g);
      const auto frame = testing::buildPacket(specOf(k));
      std::optional<Verdict> xdp;
      for (const Run& run : runs) {
        ASSERT_TRUE((*fw)->clearState());
        auto r = (*fw)->testRun(run.hook, frame);
        ASSERT_TRUE(r) << r.error().str();
        const Verdict got{r->verdict.action == EW_ACT_ALLOW, r->verdict.reason, r->verdict.rule};
        const Verdict want = reference(g.policy, run.dir, k);
        compared++;
        byReason[want.reason]++;
        if (run.hook == Hook::XdpIngress) xdp = got;
        std::string problem;
        if (got.pass != r->pass)
          problem = fmt::format("recorded verdict {} but the hook returned {}",
                                got.pass ? "pass" : "drop", r->retval);
        else if (run.hook == Hook::TcIngress && xdp && !(*xdp == got))
          problem = fmt::format("differs from XDP ingress ({})", verdictStr(*xdp, *compiled));
        else if (!(got == want))
          problem = "differs from the reference model";
        if (problem.empty()) continue;
        if (++mismatches > kMaxReported) continue;
        std::string msg = fmt::format(
            "MISMATCH on {}: {}\n  EW_DIFF_SEED={:#x} test {} policy #{} (seed {:#x}) packet #{}\n"
            "  packet:    {}\n  program:   {}\n  reference: {}\n",
            FirewallProgram::hookName(run.hook), problem, base, cfg.test, i, seed, n, packetStr(k),
            verdictStr(got, *compiled), verdictStr(want, *compiled));
        if (!policyPrinted) {
          msg += "  policy:\n" + policyYaml(g.policy);
          policyPrinted = true;
        }
        ADD_FAILURE() << msg;
      }
    }
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  fmt::print(
      "differential: seed {:#x}: {} policies x {} packets, {} verdicts compared ({} rule-allow, "
      "{} rule-deny, {} default-allow, {} default-deny), {} mismatches, {:.1f} s\n",
      base, cfg.policies, cfg.packets, compared, byReason[EW_R_RULE_ALLOW],
      byReason[EW_R_RULE_DENY], byReason[EW_R_DEFAULT_ALLOW], byReason[EW_R_DEFAULT_DENY],
      mismatches, secs);
  EXPECT_EQ(mismatches, 0u) << "EW_DIFF_SEED=" << fmt::format("{:#x}", base);
}

// Sanity check of the reference model itself on a hand-written policy, so a mistake in it
// cannot hide behind agreeing with a mistake in the program.
TEST(DifferentialReference, HandWrittenPolicy) {
  Policy pol;
  pol.defaultAction = Action::Deny;
  auto prefix = [](const char* text) {
    auto p = policy::parsePrefix(text);
    EXPECT_TRUE(p) << text;
    return *p;
  };
  pol.identities = {{"lab", {prefix("10.0.0.0/24"), prefix("2001:db8::/64")}, 1},
                    {"host", {prefix("10.0.0.7")}, 2}};
  pol.ingress = {
      {"web", {"lab"}, {{Protocol::Tcp, {80, 81}}}, Action::Allow, 1},
      {"block", {"host"}, {}, Action::Deny, 2},
      {"ping", {"any"}, {{Protocol::Icmp, {}}}, Action::Allow, 3},
  };
  pol.egress = {{"dns", {"any"}, {{Protocol::Udp, {53, 53}}}, Action::Allow, 1}};
  auto pkt = [](const char* src, const char* dst, uint8_t proto, uint16_t dport) {
    Packet k;
    k.src = parseAddr(src);
    k.dst = parseAddr(dst);
    k.family = k.src.family;
    k.proto = proto;
    k.dport = dport;
    return k;
  };
  EXPECT_EQ(reference(pol, EW_INGRESS, pkt("10.0.0.1", "1.1.1.1", 6, 80)),
            (Verdict{true, EW_R_RULE_ALLOW, 0}));
  EXPECT_EQ(reference(pol, EW_INGRESS, pkt("10.0.0.1", "1.1.1.1", 6, 82)),
            (Verdict{false, EW_R_DEFAULT_DENY, EW_RULE_NONE}));
  EXPECT_EQ(reference(pol, EW_INGRESS, pkt("10.0.1.0", "1.1.1.1", 6, 80)),
            (Verdict{false, EW_R_DEFAULT_DENY, EW_RULE_NONE}));
  EXPECT_EQ(reference(pol, EW_INGRESS, pkt("10.0.0.7", "1.1.1.1", 6, 80)),
            (Verdict{false, EW_R_RULE_DENY, 1}));
  EXPECT_EQ(reference(pol, EW_INGRESS, pkt("2001:db8::ffff", "::1", 6, 81)),
            (Verdict{true, EW_R_RULE_ALLOW, 0}));
  EXPECT_EQ(reference(pol, EW_INGRESS, pkt("2001:db8:0:1::", "::1", 1, 7)),
            (Verdict{true, EW_R_RULE_ALLOW, 2}));
  EXPECT_EQ(reference(pol, EW_INGRESS, pkt("10.0.0.1", "1.1.1.1", 47, 0)),
            (Verdict{false, EW_R_DEFAULT_DENY, EW_RULE_NONE}));
  EXPECT_EQ(reference(pol, EW_EGRESS, pkt("10.0.0.7", "8.8.8.8", 17, 53)),
            (Verdict{true, EW_R_RULE_ALLOW, 3}));
  EXPECT_EQ(reference(pol, EW_EGRESS, pkt("10.0.0.7", "8.8.8.8", 6, 53)),
            (Verdict{false, EW_R_DEFAULT_DENY, EW_RULE_NONE}));
}

TEST(Differential, XdpIngressAndTcEgressMatchReference) {
  runDifferential({.test = 1, .policies = 64, .packets = 256, .tcIngress = false});
}

TEST(Differential, TcIngressMatchesXdpAndReference) {
  runDifferential({.test = 2, .policies = 20, .packets = 256, .tcIngress = true});
}

}  // namespace
}  // namespace edgeward
