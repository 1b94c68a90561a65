// Building policies in tests: YAML documents parsed with failures reported, and the port specs
// and actions of rules built as structs. Header-only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "policy/policy.h"

namespace edgeward::policy::builders {

// yaml parsed (source "policy.yaml"); a parse error is a test failure and gives an empty Policy.
inline Policy parseOk(const std::string& yaml) {
  auto r = parsePolicy(yaml, "policy.yaml");
  EXPECT_TRUE(r.has_value()) << r.error().str();
  return r ? *r : Policy{};
}

// A whole policy document named `name` around `spec` (YAML indented under "spec:").
inline std::string policyDoc(std::string_view spec, std::string_view name) {
  return "apiVersion: edgeward.io/v1\nkind: Policy\nmetadata: {name: " + std::string(name) +
         "}\nspec:\n" + std::string(spec);
}

inline PortSpec tcp(uint16_t first, uint16_t last) { return {Protocol::Tcp, {first, last}}; }
inline PortSpec tcp(uint16_t port) { return tcp(port, port); }
inline PortSpec udp(uint16_t first, uint16_t last) { return {Protocol::Udp, {first, last}}; }
inline PortSpec udp(uint16_t port) { return udp(port, port); }
inline PortSpec udpAll() { return {Protocol::Udp, {0, 65535}}; }
inline PortSpec icmp() { return {Protocol::Icmp, {0, 65535}}; }
inline PortSpec icmpv6() { return {Protocol::Icmpv6, {0, 65535}}; }
inline PortSpec anyProtocol() { return {Protocol::Any, {0, 65535}}; }

constexpr Action kAllow = Action::Allow;
constexpr Action kDeny = Action::Deny;

}  // namespace edgeward::policy::builders
