// Policy parser and validator: every accepted form and every error path, with the full message.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "policy/policy.h"

namespace edgeward::policy {
namespace {

// Lines 1-4 of every test document; the text passed to withSpec() starts on line 5.
constexpr std::string_view kHeader =
    "apiVersion: edgeward.io/v1\n"
    "kind: Policy\n"
    "metadata: {name: test}\n"
    "spec:\n";

std::string withSpec(std::string_view body) { return std::string(kHeader) + std::string(body); }

// Lines 5-7 define identities; the text passed to withIds() starts on line 8.
std::string withIds(std::string_view body) {
  return withSpec(
             "  identities:\n"
             "    client: [10.200.0.1]\n"
             "    lab: [10.200.0.0/24]\n") +
         std::string(body);
}

// A valid ingress rule for "client" starting on line 9 (line 8 says "ingress:"), whose
// ports entry is the given text on line 12.
std::string withPort(std::string_view entry) {
  return withIds(
      "  ingress:\n"
      "    - name: web\n"
      "      from: [client]\n"
      "      ports:\n"
      "        - " +
      std::string(entry) +
      "\n"
      "      action: allow\n");
}

std::string errorOf(const std::string& yaml) {
  auto r = parsePolicy(yaml, "policy.yaml");
  if (r) return "(no error)";
  return r.error().str();
}

Policy parseOk(const std::string& yaml) {
  auto r = parsePolicy(yaml, "policy.yaml");
  EXPECT_TRUE(r.has_value()) << r.error().str();
  return r ? *r : Policy{};
}

Prefix prefixOk(std::string_view text) {
  auto r = parsePrefix(text);
  EXPECT_TRUE(r.has_value()) << r.error().str();
  return r ? *r : Prefix{};
}

std::string prefixError(std::string_view text) {
  auto r = parsePrefix(text);
  if (r) return "(no error)";
  return r.error().str();
}

// ---------------------------------------------------------------------------------------------
// parsePrefix, Prefix::str, names

TEST(PolicyPrefix, Ipv4Prefix) {
  Prefix p = prefixOk("10.0.0.0/8");
  EXPECT_EQ(p.family, Family::V4);
  EXPECT_EQ(p.len, 8);
  EXPECT_EQ(p.addr[0], 10);
  EXPECT_EQ(p.addr[1], 0);
  EXPECT_EQ(p.str(), "10.0.0.0/8");
}

TEST(PolicyPrefix, BareIpv4IsHostPrefix) {
  Prefix p = prefixOk("10.200.0.1");
  EXPECT_EQ(p.family, Family::V4);
  EXPECT_EQ(p.len, 32);
  EXPECT_EQ(p.str(), "10.200.0.1/32");
  EXPECT_EQ(p, prefixOk("10.200.0.1/32"));
}

TEST(PolicyPrefix, Ipv6Prefix) {
  Prefix p = prefixOk("2001:db8::/32");
  EXPECT_EQ(p.family, Family::V6);
  EXPECT_EQ(p.len, 32);
  EXPECT_EQ(p.addr[0], 0x20);
  EXPECT_EQ(p.addr[1], 0x01);
  EXPECT_EQ(p.addr[2], 0x0d);
  EXPECT_EQ(p.addr[3], 0xb8);
  EXPECT_EQ(p.str(), "2001:db8::/32");
}

TEST(PolicyPrefix, BareIpv6IsHostPrefix) {
  EXPECT_EQ(prefixOk("::1").str(), "::1/128");
  EXPECT_EQ(prefixOk("fd00:200::1").len, 128);
  // Upper case and uncompressed forms are the same prefix.
  EXPECT_EQ(prefixOk("FD00:0200:0:0:0:0:0:1"), prefixOk("fd00:200::1"));
}

TEST(PolicyPrefix, ZeroLengthMatchesEverything) {
  EXPECT_EQ(prefixOk("0.0.0.0/0").str(), "0.0.0.0/0");
  EXPECT_EQ(prefixOk("::/0").str(), "::/0");
}

TEST(PolicyPrefix, Ipv4MappedStaysIpv6) {
  Prefix p = prefixOk("::ffff:10.0.0.1");
  EXPECT_EQ(p.family, Family::V6);
  EXPECT_EQ(p.len, 128);
}

TEST(PolicyPrefix, HostBitsSetIpv4) {
  EXPECT_EQ(prefixError("10.0.0.1/8"), "10.0.0.1/8: host bits set (did you mean 10.0.0.0/8?)");
  EXPECT_EQ(prefixError("10.200.0.1/31"),
            "10.200.0.1/31: host bits set (did you mean 10.200.0.0/31?)");
}

TEST(PolicyPrefix, HostBitsSetIpv6) {
  EXPECT_EQ(prefixError("fd00:200::1/64"),
            "fd00:200::1/64: host bits set (did you mean fd00:200::/64?)");
}

TEST(PolicyPrefix, LengthOutOfRange) {
  EXPECT_EQ(prefixError("10.0.0.0/33"), "10.0.0.0/33: prefix length 33 is out of range 0-32");
  EXPECT_EQ(prefixError("::/129"), "::/129: prefix length 129 is out of range 0-128");
  EXPECT_EQ(prefixError("10.0.0.0/99999999999999999999"),
            "10.0.0.0/99999999999999999999: prefix length 99999999999999999999 is out of range "
            "0-32");
}

TEST(PolicyPrefix, LengthNotANumber) {
  EXPECT_EQ(prefixError("10.0.0.0/abc"), "10.0.0.0/abc: prefix length \"abc\" is not a number");
  EXPECT_EQ(prefixError("10.0.0.0/"), "10.0.0.0/: prefix length \"\" is not a number");
  EXPECT_EQ(prefixError("10.0.0.0/-1"), "10.0.0.0/-1: prefix length \"-1\" is not a number");
  EXPECT_EQ(prefixError("10.0.0.0/8/8"), "10.0.0.0/8/8: prefix length \"8/8\" is not a number");
}

TEST(PolicyPrefix, BadAddress) {
  EXPECT_EQ(prefixError("10.0.0.300"), "10.0.0.300: not a valid IPv4 or IPv6 address");
  EXPECT_EQ(prefixError("10.1"), "10.1: not a valid IPv4 or IPv6 address");
  EXPECT_EQ(prefixError("010.0.0.1"), "010.0.0.1: not a valid IPv4 or IPv6 address");
  EXPECT_EQ(prefixError("web.example.com"), "web.example.com: not a valid IPv4 or IPv6 address");
  EXPECT_EQ(prefixError(""), "\"\": not a valid IPv4 or IPv6 address");
  EXPECT_EQ(prefixError("fd00::zz/64"), "fd00::zz/64: not a valid IPv6 address");
  EXPECT_EQ(prefixError("fe80::1%eth0"), "fe80::1%eth0: not a valid IPv6 address");
}

TEST(PolicyNames, ActionAndProtocolNames) {
  EXPECT_EQ(actionName(Action::Allow), "allow");
  EXPECT_EQ(actionName(Action::Deny), "deny");
  EXPECT_EQ(protocolName(Protocol::Any), "any");
  EXPECT_EQ(protocolName(Protocol::Tcp), "tcp");
  EXPECT_EQ(protocolName(Protocol::Udp), "udp");
  EXPECT_EQ(protocolName(Protocol::Icmp), "icmp");
  EXPECT_EQ(protocolName(Protocol::Icmpv6), "icmpv6");
}

// ---------------------------------------------------------------------------------------------
// Accepted policies

TEST(PolicyParse, FullPolicy) {
  Policy p = parseOk(R"(apiVersion: edgeward.io/v1
kind: Policy
metadata:
  name: edge-gw
spec:
  defaultAction: allow
  identities:
    web:
      - 10.0.0.0/8
      - 2001:db8::/32
    admin: [192.168.1.10, "fd00::1"]
  ingress:
    - name: web-in
      from: [web, admin]
      ports:
        - protocol: tcp
          port: 443
        - {protocol: udp, port: "8000-8080"}
      action: allow
    - name: icmp-in
      from: [any]
      ports: [{protocol: icmp}, {protocol: icmpv6}, {protocol: any}]
      action: deny
  egress:
    - name: all-out
      to: [admin]
      action: allow
  synFlood:
    perSourcePps: 100
    burst: 20
)");
  EXPECT_EQ(p.name, "edge-gw");
  EXPECT_EQ(p.source, "policy.yaml");
  EXPECT_EQ(p.defaultAction, Action::Allow);

  ASSERT_EQ(p.identities.size(), 2u);
  EXPECT_EQ(p.identities[0].name, "web");
  EXPECT_EQ(p.identities[0].line, 8);
  ASSERT_EQ(p.identities[0].prefixes.size(), 2u);
  EXPECT_EQ(p.identities[0].prefixes[0].str(), "10.0.0.0/8");
  EXPECT_EQ(p.identities[0].prefixes[1].str(), "2001:db8::/32");
  EXPECT_EQ(p.identities[1].name, "admin");
  EXPECT_EQ(p.identities[1].line, 11);
  ASSERT_EQ(p.identities[1].prefixes.size(), 2u);
  EXPECT_EQ(p.identities[1].prefixes[0].str(), "192.168.1.10/32");
  EXPECT_EQ(p.identities[1].prefixes[1].str(), "fd00::1/128");

  ASSERT_EQ(p.ingress.size(), 2u);
  const Rule& web = p.ingress[0];
  EXPECT_EQ(web.name, "web-in");
  EXPECT_EQ(web.line, 13);
  EXPECT_EQ(web.peers, (std::vector<std::string>{"web", "admin"}));
  EXPECT_EQ(web.action, Action::Allow);
  ASSERT_EQ(web.ports.size(), 2u);
  EXPECT_EQ(web.ports[0], (PortSpec{Protocol::Tcp, {443, 443}}));
  EXPECT_EQ(web.ports[1], (PortSpec{Protocol::Udp, {8000, 8080}}));

  const Rule& icmp = p.ingress[1];
  EXPECT_EQ(icmp.name, "icmp-in");
  EXPECT_EQ(icmp.line, 20);
  EXPECT_EQ(icmp.peers, (std::vector<std::string>{"any"}));
  EXPECT_EQ(icmp.action, Action::Deny);
  ASSERT_EQ(icmp.ports.size(), 3u);
  EXPECT_EQ(icmp.ports[0], (PortSpec{Protocol::Icmp, {0, 65535}}));
  EXPECT_EQ(icmp.ports[1], (PortSpec{Protocol::Icmpv6, {0, 65535}}));
  EXPECT_EQ(icmp.ports[2], (PortSpec{Protocol::Any, {0, 65535}}));

  ASSERT_EQ(p.egress.size(), 1u);
  EXPECT_EQ(p.egress[0].name, "all-out");
  EXPECT_EQ(p.egress[0].line, 25);
  EXPECT_EQ(p.egress[0].peers, (std::vector<std::string>{"admin"}));
  EXPECT_TRUE(p.egress[0].ports.empty());
  EXPECT_EQ(p.egress[0].action, Action::Allow);

  ASSERT_TRUE(p.synFlood.has_value());
  EXPECT_EQ(p.synFlood->perSourcePps, 100u);
  EXPECT_EQ(p.synFlood->burst, 20u);
}

TEST(PolicyParse, Defaults) {
  Policy p = parseOk(withSpec("  {}\n"));
  EXPECT_EQ(p.name, "test");
  EXPECT_EQ(p.defaultAction, Action::Deny);
  EXPECT_TRUE(p.identities.empty());
  EXPECT_TRUE(p.ingress.empty());
  EXPECT_TRUE(p.egress.empty());
  EXPECT_FALSE(p.synFlood.has_value());
}

TEST(PolicyParse, ExplicitDenyAndEmptyRuleLists) {
  Policy p =
      parseOk(withSpec("  defaultAction: deny\n"
                       "  identities: {}\n"
                       "  ingress: []\n"
                       "  egress: []\n"));
  EXPECT_EQ(p.defaultAction, Action::Deny);
  EXPECT_TRUE(p.ingress.empty());
  EXPECT_TRUE(p.egress.empty());
}

TEST(PolicyParse, SourceIsKept) {
  auto r = parsePolicy(withSpec("  {}\n"), "/etc/edgeward/policy.yaml");
  ASSERT_TRUE(r.has_value()) << r.error().str();
  EXPECT_EQ(r->source, "/etc/edgeward/policy.yaml");
}

TEST(PolicyParse, IdentitiesKeepFileOrder) {
  Policy p =
      parseOk(withSpec("  identities:\n"
                       "    zeta: [10.0.0.3]\n"
                       "    alpha: [10.0.0.1]\n"
                       "    mid.dle_name-1: [10.0.0.2]\n"));
  ASSERT_EQ(p.identities.size(), 3u);
  EXPECT_EQ(p.identities[0].name, "zeta");
  EXPECT_EQ(p.identities[1].name, "alpha");
  EXPECT_EQ(p.identities[2].name, "mid.dle_name-1");
  EXPECT_EQ(p.identities[2].line, 8);
}

TEST(PolicyParse, BareAddressesAndIpv6) {
  Policy p =
      parseOk(withSpec("  identities:\n"
                       "    hosts:\n"
                       "      - 10.200.0.1\n"
                       "      - fd00:200::1\n"
                       "      - fd00:200::/64\n"
                       "      - 0.0.0.0/0\n"
                       "      - ::/0\n"));
  ASSERT_EQ(p.identities.size(), 1u);
  const auto& pf = p.identities[0].prefixes;
  ASSERT_EQ(pf.size(), 5u);
  EXPECT_EQ(pf[0].str(), "10.200.0.1/32");
  EXPECT_EQ(pf[1].str(), "fd00:200::1/128");
  EXPECT_EQ(pf[1].family, Family::V6);
  EXPECT_EQ(pf[2].str(), "fd00:200::/64");
  EXPECT_EQ(pf[3].str(), "0.0.0.0/0");
  EXPECT_EQ(pf[4].str(), "::/0");
}

TEST(PolicyParse, OverlappingPrefixesInOneIdentityAreAllowed) {
  Policy p = parseOk(withSpec("  identities:\n    net: [10.0.0.0/8, 10.1.0.0/16, 10.1.2.3]\n"));
  EXPECT_EQ(p.identities[0].prefixes.size(), 3u);
}

TEST(PolicyParse, PortForms) {
  Policy p =
      parseOk(withIds("  ingress:\n"
                      "    - name: ports\n"
                      "      from: [client]\n"
                      "      ports:\n"
                      "        - {protocol: tcp, port: 443}\n"
                      "        - {protocol: tcp, port: \"443\"}\n"
                      "        - {protocol: udp, port: '8000-8080'}\n"
                      "        - {protocol: udp, port: 8000-8080}\n"
                      "        - {protocol: tcp, port: 0}\n"
                      "        - {protocol: tcp, port: 65535}\n"
                      "        - {protocol: tcp, port: 0-65535}\n"
                      "        - {protocol: udp, port: 65535-65535}\n"
                      "        - {protocol: udp, port: 0-0}\n"
                      "        - {protocol: tcp, port: 53-53}\n"
                      "        - {protocol: tcp}\n"
                      "        - {protocol: udp}\n"
                      "      action: allow\n"));
  ASSERT_EQ(p.ingress.size(), 1u);
  const auto& ports = p.ingress[0].ports;
  ASSERT_EQ(ports.size(), 12u);
  EXPECT_EQ(ports[0], (PortSpec{Protocol::Tcp, {443, 443}}));
  EXPECT_EQ(ports[1], (PortSpec{Protocol::Tcp, {443, 443}}));
  EXPECT_EQ(ports[2], (PortSpec{Protocol::Udp, {8000, 8080}}));
  EXPECT_EQ(ports[3], (PortSpec{Protocol::Udp, {8000, 8080}}));
  EXPECT_EQ(ports[4], (PortSpec{Protocol::Tcp, {0, 0}}));
  EXPECT_EQ(ports[5], (PortSpec{Protocol::Tcp, {65535, 65535}}));
  EXPECT_EQ(ports[6], (PortSpec{Protocol::Tcp, {0, 65535}}));
  EXPECT_EQ(ports[7], (PortSpec{Protocol::Udp, {65535, 65535}}));
  EXPECT_EQ(ports[8], (PortSpec{Protocol::Udp, {0, 0}}));
  EXPECT_EQ(ports[9], (PortSpec{Protocol::Tcp, {53, 53}}));
  EXPECT_EQ(ports[10], (PortSpec{Protocol::Tcp, {0, 65535}}));
  EXPECT_EQ(ports[11], (PortSpec{Protocol::Udp, {0, 65535}}));
}

TEST(PolicyParse, AnyIsBuiltInForIngressAndEgress) {
  Policy p =
      parseOk(withSpec("  ingress:\n"
                       "    - {name: in, from: [any], action: deny}\n"
                       "  egress:\n"
                       "    - {name: out, to: [any], action: allow}\n"));
  EXPECT_TRUE(p.identities.empty());
  ASSERT_EQ(p.ingress.size(), 1u);
  EXPECT_EQ(p.ingress[0].peers, (std::vector<std::string>{"any"}));
  EXPECT_EQ(p.ingress[0].line, 6);
  ASSERT_EQ(p.egress.size(), 1u);
  EXPECT_EQ(p.egress[0].peers, (std::vector<std::string>{"any"}));
}

TEST(PolicyParse, RulesMayReferToIdentitiesDefinedLaterInTheFile) {
  Policy p =
      parseOk(withSpec("  ingress:\n"
                       "    - {name: in, from: [late], action: allow}\n"
                       "  identities:\n"
                       "    late: [10.0.0.1]\n"));
  EXPECT_EQ(p.ingress[0].peers, (std::vector<std::string>{"late"}));
}

TEST(PolicyParse, SynFloodLimits) {
  Policy low = parseOk(withSpec("  synFlood: {perSourcePps: 1, burst: 1}\n"));
  ASSERT_TRUE(low.synFlood.has_value());
  EXPECT_EQ(low.synFlood->perSourcePps, 1u);
  EXPECT_EQ(low.synFlood->burst, 1u);
  Policy high = parseOk(withSpec("  synFlood: {perSourcePps: 10000000, burst: \"10000000\"}\n"));
  ASSERT_TRUE(high.synFlood.has_value());
  EXPECT_EQ(high.synFlood->perSourcePps, 10000000u);
  EXPECT_EQ(high.synFlood->burst, 10000000u);
}

TEST(PolicyParse, CommentsAnchorsAndDocumentMarkers) {
  Policy p = parseOk(R"(# leading comment
---
apiVersion: edgeward.io/v1  # trailing comment
kind: Policy
metadata: {name: anchors}
spec:
  identities:
    a: &nets [10.0.0.0/8]
    b: *nets
  ingress:
    - {name: r, from: [a, b], action: allow}
...
)");
  ASSERT_EQ(p.identities.size(), 2u);
  EXPECT_EQ(p.identities[1].prefixes, p.identities[0].prefixes);
}

TEST(PolicyParse, TrailingEmptyDocumentIsTolerated) {
  Policy p = parseOk(withSpec("  {}\n---\n"));
  EXPECT_EQ(p.name, "test");
}

TEST(PolicyParse, ExampleFile) {
  const std::string path = std::string(EW_SOURCE_DIR) + "/examples/policy.yaml";
  auto r = loadPolicyFile(path);
  ASSERT_TRUE(r.has_value()) << r.error().str();
  const Policy& p = *r;
  EXPECT_EQ(p.source, path);
  EXPECT_EQ(p.defaultAction, Action::Deny);

  auto identity = [&](std::string_view name) -> const Identity* {
    for (const Identity& id : p.identities)
      if (id.name == name) return &id;
    return nullptr;
  };
  auto rule = [](const std::vector<Rule>& rules, std::string_view name) -> const Rule* {
    for (const Rule& r : rules)
      if (r.name == name) return &r;
    return nullptr;
  };
  const Identity* client = identity("client");
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->prefixes,
            (std::vector<Prefix>{prefixOk("10.200.0.1"), prefixOk("fd00:200::1")}));
  const Identity* lab = identity("lab");
  ASSERT_NE(lab, nullptr);
  EXPECT_EQ(lab->prefixes,
            (std::vector<Prefix>{prefixOk("10.200.0.0/24"), prefixOk("fd00:200::/64")}));
  ASSERT_NE(identity("blocked"), nullptr);

