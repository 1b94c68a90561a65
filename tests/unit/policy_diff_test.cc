// Policy diff: identities and prefixes, rules by name, defaultAction and synFlood, the human
// rendering, and the speed on large prefix lists.
#include <chrono>
#include <string>

#include <gtest/gtest.h>

#include "policy/diff.h"
#include "policy/policy.h"
#include "support/policy_builders.h"

namespace edgeward::policy {
namespace {

using builders::parseOk;

std::string doc(std::string_view spec) { return builders::policyDoc(spec, "t"); }

Prefix pfx(std::string_view t) {
  auto r = parsePrefix(t);
  EXPECT_TRUE(r.has_value()) << r.error().str();
  return r ? *r : Prefix{};
}

std::vector<std::string> strs(const std::vector<Prefix>& v) {
  std::vector<std::string> out;
  for (const Prefix& p : v) out.push_back(p.str());
  return out;
}

const Policy kBase = parseOk(doc(R"(
  defaultAction: deny
  identities:
    admin: [192.0.2.10]
    client: [10.200.0.1, fd00:200::1]
    lab: [10.0.0.0/24, 10.0.2.0/24]
  ingress:
    - name: ssh
      from: [admin]
      ports: [{protocol: tcp, port: 22}]
      action: allow
    - name: web
      from: [client]
      ports: [{protocol: tcp, port: 80}]
      action: allow
  egress:
    - name: dns
      to: [any]
      ports: [{protocol: udp, port: 53}]
      action: allow
)"));

TEST(PolicyDiff, IdenticalPoliciesHaveNoChanges) {
  PolicyDiff d = diff(kBase, kBase);
  EXPECT_TRUE(d.empty());
  EXPECT_EQ(d.prefixesAdded(), 0u);
  EXPECT_EQ(d.prefixesRemoved(), 0u);
  EXPECT_EQ(d.defaultActionBefore, "deny");
  EXPECT_EQ(d.defaultActionAfter, "deny");
  EXPECT_EQ(d.synFloodBefore, "off");
  EXPECT_EQ(renderDiff(d), "no changes\n");
}

TEST(PolicyDiff, LineNumbersAndPrefixOrderAreNotChanges) {
  Policy after = kBase;
  for (Rule& r : after.ingress) r.line += 5;
  std::swap(after.identities[2].prefixes[0], after.identities[2].prefixes[1]);
  std::swap(after.identities[0], after.identities[1]);
  EXPECT_TRUE(diff(kBase, after).empty()) << renderDiff(diff(kBase, after));
}

TEST(PolicyDiff, TheExampleFromTheBrief) {
  Policy after = parseOk(doc(R"(
  defaultAction: deny
  identities:
    client: [10.200.0.1, fd00:200::1]
    lab: [10.0.0.0/24, 10.0.1.0/24]
    web: [198.51.100.0/24, 2001:db8::/32]
  ingress:
    - name: web
      from: [client]
      ports: [{protocol: tcp, port: 80}, {protocol: tcp, port: 443}]
      action: allow
  egress:
    - name: dns
      to: [any]
      ports: [{protocol: udp, port: 53}]
      action: allow
)"));
  PolicyDiff d = diff(kBase, after);
  EXPECT_EQ(d.identitiesAdded, std::vector<std::string>{"web"});
  EXPECT_EQ(d.identitiesRemoved, std::vector<std::string>{"admin"});
  ASSERT_EQ(d.identityChanges.size(), 3u);
  EXPECT_EQ(d.identityChanges[0].name, "lab");
  EXPECT_EQ(strs(d.identityChanges[0].added), std::vector<std::string>{"10.0.1.0/24"});
  EXPECT_EQ(strs(d.identityChanges[0].removed), std::vector<std::string>{"10.0.2.0/24"});
  EXPECT_EQ(d.identityChanges[1].name, "web");
  EXPECT_EQ(d.identityChanges[1].added.size(), 2u);
  EXPECT_EQ(d.identityChanges[2].name, "admin");
  EXPECT_EQ(strs(d.identityChanges[2].removed), std::vector<std::string>{"192.0.2.10/32"});
  EXPECT_EQ(d.prefixesAdded(), 3u);
  EXPECT_EQ(d.prefixesRemoved(), 2u);
  ASSERT_EQ(d.rulesRemoved.size(), 1u);
  EXPECT_EQ(d.rulesRemoved[0].before, "allow from [admin] tcp/22");
  EXPECT_EQ(d.rulesRemoved[0].after, "");
  ASSERT_EQ(d.rulesChanged.size(), 1u);
  EXPECT_EQ(d.rulesChanged[0].direction, "ingress");
  EXPECT_TRUE(d.rulesAdded.empty());
  EXPECT_FALSE(d.empty());
  EXPECT_EQ(renderDiff(d),
            "~ identity lab: +10.0.1.0/24 -10.0.2.0/24\n"
            "+ identity web (2 prefixes)\n"
            "- identity admin (1 prefix)\n"
            "- rule ssh (ingress): allow from [admin] tcp/22\n"
            "~ rule web (ingress): allow from [client] tcp/80 -> allow from [client] "
            "tcp/80,tcp/443\n");
}

TEST(PolicyDiff, RulesAddedByNameAndDirection) {
  Policy after = kBase;
  after.egress.push_back({"ntp", {"any"}, {{Protocol::Udp, {123, 123}}}, Action::Allow, 0});
  // The same name moving to the other direction is a removal and an addition.
  Rule ssh = after.ingress[0];
  after.ingress.erase(after.ingress.begin());
  after.egress.push_back(ssh);
  PolicyDiff d = diff(kBase, after);
  ASSERT_EQ(d.rulesAdded.size(), 2u);
  EXPECT_EQ(d.rulesAdded[0].name, "ntp");
  EXPECT_EQ(d.rulesAdded[0].direction, "egress");
  EXPECT_EQ(d.rulesAdded[0].before, "");
  EXPECT_EQ(d.rulesAdded[0].after, "allow to [any] udp/123");
  EXPECT_EQ(d.rulesAdded[1].after, "allow to [admin] tcp/22");
  ASSERT_EQ(d.rulesRemoved.size(), 1u);
  EXPECT_EQ(d.rulesRemoved[0].direction, "ingress");
  EXPECT_EQ(renderDiff(d),
            "+ rule ntp (egress): allow to [any] udp/123\n"
            "+ rule ssh (egress): allow to [admin] tcp/22\n"
            "- rule ssh (ingress): allow from [admin] tcp/22\n");
}

TEST(PolicyDiff, ActionPeersAndPortsAreRuleChanges) {
  Policy after = kBase;
  after.ingress[0].action = Action::Deny;
  after.ingress[1].peers = {"client", "lab"};
  after.egress[0].ports.clear();
  PolicyDiff d = diff(kBase, after);
  ASSERT_EQ(d.rulesChanged.size(), 3u);
  EXPECT_EQ(d.rulesChanged[0].after, "deny from [admin] tcp/22");
  EXPECT_EQ(d.rulesChanged[1].after, "allow from [client,lab] tcp/80");
  EXPECT_EQ(d.rulesChanged[2].before, "allow to [any] udp/53");
  EXPECT_EQ(d.rulesChanged[2].after, "allow to [any] all");
}

TEST(PolicyDiff, RuleRendering) {
  Rule r{"x", {"a", "b"}, {}, Action::Deny, 0};
  EXPECT_EQ(renderRule(r, true), "deny from [a,b] all");
  r.ports = {{Protocol::Tcp, {80, 80}},      {Protocol::Tcp, {8000, 8080}},
             {Protocol::Udp, {0, 65535}},    {Protocol::Icmp, {0, 65535}},
             {Protocol::Icmpv6, {0, 65535}}, {Protocol::Any, {0, 65535}}};
  EXPECT_EQ(renderRule(r, false), "deny to [a,b] tcp/80,tcp/8000-8080,udp,icmp,icmpv6,any");
}

TEST(PolicyDiff, DefaultActionAndSynFlood) {
  Policy after = kBase;
  after.defaultAction = Action::Allow;
  after.synFlood = SynFlood{100, 20};
  PolicyDiff d = diff(kBase, after);
  EXPECT_FALSE(d.empty());
  EXPECT_EQ(d.synFloodBefore, "off");
  EXPECT_EQ(d.synFloodAfter, "100/s burst 20");
  EXPECT_EQ(renderDiff(d), "~ defaultAction: deny -> allow\n~ synFlood: off -> 100/s burst 20\n");
  Policy again = after;
  again.synFlood = SynFlood{100, 30};
  EXPECT_EQ(renderDiff(diff(after, again)), "~ synFlood: 100/s burst 20 -> 100/s burst 30\n");
}

TEST(PolicyDiff, LongPrefixListsShowTenAndCountTheRest) {
  Policy before = kBase, after = kBase;
  before.identities[2].prefixes.clear();
  after.identities[2].prefixes.clear();
  for (int i = 0; i < 25; i++)
    after.identities[2].prefixes.push_back(pfx(fmt::format("10.1.{}.0/24", i)));
  for (int i = 0; i < 3; i++)
    before.identities[2].prefixes.push_back(pfx(fmt::format("fd00:{}::/64", i + 1)));
  PolicyDiff d = diff(before, after);
  ASSERT_EQ(d.identityChanges.size(), 1u);
  EXPECT_EQ(d.identityChanges[0].added.size(), 25u);
  EXPECT_EQ(d.identityChanges[0].removed.size(), 3u);
  std::string expect = "~ identity lab:";
  for (int i = 0; i < 10; i++) expect += fmt::format(" +10.1.{}.0/24", i);
  expect += " ... and 15 more -fd00:1::/64 -fd00:2::/64 -fd00:3::/64\n";
  EXPECT_EQ(renderDiff(d), expect);
}

// Two policies of 100,000 prefixes each, half of them different.
TEST(PolicyDiff, HundredThousandPrefixesUnder100ms) {
  Policy before = kBase, after = kBase;
  auto& b = before.identities[2].prefixes;
  auto& a = after.identities[2].prefixes;
  b.clear();
  a.clear();
  for (uint32_t i = 0; i < 100000; i++) {
    Prefix p;
    p.len = 32;
    p.addr = {10, uint8_t(i >> 16), uint8_t(i >> 8), uint8_t(i)};
    b.push_back(p);
    Prefix q = p;
    if (i % 2) q.addr[0] = 11;
    a.push_back(q);
  }
  // Shuffle the new list so the diff cannot rely on the file order.
  std::reverse(a.begin(), a.end());
  // Best of three: the machine is shared, and the bound is about the code, not the neighbours.
  double ms = 1e9;
  PolicyDiff d;
  std::string text;
  for (int run = 0; run < 3; run++) {
    auto start = std::chrono::steady_clock::now();
    d = diff(before, after);
    text = renderDiff(d);
    ms = std::min(
        ms, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                .count());
  }
  EXPECT_EQ(d.prefixesAdded(), 50000u);
  EXPECT_EQ(d.prefixesRemoved(), 50000u);
  EXPECT_NE(text.find("... and 49990 more"), std::string::npos);
  EXPECT_LT(ms, 100.0);
  RecordProperty("diff_ms", std::to_string(ms));
}

}  // namespace
}  // namespace edgeward::policy
