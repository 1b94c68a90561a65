// Packet fixtures for the firewall program, run with BPF_PROG_TEST_RUN (Katran-style table).
//
// Each fixture names a policy, then one or more packets, each with its hook and the exact
// verdict expected: pass or drop, the reason, and the rule reported (or none). Programs are
// loaded once per policy and shared; connection tracking and SYN limiter state are cleared
// before every fixture, so steps inside a fixture may depend on each other but fixtures do not.
// Single-packet XDP fixtures are also run on the tc ingress hook, which must agree.
// A last test checks that the per-rule and per-reason counters equal the packets run.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "bpf/firewall_program.h"
#include "dataplane/dataplane.h"
#include "firewall.h"
#include "policy/compiler.h"
#include "policy/policy.h"
#include "support/packet.h"

namespace edgeward {
namespace {

namespace pk = edgeward::testing;
using bpf::Hook;
using Bytes = std::vector<uint8_t>;

constexpr Hook kXdp = Hook::XdpIngress;
constexpr Hook kTcIn = Hook::TcIngress;
constexpr Hook kTcOut = Hook::TcEgress;

constexpr uint8_t kSyn = 0x02;
constexpr uint8_t kAck = 0x10;
constexpr uint8_t kSynAck = kSyn | kAck;

// ---------------------------------------------------------------------------------------------
// Policies. Rule ids (file order, ingress before egress) are noted for the counters test.

enum class Pol { Main, Overlap, Attribution, Edges, Syn, Conntrack, Fragments };
constexpr Pol kAllPolicies[] = {Pol::Main, Pol::Overlap,   Pol::Attribution, Pol::Edges,
                                Pol::Syn,  Pol::Conntrack, Pol::Fragments};

// Protocols, VLANs, header parsing, host-essential traffic. Local host: 192.168.50.2 / fd50::2.
constexpr std::string_view kMainPolicy = R"(apiVersion: edgeward.io/v1
kind: Policy
metadata: {name: fixtures-main}
spec:
  defaultAction: deny
  identities:
    client: [10.1.0.5, "fd00:1::5"]
    lab: [10.1.0.0/16, "fd00:1::/64"]
    tunnel: [10.9.0.1, "fd00:9::1"]
  ingress:
    - name: web                 # 0
      from: [client]
      ports:
        - {protocol: tcp, port: 80}
        - {protocol: tcp, port: "8000-8080"}
      action: allow
    - name: dns                 # 1
      from: [lab]
      ports: [{protocol: udp, port: 53}]
      action: allow
    - name: ping                # 2
      from: [lab]
      ports: [{protocol: icmp}, {protocol: icmpv6}]
      action: allow
    - name: tunnel-all          # 3: no ports, every protocol
      from: [tunnel]
      action: allow
    - name: public-https        # 4
      from: [any]
      ports: [{protocol: tcp, port: 443}]
      action: allow
  egress:
    - name: dns-out             # 5
      to: [any]
      ports: [{protocol: udp, port: 53}]
      action: allow
    - name: lab-https-out       # 6
      to: [lab]
      ports: [{protocol: tcp, port: 443}]
      action: allow
)";

// Overlapping CIDRs: nested prefixes inside one identity and across identities.
constexpr std::string_view kOverlapPolicy = R"(apiVersion: edgeward.io/v1
kind: Policy
metadata: {name: fixtures-overlap}
spec:
  defaultAction: deny
  identities:
    corp: [10.0.0.0/8]
    dc: [10.20.0.0/16, 10.20.30.0/24]
    db: [10.20.30.40]
    corp6: ["2001:db8::/32"]
    host6: ["2001:db8:0:1::10"]
  ingress:
    - name: corp-ssh            # 0
      from: [corp]
      ports: [{protocol: tcp, port: 22}]
      action: allow
    - name: dc-web              # 1
      from: [dc]
      ports: [{protocol: tcp, port: 80}]
      action: allow
    - name: db-no-web           # 2
      from: [db]
      ports: [{protocol: tcp, port: 80}]
      action: deny
    - name: db-postgres         # 3
      from: [db]
      ports: [{protocol: tcp, port: 5432}]
      action: allow
    - name: corp6-web           # 4
      from: [corp6]
      ports: [{protocol: tcp, port: 80}]
      action: allow
    - name: host6-deny          # 5
      from: [host6]
      action: deny
)";

// Deny over allow and rule attribution, under defaultAction allow.
constexpr std::string_view kAttributionPolicy = R"(apiVersion: edgeward.io/v1
kind: Policy
metadata: {name: fixtures-attribution}
spec:
  defaultAction: allow
  identities:
    net-a: [192.168.1.0/24]
    net-b: [192.168.1.128/25]
    host-c: [192.168.1.200]
    host-d: [192.168.1.10]
    net-a6: ["2001:db8:a::/48"]
  ingress:
    - name: allow-a-web         # 0
      from: [net-a, net-a6]
      ports: [{protocol: tcp, port: 80}]
      action: allow
    - name: deny-b-web          # 1
      from: [net-b]
      ports: [{protocol: tcp, port: "80-90"}]
      action: deny
    - name: deny-any-81         # 2
      from: [any]
      ports: [{protocol: tcp, port: 81}]
      action: deny
    - name: deny-d-all          # 3
      from: [host-d]
      action: deny
    - name: deny-c-all          # 4
      from: [host-c]
      action: deny
    - name: allow-any-udp       # 5
      from: [any]
      ports: [{protocol: udp}]
      action: allow
    - name: deny-b-udp-9        # 6
      from: [net-b]
      ports: [{protocol: udp, port: 9}]
      action: deny
  egress:
    - name: deny-a-smtp         # 7
      to: [net-a]
      ports: [{protocol: tcp, port: 25}]
      action: deny
    - name: deny-any-smtp       # 8
      to: [any]
      ports: [{protocol: tcp, port: 25}]
      action: deny
)";

// Port range edges and address space edges (/0, /32 and /128 at both ends).
constexpr std::string_view kEdgesPolicy = R"(apiVersion: edgeward.io/v1
kind: Policy
metadata: {name: fixtures-edges}
spec:
  defaultAction: deny
  identities:
    ranged: [10.5.0.0/16, "fd05::/16"]
    everything4: [0.0.0.0/0]
    zero-host: [0.0.0.0/32, "::/128"]
    top-host: [255.255.255.255/32, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"]
    everything6: ["::/0"]
  ingress:
    - name: range-1000-2000     # 0
      from: [ranged]
      ports: [{protocol: tcp, port: "1000-2000"}]
      action: allow
    - name: port-zero           # 1
      from: [ranged]
      ports: [{protocol: tcp, port: 0}]
      action: allow
    - name: port-max            # 2
      from: [ranged]
      ports: [{protocol: udp, port: 65535}]
      action: allow
    - name: zero-host-deny      # 3
      from: [zero-host]
      action: deny
    - name: top-host-deny       # 4
      from: [top-host]
      action: deny
    - name: icmp-from-all4      # 5
      from: [everything4]
      ports: [{protocol: icmp}]
      action: allow
    - name: icmp6-from-all6     # 6
      from: [everything6]
      ports: [{protocol: icmpv6}]
      action: allow
)";

// SYN limiter: 1 SYN per second per source, bursts of 3.
constexpr std::string_view kSynPolicy = R"(apiVersion: edgeward.io/v1
kind: Policy
metadata: {name: fixtures-syn}
spec:
  defaultAction: deny
  identities:
    clients: [10.7.0.0/16, "fd07::/64"]
  ingress:
    - name: web                 # 0
      from: [clients]
      ports: [{protocol: tcp, port: 80}]
      action: allow
  egress:
    - name: web-out             # 1
      to: [any]
      ports: [{protocol: tcp, port: 80}]
      action: allow
  synFlood: {perSourcePps: 1, burst: 3}
)";

// Connection tracking. Local host: 192.168.0.2 / 2001:db8:1::2.
constexpr std::string_view kConntrackPolicy = R"(apiVersion: edgeward.io/v1
kind: Policy
metadata: {name: fixtures-conntrack}
spec:
  defaultAction: deny
  identities:
    server: [203.0.113.10, "2001:db8:cc::10"]
    resolver: [203.0.113.53, "2001:db8:cc::53"]
  ingress:
    - name: ssh-in              # 0
      from: [any]
      ports: [{protocol: tcp, port: 22}]
      action: allow
  egress:
    - name: web-out             # 1
      to: [server]
      ports: [{protocol: tcp, port: 80}]
      action: allow
    - name: dns-out             # 2
      to: [resolver]
      ports: [{protocol: udp, port: 53}]
      action: allow
    - name: ping-out            # 3
      to: [any]
      ports: [{protocol: icmp}, {protocol: icmpv6}]
      action: allow
)";

// Fragments: judged with unknown ports.
constexpr std::string_view kFragmentsPolicy = R"(apiVersion: edgeward.io/v1
kind: Policy
metadata: {name: fixtures-fragments}
spec:
  defaultAction: deny
  identities:
    web-client: [10.8.0.1, "fd08::1"]
    trusted: [10.8.0.2, "fd08::2"]
    banned: [10.8.0.3, "fd08::3"]
  ingress:
    - name: web                 # 0
      from: [web-client]
      ports: [{protocol: tcp, port: 80}]
      action: allow
    - name: trusted-all         # 1
      from: [trusted]
      action: allow
    - name: public-https        # 2
      from: [any]
      ports: [{protocol: tcp, port: 443}]
      action: allow
    - name: banned-all          # 3
      from: [banned]
      action: deny
    - name: client-udp          # 4: udp without port: every udp port
      from: [web-client]
      ports: [{protocol: udp}]
      action: allow
)";

std::string_view policyName(Pol p) {
  switch (p) {
    case Pol::Main:
      return "fixtures-main";
    case Pol::Overlap:
      return "fixtures-overlap";
    case Pol::Attribution:
      return "fixtures-attribution";
    case Pol::Edges:
      return "fixtures-edges";
    case Pol::Syn:
      return "fixtures-syn";
    case Pol::Conntrack:
      return "fixtures-conntrack";
    case Pol::Fragments:
      return "fixtures-fragments";
  }
  return {};
}