  const Rule* web = rule(p.ingress, "web");
  ASSERT_NE(web, nullptr);
  EXPECT_EQ(web->action, Action::Allow);
  EXPECT_EQ(web->peers, (std::vector<std::string>{"client"}));
  EXPECT_EQ(web->ports,
            (std::vector<PortSpec>{{Protocol::Tcp, {80, 80}}, {Protocol::Tcp, {8000, 8080}}}));
  const Rule* dns = rule(p.ingress, "dns");
  ASSERT_NE(dns, nullptr);
  EXPECT_EQ(dns->ports, (std::vector<PortSpec>{{Protocol::Udp, {5353, 5353}}}));
  const Rule* ping = rule(p.ingress, "ping");
  ASSERT_NE(ping, nullptr);
  EXPECT_EQ(ping->ports,
            (std::vector<PortSpec>{{Protocol::Icmp, {0, 65535}}, {Protocol::Icmpv6, {0, 65535}}}));
  const Rule* noAdmin = rule(p.ingress, "no-admin");
  ASSERT_NE(noAdmin, nullptr);
  EXPECT_EQ(noAdmin->action, Action::Deny);
  EXPECT_EQ(noAdmin->peers, (std::vector<std::string>{"any"}));

  // What the demo relies on: nothing allows TCP 22 or UDP 9999, so the default drops them.
  for (const Rule& r : p.ingress) {
    if (r.action != Action::Allow) continue;
    for (const PortSpec& ps : r.ports) {
      if (ps.protocol == Protocol::Tcp || ps.protocol == Protocol::Any) {
        EXPECT_FALSE(ps.range.first <= 22 && 22 <= ps.range.last) << r.name;
      }
      if (ps.protocol == Protocol::Udp || ps.protocol == Protocol::Any) {
        EXPECT_FALSE(ps.range.first <= 9999 && 9999 <= ps.range.last) << r.name;
      }
    }
    EXPECT_FALSE(r.ports.empty()) << r.name << " allows every port";
  }
  const Rule* dnsOut = rule(p.egress, "dns-out");
  ASSERT_NE(dnsOut, nullptr);
  EXPECT_EQ(dnsOut->action, Action::Allow);
}

// ---------------------------------------------------------------------------------------------
// YAML syntax and document shape

TEST(PolicyErrors, YamlSyntaxError) {
  EXPECT_EQ(errorOf(withSpec("  ingress: [web\n")),
            "policy.yaml:6: YAML syntax error: end of sequence flow not found");
  EXPECT_EQ(errorOf("apiVersion: edgeward.io/v1\nkind: Policy: x\n"),
            "policy.yaml:2: YAML syntax error: illegal map value");
}

TEST(PolicyErrors, YamlUndefinedAlias) {
  EXPECT_EQ(errorOf(withSpec("  identities:\n    a: *nets\n")),
            "policy.yaml:6: YAML syntax error: the referenced anchor is not defined");
}

TEST(PolicyErrors, DeepNestingIsAnErrorNotACrash) {
  std::string deep = withSpec("  ingress: " + std::string(5000, '[') + std::string(5000, ']'));
  std::string e = errorOf(deep);
  EXPECT_TRUE(e.starts_with("policy.yaml:5: YAML syntax error: ")) << e;
}

// yaml-cpp 0.7's LoadAll() loops forever on these; the parser must return an error instead.
TEST(PolicyErrors, StrayCommaAtDocumentLevel) {
  EXPECT_EQ(errorOf(","), "policy.yaml:1: YAML syntax error: unexpected \",\"");
  EXPECT_EQ(errorOf(", a"), "policy.yaml:1: YAML syntax error: unexpected \",\"");
  EXPECT_EQ(errorOf("- a\n,\n"), "policy.yaml:2: YAML syntax error: unexpected \",\"");
}

TEST(PolicyErrors, EmptyDocument) {
  const std::string want =
      "policy.yaml:1: (document): the document is empty (expected apiVersion, kind, metadata and "
      "spec)";
  EXPECT_EQ(errorOf(""), want);
  EXPECT_EQ(errorOf("# just a comment\n"), want);
  EXPECT_EQ(errorOf("---\n"), want);
}

TEST(PolicyErrors, DocumentIsNotAMap) {
  EXPECT_EQ(errorOf("\n- apiVersion: edgeward.io/v1\n"),
            "policy.yaml:2: (document): expected a map, got a list");
  EXPECT_EQ(errorOf("hello\n"), "policy.yaml:1: (document): expected a map, got \"hello\"");
}

TEST(PolicyErrors, SecondDocument) {
  EXPECT_EQ(errorOf(withSpec("  {}\n---\napiVersion: edgeward.io/v1\n")),
            "policy.yaml:7: (document): a policy file holds one YAML document, found a second "
            "one here");
}

// ---------------------------------------------------------------------------------------------
// Top level and metadata

TEST(PolicyErrors, UnknownTopLevelFieldWithSuggestion) {
  EXPECT_EQ(errorOf(withSpec("  {}\nkinds: Policy\n")),
            "policy.yaml:6: kinds: unknown field \"kinds\" (did you mean \"kind\"?)");
}

TEST(PolicyErrors, UnknownTopLevelFieldWithoutSuggestion) {
  EXPECT_EQ(errorOf(withSpec("  {}\nstatus: {}\n")),
            "policy.yaml:6: status: unknown field \"status\"");
}

TEST(PolicyErrors, DuplicateTopLevelField) {
  EXPECT_EQ(errorOf(withSpec("  {}\nkind: Policy\n")),
            "policy.yaml:6: kind: duplicate field \"kind\" (first on line 2)");
}

TEST(PolicyErrors, TopLevelKeyIsNotAString) {
  EXPECT_EQ(errorOf(withSpec("  {}\n? [a, b]\n: x\n")),
            "policy.yaml:6: (document): expected a field name, got a list");
}

TEST(PolicyErrors, MissingApiVersion) {
  EXPECT_EQ(errorOf("kind: Policy\nmetadata: {name: t}\nspec: {}\n"),
            "policy.yaml:1: apiVersion: required field is missing");
}

TEST(PolicyErrors, WrongApiVersion) {
  EXPECT_EQ(errorOf("apiVersion: edgeward.io/v2\nkind: Policy\nmetadata: {name: t}\nspec: {}\n"),
            "policy.yaml:1: apiVersion: unsupported value \"edgeward.io/v2\" (expected "
            "edgeward.io/v1)");
}

TEST(PolicyErrors, ApiVersionIsAList) {
  EXPECT_EQ(errorOf("apiVersion: [edgeward.io/v1]\nkind: Policy\nmetadata: {name: t}\nspec: {}\n"),
            "policy.yaml:1: apiVersion: expected a string, got a list");
}

TEST(PolicyErrors, MissingKind) {
  EXPECT_EQ(errorOf("apiVersion: edgeward.io/v1\nmetadata: {name: t}\nspec: {}\n"),
            "policy.yaml:1: kind: required field is missing");
}

TEST(PolicyErrors, WrongKind) {
  EXPECT_EQ(errorOf("apiVersion: edgeward.io/v1\nkind: NetworkPolicy\nmetadata: {name: t}\n"
                    "spec: {}\n"),
            "policy.yaml:2: kind: unsupported value \"NetworkPolicy\" (expected Policy)");
}

TEST(PolicyErrors, MissingMetadata) {
  EXPECT_EQ(errorOf("apiVersion: edgeward.io/v1\nkind: Policy\nspec: {}\n"),
            "policy.yaml:1: metadata: required field is missing");
}

TEST(PolicyErrors, MetadataIsNotAMap) {
  EXPECT_EQ(errorOf("apiVersion: edgeward.io/v1\nkind: Policy\nmetadata: test\nspec: {}\n"),
            "policy.yaml:3: metadata: expected a map, got \"test\"");
}

TEST(PolicyErrors, MissingMetadataName) {
  EXPECT_EQ(errorOf("apiVersion: edgeward.io/v1\nkind: Policy\nmetadata: {}\nspec: {}\n"),
            "policy.yaml:3: metadata.name: required field is missing");
}

TEST(PolicyErrors, EmptyMetadataName) {
  EXPECT_EQ(errorOf("apiVersion: edgeward.io/v1\nkind: Policy\nmetadata:\n  name: \"\"\n"
                    "spec: {}\n"),
            "policy.yaml:4: metadata.name: must not be empty");
}

TEST(PolicyErrors, NullMetadataNameReportsItsOwnLine) {
  // yaml-cpp marks an empty value at the next token (line 5); the message names line 4.
  EXPECT_EQ(errorOf("apiVersion: edgeward.io/v1\nkind: Policy\nmetadata:\n  name:\n"
                    "spec: {}\n"),
            "policy.yaml:4: metadata.name: must not be empty");
}

TEST(PolicyErrors, MetadataNameIsAList) {
  EXPECT_EQ(errorOf("apiVersion: edgeward.io/v1\nkind: Policy\nmetadata:\n  name: [a]\n"
                    "spec: {}\n"),
            "policy.yaml:4: metadata.name: expected a string, got a list");
}

TEST(PolicyErrors, UnknownMetadataField) {
  EXPECT_EQ(errorOf("apiVersion: edgeward.io/v1\nkind: Policy\nmetadata:\n  name: t\n"
                    "  labels: {a: b}\nspec: {}\n"),
            "policy.yaml:5: metadata.labels: unknown field \"labels\"");
  EXPECT_EQ(errorOf("apiVersion: edgeward.io/v1\nkind: Policy\nmetadata:\n  nmae: t\nspec: {}\n"),
            "policy.yaml:4: metadata.nmae: unknown field \"nmae\" (did you mean \"name\"?)");
}

TEST(PolicyErrors, MissingSpec) {
  EXPECT_EQ(errorOf("apiVersion: edgeward.io/v1\nkind: Policy\nmetadata: {name: t}\n"),
            "policy.yaml:1: spec: required field is missing");
}

// ---------------------------------------------------------------------------------------------
// spec

TEST(PolicyErrors, SpecIsAList) {
  EXPECT_EQ(errorOf(withSpec("  - ingress\n")), "policy.yaml:5: spec: expected a map, got a list");
}

TEST(PolicyErrors, SpecIsEmpty) {
  EXPECT_EQ(errorOf(withSpec("")), "policy.yaml:4: spec: expected a map, got an empty value");
}

TEST(PolicyErrors, UnknownSpecField) {
  EXPECT_EQ(errorOf(withSpec("  ingres: []\n")),
            "policy.yaml:5: spec.ingres: unknown field \"ingres\" (did you mean \"ingress\"?)");
  EXPECT_EQ(errorOf(withSpec("  defaultaction: deny\n")),
            "policy.yaml:5: spec.defaultaction: unknown field \"defaultaction\" (did you mean "
            "\"defaultAction\"?)");
  EXPECT_EQ(errorOf(withSpec("  rules: []\n")),
            "policy.yaml:5: spec.rules: unknown field \"rules\"");
}

TEST(PolicyErrors, DuplicateSpecField) {
  EXPECT_EQ(errorOf(withSpec("  ingress: []\n  egress: []\n  ingress: []\n")),
            "policy.yaml:7: spec.ingress: duplicate field \"ingress\" (first on line 5)");
}

TEST(PolicyErrors, BadDefaultAction) {
  EXPECT_EQ(errorOf(withSpec("  defaultAction: alow\n")),
            "policy.yaml:5: spec.defaultAction: unknown action \"alow\" (expected allow or deny)");
  EXPECT_EQ(errorOf(withSpec("  defaultAction: Allow\n")),
            "policy.yaml:5: spec.defaultAction: unknown action \"Allow\" (expected allow or deny)");
}

TEST(PolicyErrors, EmptyDefaultAction) {
  EXPECT_EQ(errorOf(withSpec("  defaultAction:\n  ingress: []\n")),
            "policy.yaml:5: spec.defaultAction: no value (expected allow or deny)");
}

TEST(PolicyErrors, DefaultActionIsAMap) {
  EXPECT_EQ(errorOf(withSpec("  defaultAction: {allow: true}\n")),
            "policy.yaml:5: spec.defaultAction: expected a string, got a map");
}

// ---------------------------------------------------------------------------------------------
// spec.identities

TEST(PolicyErrors, IdentitiesIsAList) {
  EXPECT_EQ(errorOf(withSpec("  identities:\n    - web\n")),
            "policy.yaml:6: spec.identities: expected a map of identity name to addresses, got a "
            "list");
}

TEST(PolicyErrors, IdentitiesIsEmpty) {
  EXPECT_EQ(errorOf(withSpec("  identities:\n  ingress: []\n")),
            "policy.yaml:5: spec.identities: expected a map of identity name to addresses, got an "
            "empty value");
}

TEST(PolicyErrors, IdentityIsNotAList) {
  EXPECT_EQ(errorOf(withSpec("  identities:\n    web: 10.0.0.1\n")),
            "policy.yaml:6: spec.identities.web: expected a list of addresses or prefixes, got "
            "\"10.0.0.1\"");
}

TEST(PolicyErrors, IdentityWithoutValue) {
  EXPECT_EQ(errorOf(withSpec("  identities:\n    web:\n    db: [10.0.0.1]\n")),
            "policy.yaml:6: spec.identities.web: expected a list of addresses or prefixes, got an "
            "empty value");
}

TEST(PolicyErrors, IdentityEmptyList) {
  EXPECT_EQ(errorOf(withSpec("  identities:\n    web: []\n")),
            "policy.yaml:6: spec.identities.web: must list at least one address or prefix");
}

TEST(PolicyErrors, IdentityInvalidName) {
  EXPECT_EQ(errorOf(withSpec("  identities:\n    web server: [10.0.0.1]\n")),
            "policy.yaml:6: spec.identities.web server: invalid name \"web server\": use only "
            "letters, digits, '_', '.' and '-'");
  EXPECT_EQ(errorOf(withSpec("  identities:\n    \"web/1\": [10.0.0.1]\n")),
            "policy.yaml:6: spec.identities.web/1: invalid name \"web/1\": use only letters, "
            "digits, '_', '.' and '-'");
}

TEST(PolicyErrors, ControlCharactersAreEscapedToKeepOneLine) {
  EXPECT_EQ(errorOf(withSpec("  identities:\n    \"web\\nserver\": [10.0.0.1]\n")),
            "policy.yaml:6: spec.identities.web\\nserver: invalid name \"web\\nserver\": use only "
            "letters, digits, '_', '.' and '-'");
  EXPECT_EQ(errorOf(withSpec("  identities:\n    web: [\"10.0.0.1\\t\"]\n")),
            "policy.yaml:6: spec.identities.web[0]: 10.0.0.1\\t: not a valid IPv4 or IPv6 address");
}

TEST(PolicyErrors, LongValuesAreCut) {
  std::string name(60, 'x');
  EXPECT_EQ(errorOf(withSpec("  " + name + ": 1\n")),
            "policy.yaml:5: spec." + name + ": unknown field \"" + std::string(40, 'x') + "...\"");
  // Cut at a character boundary, not inside a UTF-8 sequence ("é" is 2 bytes).
  std::string accents = std::string(39, 'x') + "\xc3\xa9\xc3\xa9";
  EXPECT_EQ(errorOf(withSpec("  defaultAction: " + accents + "\n")),
            "policy.yaml:5: spec.defaultAction: unknown action \"" + std::string(39, 'x') +
                "...\" (expected allow or deny)");
}

TEST(PolicyErrors, IdentityEmptyName) {
  EXPECT_EQ(errorOf(withSpec("  identities:\n    \"\": [10.0.0.1]\n")),
            "policy.yaml:6: spec.identities: an identity name must not be empty");
}

TEST(PolicyErrors, IdentityNameIsNotAString) {
  EXPECT_EQ(errorOf(withSpec("  identities:\n    ? [a]\n    : [10.0.0.1]\n")),
            "policy.yaml:6: spec.identities: expected an identity name, got a list");
}

TEST(PolicyErrors, IdentityAnyIsReserved) {
  EXPECT_EQ(errorOf(withSpec("  identities:\n    web: [10.0.0.1]\n    any: [0.0.0.0/0]\n")),
            "policy.yaml:7: spec.identities.any: \"any\" is reserved: it is built in and matches "
            "every address");
}

TEST(PolicyErrors, DuplicateIdentity) {
  EXPECT_EQ(errorOf(withSpec("  identities:\n"
                             "    web: [10.0.0.1]\n"
                             "    db: [10.0.0.2]\n"
                             "    web: [10.0.0.3]\n")),
            "policy.yaml:8: spec.identities.web: identity \"web\" is defined twice (first on line "
            "6)");
}

TEST(PolicyErrors, IdentityHostBitsSet) {
  EXPECT_EQ(errorOf(withSpec("  identities:\n"
                             "    web:\n"
                             "      - 10.0.0.0/8\n"
                             "      - 10.0.0.1/8\n")),
            "policy.yaml:8: spec.identities.web[1]: 10.0.0.1/8: host bits set (did you mean "
            "10.0.0.0/8?)");
}

TEST(PolicyErrors, IdentityBadPrefixLength) {
  EXPECT_EQ(errorOf(withSpec("  identities:\n    web: [fd00::/129]\n")),
            "policy.yaml:6: spec.identities.web[0]: fd00::/129: prefix length 129 is out of range "
            "0-128");
}

TEST(PolicyErrors, IdentityBadAddress) {
  EXPECT_EQ(errorOf(withSpec("  identities:\n    web:\n      - 10.0.0.1\n      - web.local\n")),
            "policy.yaml:8: spec.identities.web[1]: web.local: not a valid IPv4 or IPv6 address");
}

TEST(PolicyErrors, IdentityEntryIsNotAString) {
  EXPECT_EQ(errorOf(withSpec("  identities:\n    web:\n      - {cidr: 10.0.0.1}\n")),
            "policy.yaml:7: spec.identities.web[0]: expected an address or prefix, got a map");
}

TEST(PolicyErrors, IdentityEntryIsEmpty) {
  // The empty item's line is the "-" line (7), not the line of the next token (8).
  EXPECT_EQ(errorOf(withSpec("  identities:\n    web:\n      -\n      - 10.0.0.1\n")),
            "policy.yaml:7: spec.identities.web[0]: expected an address or prefix, got an empty "
            "value");
}

TEST(PolicyErrors, IdentityDuplicatePrefix) {
  EXPECT_EQ(errorOf(withSpec("  identities:\n"
                             "    web:\n"
                             "      - 10.0.0.1\n"
                             "      - fd00::/64\n"
                             "      - 10.0.0.1/32\n")),
            "policy.yaml:9: spec.identities.web[2]: 10.0.0.1/32 is listed twice (first at "
            "spec.identities.web[0])");
}

TEST(PolicyErrors, IdentityDuplicateIpv6PrefixInAnotherSpelling) {
  EXPECT_EQ(errorOf(withSpec("  identities:\n    web: [\"fd00:0::/64\", \"FD00::/64\"]\n")),
            "policy.yaml:6: spec.identities.web[1]: fd00::/64 is listed twice (first at "
            "spec.identities.web[0])");
}

// ---------------------------------------------------------------------------------------------
// Rules: shape, fields, names

TEST(PolicyErrors, IngressIsAMap) {
  EXPECT_EQ(errorOf(withSpec("  ingress:\n    web: {}\n")),
            "policy.yaml:6: spec.ingress: expected a list of rules, got a map");
}

TEST(PolicyErrors, EgressIsEmpty) {
  EXPECT_EQ(errorOf(withSpec("  egress:\n  ingress: []\n")),
            "policy.yaml:5: spec.egress: expected a list of rules, got an empty value");
}

TEST(PolicyErrors, RuleIsNotAMap) {
  EXPECT_EQ(errorOf(withSpec("  ingress:\n    - web\n")),
            "policy.yaml:6: spec.ingress[0]: expected a map, got \"web\"");
}

TEST(PolicyErrors, RuleUnknownFieldWithSuggestion) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - name: web\n"
                            "      frm: [client]\n"
                            "      action: allow\n")),
            "policy.yaml:10: spec.ingress[0].frm: unknown field \"frm\" (did you mean \"from\"?)");
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - name: web\n"
                            "      from: [client]\n"
                            "      prots: []\n"
                            "      action: allow\n")),
            "policy.yaml:11: spec.ingress[0].prots: unknown field \"prots\" (did you mean "
            "\"ports\"?)");
  EXPECT_EQ(errorOf(withIds("  egress:\n"
                            "    - name: web\n"
                            "      to: [client]\n"
                            "      acton: allow\n")),
            "policy.yaml:11: spec.egress[0].acton: unknown field \"acton\" (did you mean "
            "\"action\"?)");
}

