// Prefix patches: validation, the policy text rewritten in place, and its positions kept right
// over a run of patches.
#include <gtest/gtest.h>

#include "policy/patch.h"
#include "policy/policy.h"

namespace edgeward::policy {
namespace {

constexpr const char* kText = R"(apiVersion: edgeward.io/v1
kind: Policy
metadata:
  name: patch-me   # a comment that stays
spec:
  defaultAction: deny
  identities:
    office:
      - 10.1.0.0/24    # first floor
      - "10.2.0.0/24"
      - 10.3.0.0/24
    partners: [192.0.2.0/24, '198.51.100.0/24']
    v6:
      - 2001:db8::/48
  ingress:
    - name: web
      from: [office, partners, v6]
      ports: [{protocol: tcp, port: 443}]
      action: allow
)";

Policy parsed(const std::string& text) {
  auto p = parsePolicy(text, "p.yaml");
  EXPECT_TRUE(p.has_value()) << p.error().str() << "\n" << text;
  return p ? *p : Policy{};
}

std::vector<std::string> prefixes(const Policy& p, std::string_view identity) {
  std::vector<std::string> out;
  for (const auto& id : p.identities)
    if (id.name == identity)
      for (const auto& pr : id.prefixes) out.push_back(pr.str());
  return out;
}

std::string errorOf(const Policy& p, IdentityPatch patch) {
  auto r = planPatch(p, std::span(&patch, 1));
  EXPECT_FALSE(r.has_value());
  return r ? std::string() : r.error().str();
}

TEST(PolicyPatch, RewritesOnlyThePatchedListsInPlace) {
  Policy p = parsed(kText);
  std::vector<IdentityPatch> patches{{"office", {"10.9.0.0/24"}, {"10.2.0.0/24"}},
                                     {"partners", {"203.0.113.0/24"}, {"192.0.2.0/24"}}};
  auto changes = planPatch(p, patches);
  ASSERT_TRUE(changes.has_value()) << changes.error().str();
  ASSERT_EQ(changes->size(), 4u);
  const std::string text = applyPatch(p, kText, *changes);
  const std::string want = R"(apiVersion: edgeward.io/v1
kind: Policy
metadata:
  name: patch-me   # a comment that stays
spec:
  defaultAction: deny
  identities:
    office:
      - 10.1.0.0/24
      - 10.3.0.0/24
      - 10.9.0.0/24
    partners: ['198.51.100.0/24', 203.0.113.0/24]
    v6:
      - 2001:db8::/48
  ingress:
    - name: web
      from: [office, partners, v6]
      ports: [{protocol: tcp, port: 443}]
      action: allow
)";
  EXPECT_EQ(text, want);
  EXPECT_EQ(prefixes(p, "office"),
            (std::vector<std::string>{"10.1.0.0/24", "10.3.0.0/24", "10.9.0.0/24"}));
  Policy back = parsed(text);
  for (const char* id : {"office", "partners", "v6"})
    EXPECT_EQ(prefixes(back, id), prefixes(p, id));
}

TEST(PolicyPatch, PositionsStayRightOverManyPatches) {
  Policy p = parsed(kText);
  std::string text = kText;
  for (int i = 0; i < 40; i++) {
    // Grow and shrink lists before and after each other, so later lists move both ways.
    const std::string net = "172.16." + std::to_string(i) + ".0/24";
    std::vector<IdentityPatch> patches{{"v6", {"2001:db8:" + std::to_string(i + 1) + "::/48"}, {}},
                                       {"office", {net}, {}}};
    if (i > 0) patches[1].remove.push_back("172.16." + std::to_string(i - 1) + ".0/24");
    auto changes = planPatch(p, patches);
    ASSERT_TRUE(changes.has_value()) << changes.error().str();
    text = applyPatch(p, text, *changes);
    Policy back = parsed(text);
    for (const char* id : {"office", "partners", "v6"})
      ASSERT_EQ(prefixes(back, id), prefixes(p, id)) << "patch " << i << "\n" << text;
  }
  EXPECT_EQ(prefixes(p, "v6").size(), 41u);
  EXPECT_EQ(prefixes(p, "office").size(), 4u);
}