std::string_view policyText(Pol p) {
  switch (p) {
    case Pol::Main:
      return kMainPolicy;
    case Pol::Overlap:
      return kOverlapPolicy;
    case Pol::Attribution:
      return kAttributionPolicy;
    case Pol::Edges:
      return kEdgesPolicy;
    case Pol::Syn:
      return kSynPolicy;
    case Pol::Conntrack:
      return kConntrackPolicy;
    case Pol::Fragments:
      return kFragmentsPolicy;
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// Expected verdicts.

struct Expect {
  bool pass = false;
  uint8_t reason = EW_R_DEFAULT_DENY;
  std::string_view rule;  // empty: no rule reported
};

constexpr Expect allowedBy(std::string_view rule) { return {true, EW_R_RULE_ALLOW, rule}; }
constexpr Expect deniedBy(std::string_view rule) { return {false, EW_R_RULE_DENY, rule}; }
constexpr Expect establishedVia(std::string_view rule) { return {true, EW_R_CT_ESTABLISHED, rule}; }
constexpr Expect kDefaultDeny{false, EW_R_DEFAULT_DENY, {}};
constexpr Expect kDefaultAllow{true, EW_R_DEFAULT_ALLOW, {}};
constexpr Expect kEssential{true, EW_R_HOST_ESSENTIAL, {}};
constexpr Expect kTruncated{false, EW_R_TRUNCATED, {}};
constexpr Expect kMalformed{false, EW_R_MALFORMED, {}};
constexpr Expect kFragment{false, EW_R_FRAGMENT, {}};
constexpr Expect kNonIp{false, EW_R_NON_IP, {}};
constexpr Expect kIpv6Ext{false, EW_R_IPV6_EXT, {}};
constexpr Expect kSynFlood{false, EW_R_SYN_FLOOD, {}};

std::string show(bool pass, uint8_t reason, std::string_view rule) {
  return fmt::format("{} reason={} rule={}", pass ? "pass" : "drop", policy::reasonName(reason),
                     rule.empty() ? "none" : rule);
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

struct Step {
  Hook hook;
  Bytes frame;
  Expect expect;
  std::string what;  // shown on failure
};

struct Fixture {
  std::string name;  // the test name: letters, digits, underscores
  Pol policy;
  std::vector<Step> steps;
  // The kernel's BPF_PROG_TEST_RUN for skb programs refuses frames whose IPv4/IPv6 ethertype
  // is followed by less than a whole IP header (EINVAL), so those run on XDP only.
  bool xdpOnly = false;
};

void PrintTo(const Fixture& f, std::ostream* os) { *os << f.name; }

void put16(Bytes& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}

uint16_t get16(const Bytes& b, size_t at) {
  return static_cast<uint16_t>((b[at] << 8) | b[at + 1]);
}

pk::PacketSpec tcp4(std::string src, std::string dst, uint16_t dport, uint8_t flags = kSyn,
                    uint16_t sport = 40000) {
  return {.src = std::move(src),
          .dst = std::move(dst),
          .l4 = pk::L4::Tcp,
          .sport = sport,
          .dport = dport,
          .tcpFlags = flags};
}

pk::PacketSpec tcp6(std::string src, std::string dst, uint16_t dport, uint8_t flags = kSyn,
                    uint16_t sport = 40000) {
  auto s = tcp4(std::move(src), std::move(dst), dport, flags, sport);
  s.v6 = true;
  return s;
}

pk::PacketSpec udp4(std::string src, std::string dst, uint16_t dport, uint16_t sport = 40000) {
  return {.src = std::move(src),
          .dst = std::move(dst),
          .l4 = pk::L4::Udp,
          .sport = sport,
          .dport = dport};
}

pk::PacketSpec udp6(std::string src, std::string dst, uint16_t dport, uint16_t sport = 40000) {
  auto s = udp4(std::move(src), std::move(dst), dport, sport);
  s.v6 = true;
  return s;
}

pk::PacketSpec icmp4(std::string src, std::string dst, uint8_t type = 8, uint16_t id = 1) {
  return {.src = std::move(src),
          .dst = std::move(dst),
          .l4 = pk::L4::Icmp,
          .icmpType = type,
          .icmpId = id};
}

pk::PacketSpec icmp6(std::string src, std::string dst, uint8_t type = 128, uint16_t id = 1,
                     uint8_t hopLimit = 64) {
  return {.v6 = true,
          .src = std::move(src),
          .dst = std::move(dst),
          .l4 = pk::L4::Icmpv6,
          .icmpType = type,
          .icmpId = id,
          .ttl = hopLimit};
}

pk::PacketSpec proto4(std::string src, std::string dst, uint8_t proto) {
  return {.src = std::move(src),
          .dst = std::move(dst),
          .l4 = pk::L4::None,
          .ipProto = proto,
          .payload = 24};
}

pk::PacketSpec proto6(std::string src, std::string dst, uint8_t proto) {
  auto s = proto4(std::move(src), std::move(dst), proto);
  s.v6 = true;
  return s;
}

template <typename... Mods>
pk::PacketSpec with(pk::PacketSpec s, Mods&&... mods) {
  (mods(s), ...);
  return s;
}

Bytes frame(const pk::PacketSpec& s) { return pk::buildPacket(s); }

// A built frame changed by `edit(bytes, l3 offset, l4 offset)`: the way to corrupt headers.
Bytes edited(const pk::PacketSpec& s, const std::function<void(Bytes&, size_t, size_t)>& edit) {
  Bytes b = pk::buildPacket(s);
  edit(b, pk::l3Offset(s), pk::l4Offset(s));
  return b;
}

// Cuts an IPv4 packet to `l4Bytes` of transport header, keeping the length fields consistent.
Bytes cutIpv4Transport(const pk::PacketSpec& s, size_t l4Bytes) {
  return edited(s, [l4Bytes](Bytes& b, size_t l3, size_t l4) {
    b.resize(l4 + l4Bytes);
    put16(b, l3 + 2, static_cast<uint16_t>(b.size() - l3));
  });
}

Bytes cutIpv6Transport(const pk::PacketSpec& s, size_t l4Bytes) {
  return edited(s, [l4Bytes](Bytes& b, size_t l3, size_t l4) {
    b.resize(l4 + l4Bytes);
    put16(b, l3 + 4, static_cast<uint16_t>(b.size() - l3 - 40));
  });
}

// An Ethernet frame of `type` (after optional 802.1Q tags) with `payload` bytes.
Bytes ethernet(uint16_t type, size_t payload, std::vector<uint16_t> tags = {}) {
  Bytes b(14 + 4 * tags.size() + payload, 0);
  for (size_t i = 0; i < 6; i++) b[i] = 0xff;
  b[6] = 0x02;
  b[11] = 0x01;
  size_t off = 12;
  for (uint16_t tag : tags) {
    put16(b, off, 0x8100);
    put16(b, off + 2, tag);
    off += 4;
  }
  put16(b, off, type);
  return b;
}

// An ARP request (who has 192.168.50.2 tell 192.168.50.1).
Bytes arpRequest(std::vector<uint16_t> tags = {}) {
  Bytes b = ethernet(0x0806, 28, tags);
  size_t a = b.size() - 28;
  put16(b, a, 1);  // Ethernet
  put16(b, a + 2, 0x0800);
  b[a + 4] = 6;
  b[a + 5] = 4;
  put16(b, a + 6, 1);  // request
  const uint8_t spa[4] = {192, 168, 50, 1}, tpa[4] = {192, 168, 50, 2};
  std::copy(spa, spa + 4, b.begin() + a + 14);
  std::copy(tpa, tpa + 4, b.begin() + a + 24);
  return b;
}

// An IPv6 TCP packet whose hop-by-hop header is 1024 bytes long, so its TCP header lies past
// offset 1023. The first bytes of the hop-by-hop header are laid out so that a parser that
// wrapped the offset around would read "TCP to port 80" instead of the real `dport`.
Bytes oversizedHopByHop(std::string src, std::string dst, uint16_t dport) {
  auto s = tcp6(std::move(src), std::move(dst), dport);
  s.v6Ext = {0};
  Bytes b = pk::buildPacket(s);
  const size_t hbh = pk::l3Offset(s) + 40;
  b.insert(b.begin() + static_cast<std::ptrdiff_t>(hbh + 8), 1016, 0);  // Pad1 options
  b[hbh + 1] = 127;                                                     // (127 + 1) * 8 bytes
  b[hbh + 2] = 0x00;
  b[hbh + 3] = 80;     // "destination port" 80 at hbh + 2
  b[hbh + 12] = 0x50;  // "data offset" 5
  b[hbh + 13] = kSyn;
  put16(b, pk::l3Offset(s) + 4, static_cast<uint16_t>(b.size() - pk::l3Offset(s) - 40));
  return b;
}

Step step(Hook h, Bytes f, Expect e, std::string what = {}) {
  return {h, std::move(f), e, std::move(what)};
}

// Addresses of the main policy.
constexpr const char* kLocal4 = "192.168.50.2";
constexpr const char* kLocal6 = "fd50::2";
constexpr const char* kClient4 = "10.1.0.5";
constexpr const char* kClient6 = "fd00:1::5";
constexpr const char* kLab4 = "10.1.7.7";
constexpr const char* kLab6 = "fd00:1::77";
constexpr const char* kTunnel4 = "10.9.0.1";
constexpr const char* kTunnel6 = "fd00:9::1";
constexpr const char* kOutsider4 = "198.51.100.7";
constexpr const char* kOutsider6 = "2001:db8:77::7";

std::vector<Fixture> mainFixtures() {
  const Pol P = Pol::Main;
  std::vector<Fixture> f;
  auto one = [&](std::string name, Hook h, Bytes fr, Expect e) {
    f.push_back({std::move(name), P, {step(h, std::move(fr), e)}});
  };

  // Protocols, IPv4 and IPv6.
  one("Main_Tcp4ClientPort80_AllowedByWeb", kXdp, frame(tcp4(kClient4, kLocal4, 80)),
      allowedBy("web"));
  one("Main_Tcp6ClientPort80_AllowedByWeb", kXdp, frame(tcp6(kClient6, kLocal6, 80)),
      allowedBy("web"));
  one("Main_Tcp4ClientPort8000RangeStart_AllowedByWeb", kXdp, frame(tcp4(kClient4, kLocal4, 8000)),
      allowedBy("web"));
  one("Main_Tcp4ClientPort8080RangeEnd_AllowedByWeb", kXdp, frame(tcp4(kClient4, kLocal4, 8080)),
      allowedBy("web"));
  one("Main_Tcp4ClientPort8081AfterRange_DefaultDeny", kXdp, frame(tcp4(kClient4, kLocal4, 8081)),
      kDefaultDeny);
  one("Main_Tcp4ClientPort22_DefaultDeny", kXdp, frame(tcp4(kClient4, kLocal4, 22)), kDefaultDeny);
  one("Main_Tcp4LabHostPort80_DefaultDeny", kXdp, frame(tcp4(kLab4, kLocal4, 80)), kDefaultDeny);
  one("Main_Tcp4ClientAddressAsDestination_DefaultDeny", kXdp,
      frame(tcp4(kOutsider4, kClient4, 80)), kDefaultDeny);
  one("Main_Udp4LabPort53_AllowedByDns", kXdp, frame(udp4(kLab4, kLocal4, 53)), allowedBy("dns"));
  one("Main_Udp6LabPort53_AllowedByDns", kXdp, frame(udp6(kLab6, kLocal6, 53)), allowedBy("dns"));
  one("Main_Udp4ClientNestedInLabPort53_AllowedByDns", kXdp, frame(udp4(kClient4, kLocal4, 53)),
      allowedBy("dns"));
  one("Main_Udp4LabPort54_DefaultDeny", kXdp, frame(udp4(kLab4, kLocal4, 54)), kDefaultDeny);
  one("Main_Udp4LabPort52_DefaultDeny", kXdp, frame(udp4(kLab4, kLocal4, 52)), kDefaultDeny);
  one("Main_Tcp4LabPort53UdpRuleOnly_DefaultDeny", kXdp, frame(tcp4(kLab4, kLocal4, 53)),
      kDefaultDeny);
  one("Main_Udp4OutsiderPort53_DefaultDeny", kXdp, frame(udp4(kOutsider4, kLocal4, 53)),
      kDefaultDeny);
  one("Main_Icmp4LabEchoRequest_AllowedByPing", kXdp, frame(icmp4(kLab4, kLocal4)),
      allowedBy("ping"));
  one("Main_Icmp6LabEchoRequest_AllowedByPing", kXdp, frame(icmp6(kLab6, kLocal6)),
      allowedBy("ping"));
  one("Main_Icmp4LabDestUnreachable_AllowedByPing", kXdp, frame(icmp4(kLab4, kLocal4, 3)),
      allowedBy("ping"));
  one("Main_Icmp4OutsiderEcho_DefaultDeny", kXdp, frame(icmp4(kOutsider4, kLocal4)), kDefaultDeny);
  one("Main_Icmp6OutsiderEcho_DefaultDeny", kXdp, frame(icmp6(kOutsider6, kLocal6)), kDefaultDeny);
  one("Main_Gre4Tunnel_AllowedByTunnelAll", kXdp, frame(proto4(kTunnel4, kLocal4, 47)),
      allowedBy("tunnel-all"));
  one("Main_Gre6Tunnel_AllowedByTunnelAll", kXdp, frame(proto6(kTunnel6, kLocal6, 47)),
      allowedBy("tunnel-all"));
  one("Main_Sctp4Tunnel_AllowedByTunnelAll", kXdp, frame(proto4(kTunnel4, kLocal4, 132)),
      allowedBy("tunnel-all"));
  one("Main_Udp4TunnelPort9_AllowedByTunnelAll", kXdp, frame(udp4(kTunnel4, kLocal4, 9)),
      allowedBy("tunnel-all"));
  one("Main_Gre4LabRulesHavePorts_DefaultDeny", kXdp, frame(proto4(kLab4, kLocal4, 47)),
      kDefaultDeny);
  one("Main_Tcp4AnyPort443_AllowedByPublicHttps", kXdp, frame(tcp4(kOutsider4, kLocal4, 443)),
      allowedBy("public-https"));
  one("Main_Tcp6AnyPort443_AllowedByPublicHttps", kXdp, frame(tcp6(kOutsider6, kLocal6, 443)),
      allowedBy("public-https"));
  one("Main_Tcp4ClientPort443AnyRuleCombined_AllowedByPublicHttps", kXdp,
      frame(tcp4(kClient4, kLocal4, 443)), allowedBy("public-https"));
  one("Main_Tcp4TunnelPort443FirstAllowInFileOrder_AllowedByTunnelAll", kXdp,
      frame(tcp4(kTunnel4, kLocal4, 443)), allowedBy("tunnel-all"));

  // Egress matches the destination.
  one("Main_EgressUdp4ToAnyPort53_AllowedByDnsOut", kTcOut, frame(udp4(kLocal4, "8.8.8.8", 53)),
      allowedBy("dns-out"));
  one("Main_EgressUdp6ToAnyPort53_AllowedByDnsOut", kTcOut,
      frame(udp6(kLocal6, "2001:4860:4860::8888", 53)), allowedBy("dns-out"));
  one("Main_EgressTcp4ToLab443_AllowedByLabHttpsOut", kTcOut, frame(tcp4(kLocal4, kLab4, 443)),
      allowedBy("lab-https-out"));
  one("Main_EgressTcp6ToLab443_AllowedByLabHttpsOut", kTcOut, frame(tcp6(kLocal6, kLab6, 443)),
      allowedBy("lab-https-out"));
  one("Main_EgressTcp4FromLabToOutsider443_DefaultDeny", kTcOut,
      frame(tcp4(kLab4, kOutsider4, 443)), kDefaultDeny);
  one("Main_EgressTcp4ToClientPort80IngressRuleOnly_DefaultDeny", kTcOut,
      frame(tcp4(kLocal4, kClient4, 80)), kDefaultDeny);
  one("Main_EgressUdp4Port54_DefaultDeny", kTcOut, frame(udp4(kLocal4, "8.8.8.8", 54)),
      kDefaultDeny);

  // VLAN tags: 802.1Q, and 802.1ad outer + 802.1Q inner.
  auto tagged = [](std::vector<uint16_t> tags, std::vector<uint16_t> tpids) {
    return [tags, tpids](pk::PacketSpec& s) {
      s.vlans = tags;
      s.vlanTpids = tpids;
    };
  };
  one("Main_VlanTcp4Single8021Q_AllowedByWeb", kXdp,
      frame(with(tcp4(kClient4, kLocal4, 80), tagged({100}, {0x8100}))), allowedBy("web"));
  one("Main_VlanTcp6Single8021Q_AllowedByWeb", kXdp,
      frame(with(tcp6(kClient6, kLocal6, 80), tagged({100}, {0x8100}))), allowedBy("web"));
  one("Main_VlanTcp4QinQ88a8_AllowedByWeb", kXdp,
      frame(with(tcp4(kClient4, kLocal4, 80), tagged({10, 100}, {0x88a8, 0x8100}))),
      allowedBy("web"));
  one("Main_VlanTcp6QinQ88a8_AllowedByWeb", kXdp,
      frame(with(tcp6(kClient6, kLocal6, 80), tagged({10, 100}, {0x88a8, 0x8100}))),
      allowedBy("web"));
  one("Main_VlanTcp4Double8021Q_AllowedByWeb", kXdp,
      frame(with(tcp4(kClient4, kLocal4, 80), tagged({10, 100}, {0x8100, 0x8100}))),
      allowedBy("web"));
  one("Main_VlanTcp4QinQPort22_DefaultDeny", kXdp,
      frame(with(tcp4(kClient4, kLocal4, 22), tagged({10, 100}, {0x88a8, 0x8100}))), kDefaultDeny);
  one("Main_VlanUdp4QinQLabPort53_AllowedByDns", kXdp,
      frame(with(udp4(kLab4, kLocal4, 53), tagged({10, 100}, {0x88a8, 0x8100}))), allowedBy("dns"));
  one("Main_VlanIcmp4Single8021QOutsider_DefaultDeny", kXdp,
      frame(with(icmp4(kOutsider4, kLocal4), tagged({7}, {0x8100}))), kDefaultDeny);

  // IPv4 options move the transport header; Ethernet padding follows the IP packet.
  auto options = [](uint8_t words) {
    return [words](pk::PacketSpec& s) { s.ipv4OptionWords = words; };
  };
  one("Main_Ipv4Options10WordsTcp4Client_AllowedByWeb", kXdp,
      frame(with(tcp4(kClient4, kLocal4, 80), options(10))), allowedBy("web"));
  one("Main_Ipv4Options1WordTcp4ClientPort22_DefaultDeny", kXdp,
      frame(with(tcp4(kClient4, kLocal4, 22), options(1))), kDefaultDeny);
  one("Main_Ipv4Options3WordsUdp4Lab_AllowedByDns", kXdp,
      frame(with(udp4(kLab4, kLocal4, 53), options(3))), allowedBy("dns"));
  one("Main_EthernetPaddingAfterUdp4_AllowedByDns", kXdp,
      edited(udp4(kLab4, kLocal4, 53), [](Bytes& b, size_t, size_t) { b.resize(60, 0); }),
      allowedBy("dns"));

  // Truncated and malformed headers. Every base packet would be allowed if it were whole.
  const auto web4 = tcp4(kClient4, kLocal4, 80);
  const auto web6 = tcp6(kClient6, kLocal6, 80);
  const auto dns4 = udp4(kLab4, kLocal4, 53);
  one("Main_TruncatedEthernetOnlyIpv4Type_Truncated", kXdp, ethernet(0x0800, 0), kTruncated);
  f.back().xdpOnly = true;
  one("Main_TruncatedEthernetOnlyIpv6Type_Truncated", kXdp, ethernet(0x86dd, 0), kTruncated);
  f.back().xdpOnly = true;
  one("Main_TruncatedVlanTagCut_Truncated", kXdp, ethernet(0x8100, 2), kTruncated);
  one("Main_TruncatedIpv4HeaderCut_Truncated", kXdp,
      edited(web4, [](Bytes& b, size_t l3, size_t) { b.resize(l3 + 12); }), kTruncated);
  f.back().xdpOnly = true;
  one("Main_TruncatedIpv6HeaderCut_Truncated", kXdp,
      edited(web6, [](Bytes& b, size_t l3, size_t) { b.resize(l3 + 30); }), kTruncated);
  f.back().xdpOnly = true;
  one("Main_TruncatedVlanIpv4HeaderCut_Truncated", kXdp,
      edited(with(web4, [](pk::PacketSpec& s) { s.vlans = {5}; }),
             [](Bytes& b, size_t l3, size_t) { b.resize(l3 + 19); }),
      kTruncated);
  one("Main_TruncatedIpv4TotalLengthBeyondFrame_Truncated", kXdp,
      edited(web4, [](Bytes& b, size_t l3, size_t) { put16(b, l3 + 2, get16(b, l3 + 2) + 1); }),
      kTruncated);
  one("Main_TruncatedTcpHeaderCutByTotalLength_Truncated", kXdp, cutIpv4Transport(web4, 12),
      kTruncated);
  one("Main_TruncatedTcpHeaderCutByFrameEnd_Truncated", kXdp,
      edited(web4, [](Bytes& b, size_t, size_t l4) { b.resize(l4 + 12); }), kTruncated);
  one("Main_TruncatedTcpDataOffsetBeyondPacket_Truncated", kXdp,
      edited(web4, [](Bytes& b, size_t, size_t l4) { b[l4 + 12] = 0xf0; }), kTruncated);
  one("Main_TruncatedUdpHeaderCut_Truncated", kXdp, cutIpv4Transport(dns4, 4), kTruncated);
  one("Main_TruncatedIcmpEchoCutAfterType_Truncated", kXdp,
      cutIpv4Transport(icmp4(kLab4, kLocal4), 2), kTruncated);
  one("Main_TruncatedIcmpEchoCutBeforeId_Truncated", kXdp,
      cutIpv4Transport(icmp4(kLab4, kLocal4), 5), kTruncated);
  one("Main_TruncatedIpv6PayloadLengthBeyondFrame_Truncated", kXdp,
      edited(web6, [](Bytes& b, size_t l3, size_t) { put16(b, l3 + 4, get16(b, l3 + 4) + 1); }),
      kTruncated);
  one("Main_TruncatedTcp6HeaderCut_Truncated", kXdp, cutIpv6Transport(web6, 10), kTruncated);
  one("Main_TruncatedUdp6HeaderCut_Truncated", kXdp, cutIpv6Transport(udp6(kLab6, kLocal6, 53), 6),
      kTruncated);
  one("Main_MalformedIpv4IhlBelow5_Malformed", kXdp,
      edited(web4, [](Bytes& b, size_t l3, size_t) { b[l3] = 0x44; }), kMalformed);
  one("Main_MalformedIpv4VersionNot4_Malformed", kXdp,
      edited(web4, [](Bytes& b, size_t l3, size_t) { b[l3] = 0x65; }), kMalformed);
  one("Main_MalformedIpv4TotalLengthBelowIhl_Malformed", kXdp,
      edited(web4, [](Bytes& b, size_t l3, size_t) { put16(b, l3 + 2, 19); }), kMalformed);
  one("Main_MalformedIpv6VersionNot6_Malformed", kXdp,
      edited(web6, [](Bytes& b, size_t l3, size_t) { b[l3] = 0x40; }), kMalformed);
  one("Main_MalformedTcpDataOffsetBelow5_Malformed", kXdp,
      edited(web4, [](Bytes& b, size_t, size_t l4) { b[l4 + 12] = 0x40; }), kMalformed);
  one("Main_MalformedTcp6DataOffset0_Malformed", kXdp,
      edited(web6, [](Bytes& b, size_t, size_t l4) { b[l4 + 12] = 0x00; }), kMalformed);
  one("Main_MalformedUdpLengthBelow8_Malformed", kXdp,
      edited(dns4, [](Bytes& b, size_t, size_t l4) { put16(b, l4 + 4, 7); }), kMalformed);
  one("Main_MalformedUdpLengthBeyondPacket_Malformed", kXdp,
      edited(dns4, [](Bytes& b, size_t, size_t l4) { put16(b, l4 + 4, 9); }), kMalformed);

  // Not IP: ARP and IPv6 ND/MLD pass as host-essential; other ethertypes are non-ip.
  one("Main_Icmp4LabLaterFragmentIcmpHasNoPorts_AllowedByPing", kXdp,
      frame(with(icmp4(kLab4, kLocal4), [](pk::PacketSpec& s) { s.fragOffset = 100; })),
      allowedBy("ping"));
  one("Main_ArpRequest_HostEssential", kXdp, arpRequest(), kEssential);
  one("Main_ArpRequestIn8021Q_HostEssential", kXdp, arpRequest({5}), kEssential);
  one("Main_LldpEthertype88cc_NonIp", kXdp, ethernet(0x88cc, 46), kNonIp);
  one("Main_UnknownEthertypeIn8021Q_NonIp", kXdp, ethernet(0x9000, 46, {5}), kNonIp);
  auto nd = [](uint8_t type, uint8_t hopLimit, std::string src = "fe80::1") {
    auto s = icmp6(std::move(src), "ff02::1:ff00:2", type, 0, hopLimit);
    s.payload = 16;
    return frame(s);
  };
  one("Main_NdRouterSolicitation133HopLimit255_HostEssential", kXdp, nd(133, 255), kEssential);
  one("Main_NdRouterAdvert134HopLimit255_HostEssential", kXdp, nd(134, 255), kEssential);
  one("Main_NdNeighborSolicit135HopLimit255_HostEssential", kXdp, nd(135, 255), kEssential);
  one("Main_NdNeighborAdvert136HopLimit255_HostEssential", kXdp, nd(136, 255), kEssential);
  one("Main_NdNeighborSolicitHopLimit64_DefaultDeny", kXdp, nd(135, 64), kDefaultDeny);
  one("Main_NdNeighborSolicitHopLimit64FromLab_AllowedByPing", kXdp, nd(135, 64, kLab6),
      allowedBy("ping"));
  one("Main_NdRedirect137HopLimit255_DefaultDeny", kXdp, nd(137, 255), kDefaultDeny);
  one("Main_MldQuery130HopLimit1_HostEssential", kXdp, nd(130, 1), kEssential);
  one("Main_MldReport131HopLimit1_HostEssential", kXdp, nd(131, 1), kEssential);
  one("Main_MldDone132HopLimit1_HostEssential", kXdp, nd(132, 1), kEssential);
  one("Main_MldV2Report143HopLimit1_HostEssential", kXdp, nd(143, 1), kEssential);
  one("Main_MldV2Report143HopLimit64_DefaultDeny", kXdp, nd(143, 64), kDefaultDeny);
  one("Main_MldV2Report143WithHopByHop_HostEssential", kXdp,
      frame(
          with(icmp6("fe80::1", "ff02::16", 143, 0, 1), [](pk::PacketSpec& s) { s.v6Ext = {0}; })),
      kEssential);

  // IPv6 extension headers before the transport header.
  auto ext = [](std::vector<uint8_t> chain) {
    return [chain](pk::PacketSpec& s) { s.v6Ext = chain; };
  };
  one("Main_Ext6HopByHop_AllowedByWeb", kXdp, frame(with(web6, ext({0}))), allowedBy("web"));
  one("Main_Ext6Routing_AllowedByWeb", kXdp, frame(with(web6, ext({43}))), allowedBy("web"));
  one("Main_Ext6DestOpts_AllowedByWeb", kXdp, frame(with(web6, ext({60}))), allowedBy("web"));
  one("Main_Ext6AuthHeader_AllowedByWeb", kXdp, frame(with(web6, ext({51}))), allowedBy("web"));
  one("Main_Ext6ChainHbhRoutingDest_AllowedByWeb", kXdp, frame(with(web6, ext({0, 43, 60}))),
      allowedBy("web"));
  one("Main_Ext6ChainHbhRoutingDestPort22_DefaultDeny", kXdp,
      frame(with(tcp6(kClient6, kLocal6, 22), ext({0, 43, 60}))), kDefaultDeny);
  one("Main_Ext6ChainUdpLab_AllowedByDns", kXdp,
      frame(with(udp6(kLab6, kLocal6, 53), ext({0, 60}))), allowedBy("dns"));
  one("Main_Ext6ChainOf8_AllowedByWeb", kXdp,
      frame(with(web6, ext({0, 43, 60, 60, 60, 60, 60, 60}))), allowedBy("web"));
  one("Main_Ext6ChainOf8ThenFragmentHeader_Ipv6ExtHeaders", kXdp,
      frame(with(web6, ext({0, 43, 60, 60, 60, 60, 60, 60, 44}))), kIpv6Ext);
  one("Main_Ext6ChainOf9_Ipv6ExtHeaders", kXdp,
      frame(with(web6, ext({0, 43, 60, 60, 60, 60, 60, 60, 60}))), kIpv6Ext);
  one("Main_Ext6HeaderBeyondPayloadLength_Truncated", kXdp,
      edited(with(web6, ext({0})), [](Bytes& b, size_t l3, size_t) { b[l3 + 41] = 4; }),
      kTruncated);
  one("Main_Ext6HopByHopCutByPayloadLength_Truncated", kXdp,
      edited(with(web6, ext({60})),
             [](Bytes& b, size_t l3, size_t) {
               b.resize(l3 + 44);
               put16(b, l3 + 4, 4);
             }),
      kTruncated);
  one("Main_Ext6HeadersBeyond1KiBNotMisread_Truncated", kXdp,
      oversizedHopByHop(kClient6, kLocal6, 22), kTruncated);
  return f;
}

std::vector<Fixture> overlapFixtures() {
  const Pol P = Pol::Overlap;
  std::vector<Fixture> f;
  auto in = [&](std::string name, pk::PacketSpec s, Expect e) {
    f.push_back({std::move(name), P, {step(kXdp, frame(s), e)}});
  };
  const char* me = "192.168.9.9";
  const char* me6 = "fd09::9";
  in("Overlap_CorpPort22_AllowedByCorpSsh", tcp4("10.1.1.1", me, 22), allowedBy("corp-ssh"));
  in("Overlap_CorpPort80_DefaultDeny", tcp4("10.1.1.1", me, 80), kDefaultDeny);
  in("Overlap_CorpFirstAddress_AllowedByCorpSsh", tcp4("10.0.0.0", me, 22), allowedBy("corp-ssh"));
  in("Overlap_CorpLastAddress_AllowedByCorpSsh", tcp4("10.255.255.255", me, 22),
     allowedBy("corp-ssh"));
  in("Overlap_BelowCorp_DefaultDeny", tcp4("9.255.255.255", me, 22), kDefaultDeny);
  in("Overlap_AboveCorp_DefaultDeny", tcp4("11.0.0.0", me, 22), kDefaultDeny);
  in("Overlap_DcPort80_AllowedByDcWeb", tcp4("10.20.1.1", me, 80), allowedBy("dc-web"));
  in("Overlap_DcInheritsCorpPort22_AllowedByCorpSsh", tcp4("10.20.1.1", me, 22),
     allowedBy("corp-ssh"));
  in("Overlap_DcNestedSlash24First_AllowedByDcWeb", tcp4("10.20.30.0", me, 80),
     allowedBy("dc-web"));
  in("Overlap_DcNestedSlash24Last_AllowedByDcWeb", tcp4("10.20.30.255", me, 80),
     allowedBy("dc-web"));
  in("Overlap_DcAfterNestedSlash24_AllowedByDcWeb", tcp4("10.20.31.0", me, 80),
     allowedBy("dc-web"));
  in("Overlap_DcLastAddress_AllowedByDcWeb", tcp4("10.20.255.255", me, 80), allowedBy("dc-web"));
  in("Overlap_JustBelowDc_DefaultDeny", tcp4("10.19.255.255", me, 80), kDefaultDeny);
  in("Overlap_JustAboveDc_DefaultDeny", tcp4("10.21.0.0", me, 80), kDefaultDeny);
  in("Overlap_DbPort80DenyOverDcAllow_DeniedByDbNoWeb", tcp4("10.20.30.40", me, 80),
     deniedBy("db-no-web"));
  in("Overlap_DbPort5432_AllowedByDbPostgres", tcp4("10.20.30.40", me, 5432),
     allowedBy("db-postgres"));
  in("Overlap_DbInheritsCorpPort22_AllowedByCorpSsh", tcp4("10.20.30.40", me, 22),
     allowedBy("corp-ssh"));
  in("Overlap_BelowDbPort80_AllowedByDcWeb", tcp4("10.20.30.39", me, 80), allowedBy("dc-web"));
  in("Overlap_AboveDbPort80_AllowedByDcWeb", tcp4("10.20.30.41", me, 80), allowedBy("dc-web"));
  in("Overlap_AboveDbPort5432_DefaultDeny", tcp4("10.20.30.41", me, 5432), kDefaultDeny);
  in("Overlap_Corp6Port80_AllowedByCorp6Web", tcp6("2001:db8:5::1", me6, 80),
     allowedBy("corp6-web"));
  in("Overlap_Host6InsideCorp6_DeniedByHost6Deny", tcp6("2001:db8:0:1::10", me6, 80),
     deniedBy("host6-deny"));
  in("Overlap_Host6Udp_DeniedByHost6Deny", udp6("2001:db8:0:1::10", me6, 9),
     deniedBy("host6-deny"));
  in("Overlap_NextToHost6_AllowedByCorp6Web", tcp6("2001:db8:0:1::11", me6, 80),
     allowedBy("corp6-web"));
  in("Overlap_BeforeHost6_AllowedByCorp6Web", tcp6("2001:db8:0:1::f", me6, 80),
     allowedBy("corp6-web"));
  in("Overlap_Corp6LastAddress_AllowedByCorp6Web",
     tcp6("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", me6, 80), allowedBy("corp6-web"));
  in("Overlap_AboveCorp6_DefaultDeny", tcp6("2001:db9::", me6, 80), kDefaultDeny);
  in("Overlap_BelowCorp6_DefaultDeny", tcp6("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", me6, 80),
     kDefaultDeny);
  return f;
}

std::vector<Fixture> attributionFixtures() {
  const Pol P = Pol::Attribution;
  std::vector<Fixture> f;
  auto one = [&](std::string name, Hook h, Bytes fr, Expect e) {
    f.push_back({std::move(name), P, {step(h, std::move(fr), e)}});
  };
  const char* me = "192.168.2.2";
  const char* a = "192.168.1.5";
  const char* b = "192.168.1.130";
  const char* c = "192.168.1.200";
  const char* d = "192.168.1.10";
  const char* out = "10.0.0.1";
  one("Attr_AOnlyAllowMatches_AllowedByAllowAWeb", kXdp, frame(tcp4(a, me, 80)),
      allowedBy("allow-a-web"));
  one("Attr_A6SecondPeerOfRule_AllowedByAllowAWeb", kXdp,
      frame(tcp6("2001:db8:a::1", "fd02::2", 80)), allowedBy("allow-a-web"));
  one("Attr_APort81AnyDeny_DeniedByDenyAny81", kXdp, frame(tcp4(a, me, 81)),
      deniedBy("deny-any-81"));
  one("Attr_BPort80DenyOverEarlierAllow_DeniedByDenyBWeb", kXdp, frame(tcp4(b, me, 80)),
      deniedBy("deny-b-web"));
  one("Attr_BPort90RangeEnd_DeniedByDenyBWeb", kXdp, frame(tcp4(b, me, 90)),
      deniedBy("deny-b-web"));
  one("Attr_BPort91_DefaultAllow", kXdp, frame(tcp4(b, me, 91)), kDefaultAllow);
  one("Attr_BPort81IdentityDenyFirst_DeniedByDenyBWeb", kXdp, frame(tcp4(b, me, 81)),
      deniedBy("deny-b-web"));
  one("Attr_DPort81AnyDenyFirst_DeniedByDenyAny81", kXdp, frame(tcp4(d, me, 81)),
      deniedBy("deny-any-81"));
  one("Attr_DPort22_DeniedByDenyDAll", kXdp, frame(tcp4(d, me, 22)), deniedBy("deny-d-all"));
  one("Attr_DPort80DenyOverAllow_DeniedByDenyDAll", kXdp, frame(tcp4(d, me, 80)),
      deniedBy("deny-d-all"));
  one("Attr_CPort85ThreeDenies_DeniedByDenyBWeb", kXdp, frame(tcp4(c, me, 85)),
      deniedBy("deny-b-web"));
  one("Attr_CPort22_DeniedByDenyCAll", kXdp, frame(tcp4(c, me, 22)), deniedBy("deny-c-all"));
  one("Attr_CUdp9_DeniedByDenyCAll", kXdp, frame(udp4(c, me, 9)), deniedBy("deny-c-all"));
  one("Attr_CGre_DeniedByDenyCAll", kXdp, frame(proto4(c, me, 47)), deniedBy("deny-c-all"));
  one("Attr_BUdp9DenyOverAnyAllow_DeniedByDenyBUdp9", kXdp, frame(udp4(b, me, 9)),
      deniedBy("deny-b-udp-9"));
  one("Attr_BUdp10_AllowedByAllowAnyUdp", kXdp, frame(udp4(b, me, 10)), allowedBy("allow-any-udp"));
  one("Attr_OutsiderUdp0_AllowedByAllowAnyUdp", kXdp, frame(udp4(out, me, 0)),
      allowedBy("allow-any-udp"));
  one("Attr_OutsiderPort81_DeniedByDenyAny81", kXdp, frame(tcp4(out, me, 81)),
      deniedBy("deny-any-81"));
  one("Attr_OutsiderPort22_DefaultAllow", kXdp, frame(tcp4(out, me, 22)), kDefaultAllow);
  one("Attr_OutsiderGre_DefaultAllow", kXdp, frame(proto4(out, me, 47)), kDefaultAllow);
  one("Attr_OutsiderIcmp6_DefaultAllow", kXdp, frame(icmp6("2001:db8:99::1", "fd02::2")),
      kDefaultAllow);
  one("Attr_EgressToAPort25IdentityDenyFirst_DeniedByDenyASmtp", kTcOut, frame(tcp4(me, a, 25)),
      deniedBy("deny-a-smtp"));
  one("Attr_EgressToOutsiderPort25_DeniedByDenyAnySmtp", kTcOut, frame(tcp4(me, out, 25)),
      deniedBy("deny-any-smtp"));
  one("Attr_EgressFromAToOutsiderPort25_DeniedByDenyAnySmtp", kTcOut, frame(tcp4(a, out, 25)),
      deniedBy("deny-any-smtp"));
  one("Attr_EgressToAPort26_DefaultAllow", kTcOut, frame(tcp4(me, a, 26)), kDefaultAllow);
  one("Attr_EgressToBPort80IngressRulesOnly_DefaultAllow", kTcOut, frame(tcp4(me, b, 80)),
      kDefaultAllow);
  one("Attr_DefaultAllowLldp_DefaultAllow", kXdp, ethernet(0x88cc, 46), kDefaultAllow);
  // A third VLAN tag would hide the IP header from the rules; refused even under allow.
  one("Attr_TripleVlanTcp4_Malformed", kXdp,
      frame(with(tcp4(out, me, 22),
                 [](pk::PacketSpec& s) {
                   s.vlans = {1, 2, 3};
                   s.vlanTpids = {0x88a8, 0x8100, 0x8100};
                 })),
      kMalformed);
  one("Attr_DefaultAllowArp_HostEssential", kXdp, arpRequest(), kEssential);
  one("Attr_DefaultAllowTruncatedStillDropped_Truncated", kXdp,
      edited(tcp4(out, me, 22), [](Bytes& x, size_t l3, size_t) { x.resize(l3 + 10); }),
      kTruncated);
  f.back().xdpOnly = true;
  one("Attr_DefaultAllowTcpFragmentPortDependent_Fragment", kXdp,
      frame(with(tcp4(out, me, 22), [](pk::PacketSpec& s) { s.moreFragments = true; })), kFragment);
  return f;
}

std::vector<Fixture> edgesFixtures() {
  const Pol P = Pol::Edges;
  std::vector<Fixture> f;
  auto in = [&](std::string name, pk::PacketSpec s, Expect e) {
    f.push_back({std::move(name), P, {step(kXdp, frame(s), e)}});
  };
  const char* r = "10.5.1.1";
  const char* r6 = "fd05::1";
  const char* me = "192.168.3.3";
  const char* me6 = "fd03::3";
  in("Edges_Tcp4Port999BelowRange_DefaultDeny", tcp4(r, me, 999), kDefaultDeny);
  in("Edges_Tcp4Port1000RangeFirst_AllowedByRange", tcp4(r, me, 1000),
     allowedBy("range-1000-2000"));
  in("Edges_Tcp4Port1500RangeMiddle_AllowedByRange", tcp4(r, me, 1500),
     allowedBy("range-1000-2000"));
  in("Edges_Tcp4Port2000RangeLast_AllowedByRange", tcp4(r, me, 2000), allowedBy("range-1000-2000"));
  in("Edges_Tcp4Port2001AboveRange_DefaultDeny", tcp4(r, me, 2001), kDefaultDeny);
  in("Edges_Tcp6Port999BelowRange_DefaultDeny", tcp6(r6, me6, 999), kDefaultDeny);
  in("Edges_Tcp6Port1000RangeFirst_AllowedByRange", tcp6(r6, me6, 1000),
     allowedBy("range-1000-2000"));
  in("Edges_Tcp6Port2000RangeLast_AllowedByRange", tcp6(r6, me6, 2000),
     allowedBy("range-1000-2000"));
  in("Edges_Tcp6Port2001AboveRange_DefaultDeny", tcp6(r6, me6, 2001), kDefaultDeny);
  in("Edges_Tcp4Port0_AllowedByPortZero", tcp4(r, me, 0), allowedBy("port-zero"));
  in("Edges_Tcp4Port1_DefaultDeny", tcp4(r, me, 1), kDefaultDeny);
  in("Edges_Udp4Port0TcpRuleOnly_DefaultDeny", udp4(r, me, 0), kDefaultDeny);
  in("Edges_Udp4Port65535_AllowedByPortMax", udp4(r, me, 65535), allowedBy("port-max"));
  in("Edges_Udp6Port65535_AllowedByPortMax", udp6(r6, me6, 65535), allowedBy("port-max"));
  in("Edges_Udp4Port65534_DefaultDeny", udp4(r, me, 65534), kDefaultDeny);
  in("Edges_Tcp4Port65535UdpRuleOnly_DefaultDeny", tcp4(r, me, 65535), kDefaultDeny);
  in("Edges_RangedSlash16First_AllowedByRange", tcp4("10.5.0.0", me, 1000),
     allowedBy("range-1000-2000"));
  in("Edges_RangedSlash16Last_AllowedByRange", tcp4("10.5.255.255", me, 1000),
     allowedBy("range-1000-2000"));
  in("Edges_BelowRangedSlash16_DefaultDeny", tcp4("10.4.255.255", me, 1000), kDefaultDeny);
  in("Edges_AboveRangedSlash16_DefaultDeny", tcp4("10.6.0.0", me, 1000), kDefaultDeny);
  in("Edges_Ranged6Slash16First_AllowedByRange", tcp6("fd05::", me6, 1000),
     allowedBy("range-1000-2000"));
  in("Edges_Ranged6Slash16Last_AllowedByRange",
     tcp6("fd05:ffff:ffff:ffff:ffff:ffff:ffff:ffff", me6, 1000), allowedBy("range-1000-2000"));
  in("Edges_BelowRanged6Slash16_DefaultDeny",
     tcp6("fd04:ffff:ffff:ffff:ffff:ffff:ffff:ffff", me6, 1000), kDefaultDeny);
  in("Edges_AboveRanged6Slash16_DefaultDeny", tcp6("fd06::", me6, 1000), kDefaultDeny);
  in("Edges_Icmp4FromZeroHost_DeniedByZeroHostDeny", icmp4("0.0.0.0", me),
     deniedBy("zero-host-deny"));
  in("Edges_Icmp4From0001_AllowedBySlash0", icmp4("0.0.0.1", me), allowedBy("icmp-from-all4"));
  in("Edges_Icmp4FromRangedInsideSlash0_AllowedBySlash0", icmp4(r, me),
     allowedBy("icmp-from-all4"));
  in("Edges_Icmp4From255x4_DeniedByTopHostDeny", icmp4("255.255.255.255", me),
     deniedBy("top-host-deny"));
  in("Edges_Icmp4From255x3_254_AllowedBySlash0", icmp4("255.255.255.254", me),
     allowedBy("icmp-from-all4"));
  in("Edges_Tcp4FromTopHost_DeniedByTopHostDeny", tcp4("255.255.255.255", me, 1000),
     deniedBy("top-host-deny"));
  in("Edges_Icmp6FromUnspecified_DeniedByZeroHostDeny", icmp6("::", me6),
     deniedBy("zero-host-deny"));
  in("Edges_Icmp6FromLoopback_AllowedBySlash0", icmp6("::1", me6), allowedBy("icmp6-from-all6"));
  in("Edges_Icmp6FromAllOnes_DeniedByTopHostDeny",
     icmp6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", me6), deniedBy("top-host-deny"));
  in("Edges_Icmp6FromAllOnesMinus1_AllowedBySlash0",
     icmp6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", me6), allowedBy("icmp6-from-all6"));
  in("Edges_Tcp6FromOutsideRanged_DefaultDeny", tcp6("2001:db8::1", me6, 1000), kDefaultDeny);
  return f;
}

std::vector<Fixture> synFixtures() {
  const Pol P = Pol::Syn;
  std::vector<Fixture> f;
  const char* me = "192.168.7.7";
  const char* me6 = "fd77::7";
  auto syns = [](int n, Hook h, const pk::PacketSpec& s, Expect e) {
    std::vector<Step> v;
    for (int i = 0; i < n; i++) v.push_back(step(h, frame(s), e, fmt::format("SYN {}", i + 1)));
    return v;
  };
  auto cat = [](std::vector<Step> a, std::vector<Step> b) {
    for (auto& s : b) a.push_back(std::move(s));
    return a;
  };
  const auto syn1 = tcp4("10.7.0.1", me, 80);
  f.push_back({"Syn_BurstOf3PassFourthDroppedOtherSourcePasses", P,
               cat(cat(syns(3, kXdp, syn1, allowedBy("web")), syns(1, kXdp, syn1, kSynFlood)),
                   syns(1, kXdp, tcp4("10.7.0.2", me, 80), allowedBy("web")))});
  f.push_back({"Syn_LimitIsPerSourceNotPerFlow", P,
               cat(syns(3, kXdp, syn1, allowedBy("web")),
                   syns(1, kXdp, tcp4("10.7.0.1", me, 80, kSyn, 40001), kSynFlood))});
  f.push_back({"Syn_Ipv6BurstOf3PassFourthDroppedOtherSourcePasses", P,
               cat(cat(syns(3, kXdp, tcp6("fd07::1", me6, 80), allowedBy("web")),
                       syns(1, kXdp, tcp6("fd07::1", me6, 80), kSynFlood)),
                   syns(1, kXdp, tcp6("fd07::2", me6, 80), allowedBy("web")))});
  f.push_back({"Syn_SynAckNotLimited", P,
               cat(cat(syns(3, kXdp, syn1, allowedBy("web")), syns(1, kXdp, syn1, kSynFlood)),
                   syns(4, kXdp, tcp4("10.7.0.1", me, 80, kSynAck), allowedBy("web")))});
  f.push_back({"Syn_AckNotLimited", P,
               cat(syns(4, kXdp, tcp4("10.7.0.1", me, 80, kAck), allowedBy("web")),
                   syns(3, kXdp, syn1, allowedBy("web")))});
  f.push_back({"Syn_DeniedSynsDoNotConsumeBurst", P,
               cat(cat(syns(5, kXdp, tcp4("10.7.0.1", me, 22), kDefaultDeny),
                       syns(3, kXdp, syn1, allowedBy("web"))),
                   syns(1, kXdp, syn1, kSynFlood))});
  f.push_back({"Syn_EgressSynsNotLimited", P,
               syns(5, kTcOut, tcp4(me, "10.7.0.1", 80), allowedBy("web-out"))});
  f.push_back(
      {"Syn_TcIngressSharesTheLimiterWithXdp", P,
       cat(cat(syns(2, kXdp, syn1, allowedBy("web")), syns(1, kTcIn, syn1, allowedBy("web"))),
           syns(1, kTcIn, syn1, kSynFlood))});
  return f;
}

std::vector<Fixture> conntrackFixtures() {
  const Pol P = Pol::Conntrack;
  std::vector<Fixture> f;
  const char* me = "192.168.0.2";
  const char* me6 = "2001:db8:1::2";
  const char* srv = "203.0.113.10";
  const char* srv6 = "2001:db8:cc::10";
  const char* dns = "203.0.113.53";
  const char* dns6 = "2001:db8:cc::53";
  const char* peer = "198.51.100.1";
  const char* peer6 = "2001:db8:99::1";
  // Our SYN to server:80 and its pieces.
  const auto synOut = frame(tcp4(me, srv, 80, kSyn, 40000));
  const auto synAckIn = frame(tcp4(srv, me, 40000, kSynAck, 80));
  const auto ackIn = frame(tcp4(srv, me, 40000, kAck, 80));
  auto add = [&](std::string name, std::vector<Step> steps) {
    f.push_back({std::move(name), P, std::move(steps)});
  };

  add("Ct_Tcp4SynAckWithoutSyn_DefaultDeny",
      {step(kXdp, synAckIn, kDefaultDeny, "SYN-ACK in, nothing sent")});
  add("Ct_Tcp4SynOutThenReplies_Established",
      {step(kTcOut, synOut, allowedBy("web-out"), "SYN out"),
       step(kXdp, synAckIn, establishedVia("web-out"), "SYN-ACK in"),
       step(kTcOut, frame(tcp4(me, srv, 80, kAck, 40000)), allowedBy("web-out"), "ACK out"),
       step(kXdp, ackIn, establishedVia("web-out"), "data in")});
  add("Ct_Tcp6SynOutSynAckIn_Established",
      {step(kTcOut, frame(tcp6(me6, srv6, 80, kSyn, 40000)), allowedBy("web-out"), "SYN out"),
       step(kXdp, frame(tcp6(srv6, me6, 40000, kSynAck, 80)), establishedVia("web-out"),
            "SYN-ACK in")});
  add("Ct_Tcp4SynAckOnTcIngress_Established",
      {step(kTcOut, synOut, allowedBy("web-out"), "SYN out"),
       step(kTcIn, synAckIn, establishedVia("web-out"), "SYN-ACK in on tc ingress")});
  add("Ct_Tcp4ReplyToOtherLocalPort_DefaultDeny",
      {step(kTcOut, synOut, allowedBy("web-out"), "SYN out"),
       step(kXdp, frame(tcp4(srv, me, 40001, kSynAck, 80)), kDefaultDeny, "SYN-ACK to 40001")});
  add("Ct_Tcp4ReplyFromOtherServerPort_DefaultDeny",
      {step(kTcOut, synOut, allowedBy("web-out"), "SYN out"),
       step(kXdp, frame(tcp4(srv, me, 40000, kSynAck, 81)), kDefaultDeny, "SYN-ACK from 81")});
  add("Ct_Tcp4ReplyFromOtherHost_DefaultDeny",
      {step(kTcOut, synOut, allowedBy("web-out"), "SYN out"),
       step(kXdp, frame(tcp4("203.0.113.11", me, 40000, kSynAck, 80)), kDefaultDeny,
            "SYN-ACK from another host")});
  add("Ct_Tcp4ForwardOrientationOnIngress_DefaultDeny",
      {step(kTcOut, synOut, allowedBy("web-out"), "SYN out"),
       step(kXdp, frame(tcp4(me, srv, 80, kAck, 40000)), kDefaultDeny,
            "our own 4-tuple arriving on ingress")});
  add("Ct_Tcp4ReplyOrientationOnEgress_DefaultDeny",
      {step(kTcOut, synOut, allowedBy("web-out"), "SYN out"),
       step(kTcOut, frame(tcp4(srv, me, 40000, kAck, 80)), kDefaultDeny,
            "the reply's 4-tuple leaving on egress")});
  add("Ct_Tcp4NewSynFromServerIsNotAReply_DefaultDeny",
      {step(kTcOut, synOut, allowedBy("web-out"), "SYN out"),
       step(kXdp, frame(tcp4(srv, me, 40000, kSyn, 80)), kDefaultDeny, "bare SYN in")});
  add("Ct_Tcp4DeniedSynCreatesNoEntry_DefaultDeny",
      {step(kTcOut, frame(tcp4(me, srv, 81, kSyn, 40000)), kDefaultDeny, "SYN out to 81"),
       step(kXdp, frame(tcp4(srv, me, 40000, kSynAck, 81)), kDefaultDeny, "SYN-ACK in from 81")});
  add("Ct_Tcp4SynInThenSynAckOut_Established",
      {step(kXdp, frame(tcp4(peer, me, 22, kSyn, 50000)), allowedBy("ssh-in"), "SYN in"),
       step(kTcOut, frame(tcp4(me, peer, 50000, kSynAck, 22)), establishedVia("ssh-in"),
            "SYN-ACK out")});
  add("Ct_Tcp4SynAckOutWithoutSyn_DefaultDeny",
      {step(kTcOut, frame(tcp4(me, peer, 50000, kSynAck, 22)), kDefaultDeny, "SYN-ACK out")});
  add("Ct_Udp4QueryOutReplyIn_Established",
      {step(kTcOut, frame(udp4(me, dns, 53, 5353)), allowedBy("dns-out"), "query out"),
       step(kXdp, frame(udp4(dns, me, 5353, 53)), establishedVia("dns-out"), "answer in")});
  add("Ct_Udp6QueryOutReplyIn_Established",
      {step(kTcOut, frame(udp6(me6, dns6, 53, 5353)), allowedBy("dns-out"), "query out"),
       step(kXdp, frame(udp6(dns6, me6, 5353, 53)), establishedVia("dns-out"), "answer in")});
  add("Ct_Udp4ReplyWithoutQuery_DefaultDeny",
      {step(kXdp, frame(udp4(dns, me, 5353, 53)), kDefaultDeny, "answer in")});
  add("Ct_Udp4ReplyFromOtherHost_DefaultDeny",
      {step(kTcOut, frame(udp4(me, dns, 53, 5353)), allowedBy("dns-out"), "query out"),
       step(kXdp, frame(udp4("203.0.113.54", me, 5353, 53)), kDefaultDeny, "answer in")});
  add("Ct_Udp4ReplyToOtherPort_DefaultDeny",
      {step(kTcOut, frame(udp4(me, dns, 53, 5353)), allowedBy("dns-out"), "query out"),
       step(kXdp, frame(udp4(dns, me, 5354, 53)), kDefaultDeny, "answer to 5354")});
  add("Ct_Udp4FragmentedReplyNotTracked_DefaultDeny",
      {step(kTcOut, frame(udp4(me, dns, 53, 5353)), allowedBy("dns-out"), "query out"),
       step(kXdp,
            frame(with(udp4(dns, me, 5353, 53), [](pk::PacketSpec& s) { s.moreFragments = true; })),
            kDefaultDeny, "first fragment of the answer")});
  add("Ct_Icmp4EchoOutReplyIn_Established",
      {step(kTcOut, frame(icmp4(me, peer, 8, 7)), allowedBy("ping-out"), "echo request out"),
       step(kXdp, frame(icmp4(peer, me, 0, 7)), establishedVia("ping-out"), "echo reply in")});
  add("Ct_Icmp6EchoOutReplyIn_Established",
      {step(kTcOut, frame(icmp6(me6, peer6, 128, 7)), allowedBy("ping-out"), "echo request out"),
       step(kXdp, frame(icmp6(peer6, me6, 129, 7)), establishedVia("ping-out"), "echo reply in")});
  add("Ct_Icmp4ReplyWithOtherId_DefaultDeny",
      {step(kTcOut, frame(icmp4(me, peer, 8, 7)), allowedBy("ping-out"), "echo request out"),
       step(kXdp, frame(icmp4(peer, me, 0, 8)), kDefaultDeny, "echo reply id 8")});
  add("Ct_Icmp4ReplyWithoutRequest_DefaultDeny",
      {step(kXdp, frame(icmp4(peer, me, 0, 7)), kDefaultDeny, "echo reply in")});
  add("Ct_Icmp4RequestInIsNotAReply_DefaultDeny",
      {step(kTcOut, frame(icmp4(me, peer, 8, 7)), allowedBy("ping-out"), "echo request out"),
       step(kXdp, frame(icmp4(peer, me, 8, 7)), kDefaultDeny, "echo request in, same id")});
  add("Ct_Icmp4ReplyFromOtherPeer_DefaultDeny",
      {step(kTcOut, frame(icmp4(me, peer, 8, 7)), allowedBy("ping-out"), "echo request out"),
       step(kXdp, frame(icmp4("198.51.100.2", me, 0, 7)), kDefaultDeny,
            "echo reply from another host")});
  return f;
}

std::vector<Fixture> fragmentFixtures() {
  const Pol P = Pol::Fragments;
  std::vector<Fixture> f;
  auto in = [&](std::string name, pk::PacketSpec s, Expect e) {
    f.push_back({std::move(name), P, {step(kXdp, frame(s), e)}});
  };
  auto frag4 = [](uint16_t offset, bool more) {
    return [offset, more](pk::PacketSpec& s) {
      s.fragOffset = offset;
      s.moreFragments = more;
    };
  };
  auto frag6 = [](std::vector<uint8_t> chain, uint16_t offset, bool more) {
    return [chain, offset, more](pk::PacketSpec& s) {
      s.v6Ext = chain;
      s.fragOffset = offset;
      s.moreFragments = more;
    };
  };
  const char* me = "192.168.8.8";
  const char* me6 = "fd88::8";
  const char* client = "10.8.0.1";
  const char* client6 = "fd08::1";
  in("Frag4_WholePacket_AllowedByWeb", tcp4(client, me, 80), allowedBy("web"));
  in("Frag4_FirstFragmentPortDependent_Fragment", with(tcp4(client, me, 80), frag4(0, true)),
     kFragment);
  in("Frag4_MiddleFragmentPortDependent_Fragment", with(tcp4(client, me, 80), frag4(185, true)),
     kFragment);
  in("Frag4_LastFragmentPortDependent_Fragment", with(tcp4(client, me, 80), frag4(185, false)),
     kFragment);
  in("Frag4_OutsiderTcpFragment443VsRest_Fragment",
     with(tcp4("10.99.0.1", me, 443), frag4(0, true)), kFragment);
  in("Frag4_UdpFirstFragmentEveryPortAllowed_AllowedByClientUdp",
     with(udp4(client, me, 53), frag4(0, true)), allowedBy("client-udp"));
  in("Frag4_UdpLastFragmentEveryPortAllowed_AllowedByClientUdp",
     with(udp4(client, me, 53), frag4(100, false)), allowedBy("client-udp"));
  in("Frag4_OutsiderUdpFragmentNoRule_DefaultDeny", with(udp4("10.99.0.1", me, 53), frag4(0, true)),
     kDefaultDeny);
  in("Frag4_OutsiderIcmpFragmentNoRule_DefaultDeny",
     with(icmp4("10.99.0.1", me), frag4(100, false)), kDefaultDeny);
  in("Frag4_TrustedTcpFragmentAllPortsAllowed_AllowedByTrustedAll",
     with(tcp4("10.8.0.2", me, 22), frag4(0, true)), allowedBy("trusted-all"));
  in("Frag4_TrustedGreFragment_AllowedByTrustedAll",
     with(proto4("10.8.0.2", me, 47), frag4(10, true)), allowedBy("trusted-all"));
  in("Frag4_BannedTcpFragmentAllPortsDenied_DeniedByBannedAll",
     with(tcp4("10.8.0.3", me, 443), frag4(0, true)), deniedBy("banned-all"));
  in("Frag6_WholePacket_AllowedByWeb", tcp6(client6, me6, 80), allowedBy("web"));
  in("Frag6_FirstFragmentPortDependent_Fragment",
     with(tcp6(client6, me6, 80), frag6({44}, 0, true)), kFragment);
  in("Frag6_LaterFragmentPortDependent_Fragment",
     with(tcp6(client6, me6, 80), frag6({44}, 185, false)), kFragment);
  in("Frag6_HbhThenFirstFragment_Fragment", with(tcp6(client6, me6, 80), frag6({0, 44}, 0, true)),
     kFragment);
  in("Frag6_HbhThenMiddleFragment_Fragment", with(tcp6(client6, me6, 80), frag6({0, 44}, 10, true)),
     kFragment);
  in("Frag6_AtomicFragmentIsWholePacket_AllowedByWeb",
     with(tcp6(client6, me6, 80), frag6({44}, 0, false)), allowedBy("web"));
  in("Frag6_AtomicFragmentPort22_DefaultDeny", with(tcp6(client6, me6, 22), frag6({44}, 0, false)),
     kDefaultDeny);
  in("Frag6_AtomicFragmentAfterHbh_AllowedByWeb",
     with(tcp6(client6, me6, 80), frag6({0, 44, 60}, 0, false)), allowedBy("web"));
  in("Frag6_UdpFragmentEveryPortAllowed_AllowedByClientUdp",
     with(udp6(client6, me6, 53), frag6({44}, 0, true)), allowedBy("client-udp"));
  in("Frag6_TrustedTcpFragmentAllPortsAllowed_AllowedByTrustedAll",
     with(tcp6("fd08::2", me6, 22), frag6({44}, 20, true)), allowedBy("trusted-all"));
  in("Frag6_BannedTcpFragmentAllPortsDenied_DeniedByBannedAll",
     with(tcp6("fd08::3", me6, 443), frag6({44}, 0, true)), deniedBy("banned-all"));
  in("Frag6_OutsiderIcmp6Fragment_DefaultDeny", with(icmp6("fd99::1", me6), frag6({44}, 0, true)),
     kDefaultDeny);
  return f;
}

const std::vector<Fixture>& allFixtures() {
  static const std::vector<Fixture> all = [] {
    std::vector<Fixture> v;
    for (auto* make : {mainFixtures, overlapFixtures, attributionFixtures, edgesFixtures,
                       synFixtures, conntrackFixtures, fragmentFixtures})
      for (auto& x : make()) v.push_back(std::move(x));
    return v;
  }();
  return all;
}

// ---------------------------------------------------------------------------------------------
// Programs, one per policy, loaded on first use.

struct Loaded {
  policy::CompiledPolicy compiled;
  std::unique_ptr<bpf::FirewallProgram> fw;
};

Result<Loaded*> programFor(Pol p) {
  static std::map<Pol, std::unique_ptr<Loaded>> cache;
  if (auto it = cache.find(p); it != cache.end()) return it->second.get();
  auto parsed = policy::parsePolicy(policyText(p), std::string(policyName(p)) + ".yaml");
  if (!parsed) return std::unexpected(parsed.error());
  auto compiled = policy::compile(*parsed);
  if (!compiled) return std::unexpected(compiled.error());
  bpf::FirewallOptions base;
  base.recordVerdict = true;
  base.conntrackEntries = 1024;
  auto fw = bpf::FirewallProgram::load(dataplane::optionsFor(*compiled, base));
  if (!fw) return std::unexpected(fw.error());
  dataplane::Dataplane dp(**fw);
  if (auto r = dp.apply(*compiled); !r) return std::unexpected(r.error());
  auto l = std::make_unique<Loaded>(Loaded{std::move(*compiled), std::move(*fw)});
  return cache.emplace(p, std::move(l)).first->second.get();
}

std::string ruleName(const Loaded& l, uint32_t id) {
  if (id == EW_RULE_NONE) return {};
  if (id < l.compiled.rules.size()) return l.compiled.rules[id].name;
  return fmt::format("#{}", id);
}

// Runs one frame; the verdict as show() prints it.
Result<std::string> run(Loaded& l, Hook h, const Bytes& frame) {
  EW_TRY(r, l.fw->testRun(h, frame));
  if (r->pass != (r->verdict.action == EW_ACT_ALLOW))
    return failf("hook returned {} but recorded action {}", r->retval, r->verdict.action);
  return show(r->pass, r->verdict.reason, ruleName(l, r->verdict.rule));
}

constexpr uint32_t kReasonSlots = uint32_t{EW_DIRS} * EW_R_COUNT;  // ew_reason_stats entries

std::string_view hookLabel(Hook h) { return bpf::FirewallProgram::hookName(h); }

class FirewallFixture : public ::testing::TestWithParam<Fixture> {};

TEST_P(FirewallFixture, Verdicts) {
  const Fixture& fx = GetParam();
  auto l = programFor(fx.policy);
  ASSERT_TRUE(l) << l.error().str();
  ASSERT_TRUE((*l)->fw->clearState());
  for (size_t i = 0; i < fx.steps.size(); i++) {
    const Step& s = fx.steps[i];
    auto verdict = run(**l, s.hook, s.frame);
    ASSERT_TRUE(verdict) << verdict.error().str();
    EXPECT_EQ(show(s.expect.pass, s.expect.reason, s.expect.rule), *verdict)
        << "step " << i + 1 << " of " << fx.steps.size() << " on " << hookLabel(s.hook)
        << (s.what.empty() ? "" : ": ") << s.what << " (" << s.frame.size() << "-byte frame)";
  }
  // A single XDP packet: the tc ingress hook must decide the same.
  if (fx.steps.size() == 1 && fx.steps[0].hook == kXdp && !fx.xdpOnly) {
    ASSERT_TRUE((*l)->fw->clearState());
    const Step& s = fx.steps[0];
    auto verdict = run(**l, kTcIn, s.frame);
    ASSERT_TRUE(verdict) << verdict.error().str();
    EXPECT_EQ(show(s.expect.pass, s.expect.reason, s.expect.rule), *verdict)
        << "the same packet on " << hookLabel(kTcIn);
  }
}

INSTANTIATE_TEST_SUITE_P(Table, FirewallFixture, ::testing::ValuesIn(allFixtures()),
                         [](const ::testing::TestParamInfo<Fixture>& info) {
                           return info.param.name;
                         });

TEST(FirewallFixtureTable, HasAtLeast70FixturesWithUniqueNames) {
  std::map<std::string, int> names;
  for (const auto& fx : allFixtures()) names[fx.name]++;
  EXPECT_GE(allFixtures().size(), 70u);
  for (const auto& [name, n] : names) EXPECT_EQ(n, 1) << name;
}

// Per-rule and per-reason counters equal the packets (and bytes) the fixtures ran.
TEST(FirewallCounters, EqualThePacketsRun) {
  for (Pol p : kAllPolicies) {
    SCOPED_TRACE(policyName(p));
    auto l = programFor(p);
    ASSERT_TRUE(l) << l.error().str();
    auto& fw = *(*l)->fw;
    const auto& rules = (*l)->compiled.rules;
    const auto nRules = static_cast<uint32_t>(rules.size());
    ASSERT_TRUE(fw.clearCounters(bpf::FirewallMap::RuleStats, nRules));
    ASSERT_TRUE(fw.clearCounters(bpf::FirewallMap::ReasonStats, kReasonSlots));

    std::vector<ew_counter> wantRules(nRules), wantReasons(kReasonSlots);
    size_t packets = 0;
    for (const auto& fx : allFixtures()) {
      if (fx.policy != p) continue;
      ASSERT_TRUE(fw.clearState());
      for (const auto& s : fx.steps) {
        auto r = fw.testRun(s.hook, s.frame);
        ASSERT_TRUE(r) << r.error().str();
        packets++;
        if (!s.expect.rule.empty()) {
          uint32_t id = (*l)->compiled.ruleId(s.expect.rule);
          ASSERT_LT(id, nRules) << s.expect.rule;
          wantRules[id].packets++;
          wantRules[id].bytes += s.frame.size();
        }
        uint32_t dir = s.hook == kTcOut ? EW_EGRESS : EW_INGRESS;
        auto& c = wantReasons[dir * EW_R_COUNT + s.expect.reason];
        c.packets++;
        c.bytes += s.frame.size();
      }
    }
    ASSERT_GT(packets, 0u);
    auto gotRules = fw.readCounters(bpf::FirewallMap::RuleStats, nRules);
    ASSERT_TRUE(gotRules) << gotRules.error().str();
    for (uint32_t i = 0; i < nRules; i++) {
      EXPECT_EQ(wantRules[i].packets, (*gotRules)[i].packets) << "rule " << rules[i].name;
      EXPECT_EQ(wantRules[i].bytes, (*gotRules)[i].bytes) << "rule " << rules[i].name;
    }
    auto gotReasons = fw.readCounters(bpf::FirewallMap::ReasonStats, kReasonSlots);
    ASSERT_TRUE(gotReasons) << gotReasons.error().str();
    for (uint32_t i = 0; i < kReasonSlots; i++) {
      const char* dir = i < EW_R_COUNT ? "ingress" : "egress";
      auto reason = policy::reasonName(static_cast<uint8_t>(i % EW_R_COUNT));
      EXPECT_EQ(wantReasons[i].packets, (*gotReasons)[i].packets) << dir << " " << reason;
      EXPECT_EQ(wantReasons[i].bytes, (*gotReasons)[i].bytes) << dir << " " << reason;
    }
  }
}

}  // namespace
}  // namespace edgeward