TEST(PolicyErrors, RuleUnknownFieldWithoutSuggestion) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - name: web\n"
                            "      from: [client]\n"
                            "      action: allow\n"
                            "      log: true\n")),
            "policy.yaml:12: spec.ingress[0].log: unknown field \"log\"");
  // Two edits from "to", but too short for that to be a useful hint.
  EXPECT_EQ(errorOf(withIds("  egress:\n"
                            "    - name: web\n"
                            "      id: 7\n"
                            "      to: [client]\n"
                            "      action: allow\n")),
            "policy.yaml:10: spec.egress[0].id: unknown field \"id\"");
}

TEST(PolicyErrors, ToInIngress) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - name: web\n"
                            "      to: [client]\n"
                            "      action: allow\n")),
            "policy.yaml:10: spec.ingress[0].to: \"to\" is only valid in egress rules (ingress "
            "rules use \"from\")");
}

TEST(PolicyErrors, FromInEgress) {
  EXPECT_EQ(errorOf(withIds("  egress:\n"
                            "    - name: web\n"
                            "      from: [client]\n"
                            "      action: allow\n")),
            "policy.yaml:10: spec.egress[0].from: \"from\" is only valid in ingress rules (egress "
            "rules use \"to\")");
}

TEST(PolicyErrors, DuplicateRuleField) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - name: web\n"
                            "      from: [client]\n"
                            "      action: allow\n"
                            "      action: deny\n")),
            "policy.yaml:12: spec.ingress[0].action: duplicate field \"action\" (first on line "
            "11)");
}

