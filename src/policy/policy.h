// The policy model: what a policy file says, after parsing and validation.
// Pure C++: no kernel, no libbpf. See docs/policy.md for the file format.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace edgeward::policy {

enum class Action : uint8_t { Allow, Deny };
enum class Protocol : uint8_t { Any, Tcp, Udp, Icmp, Icmpv6 };
enum class Family : uint8_t { V4, V6 };

// A CIDR prefix. Address bytes in network order; for V4 only the first 4 bytes are used.
// Host bits (beyond len) are always zero.
struct Prefix {
  Family family = Family::V4;
  std::array<uint8_t, 16> addr{};
  uint8_t len = 0;

  std::string str() const;  // "10.0.0.0/8", "2001:db8::/32"
  bool operator==(const Prefix&) const = default;
  auto operator<=>(const Prefix&) const = default;
};

struct PortRange {
  uint16_t first = 0;
  uint16_t last = 65535;
  bool operator==(const PortRange&) const = default;
};

// One entry of a rule's `ports`. `range` is 0-65535 when `port` was omitted; always so for
// icmp, icmpv6 and any (which take no port).
struct PortSpec {
  Protocol protocol = Protocol::Any;
  PortRange range;
  bool operator==(const PortSpec&) const = default;
};

struct Rule {
  std::string name;
  std::vector<std::string> peers;  // identity names of `from` (ingress) or `to` (egress)
  std::vector<PortSpec> ports;     // empty: every protocol and port
  Action action = Action::Allow;
  int line = 0;  // line of the rule in the source, for messages
};

// Where an identity's prefix list is in the policy text, so that a patch can rewrite just that
// list (policy/patch.h). Byte offsets into the text the policy was parsed from.
struct ListSource {
  uint32_t begin = 0, end = 0;  // from "[" to past "]", or from the first "-" to past the last item
  uint32_t column = 0;          // of the first "-" (block lists)
  bool flow = false;
  std::vector<std::pair<uint32_t, uint32_t>> items;  // each prefix as written, [begin, end)
};

struct Identity {
  std::string name;
  std::vector<Prefix> prefixes;
  int line = 0;
  std::optional<ListSource> source;  // known when the text was read in one libyaml pass
};

// One prefix added to or removed from an existing identity.
struct PrefixChange {
  std::string identity;
  Prefix prefix;
  bool add = true;
};

struct SynFlood {
  uint32_t perSourcePps = 0;
  uint32_t burst = 0;
};

inline constexpr std::string_view kAnyIdentity = "any";

struct Policy {
  std::string name;  // metadata.name
  Action defaultAction = Action::Deny;
  std::vector<Identity> identities;  // in file order; never contains "any"
  std::vector<Rule> ingress;
  std::vector<Rule> egress;
  std::optional<SynFlood> synFlood;
  std::string source;  // file name used in messages
};

// Parses and validates. Errors read "<source>:<line>: <field path>: <problem>", e.g.
// "policy.yaml:14: spec.ingress[2].ports[0].port: range 80-70: start is after end".
Result<Policy> parsePolicy(std::string_view yaml, const std::string& source);
Result<Policy> loadPolicyFile(const std::string& path);

// Parses "10.0.0.0/8", "10.1.2.3" (host prefix), "2001:db8::/32", "::1".
Result<Prefix> parsePrefix(std::string_view text);

std::string_view actionName(Action a);
std::string_view protocolName(Protocol p);

}  // namespace edgeward::policy
