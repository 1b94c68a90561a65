// The data plane's transactions against the real program: incremental writes, revert, version.
#include <gtest/gtest.h>

#include <random>

#include "bpf/firewall_program.h"
#include "dataplane/dataplane.h"
#include "policy/compiler.h"
#include "support/packet.h"

namespace edgeward {
namespace {

using policy::Family;
using policy::Prefix;

Prefix v4(uint32_t addr, uint8_t len) {
  Prefix p;
  p.family = Family::V4;
  p.len = len;
  p.addr[0] = addr >> 24;
  p.addr[1] = addr >> 16;
  p.addr[2] = addr >> 8;
  p.addr[3] = addr;
  return p;
}

std::string text(uint32_t a) {
  return fmt::format("{}.{}.{}.{}", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

// identities id0..idN-1 with /24 prefixes; rule rK allows tcp port 1000+K from idK.
struct Lab {
  policy::Policy policy;
  std::vector<uint32_t> nets;  // /24 network addresses, identity = index % identities
  size_t identities;

  Lab(size_t prefixes, size_t idents) : identities(idents) {
    std::mt19937 rng(7);
    std::set<uint32_t> seen;
    while (nets.size() < prefixes) {
      uint32_t n = (rng() & 0xffffff00u) | 0;
      if ((n >> 24) == 0 || (n >> 24) >= 224 || !seen.insert(n).second) continue;
      nets.push_back(n);
    }
    build();
  }

  void build() {
    policy = {};
    policy.name = "lab";
    policy.identities.resize(identities);
    for (size_t i = 0; i < identities; i++) policy.identities[i].name = fmt::format("id{}", i);
    for (size_t k = 0; k < nets.size(); k++)
      policy.identities[k % identities].prefixes.push_back(v4(nets[k], 24));
    for (size_t i = 0; i < identities; i++) {
      policy::Rule r;
      r.name = fmt::format("r{}", i);
      r.peers = {policy.identities[i].name};
      uint16_t port = static_cast<uint16_t>(1000 + i);
      r.ports = {{policy::Protocol::Tcp, {port, port}}};
      policy.ingress.push_back(r);
    }
  }

  // Replaces `n` prefixes at positions spread over the list; returns the new and old networks.
  std::pair<std::vector<size_t>, std::vector<uint32_t>> change(size_t n, uint32_t salt) {
    std::vector<size_t> at;
    std::vector<uint32_t> old;
    for (size_t i = 0; i < n; i++) {
      size_t k = (i * 7919 + salt) % nets.size();
      at.push_back(k);
      old.push_back(nets[k]);
      nets[k] = (0x0a000000u | ((salt * 131 + i) << 8)) & 0xffffff00u;  // inside 10/8
    }
    build();
    return {at, old};
  }
};

std::vector<uint8_t> syn(uint32_t src, uint16_t port) {
  testing::PacketSpec s;
  s.src = text(src);
  s.dst = "192.0.2.1";
  s.dport = port;
  return testing::buildPacket(s);
}

struct Verdict {
  bool pass;
  uint32_t rule;
  uint8_t reason;
  bool operator==(const Verdict&) const = default;
};

Verdict judge(bpf::FirewallProgram& fw, const std::vector<uint8_t>& frame) {
  EXPECT_TRUE(fw.clearState());
  auto r = fw.testRun(bpf::Hook::XdpIngress, frame);
  EXPECT_TRUE(r) << r.error().str();
  return {r->pass, r->verdict.rule, r->verdict.reason};
}

TEST(Dataplane, SmallChangeToALargePolicyWritesFewEntriesAndJudgesLikeAFreshLoad) {
  Lab lab(100000, 1000);
  auto c0 = policy::compile(lab.policy);
  ASSERT_TRUE(c0) << c0.error().str();
  auto opts = dataplane::optionsFor(*c0);
  opts.recordVerdict = true;
  auto fw = bpf::FirewallProgram::load(opts);
  ASSERT_TRUE(fw) << fw.error().str();
  dataplane::Dataplane dp(**fw);

  auto s0 = dp.apply(*c0, 1);
  ASSERT_TRUE(s0) << s0.error().str();
  EXPECT_TRUE(s0->fullRewrite);
  const size_t full = s0->entriesWritten;

  auto ch1 = lab.change(10, 1);
  auto c1 = policy::compile(lab.policy, {}, &*c0);
  ASSERT_TRUE(c1);
  auto s1 = dp.apply(*c1, 2);  // the other generation: never written, so laid out afresh
  ASSERT_TRUE(s1) << s1.error().str();

  auto ch2 = lab.change(10, 2);
  auto c2 = policy::compile(lab.policy, {}, &*c1);
  ASSERT_TRUE(c2);
  auto s2 = dp.apply(*c2, 3);  // back onto the generation holding version 1: incremental
  ASSERT_TRUE(s2) << s2.error().str();
  EXPECT_FALSE(s2->fullRewrite);
  EXPECT_LT(s2->entriesWritten, full / 50) << "full layout wrote " << full;
  EXPECT_GT(s2->entriesKept, 0u);
  RecordProperty("full_entries", std::to_string(full));
  RecordProperty("incremental_entries", std::to_string(s2->entriesWritten));
  RecordProperty("incremental_write_ms", std::to_string(s2->writeMs));
  auto version = dp.pinnedVersion();
  ASSERT_TRUE(version);
  EXPECT_EQ(*version, 3u);

  // The same policy laid out from scratch in a second program is the oracle.
  auto fresh = bpf::FirewallProgram::load(opts);
  ASSERT_TRUE(fresh);
  dataplane::Dataplane freshDp(**fresh);
  ASSERT_TRUE(freshDp.apply(*c2, 3));

  std::vector<uint32_t> probes;
  for (auto* ch : {&ch1, &ch2})
    for (size_t i = 0; i < ch->first.size(); i++) {
      probes.push_back(lab.nets[ch->first[i]] + 1);  // new network
      probes.push_back(ch->second[i] + 200);         // network removed (maybe re-added)
    }
  std::mt19937 rng(3);
  for (int i = 0; i < 300; i++) probes.push_back(lab.nets[rng() % lab.nets.size()] + 9);
  for (int i = 0; i < 100; i++) probes.push_back(rng());
  int passes = 0;
  for (uint32_t src : probes) {
    // The port of the identity that should own it, if any: search the policy literally.
    uint16_t port = 1;
    for (size_t k = 0; k < lab.nets.size(); k++)
      if ((src & 0xffffff00u) == lab.nets[k])
        port = static_cast<uint16_t>(1000 + k % lab.identities);
    auto frame = syn(src, port);
    Verdict a = judge(**fw, frame), b = judge(**fresh, frame);
    EXPECT_EQ(a, b) << text(src) << " port " << port;
    EXPECT_EQ(a.pass, port != 1) << text(src);
    passes += a.pass;
  }
  EXPECT_GT(passes, 300);
}

// A run of prefix patches through compileChange, written by comparing content hashes with what
// each generation holds: few entries per patch, and the firewall judges like a fresh load of a
// full compile of the same policy.
TEST(Dataplane, PatchesThroughCompileChangeWriteFewEntriesAndJudgeLikeAFullCompile) {
  Lab lab(100000, 1000);
  auto image = policy::compile(lab.policy);
  ASSERT_TRUE(image) << image.error().str();
  auto opts = dataplane::optionsFor(*image);
  opts.recordVerdict = true;
  auto fw = bpf::FirewallProgram::load(opts);
  ASSERT_TRUE(fw) << fw.error().str();
  dataplane::Dataplane dp(**fw);
  ASSERT_TRUE(dp.apply(*image, 1));
  ASSERT_TRUE(dp.apply(*image, 2));  // both generations known

  std::vector<uint32_t> probes;
  uint64_t version = 3;
  for (uint32_t round = 1; round <= 6; round++) {
    auto [at, old] = lab.change(5, round * 17);
    std::vector<policy::PrefixChange> changes;
    for (size_t i = 0; i < at.size(); i++) {
      const std::string& id = lab.policy.identities[at[i] % lab.identities].name;
      changes.push_back({id, v4(old[i], 24), false});
      changes.push_back({id, v4(lab.nets[at[i]], 24), true});
      probes.push_back(lab.nets[at[i]] + 3);
      probes.push_back(old[i] + 3);
    }
    // Lab::build() keeps each identity's prefixes in net order; compileChange only needs the
    // same identities and rules.
    image = policy::compileChange(lab.policy, std::move(*image), changes);
    ASSERT_TRUE(image) << image.error().str();
    auto st = dp.apply(*image, version++);
    ASSERT_TRUE(st) << st.error().str();
    EXPECT_FALSE(st->fullRewrite);
    EXPECT_LT(st->entriesWritten, 400u) << "round " << round;
  }

  auto full = policy::compile(lab.policy);
  ASSERT_TRUE(full);
  auto fresh = bpf::FirewallProgram::load(opts);
  ASSERT_TRUE(fresh);
  dataplane::Dataplane freshDp(**fresh);
  ASSERT_TRUE(freshDp.apply(*full, 1));
  std::mt19937 rng(5);
  for (int i = 0; i < 200; i++) probes.push_back(lab.nets[rng() % lab.nets.size()] + 7);
  int passes = 0;
  for (uint32_t src : probes) {
    uint16_t port = 1;
    for (size_t k = 0; k < lab.nets.size(); k++)
      if ((src & 0xffffff00u) == lab.nets[k])
        port = static_cast<uint16_t>(1000 + k % lab.identities);
    auto frame = syn(src, port);
    Verdict a = judge(**fw, frame), b = judge(**fresh, frame);
    EXPECT_EQ(a, b) << text(src) << " port " << port;
    EXPECT_EQ(a.pass, port != 1) << text(src);
    passes += a.pass;
  }
  EXPECT_GT(passes, 200);
}

TEST(Dataplane, RevertMakesThePreviousPolicyActiveAgain) {
  Lab lab(1000, 10);
  auto a = policy::compile(lab.policy);
  ASSERT_TRUE(a);
  auto opts = dataplane::optionsFor(*a);
  opts.recordVerdict = true;
  auto fw = bpf::FirewallProgram::load(opts);
  ASSERT_TRUE(fw);
  dataplane::Dataplane dp(**fw);
  ASSERT_TRUE(dp.apply(*a, 1));
  const uint32_t net = lab.nets[0];
  auto frame = syn(net + 1, 1000);
  EXPECT_TRUE(judge(**fw, frame).pass);

  lab.nets[0] = 0x0b000000u;  // move the network away
  lab.build();
  auto b = policy::compile(lab.policy, {}, &*a);
  ASSERT_TRUE(b);
  ASSERT_TRUE(dp.apply(*b, 2));
  EXPECT_FALSE(judge(**fw, frame).pass);
  ASSERT_TRUE(dp.revert());
  EXPECT_TRUE(judge(**fw, frame).pass);
  EXPECT_EQ(*dp.pinnedVersion(), 1u);
}

TEST(Dataplane, PolicyLargerThanTheLoadedMapsIsRefusedAndChangesNothing) {
  Lab small(100, 10), big(5000, 10);
  auto a = policy::compile(small.policy);
  auto b = policy::compile(big.policy);
  ASSERT_TRUE(a && b);
  auto opts = dataplane::optionsFor(*a, bpf::FirewallOptions{.capIntervals4 = 64});
  opts.recordVerdict = true;
  auto fw = bpf::FirewallProgram::load(opts);
  ASSERT_TRUE(fw);
  dataplane::Dataplane dp(**fw);
  ASSERT_TRUE(dp.apply(*a, 1));
  auto r = dp.apply(*b, 2);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("IPv4 intervals"), std::string::npos) << r.error().str();
  EXPECT_EQ(*dp.pinnedVersion(), 1u);
  EXPECT_TRUE(judge(**fw, syn(small.nets[0] + 1, 1000)).pass);
}

}  // namespace
}  // namespace edgeward