TEST(PolicyErrors, RuleMissingName) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - from: [client]\n"
                            "      action: allow\n")),
            "policy.yaml:9: spec.ingress[0].name: required field is missing");
}

TEST(PolicyErrors, RuleEmptyName) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - name: \"\"\n"
                            "      from: [client]\n"
                            "      action: allow\n")),
            "policy.yaml:9: spec.ingress[0].name: must not be empty");
}

TEST(PolicyErrors, RuleNameIsAList) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - name: [web]\n"
                            "      from: [client]\n"
                            "      action: allow\n")),
            "policy.yaml:9: spec.ingress[0].name: expected a string, got a list");
}

TEST(PolicyErrors, RuleInvalidName) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - name: allow web!\n"
                            "      from: [client]\n"
                            "      action: allow\n")),
            "policy.yaml:9: spec.ingress[0].name: invalid name \"allow web!\": use only letters, "
            "digits, '_', '.' and '-'");
}

TEST(PolicyErrors, DuplicateRuleNameInIngress) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - {name: web, from: [client], action: allow}\n"
                            "    - {name: ssh, from: [client], action: allow}\n"
                            "    - {name: web, from: [lab], action: deny}\n")),
            "policy.yaml:11: spec.ingress[2].name: rule name \"web\" is already used by "
            "spec.ingress[0] (line 9)");
}

