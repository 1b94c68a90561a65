// The reference evaluator: decides one packet by reading the policy literally (a loop over the
// rules and their prefixes), with the semantics of the firewall program (docs/firewall.md) minus
// its state: no connection tracking, no SYN flood limit. Slow by design and simple enough to
// trust; the agent's program self-test and the demo compare the real program against it.
#pragma once

#include <array>
#include <cstdint>

#include "firewall.h"
#include "policy/policy.h"

namespace edgeward::policy {

// What the firewall program knows about a packet after parsing it.
struct PacketFacts {
  Family family = Family::V4;
  bool ingress = true;            // false: egress
  std::array<uint8_t, 16> src{};  // network order; V4 uses the first 4 bytes
  std::array<uint8_t, 16> dst{};
  uint8_t proto = 0;      // IP protocol number of the transport header (6 tcp, 17 udp, ...)
  uint16_t dport = 0;     // TCP/UDP destination port; as the program sets it otherwise:
                          // the identifier of an ICMP echo request/reply, else 0
  bool fragment = false;  // any fragment, first or later (not an atomic IPv6 fragment)
  uint8_t icmpType = 0;   // ICMP/ICMPv6 type, when proto is 1 or 58
  uint8_t hopLimit = 0;   // IPv6 hop limit (IPv4 TTL is never looked at)
  bool arp = false;       // an ARP frame: the other fields are ignored
};

struct Verdict {
  bool pass = false;
  uint8_t reason = EW_R_DEFAULT_DENY;  // enum ew_reason (firewall.h)
  uint32_t rule = EW_RULE_NONE;        // deciding rule id (ingress rules, then egress), or none
  bool operator==(const Verdict&) const = default;
};

// Decides the packet:
//  1. ARP, and (not fragmented, IPv6) ICMPv6 types 133-136 with hop limit 255 or 130-132/143 with
//     hop limit 1 pass: EW_R_HOST_ESSENTIAL.
//  2. A rule of the packet's direction matches when its peers contain "any" or an identity with
//     a prefix holding the peer address (ingress: source, egress: destination), and it has no
//     ports or a ports entry of the packet's protocol (`any` covers all) whose range holds dport.
//  3. A matching deny rule drops (EW_R_RULE_DENY), else a matching allow rule passes
//     (EW_R_RULE_ALLOW); the reported rule is the lowest id among the matching rules of that
//     action. No match: defaultAction (EW_R_DEFAULT_ALLOW / EW_R_DEFAULT_DENY, rule none).
//  4. A fragment is judged without its port: when step 3 gives the same action and rule for every
//     port 0-65535 that is the verdict, otherwise it drops with EW_R_FRAGMENT (rule none).
// Malformed, truncated and non-IP packets other than ARP are the parser's business and are not
// represented in PacketFacts.
Verdict evaluate(const Policy& policy, const PacketFacts& packet);

}  // namespace edgeward::policy
