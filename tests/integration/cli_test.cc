// The CLI contract of `edgeward policy check` and `edgeward verdict`, through the real binary.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/packet.h"
#include "support/run.h"

namespace {

using edgeward::testing::L4;
using edgeward::testing::PacketSpec;

using edgeward::testing::TempDir;

using edgeward::testing::Output;

Output run(const std::string& args) { return edgeward::testing::runEdgeward(args); }

constexpr const char* kPolicy = R"(apiVersion: edgeward.io/v1
kind: Policy
metadata:
  name: cli
spec:
  defaultAction: deny
  identities:
    client: [10.0.0.1, "fd00::1"]
  ingress:
    - name: web
      from: [client]
      ports: [{protocol: tcp, port: "80-81"}]
      action: allow
    - name: no-telnet
      from: [any]
      ports: [{protocol: tcp, port: 23}]
      action: deny
  egress:
    - name: dns-out
      to: [any]
      ports: [{protocol: udp, port: 53}]
      action: allow
)";

std::vector<nlohmann::json> jsonLines(const std::string& out) {
  std::vector<nlohmann::json> v;
  size_t start = 0;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    if (end == std::string::npos) end = out.size();
    if (end > start) v.push_back(nlohmann::json::parse(out.substr(start, end - start)));
    start = end + 1;
  }
  return v;
}

TEST(PolicyCheck, ValidPolicyPrintsItsSize) {
  TempDir d;
  auto o = run("policy check " + d.file("p.yaml", kPolicy));
  EXPECT_EQ(o.code, 0) << o.out;
  EXPECT_NE(o.out.find("policy \"cli\" is valid"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("1 IPv4, 1 IPv6"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("2 ingress, 1 egress"), std::string::npos) << o.out;
}

TEST(PolicyCheck, JsonOutput) {
  TempDir d;
  auto o = run("policy check -o json " + d.file("p.yaml", kPolicy));
  ASSERT_EQ(o.code, 0) << o.out;
  auto j = nlohmann::json::parse(o.out);
  EXPECT_EQ(j["rules"]["ingress"], 2);
  EXPECT_EQ(j["prefixes"]["ipv6"], 1);
}

TEST(PolicyCheck, BadPolicyIsOneLineWithFileLineAndFieldAndExitOne) {
  TempDir d;
  std::string bad = kPolicy;
  bad.replace(bad.find("\"80-81\""), 7, "\"81-80\"");
  auto path = d.file("bad.yaml", bad);
  auto o = run("policy check " + path);
  EXPECT_EQ(o.code, 1);
  EXPECT_EQ(o.out, "edgeward: " + path +
                       ":12: spec.ingress[0].ports[0].port: range 81-80: start is after end\n");
}

TEST(PolicyCheck, MissingFile) {
  auto o = run("policy check /nonexistent/p.yaml");
  EXPECT_EQ(o.code, 1);
  EXPECT_EQ(o.out, "edgeward: /nonexistent/p.yaml: No such file or directory\n");
}

TEST(Verdict, JsonLinePerPacketWithRuleAndReason) {
  TempDir d;
  auto policy = d.file("p.yaml", kPolicy);
  PacketSpec web;
  web.src = "10.0.0.1";
  web.dport = 81;
  PacketSpec telnet = web;
  telnet.dport = 23;
  PacketSpec other = web;
  other.src = "10.0.0.9";
  other.dport = 80;
  PacketSpec web6 = web;
  web6.v6 = true;
  web6.src = "fd00::1";
  web6.dst = "fd00::2";
  web6.dport = 80;
  std::vector<std::vector<uint8_t>> frames = {buildPacket(web), buildPacket(telnet),
                                              buildPacket(other), buildPacket(web6),
                                              std::vector<uint8_t>(10, 0)};
  auto pcap = d.file("in.pcap");
  edgeward::testing::writePcap(pcap, frames);

  auto o = run("verdict --policy " + policy + " --pcap " + pcap + " -o json");
  ASSERT_EQ(o.code, 0) << o.out;
  auto lines = jsonLines(o.out);
  ASSERT_EQ(lines.size(), 5u) << o.out;
  EXPECT_EQ(lines[0], nlohmann::json::parse(
                          R"({"index":1,"verdict":"pass","rule":"web","reason":"rule-allow"})"));
  EXPECT_EQ(lines[1],
            nlohmann::json::parse(
                R"({"index":2,"verdict":"drop","rule":"no-telnet","reason":"rule-deny"})"));
  EXPECT_EQ(lines[2], nlohmann::json::parse(
                          R"({"index":3,"verdict":"drop","rule":null,"reason":"default-deny"})"));
  EXPECT_EQ(lines[3]["rule"], "web");
  EXPECT_EQ(lines[4]["index"], 5);
  EXPECT_TRUE(lines[4].contains("error"));
}

TEST(Verdict, EgressDirectionUsesEgressRules) {
  TempDir d;
  PacketSpec dns;
  dns.l4 = L4::Udp;
  dns.src = "10.0.0.2";
  dns.dst = "9.9.9.9";
  dns.dport = 53;
  auto pcap = d.file("out.pcap");
  edgeward::testing::writePcap(pcap, {buildPacket(dns)});
  auto o = run("verdict --policy " + d.file("p.yaml", kPolicy) + " --pcap " + pcap +
               " --direction egress -o json");
  ASSERT_EQ(o.code, 0) << o.out;
  auto lines = jsonLines(o.out);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["rule"], "dns-out");
  EXPECT_EQ(lines[0]["verdict"], "pass");
}

TEST(Verdict, StatefulKeepsStateAcrossPackets) {
  // The SYN limiter is state: with --stateful the third SYN from one source inside its burst
  // of 2 is dropped; without it every packet is judged from empty state and passes.
  TempDir d;
  std::string limited = kPolicy;
  limited.replace(limited.find("  egress:"), 0, "  synFlood: {perSourcePps: 1, burst: 2}\n");
  auto policy = d.file("p.yaml", limited);
  PacketSpec syn;
  syn.src = "10.0.0.1";
  syn.dport = 80;
  auto pcap = d.file("s.pcap");
  edgeward::testing::writePcap(pcap, {buildPacket(syn), buildPacket(syn), buildPacket(syn)});

  auto o = run("verdict --policy " + policy + " --pcap " + pcap + " --stateful -o json");
  ASSERT_EQ(o.code, 0) << o.out;
  auto lines = jsonLines(o.out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["verdict"], "pass");
  EXPECT_EQ(lines[1]["verdict"], "pass");
  EXPECT_EQ(lines[2]["verdict"], "drop");
  EXPECT_EQ(lines[2]["reason"], "syn-flood");

  o = run("verdict --policy " + policy + " --pcap " + pcap + " -o json");
  ASSERT_EQ(o.code, 0) << o.out;
  for (const auto& l : jsonLines(o.out)) EXPECT_EQ(l["verdict"], "pass") << l;
}

TEST(Verdict, BadCaptureIsOneLineAndExitOne) {
  TempDir d;
  auto bad = d.file("bad.pcap", "not a capture\n");
  auto o = run("verdict --policy " + d.file("p.yaml", kPolicy) + " --pcap " + bad);
  EXPECT_EQ(o.code, 1);
  EXPECT_EQ(o.out, "edgeward: " + bad + ": unknown file format\n");
}

}  // namespace
