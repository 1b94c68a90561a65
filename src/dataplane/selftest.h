// A fixed packet set for the program self-test that runs before a program swap: each packet
// carries the facts it was built from (so an evaluator can decide it without parsing the frame)
// and the Ethernet frame itself (for BPF_PROG_TEST_RUN).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "bpf/firewall_program.h"
#include "firewall.h"
#include "policy/compiler.h"

namespace edgeward::dataplane {

// One packet of a self-test. Addresses in network order; IPv4 in the first 4 bytes.
struct SelfTestPacket {
  std::string label;  // "ingress tcp 10.1.0.5:40000 > 192.0.2.1:80 on xdp-ingress"
  bpf::Hook hook = bpf::Hook::XdpIngress;
  bool v6 = false;
  bool ingress = true;  // false: egress (the peer is the destination)
  std::array<uint8_t, 16> src{}, dst{};
  uint8_t proto = 6;  // 6 tcp (a SYN), 17 udp, 1 icmp / 58 icmpv6 (echo request)
  uint16_t sport = 0;
  uint16_t dport = 0;    // for ICMP echo: the identifier, as the program reads it
  uint8_t icmpType = 0;  // 8 / 128 for echo requests
  uint8_t hopLimit = 64;
  std::vector<uint8_t> frame;
};

// What the program must decide for a packet (the firewall's pass/drop, reason and rule).
struct ExpectedVerdict {
  bool pass = false;
  uint8_t reason = EW_R_DEFAULT_DENY;  // enum ew_reason
  uint32_t rule = EW_RULE_NONE;        // deciding rule id, or EW_RULE_NONE
  bool operator==(const ExpectedVerdict&) const = default;
};

struct SelfTestCase {
  SelfTestPacket packet;
  ExpectedVerdict expected;
};

// The rule field of a verdict the self-test could only tell apart from the expected rule.
inline constexpr uint32_t kOtherRule = 0xfffffffeu;

// "pass rule-allow (rule 3)", "drop default-deny".
std::string describe(const ExpectedVerdict& v);

// Builds the frame of a packet from its facts (Ethernet, IPv4/IPv6, TCP SYN / UDP / ICMP echo,
// checksums set) and a label when it has none.
void buildFrame(SelfTestPacket& p);

// A deterministic packet set drawn from a compiled policy: peer addresses from its address
// intervals (identity-specific ones first), destination ports at its port boundaries and a few
// common ones, TCP/UDP/ICMP over IPv4 and IPv6, ingress (alternating XDP and tc) and egress.
// At most maxPackets packets, evenly sampled.
std::vector<SelfTestPacket> selfTestPackets(const policy::CompiledPolicy& p,
                                            size_t maxPackets = 256);

}  // namespace edgeward::dataplane