TEST(PolicyErrors, DuplicateRuleNameAcrossIngressAndEgress) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - {name: web, from: [client], action: allow}\n"
                            "  egress:\n"
                            "    - name: web\n"
                            "      to: [client]\n"
                            "      action: allow\n")),
            "policy.yaml:11: spec.egress[0].name: rule name \"web\" is already used by "
            "spec.ingress[0] (line 9)");
}

// ---------------------------------------------------------------------------------------------
// Rules: from / to

TEST(PolicyErrors, IngressMissingFrom) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - name: web\n"
                            "      action: allow\n")),
            "policy.yaml:9: spec.ingress[0].from: required field is missing");
}

TEST(PolicyErrors, EgressMissingTo) {
  EXPECT_EQ(errorOf(withIds("  egress:\n"
                            "    - name: web\n"
                            "      action: allow\n")),
            "policy.yaml:9: spec.egress[0].to: required field is missing");
}

TEST(PolicyErrors, FromEmptyList) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - name: web\n"
                            "      from: []\n"
                            "      action: allow\n")),
            "policy.yaml:10: spec.ingress[0].from: must list at least one identity (use any to "
            "match every address)");
}

TEST(PolicyErrors, FromIsAString) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - name: web\n"
                            "      from: client\n"
                            "      action: allow\n")),
            "policy.yaml:10: spec.ingress[0].from: expected a list of identity names, got "
            "\"client\"");
}