TEST(PolicyPatch, WithoutPositionsThePolicyIsRendered) {
  // An alias shares a node, so positions are not kept: the whole policy is rendered instead.
  std::string aliased = kText;
  aliased.replace(aliased.find("from: ["), 6, "from: &peers ");
  aliased += "  egress:\n    - name: out\n      to: *peers\n      action: deny\n";
  Policy p = parsed(aliased);
  IdentityPatch patch{"partners", {"192.0.2.128/25"}, {}};
  auto changes = planPatch(p, std::span(&patch, 1));
  ASSERT_TRUE(changes.has_value());
  const std::string text = applyPatch(p, aliased, *changes);
  EXPECT_EQ(text, renderPolicy(p));
  Policy back = parsed(text);
  EXPECT_EQ(prefixes(back, "partners"),
            (std::vector<std::string>{"192.0.2.0/24", "198.51.100.0/24", "192.0.2.128/25"}));
  EXPECT_EQ(back.egress.size(), 1u);
  EXPECT_EQ(back.ingress.at(0).ports, p.ingress.at(0).ports);
}

TEST(PolicyPatch, BadPatchesAreOneClearError) {
  const Policy p = parsed(kText);
  EXPECT_EQ(errorOf(p, {"ofice", {"10.9.0.0/24"}, {}}),
            "patch: unknown identity \"ofice\" (did you mean \"office\"?)");
  EXPECT_EQ(errorOf(p, {"any", {"10.9.0.0/24"}, {}}),
            "patch: \"any\" is built in and matches every address; it has no prefixes to patch");
  EXPECT_EQ(errorOf(p, {"office", {}, {}}), "patch: identity \"office\": nothing to add or remove");
  EXPECT_EQ(errorOf(p, {"office", {"10.9.0.0/33"}, {}}),
            "patch: identity \"office\": add 10.9.0.0/33: prefix length 33 is out of range 0-32");
  EXPECT_EQ(errorOf(p, {"office", {"10.9.0.1/24"}, {}}),
            "patch: identity \"office\": add 10.9.0.1/24: host bits set (did you mean "
            "10.9.0.0/24?)");
  EXPECT_EQ(errorOf(p, {"office", {"10.1.0.0/24"}, {}}),
            "patch: identity \"office\": add 10.1.0.0/24: already one of its prefixes");
  EXPECT_EQ(errorOf(p, {"office", {}, {"10.7.0.0/24"}}),
            "patch: identity \"office\": remove 10.7.0.0/24: not one of its prefixes");
  EXPECT_EQ(errorOf(p, {"office", {"10.9.0.0/24"}, {"10.9.0.0/24"}}),
            "patch: identity \"office\": remove 10.9.0.0/24: not one of its prefixes");
  EXPECT_EQ(errorOf(p, {"office", {"10.9.0.0/24", "10.9.0.0/24"}, {}}),
            "patch: identity \"office\": 10.9.0.0/24 is given twice to add");
  EXPECT_EQ(errorOf(p, {"v6", {}, {"2001:db8::/48"}}),
            "patch: identity \"v6\" would have no prefixes left (an identity lists at least one; "
            "remove it from the policy file instead)");
  std::vector<IdentityPatch> twice{{"v6", {"2001:db8:1::/48"}, {}},
                                   {"v6", {"2001:db8:2::/48"}, {}}};
  auto r = planPatch(p, twice);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().str(), "patch: identity \"v6\" is patched twice in one request");
  EXPECT_EQ(planPatch(p, {}).error().str(),
            "patch: nothing to change (give an identity and prefixes to add or remove)");
}

}  // namespace
}  // namespace edgeward::policy