TEST(PolicyErrors, FromWithoutValue) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - name: web\n"
                            "      from:\n"
                            "      action: allow\n")),
            "policy.yaml:10: spec.ingress[0].from: expected a list of identity names, got an "
            "empty value");
}

TEST(PolicyErrors, FromUnknownIdentityWithSuggestion) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - name: web\n"
                            "      from: [lab, clent]\n"
                            "      action: allow\n")),
            "policy.yaml:10: spec.ingress[0].from[1]: unknown identity \"clent\" (did you mean "
            "\"client\"?)");
}

TEST(PolicyErrors, FromUnknownIdentityAbbreviated) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - {name: web, from: [cli], action: allow}\n")),
            "policy.yaml:9: spec.ingress[0].from[0]: unknown identity \"cli\" (did you mean "
            "\"client\"?)");
}

TEST(PolicyErrors, ToUnknownIdentityWithoutSuggestion) {
  EXPECT_EQ(errorOf(withIds("  egress:\n"
                            "    - name: web\n"
                            "      to:\n"
                            "        - database\n"
                            "      action: allow\n")),
            "policy.yaml:11: spec.egress[0].to[0]: unknown identity \"database\" (define it in "
            "spec.identities, or use any)");
}

TEST(PolicyErrors, AnyIsCaseSensitive) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - {name: web, from: [ANY], action: allow}\n")),
            "policy.yaml:9: spec.ingress[0].from[0]: unknown identity \"ANY\" (define it in "
            "spec.identities, or use any)");
}

TEST(PolicyErrors, FromDuplicateIdentity) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - name: web\n"
                            "      from: [client, lab, client]\n"
                            "      action: allow\n")),
            "policy.yaml:10: spec.ingress[0].from[2]: identity \"client\" is listed twice");
}

TEST(PolicyErrors, FromEntryIsAMap) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - name: web\n"
                            "      from: [{name: client}]\n"
                            "      action: allow\n")),
            "policy.yaml:10: spec.ingress[0].from[0]: expected an identity name, got a map");
}

// ---------------------------------------------------------------------------------------------
// Rules: action

TEST(PolicyErrors, RuleMissingAction) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - name: web\n"
                            "      from: [client]\n")),
            "policy.yaml:9: spec.ingress[0].action: required field is missing");
}

TEST(PolicyErrors, RuleBadAction) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - name: web\n"
                            "      from: [client]\n"
                            "      action: drop\n")),
            "policy.yaml:11: spec.ingress[0].action: unknown action \"drop\" (expected allow or "
            "deny)");
}

TEST(PolicyErrors, RuleActionWithoutValue) {
  EXPECT_EQ(errorOf(withIds("  egress:\n"
                            "    - name: web\n"
                            "      action:\n"
                            "      to: [client]\n")),
            "policy.yaml:10: spec.egress[0].action: no value (expected allow or deny)");
}

// ---------------------------------------------------------------------------------------------
// Rules: ports

TEST(PolicyErrors, PortsIsAMap) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - name: web\n"
                            "      from: [client]\n"
                            "      ports: {protocol: tcp}\n"
                            "      action: allow\n")),
            "policy.yaml:11: spec.ingress[0].ports: expected a list, got a map");
}

TEST(PolicyErrors, PortsEmptyList) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - name: web\n"
                            "      from: [client]\n"
                            "      ports: []\n"
                            "      action: allow\n")),
            "policy.yaml:11: spec.ingress[0].ports: must not be empty (omit ports to match every "
            "protocol and port)");
}

TEST(PolicyErrors, PortsEntryIsNotAMap) {
  EXPECT_EQ(errorOf(withPort("443")),
            "policy.yaml:12: spec.ingress[0].ports[0]: expected a map, got \"443\"");
}

TEST(PolicyErrors, PortsEntryUnknownField) {
  EXPECT_EQ(errorOf(withPort("{protcol: tcp, port: 80}")),
            "policy.yaml:12: spec.ingress[0].ports[0].protcol: unknown field \"protcol\" (did you "
            "mean \"protocol\"?)");
  // An abbreviation suggests the field it abbreviates, not "port" (edit distance 2).
  EXPECT_EQ(errorOf(withPort("{proto: tcp, port: 80}")),
            "policy.yaml:12: spec.ingress[0].ports[0].proto: unknown field \"proto\" (did you "
            "mean \"protocol\"?)");
  EXPECT_EQ(errorOf(withPort("{protocol: tcp, ports: 80}")),
            "policy.yaml:12: spec.ingress[0].ports[0].ports: unknown field \"ports\" (did you "
            "mean \"port\"?)");
  EXPECT_EQ(errorOf(withPort("{protocol: tcp, service: http}")),
            "policy.yaml:12: spec.ingress[0].ports[0].service: unknown field \"service\"");
}

TEST(PolicyErrors, PortsEntryMissingProtocol) {
  EXPECT_EQ(errorOf(withPort("{port: 80}")),
            "policy.yaml:12: spec.ingress[0].ports[0].protocol: required field is missing");
}

TEST(PolicyErrors, PortsEntryBadProtocol) {
  EXPECT_EQ(errorOf(withPort("{protocol: sctp, port: 80}")),
            "policy.yaml:12: spec.ingress[0].ports[0].protocol: unknown protocol \"sctp\" "
            "(expected tcp, udp, icmp, icmpv6 or any)");
  EXPECT_EQ(errorOf(withPort("{protocol: TCP, port: 80}")),
            "policy.yaml:12: spec.ingress[0].ports[0].protocol: unknown protocol \"TCP\" "
            "(expected tcp, udp, icmp, icmpv6 or any)");
}

TEST(PolicyErrors, PortsEntryEmptyProtocol) {
  EXPECT_EQ(errorOf(withPort("{protocol: \"\", port: 80}")),
            "policy.yaml:12: spec.ingress[0].ports[0].protocol: no value (expected tcp, udp, "
            "icmp, icmpv6 or any)");
}

TEST(PolicyErrors, PortWithIcmp) {
  EXPECT_EQ(errorOf(withPort("{protocol: icmp, port: 8}")),
            "policy.yaml:12: spec.ingress[0].ports[0].port: port is only valid with protocol tcp "
            "or udp");
}

TEST(PolicyErrors, PortWithIcmpv6) {
  EXPECT_EQ(errorOf(withPort("{protocol: icmpv6, port: 128}")),
            "policy.yaml:12: spec.ingress[0].ports[0].port: port is only valid with protocol tcp "
            "or udp");
}

TEST(PolicyErrors, PortWithAnyProtocol) {
  EXPECT_EQ(errorOf(withPort("{protocol: any, port: 80}")),
            "policy.yaml:12: spec.ingress[0].ports[0].port: port is only valid with protocol tcp "
            "or udp");
}

TEST(PolicyErrors, PortRangeStartAfterEnd) {
  EXPECT_EQ(errorOf(withPort("{protocol: tcp, port: 80-70}")),
            "policy.yaml:12: spec.ingress[0].ports[0].port: range 80-70: start is after end");
}

TEST(PolicyErrors, PortOutOfRange) {
  EXPECT_EQ(errorOf(withPort("{protocol: udp, port: 70000}")),
            "policy.yaml:12: spec.ingress[0].ports[0].port: port 70000 is out of range 0-65535");
  EXPECT_EQ(errorOf(withPort("{protocol: udp, port: \"65536\"}")),
            "policy.yaml:12: spec.ingress[0].ports[0].port: port 65536 is out of range 0-65535");
  EXPECT_EQ(errorOf(withPort("{protocol: udp, port: 99999999999999999999999}")),
            "policy.yaml:12: spec.ingress[0].ports[0].port: port 99999999999999999999999 is out "
            "of range 0-65535");
}

TEST(PolicyErrors, NegativePort) {
  EXPECT_EQ(errorOf(withPort("{protocol: tcp, port: -1}")),
            "policy.yaml:12: spec.ingress[0].ports[0].port: port -1 is out of range 0-65535");
}

TEST(PolicyErrors, PortRangeEndOutOfRange) {
  EXPECT_EQ(errorOf(withPort("{protocol: tcp, port: 8000-70000}")),
            "policy.yaml:12: spec.ingress[0].ports[0].port: port 70000 is out of range 0-65535");
}

TEST(PolicyErrors, PortIsNotAPortOrRange) {
  EXPECT_EQ(errorOf(withPort("{protocol: tcp, port: http}")),
            "policy.yaml:12: spec.ingress[0].ports[0].port: \"http\" is not a port or a range");
  EXPECT_EQ(errorOf(withPort("{protocol: tcp, port: \"80 - 90\"}")),
            "policy.yaml:12: spec.ingress[0].ports[0].port: \"80 - 90\" is not a port or a range");
  EXPECT_EQ(errorOf(withPort("{protocol: tcp, port: 80-}")),
            "policy.yaml:12: spec.ingress[0].ports[0].port: \"80-\" is not a port or a range");
  EXPECT_EQ(errorOf(withPort("{protocol: tcp, port: 1-2-3}")),
            "policy.yaml:12: spec.ingress[0].ports[0].port: \"1-2-3\" is not a port or a range");
  EXPECT_EQ(errorOf(withPort("{protocol: tcp, port: 80.5}")),
            "policy.yaml:12: spec.ingress[0].ports[0].port: \"80.5\" is not a port or a range");
  EXPECT_EQ(errorOf(withPort("{protocol: tcp, port: \"\"}")),
            "policy.yaml:12: spec.ingress[0].ports[0].port: \"\" is not a port or a range");
}

TEST(PolicyErrors, PortIsAList) {
  EXPECT_EQ(errorOf(withPort("{protocol: tcp, port: [80, 443]}")),
            "policy.yaml:12: spec.ingress[0].ports[0].port: expected a port number or range (443 "
            "or \"8000-8080\"), got a list");
}

TEST(PolicyErrors, PortWithoutValue) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - name: web\n"
                            "      from: [client]\n"
                            "      ports:\n"
                            "        - protocol: tcp\n"
                            "          port:\n"
                            "      action: allow\n")),
            "policy.yaml:13: spec.ingress[0].ports[0].port: expected a port number or range (443 "
            "or \"8000-8080\"), got an empty value");
}

TEST(PolicyErrors, ErrorInLaterPortsEntryAndRule) {
  EXPECT_EQ(errorOf(withIds("  ingress:\n"
                            "    - {name: a, from: [client], action: allow}\n"
                            "    - {name: b, from: [client], action: allow}\n"
                            "    - name: c\n"
                            "      from: [lab]\n"
                            "      ports:\n"
                            "        - {protocol: udp, port: 53}\n"
                            "        - protocol: tcp\n"
                            "          port: 80-70\n"
                            "      action: allow\n")),
            "policy.yaml:16: spec.ingress[2].ports[1].port: range 80-70: start is after end");
}

// ---------------------------------------------------------------------------------------------
// spec.synFlood

TEST(PolicyErrors, SynFloodIsNotAMap) {
  EXPECT_EQ(errorOf(withSpec("  synFlood: 100\n")),
            "policy.yaml:5: spec.synFlood: expected a map, got \"100\"");
}

TEST(PolicyErrors, SynFloodUnknownField) {
  EXPECT_EQ(errorOf(withSpec("  synFlood:\n    perSourcePPS: 100\n    burst: 10\n")),
            "policy.yaml:6: spec.synFlood.perSourcePPS: unknown field \"perSourcePPS\" (did you "
            "mean \"perSourcePps\"?)");
  EXPECT_EQ(errorOf(withSpec("  synFlood: {perSourcePps: 100, burst: 10, enabled: true}\n")),
            "policy.yaml:5: spec.synFlood.enabled: unknown field \"enabled\"");
}

TEST(PolicyErrors, SynFloodMissingPerSourcePps) {
  EXPECT_EQ(errorOf(withSpec("  synFlood:\n    burst: 10\n")),
            "policy.yaml:6: spec.synFlood.perSourcePps: required field is missing");
}

TEST(PolicyErrors, SynFloodMissingBurst) {
  EXPECT_EQ(errorOf(withSpec("  synFlood:\n    perSourcePps: 100\n")),
            "policy.yaml:6: spec.synFlood.burst: required field is missing");
}

TEST(PolicyErrors, SynFloodZero) {
  EXPECT_EQ(errorOf(withSpec("  synFlood:\n    perSourcePps: 0\n    burst: 10\n")),
            "policy.yaml:6: spec.synFlood.perSourcePps: 0 is out of range 1-10000000");
  EXPECT_EQ(errorOf(withSpec("  synFlood:\n    perSourcePps: 10\n    burst: 0\n")),
            "policy.yaml:7: spec.synFlood.burst: 0 is out of range 1-10000000");
}

TEST(PolicyErrors, SynFloodTooLarge) {
  EXPECT_EQ(errorOf(withSpec("  synFlood:\n    perSourcePps: 10000001\n    burst: 10\n")),
            "policy.yaml:6: spec.synFlood.perSourcePps: 10000001 is out of range 1-10000000");
  EXPECT_EQ(errorOf(withSpec("  synFlood: {perSourcePps: 1, burst: 99999999999999999999999}\n")),
            "policy.yaml:5: spec.synFlood.burst: 99999999999999999999999 is out of range "
            "1-10000000");
}

TEST(PolicyErrors, SynFloodNegative) {
  EXPECT_EQ(errorOf(withSpec("  synFlood:\n    perSourcePps: -5\n    burst: 10\n")),
            "policy.yaml:6: spec.synFlood.perSourcePps: -5 is out of range 1-10000000");
}

TEST(PolicyErrors, SynFloodNotANumber) {
  EXPECT_EQ(errorOf(withSpec("  synFlood:\n    perSourcePps: fast\n    burst: 10\n")),
            "policy.yaml:6: spec.synFlood.perSourcePps: \"fast\" is not a whole number");
  EXPECT_EQ(errorOf(withSpec("  synFlood:\n    perSourcePps: 1.5\n    burst: 10\n")),
            "policy.yaml:6: spec.synFlood.perSourcePps: \"1.5\" is not a whole number");
}

TEST(PolicyErrors, SynFloodValueIsAList) {
  EXPECT_EQ(errorOf(withSpec("  synFlood:\n    perSourcePps: 10\n    burst: [10]\n")),
            "policy.yaml:7: spec.synFlood.burst: expected a number, got a list");
}

TEST(PolicyErrors, FirstErrorWins) {
  // Both the defaultAction and the identity are wrong; only the first is reported.
  EXPECT_EQ(errorOf(withSpec("  defaultAction: maybe\n  identities: {any: [10.0.0.1]}\n")),
            "policy.yaml:5: spec.defaultAction: unknown action \"maybe\" (expected allow or deny)");
}

// ---------------------------------------------------------------------------------------------
// loadPolicyFile

class PolicyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ew_policy_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    for (const auto& f : files_) std::remove(f.c_str());
    ::rmdir(dir_.c_str());
  }
  std::string write(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    FILE* f = std::fopen(path.c_str(), "w");
    EXPECT_NE(f, nullptr);
    if (f) {
      std::fwrite(text.data(), 1, text.size(), f);
      std::fclose(f);
    }
    files_.push_back(path);
    return path;
  }
  std::string dir_;
  std::vector<std::string> files_;
};

TEST_F(PolicyFileTest, LoadsFile) {
  std::string path = write("ok.yaml", withSpec("  defaultAction: allow\n"));
  auto r = loadPolicyFile(path);
  ASSERT_TRUE(r.has_value()) << r.error().str();
  EXPECT_EQ(r->source, path);
  EXPECT_EQ(r->defaultAction, Action::Allow);
}

TEST_F(PolicyFileTest, ErrorsNameThePathAsGiven) {
  std::string path = write("bad.yaml", withSpec("  defaultAction: alow\n"));
  auto r = loadPolicyFile(path);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().str(),
            path + ":5: spec.defaultAction: unknown action \"alow\" (expected allow or deny)");
}

TEST_F(PolicyFileTest, MissingFile) {
  std::string path = dir_ + "/missing.yaml";
  auto r = loadPolicyFile(path);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().str(), path + ": No such file or directory");
  EXPECT_EQ(r.error().errnoValue(), ENOENT);
}

TEST_F(PolicyFileTest, Directory) {
  auto r = loadPolicyFile(dir_);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().str(), dir_ + ": Is a directory");
  EXPECT_EQ(r.error().errnoValue(), EISDIR);
}

TEST_F(PolicyFileTest, EmptyFile) {
  std::string path = write("empty.yaml", "");
  auto r = loadPolicyFile(path);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().str(), path +
                                 ":1: (document): the document is empty (expected apiVersion, "
                                 "kind, metadata and spec)");
}

}  // namespace
}  // namespace edgeward::policy
