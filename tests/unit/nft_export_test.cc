// nftables export: the text it writes; `nft -c` (check mode) accepts it; it loads for real
// inside a throwaway network namespace; and on real frames through a veth pair inside such a
// namespace, nftables reaches the same verdict, crediting the same rule, as the reference
// evaluator. The kernel tests need root and nft, and skip without them; they never touch the
// host's own ruleset or interfaces.
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/netns.h"
#include "common/unique_fd.h"
#include "policy/evaluator.h"
#include "policy/nft_export.h"
#include "policy/policy.h"
#include "support/policy_builders.h"
#include "support/packet.h"
#include "support/run.h"

namespace edgeward::policy {
namespace {

using builders::parseOk;

std::string doc(std::string_view spec) { return builders::policyDoc(spec, "nft-test"); }

bool has(const std::string& text, std::string_view needle) {
  return text.find(needle) != std::string::npos;
}

size_t count(const std::string& text, std::string_view needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) n++;
  return n;
}

// The lines of one chain, without the leading tabs.
std::vector<std::string> chainLines(const std::string& text, std::string_view chain) {
  std::vector<std::string> out;
  const std::string head = fmt::format("\tchain {} {{\n", chain);
  size_t at = text.find(head);
  if (at == std::string::npos) return out;
  at += head.size();
  while (at < text.size()) {
    size_t nl = text.find('\n', at);
    std::string line = text.substr(at, nl - at);
    at = nl + 1;
    if (line == "\t}") break;
    out.push_back(line.substr(line.find_first_not_of('\t')));
  }
  return out;
}

const Policy kPolicy = parseOk(doc(R"(
  defaultAction: deny
  identities:
    admin: [10.1.0.5, fd00:1::5]
    lab: [10.1.0.0/16, 10.1.2.0/24, fd00:1::/64]
    web: [10.2.0.0/24, 10.2.1.0/25, 10.2.1.128/25, 10.2.4.0/25, 10.2.4.128/26]
    bad: [10.1.0.66, fd00:1::66]
    only6: [fd00:6::/48]
    1st-floor.lan_x: [192.0.2.0/24]
  ingress:
    - name: ssh
      from: [admin]
      ports: [{protocol: tcp, port: 22}]
      action: allow
    - name: web
      from: [any]
      ports: [{protocol: tcp, port: 80}, {protocol: tcp, port: "8000-8080"}]
      action: allow
    - name: lab-all
      from: [lab]
      action: allow
    - name: lab-dns
      from: [lab, web]
      ports: [{protocol: udp, port: 53}, {protocol: icmp}, {protocol: icmpv6}]
      action: allow
    - name: bad
      from: [bad]
      action: deny
    - name: no-telnet
      from: [any]
      ports: [{protocol: tcp, port: 23}]
      action: deny
    - name: only6
      from: [only6]
      ports: [{protocol: udp}, {protocol: tcp, port: 443}]
      action: allow
    - name: floor
      from: [1st-floor.lan_x]
      ports: [{protocol: any}]
      action: allow
  egress:
    - name: dns
      to: [any]
      ports: [{protocol: udp, port: 53}]
      action: allow
    - name: no-lab-smtp
      to: [lab]
      ports: [{protocol: tcp, port: 25}]
      action: deny
    - name: web-out
      to: [web, only6]
      ports: [{protocol: tcp, port: "0-1023"}, {protocol: tcp, port: "1024-65535"}]
      action: allow
    - name: ping
      to: [any]
      ports: [{protocol: icmp}]
      action: allow
)"));

// ---------------------------------------------------------------------------------------------
// The text.

TEST(NftExport, ReplacesItsTableInOneTransaction) {
  const std::string t = exportNft(kPolicy);
  const size_t table = t.find(
      "table inet edgeward {}\ndelete table inet edgeward\n"
      "table inet edgeward {\n");
  ASSERT_NE(table, std::string::npos) << t;
  // Only comments before it; nothing after the table's closing brace.
  for (size_t at = 0; at < table; at = t.find('\n', at) + 1) EXPECT_EQ(t[at], '#');
  EXPECT_TRUE(t.ends_with("\n}\n"));
  EXPECT_EQ(count(t, "table "), 4u) << t;  // 3 statements and the header comment
  NftOptions o;
  o.table = "ew_test";
  EXPECT_TRUE(has(exportNft(kPolicy, o), "delete table inet ew_test\n"));
}

TEST(NftExport, IdentitySetsAreMergedIntervals) {
  const std::string t = exportNft(kPolicy);
  EXPECT_TRUE(has(t,
                  "\tset admin_v4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n"
                  "\t\tcomment \"identity admin\"\n\t\telements = {\n\t\t\t10.1.0.5\n\t\t}\n\t}\n"))
      << t;
  EXPECT_TRUE(has(t, "\tset admin_v6 {\n\t\ttype ipv6_addr\n"));
  // 10.1.2.0/24 lies inside 10.1.0.0/16: nft refuses overlapping elements.
  EXPECT_TRUE(has(t, "\t\telements = {\n\t\t\t10.1.0.0/16\n\t\t}\n"));
  // Adjacent halves join; a union that is no prefix becomes a range.
  EXPECT_TRUE(has(t, "\t\t\t10.2.0.0/23,\n\t\t\t10.2.4.0-10.2.4.191\n")) << t;
  // No empty sets: only6 has no IPv4 prefix, the 1st-floor identity no IPv6 one.
  EXPECT_FALSE(has(t, "set only6_v4"));
  EXPECT_TRUE(has(t, "set only6_v6"));
  EXPECT_TRUE(has(t, "set _1st_hfloor_dlan__x_v4 {"));
  EXPECT_FALSE(has(t, "set _1st_hfloor_dlan__x_v6"));
}

TEST(NftExport, WholeAddressSpaceAndHostsAtTheEnds) {
  Policy p = parseOk(doc(R"(
  identities:
    all: [0.0.0.0/0, 10.0.0.0/8, "::/0"]
    ends: [0.0.0.0, 255.255.255.255, "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]
  ingress:
    - {name: a, from: [all, ends], action: allow}
)"));
  const std::string t = exportNft(p);
  EXPECT_TRUE(has(t, "\t\t\t0.0.0.0/0\n")) << t;
  EXPECT_TRUE(has(t, "\t\t\t::/0\n")) << t;
  EXPECT_TRUE(has(t, "\t\t\t0.0.0.0,\n\t\t\t255.255.255.255\n")) << t;
  EXPECT_TRUE(has(t, "\t\t\t::,\n\t\t\tffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff\n")) << t;
}

TEST(NftExport, SetNamesAreSafeAndDistinct) {
  EXPECT_EQ(nftSetName("web", Family::V4), "web_v4");
  EXPECT_EQ(nftSetName("web", Family::V6), "web_v6");
  EXPECT_EQ(nftSetName("my-web.lan_1", Family::V4), "my_hweb_dlan__1_v4");
  EXPECT_EQ(nftSetName("1st", Family::V4), "_1st_v4");
  // Names that a naive mapping (anything -> '_') would merge.
  std::vector<std::string> names = {"a_b", "a-b", "a.b", "a__b", "a_-b", "a-_b", "a_hb", "a_db",
                                    "_a",  "-a",  ".a",  "a",    "a_v4", "A",    "0a",   "_0a"};
  names.push_back(std::string(300, 'x'));
  names.push_back(std::string(300, 'x') + "y");
  names.push_back(std::string(299, 'x'));
  names.push_back(std::string(150, '_'));
  names.push_back(std::string(149, '_') + "-");
  std::set<std::string> seen;
  for (const auto& n : names) {
    for (Family f : {Family::V4, Family::V6}) {
      const std::string s = nftSetName(n, f);
      EXPECT_LE(s.size(), 255u) << n;
      EXPECT_TRUE(std::regex_match(s, std::regex("[A-Za-z_][A-Za-z0-9_]*"))) << s;
      EXPECT_TRUE(seen.insert(s).second) << "duplicate " << s << " for " << n;
    }
  }
}

TEST(NftExport, ChainsCarryTheDefaultActionAndTheExemptions) {
  const std::string t = exportNft(kPolicy);
  for (std::string_view chain : {"input", "output"}) {
    auto lines = chainLines(t, chain);
    ASSERT_GE(lines.size(), 7u) << t;
    EXPECT_EQ(lines[0], fmt::format("type filter hook {} priority filter; policy drop;", chain));
    EXPECT_EQ(lines[1], "ct state established,related counter accept comment \"established\"");
    EXPECT_EQ(lines[2], fmt::format("ip frag-off & 0x3fff != 0 goto {}_fragment", chain));
    EXPECT_EQ(lines[3], fmt::format("frag more-fragments 1 goto {}_fragment", chain));
    EXPECT_EQ(lines[4], fmt::format("frag frag-off != 0 goto {}_fragment", chain));
    EXPECT_EQ(lines[5],
              "icmpv6 type { 133, 134, 135, 136 } ip6 hoplimit 255 counter accept comment "
              "\"host-essential: neighbour discovery\"");
    EXPECT_EQ(lines[6],
              "icmpv6 type { 130, 131, 132, 143 } ip6 hoplimit 1 counter accept comment "
              "\"host-essential: MLD\"");
  }
  Policy allow = kPolicy;
  allow.defaultAction = Action::Allow;
  EXPECT_EQ(count(exportNft(allow), "priority filter; policy accept;"), 2u);
}

TEST(NftExport, DenyRulesComeFirstThenAllowRules) {
  const auto in = chainLines(exportNft(kPolicy), "input");
  std::vector<std::string> order;
  for (const auto& l : in) {
    auto c = l.find("comment \"");
    if (c == std::string::npos || !has(l, "counter")) continue;
    std::string name = l.substr(c + 9, l.size() - c - 10);
    if (name.starts_with("host-essential") || name == "established") continue;
    if (order.empty() || order.back() != name) order.push_back(name);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"bad", "no-telnet", "ssh", "web", "lab-all", "lab-dns",
                                             "only6", "floor"}));
}

TEST(NftExport, RuleMatches) {
  const std::string t = exportNft(kPolicy);
  const auto in = chainLines(t, "input");
  const auto out = chainLines(t, "output");
  auto find = [](const std::vector<std::string>& v, std::string_view want) {
    return std::find(v.begin(), v.end(), want) != v.end();
  };
  // One rule per identity and family; counter and the rule name on each.
  EXPECT_TRUE(find(in, "ip saddr @admin_v4 tcp dport 22 counter accept comment \"ssh\""));
  EXPECT_TRUE(find(in, "ip6 saddr @admin_v6 tcp dport 22 counter accept comment \"ssh\""));
  // any: no address match; a port list is one anonymous set.
  EXPECT_TRUE(find(in, "tcp dport { 80, 8000-8080 } counter accept comment \"web\""));
  // No ports: no layer-4 match.
  EXPECT_TRUE(find(in, "ip saddr @lab_v4 counter accept comment \"lab-all\""));
  EXPECT_TRUE(find(in, "ip saddr @bad_v4 counter drop comment \"bad\""));
  EXPECT_TRUE(find(in, "tcp dport 23 counter drop comment \"no-telnet\""));
  // Mixed protocols: one rule per protocol, for each identity and family.
  for (std::string_view m : {"udp dport 53", "meta l4proto icmp", "meta l4proto ipv6-icmp"}) {
    EXPECT_TRUE(find(in, fmt::format("ip saddr @lab_v4 {} counter accept comment \"lab-dns\"", m)));
    EXPECT_TRUE(
        find(in, fmt::format("ip6 saddr @lab_v6 {} counter accept comment \"lab-dns\"", m)));
    EXPECT_TRUE(find(in, fmt::format("ip saddr @web_v4 {} counter accept comment \"lab-dns\"", m)));
  }
  EXPECT_EQ(count(t, "comment \"lab-dns\""), 12u);  // 9 + 3 in the fragment chain
  // A protocol without port: every port of it.
  EXPECT_TRUE(find(in, "ip6 saddr @only6_v6 meta l4proto udp counter accept comment \"only6\""));
  EXPECT_TRUE(find(in, "ip6 saddr @only6_v6 tcp dport 443 counter accept comment \"only6\""));
  // protocol any: every protocol.
  EXPECT_TRUE(find(in, "ip saddr @_1st_hfloor_dlan__x_v4 counter accept comment \"floor\""));
  // Egress: the destination; ranges covering every port together are all ports.
  EXPECT_TRUE(find(out, "udp dport 53 counter accept comment \"dns\""));
  EXPECT_TRUE(find(out, "ip daddr @lab_v4 tcp dport 25 counter drop comment \"no-lab-smtp\""));
  EXPECT_TRUE(find(out, "ip daddr @web_v4 meta l4proto tcp counter accept comment \"web-out\""));
  EXPECT_TRUE(find(out, "ip6 daddr @only6_v6 meta l4proto tcp counter accept comment \"web-out\""));
}

TEST(NftExport, FragmentChains) {
  const std::string t = exportNft(kPolicy);
  EXPECT_EQ(chainLines(t, "input_fragment"),
            (std::vector<std::string>{
                "ip saddr @bad_v4 counter drop comment \"bad\"",
                "ip6 saddr @bad_v6 counter drop comment \"bad\"",
                "meta l4proto tcp counter drop comment \"no-telnet (port-dependent fragment)\"",
                "ip saddr @admin_v4 meta l4proto tcp counter drop comment \"ssh (port-dependent "
                "fragment)\"",
                "ip6 saddr @admin_v6 meta l4proto tcp counter drop comment \"ssh (port-dependent "
                "fragment)\"",
                "meta l4proto tcp counter drop comment \"web (port-dependent fragment)\"",
                "ip saddr @lab_v4 counter accept comment \"lab-all\"",
                "ip6 saddr @lab_v6 counter accept comment \"lab-all\"",
                "ip saddr @lab_v4 meta l4proto { icmp, ipv6-icmp } counter accept comment "
                "\"lab-dns\"",
                "ip saddr @lab_v4 meta l4proto udp counter drop comment \"lab-dns (port-dependent "
                "fragment)\"",
                "ip6 saddr @lab_v6 meta l4proto { icmp, ipv6-icmp } counter accept comment "
                "\"lab-dns\"",
                "ip6 saddr @lab_v6 meta l4proto udp counter drop comment \"lab-dns "
                "(port-dependent fragment)\"",
                "ip saddr @web_v4 meta l4proto { icmp, ipv6-icmp } counter accept comment "
                "\"lab-dns\"",
                "ip saddr @web_v4 meta l4proto udp counter drop comment \"lab-dns (port-dependent "
                "fragment)\"",
                "ip6 saddr @only6_v6 meta l4proto udp counter accept comment \"only6\"",
                "ip6 saddr @only6_v6 meta l4proto tcp counter drop comment \"only6 "
                "(port-dependent fragment)\"",
                "ip saddr @_1st_hfloor_dlan__x_v4 counter accept comment \"floor\"",
            }))
      << t;
}

TEST(NftExport, LongRuleNamesAreCutToTheCommentLimit) {
  Policy p = kPolicy;
  p.ingress[0].name = std::string(200, 'r');
  const std::string t = exportNft(p);
  EXPECT_TRUE(has(t, fmt::format("comment \"{}\"", std::string(128, 'r'))));
  EXPECT_FALSE(has(t, std::string(129, 'r')));
  EXPECT_TRUE(
      has(t, fmt::format("comment \"{} (port-dependent fragment)\"", std::string(128 - 26, 'r'))));
}

TEST(NftExport, SynFloodIsNamedAsNotExported) {
  EXPECT_FALSE(has(exportNft(kPolicy), "synFlood"));
  Policy p = kPolicy;
  p.synFlood = SynFlood{100, 20};
  EXPECT_TRUE(has(exportNft(p), "\n# Not exported: synFlood (100/s burst 20 per source)"));
}

TEST(NftExport, PolicyNameCannotBreakOutOfTheHeaderComment) {
  Policy p = kPolicy;
  p.name = "x\ntable ip evil {}";
  const std::string t = exportNft(p);
  EXPECT_FALSE(has(t, "\ntable ip evil"));
  EXPECT_TRUE(has(t, "\"x\\ntable ip evil {}\""));
}

TEST(NftExport, DeviceModeUsesNetdevHooksWithoutConntrack) {
  NftOptions o;
  o.device = "eth0";
  const std::string t = exportNft(kPolicy, o);
  EXPECT_TRUE(has(t, "table netdev edgeward {}\ndelete table netdev edgeward\n"));
  auto in = chainLines(t, "input");
  auto out = chainLines(t, "output");
  ASSERT_GE(in.size(), 2u);
  ASSERT_GE(out.size(), 2u);
  EXPECT_EQ(in[0], "type filter hook ingress device \"eth0\" priority filter; policy drop;");
  EXPECT_EQ(out[0], "type filter hook egress device \"eth0\" priority filter; policy drop;");
  EXPECT_EQ(in[1], "meta protocol arp counter accept comment \"host-essential: ARP\"");
  EXPECT_FALSE(has(t, "ct state"));
  EXPECT_FALSE(has(t, "inet"));
}

TEST(NftExport, OptionsAreChecked) {
  EXPECT_TRUE(checkNftOptions({}).has_value());
  EXPECT_TRUE(checkNftOptions({"br-lan.10", "edgeward"}).has_value());
  EXPECT_TRUE(checkNftOptions({"", "ew_2"}).has_value());
  for (const NftOptions& bad : std::vector<NftOptions>{{"eth0\"; flush ruleset", "edgeward"},
                                                       {"a-very-long-device-name", "edgeward"},
                                                       {"eth 0", "edgeward"},
                                                       {"..", "edgeward"},
                                                       {"", ""},
                                                       {"", "2x"},
                                                       {"", "my-table"},
                                                       {"", std::string(65, 't')}}) {
    auto r = checkNftOptions(bad);
    EXPECT_FALSE(r.has_value()) << bad.device << " / " << bad.table;
    if (!r) {
      EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
    }
  }
  EXPECT_EQ(checkNftOptions({"eth 0", "edgeward"}).error().message(),
            "device name \"eth 0\": use 1-15 letters, digits or _.@+=-");
}

// ---------------------------------------------------------------------------------------------
// The kernel: nft check mode, a real load in a throwaway namespace, verdicts on real frames.

using Cmd = edgeward::testing::Output;

Cmd run(const std::string& command) { return edgeward::testing::runShell(command); }

bool kernelTestsPossible(std::string* why) {
  if (::geteuid() != 0) {
    *why = "needs root";
    return false;
  }
  if (run("command -v nft").code != 0) {
    *why = "nft is not installed (scripts/setup-deps.sh installs it)";
    return false;
  }
  return true;
}

#define REQUIRE_KERNEL()                                   \
  do {                                                     \
    std::string why_;                                      \
    if (!kernelTestsPossible(&why_)) GTEST_SKIP() << why_; \
  } while (0)

// A file under /tmp holding `text`, removed with the object.
class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    char name[] = "/tmp/ewt-nft-XXXXXX";
    int fd = ::mkstemp(name);
    if (fd < 0) throw std::runtime_error("mkstemp failed");
    path_ = name;
    ::close(fd);
    std::ofstream(path_) << text;
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A namespace named ewt-nft-<pid>-<what>, leftovers of killed runs removed first.
netns::NetNs makeNs(const std::string& what) {
  (void)netns::cleanupDead("ewt-nft-");
  auto ns = netns::NetNs::create(fmt::format("ewt-nft-{}-{}", ::getpid(), what));
  if (!ns) throw std::runtime_error(ns.error().str());
  return std::move(*ns);
}

Cmd inNs(const netns::NetNs& ns, const std::string& command) {
  return run(fmt::format("ip netns exec {} {}", ns.name(), command));
}

TEST(NftExportKernel, NftCheckModeAcceptsTheRuleset) {
  REQUIRE_KERNEL();
  // Check mode (-c) validates against the kernel and changes nothing.
  TempFile inet(exportNft(kPolicy));
  Cmd c = run("nft -c -f " + inet.path());
  EXPECT_EQ(c.code, 0) << c.out;
  NftOptions o;
  o.device = "lo";
  TempFile dev(exportNft(kPolicy, o));
  c = run("nft -c -f " + dev.path());
  EXPECT_EQ(c.code, 0) << c.out;
  Policy allow = kPolicy;
  allow.defaultAction = Action::Allow;
  allow.ingress[1].name = std::string(200, 'n');
  TempFile other(exportNft(allow));
  c = run("nft -c -f " + other.path());
  EXPECT_EQ(c.code, 0) << c.out;
}

TEST(NftExportKernel, LoadsAndReplacesInsideAThrowawayNamespace) {
  REQUIRE_KERNEL();
  const std::string hostBefore = run("nft list tables").out;
  {
    netns::NetNs ns = makeNs("load");
    TempFile first(exportNft(kPolicy));
    Cmd c = inNs(ns, "nft -f " + first.path());
    ASSERT_EQ(c.code, 0) << c.out;
    Cmd list = inNs(ns, "nft list ruleset");
    ASSERT_EQ(list.code, 0) << list.out;
    EXPECT_TRUE(has(list.out, "table inet edgeward {")) << list.out;
    for (std::string_view set : {"set admin_v4", "set lab_v6", "set _1st_hfloor_dlan__x_v4"})
      EXPECT_TRUE(has(list.out, set)) << set;
    EXPECT_TRUE(has(list.out, "type filter hook input priority filter; policy drop;"));
    EXPECT_TRUE(has(list.out, "comment \"no-lab-smtp\""));

    // Loading a changed policy replaces the table: the old set and rule are gone.
    Policy changed = kPolicy;
    changed.identities.erase(changed.identities.begin());  // admin
    changed.ingress.erase(changed.ingress.begin());        // ssh (named admin)
    changed.defaultAction = Action::Allow;
    TempFile second(exportNft(changed));
    c = inNs(ns, "nft -f " + second.path());
    ASSERT_EQ(c.code, 0) << c.out;
    list = inNs(ns, "nft list ruleset");
    EXPECT_FALSE(has(list.out, "admin_v4")) << list.out;
    EXPECT_FALSE(has(list.out, "comment \"ssh\""));
    EXPECT_TRUE(has(list.out, "policy accept;"));
    EXPECT_EQ(count(list.out, "table inet edgeward"), 1u);
    // And again: loading is idempotent.
    c = inNs(ns, "nft -f " + second.path());
    ASSERT_EQ(c.code, 0) << c.out;

    // Device mode, on a veth inside the namespace.
    auto veth = netns::VethPair::create({"ewn0", ns.name(), {}}, {"ewn1", ns.name(), {}});
    ASSERT_TRUE(veth.has_value()) << veth.error().str();
    NftOptions o;
    o.device = "ewn1";
    TempFile dev(exportNft(kPolicy, o));
    c = inNs(ns, "nft -f " + dev.path());
    ASSERT_EQ(c.code, 0) << c.out;
    list = inNs(ns, "nft list table netdev edgeward");
    EXPECT_TRUE(has(list.out, "type filter hook ingress device \"ewn1\"")) << list.out;
    EXPECT_TRUE(has(list.out, "type filter hook egress device \"ewn1\"")) << list.out;
    ASSERT_TRUE(veth->remove().has_value());
    ASSERT_TRUE(ns.remove().has_value());
  }
  EXPECT_EQ(run("nft list tables").out, hostBefore) << "the host's ruleset changed";
}

// ---- verdicts on real frames ----

// A packet, as frame and as the evaluator's facts.
struct TestPacket {
  testing::PacketSpec spec;
  PacketFacts facts;
  bool arp = false;
};

std::vector<uint8_t> arpFrame() {
  std::vector<uint8_t> f(42, 0);
  for (int i = 0; i < 6; i++) f[i] = 0xff;
  f[6] = 0x02;
  f[11] = 0x01;
  f[12] = 0x08;
  f[13] = 0x06;
  const uint8_t arp[] = {0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 0, 0, 1};
  std::copy(std::begin(arp), std::end(arp), f.begin() + 14);
  f[38] = 10;
  f[41] = 2;
  return f;
}

class PacketGen {
 public:
  explicit PacketGen(uint32_t seed) : rng_(seed) {}

  TestPacket next(bool ingress) {
    TestPacket p;
    p.facts.ingress = ingress;
    if (below(40) == 0) {
      p.arp = p.facts.arp = true;
      return p;
    }
    static const char* kV4[] = {"10.1.0.5", "10.1.0.66",  "10.1.2.9",   "10.1.255.255",
                                "10.2.0.1", "10.2.1.200", "10.2.2.191", "10.2.2.192",
                                "10.3.0.1", "192.0.2.77", "192.0.3.1",  "0.0.0.0"};
    static const char* kV6[] = {"fd00:1::5", "fd00:1::66",       "fd00:1::1234", "fd00:1:0:1::1",
                                "fd00:6::1", "fd00:6:0:ffff::1", "fd00:7::1",    "fe80::1"};
    auto& s = p.spec;
    s.v6 = below(2) == 0;
    const std::string peer = s.v6 ? kV6[below(std::size(kV6))] : kV4[below(std::size(kV4))];
    const std::string self = s.v6 ? "fd00:99::1" : "10.99.0.1";
    s.src = ingress ? peer : self;
    s.dst = ingress ? self : peer;
    static constexpr testing::L4 kL4[] = {
        testing::L4::Tcp,  testing::L4::Tcp,    testing::L4::Udp,    testing::L4::Udp,
        testing::L4::Icmp, testing::L4::Icmpv6, testing::L4::Icmpv6, testing::L4::None};
    s.l4 = kL4[below(std::size(kL4))];
    if (s.l4 == testing::L4::None) s.ipProto = 47;  // GRE
    if (below(8) == 0)                              // ICMP of the other IP version now and then
      s.l4 = s.l4 == testing::L4::Icmp     ? testing::L4::Icmpv6
             : s.l4 == testing::L4::Icmpv6 ? testing::L4::Icmp
                                           : s.l4;
    static constexpr uint16_t kPorts[] = {0,    22,   23,   25,   53,   79,    80,  443,
                                          1023, 1024, 8000, 8080, 8081, 65535, 5353};
    s.dport = kPorts[below(std::size(kPorts))];
    s.icmpType = std::array<uint8_t, 10>{8, 0, 128, 129, 130, 131, 133, 135, 136, 143}[below(10)];
    s.ttl = std::array<uint8_t, 4>{1, 64, 254, 255}[below(4)];
    s.payload = 16;
    switch (below(6)) {
      case 0:  // first fragment
        s.moreFragments = true;
        break;
      case 1:  // later fragment
        s.fragOffset = uint16_t(1 + below(100));
        s.moreFragments = below(2) == 0;
        break;
      default:
        break;
    }
    bool fragment = s.moreFragments || s.fragOffset != 0;
    if (s.v6 && (fragment || below(8) == 0)) s.v6Ext = {44};        // without M or offset: atomic
    if (s.v6 && below(6) == 0) s.v6Ext.insert(s.v6Ext.begin(), 0);  // hop-by-hop first

    PacketFacts& f = p.facts;
    const Prefix src = *parsePrefix(s.src), dst = *parsePrefix(s.dst);
    f.family = s.v6 ? Family::V6 : Family::V4;
    f.src = src.addr;
    f.dst = dst.addr;
    f.proto = s.l4 == testing::L4::None ? s.ipProto : uint8_t(s.l4);
    f.fragment = fragment;
    f.hopLimit = s.ttl;
    if (!fragment && (s.l4 == testing::L4::Tcp || s.l4 == testing::L4::Udp)) f.dport = s.dport;
    if (s.l4 == testing::L4::Icmp || s.l4 == testing::L4::Icmpv6) f.icmpType = s.icmpType;
    return p;
  }

 private:
  uint32_t below(size_t n) {
    return std::uniform_int_distribution<uint32_t>(0, uint32_t(n - 1))(rng_);
  }
  std::mt19937 rng_;
};

// What the evaluator says, in the terms the nft counters can show.
std::string expected(const Policy& p, const PacketFacts& f) {
  const Verdict v = evaluate(p, f);
  switch (v.reason) {
    case EW_R_HOST_ESSENTIAL:
      return "pass host-essential";
    case EW_R_FRAGMENT:
      return "drop fragment";
    case EW_R_DEFAULT_ALLOW:
    case EW_R_DEFAULT_DENY:
      return fmt::format("{} default", v.pass ? "pass" : "drop");
  }
  const uint32_t nIn = uint32_t(p.ingress.size());
  const std::string& name = v.rule < nIn ? p.ingress[v.rule].name : p.egress[v.rule - nIn].name;
  return fmt::format("{} {}", v.pass ? "pass" : "drop", name);
}

struct CounterKey {
  std::string table, chain;
  int64_t handle;
  auto operator<=>(const CounterKey&) const = default;
};
struct CounterVal {
  uint64_t packets = 0;
  std::string comment, verdict;
};

std::map<CounterKey, CounterVal> readCounters(const netns::NetNs& ns) {
  Cmd c = inNs(ns, "nft -j list ruleset");
  if (c.code != 0) throw std::runtime_error("nft -j list ruleset: " + c.out);
  std::map<CounterKey, CounterVal> out;
  const nlohmann::json doc = nlohmann::json::parse(c.out);  // the loop must not outlive it
  for (const auto& item : doc.at("nftables")) {
    if (!item.contains("rule")) continue;
    const auto& r = item["rule"];
    CounterVal v;
    bool counted = false;
    for (const auto& e : r.at("expr")) {
      if (e.contains("counter")) {
        v.packets = e["counter"].at("packets").get<uint64_t>();
        counted = true;
      }
      if (e.contains("accept")) v.verdict = "pass";
      if (e.contains("drop")) v.verdict = "drop";
    }
    if (!counted) continue;
    v.comment = r.value("comment", "");
    out[{r.at("table").get<std::string>(), r.at("chain").get<std::string>(),
         r.at("handle").get<int64_t>()}] = v;
  }
  return out;
}

TEST(NftExportKernel, VerdictsOnRealFramesMatchTheEvaluator) {
  REQUIRE_KERNEL();
  netns::NetNs ns = makeNs("frames");
  // No IPv6 on the links, so the stack sends nothing of its own (MLD, DAD, RS) to count.
  Cmd c = inNs(ns,
               "sh -c 'echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 && "
               "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6'");
  ASSERT_EQ(c.code, 0) << c.out;
  auto veth = netns::VethPair::create({"ewf0", ns.name(), {}}, {"ewf1", ns.name(), {}});
  ASSERT_TRUE(veth.has_value()) << veth.error().str();
  // A probe before the firewall on both hooks of ewf1, so each frame is known to have been seen.
  TempFile probe(R"(table netdev ewprobe {
  chain in { type filter hook ingress device "ewf1" priority -100; counter comment "probe"; }
  chain out { type filter hook egress device "ewf1" priority -100; counter comment "probe"; }
}
)");
  c = inNs(ns, "nft -f " + probe.path());
  ASSERT_EQ(c.code, 0) << c.out;

  // Raw sockets: frames sent on ewf0 arrive on ewf1's ingress, frames sent on ewf1 leave
  // through its egress.
  struct Sender {
    UniqueFd fd;
    int ifindex = 0;
  };
  auto open = [&](const std::string& iface) {
    return netns::runIn(ns.name(), [&]() -> Result<Sender> {
      Sender s{UniqueFd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0)),
               int(::if_nametoindex(iface.c_str()))};
      if (!s.fd.valid() || s.ifindex == 0) return failErrno("AF_PACKET socket on " + iface);
      return s;
    });
  };
  auto toIngress = open("ewf0");
  auto toEgress = open("ewf1");
  ASSERT_TRUE(toIngress.has_value()) << toIngress.error().str();
  ASSERT_TRUE(toEgress.has_value()) << toEgress.error().str();

  for (Action def : {Action::Deny, Action::Allow}) {
    Policy pol = kPolicy;
    pol.defaultAction = def;
    NftOptions o;
    o.device = "ewf1";
    TempFile rules(exportNft(pol, o));
    c = inNs(ns, "nft -f " + rules.path());
    ASSERT_EQ(c.code, 0) << c.out;

    PacketGen gen(def == Action::Deny ? 1 : 2);
    auto before = readCounters(ns);
    std::map<std::string, int> seen;
    for (int i = 0; i < 120; i++) {
      const bool ingress = i % 2 == 0;
      const TestPacket p = gen.next(ingress);
      const std::vector<uint8_t> frame = p.arp ? arpFrame() : testing::buildPacket(p.spec);
      const Sender& s = ingress ? *toIngress : *toEgress;
      sockaddr_ll to{};
      to.sll_family = AF_PACKET;
      to.sll_ifindex = s.ifindex;
      to.sll_halen = ETH_ALEN;
      std::copy(frame.begin(), frame.begin() + 6, to.sll_addr);
      const ssize_t sent = ::sendto(s.fd.get(), frame.data(), frame.size(), 0,
                                    reinterpret_cast<sockaddr*>(&to), sizeof to);
      // A frame dropped on the egress hook fails the send with ENOBUFS, after being counted.
      ASSERT_TRUE(sent == ssize_t(frame.size()) || (!ingress && errno == ENOBUFS))
          << std::strerror(errno);

      // Wait until the probe has counted it, then see which edgeward rule did.
      std::map<CounterKey, CounterVal> after;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      std::vector<std::string> hits;
      for (;;) {
        after = readCounters(ns);
        hits.clear();
        int probed = 0;
        for (const auto& [k, v] : after) {
          const uint64_t delta = v.packets - before[k].packets;
          if (delta == 0) continue;
          if (k.table == "ewprobe") {
            probed += int(delta);
          } else {
            for (uint64_t n = 0; n < delta; n++) hits.push_back(v.verdict + "|" + v.comment);
          }
        }
        if (probed > 0 || std::chrono::steady_clock::now() > deadline) {
          ASSERT_EQ(probed, 1) << "frame " << i << " was not seen exactly once";
          break;
        }
      }
      before = after;
      ASSERT_LE(hits.size(), 1u) << "frame " << i;
      std::string got = fmt::format("{} default", def == Action::Allow ? "pass" : "drop");
      if (!hits.empty()) {
        const std::string& h = hits[0];
        const std::string verdict = h.substr(0, h.find('|'));
        std::string comment = h.substr(h.find('|') + 1);
        if (comment.starts_with("host-essential"))
          got = verdict + " host-essential";
        else if (comment.ends_with(" (port-dependent fragment)"))
          got = verdict + " fragment";
        else
          got = verdict + " " + comment;
      }
      const std::string want = expected(pol, p.facts);
      EXPECT_EQ(got, want) << "frame " << i << ": "
                           << (p.arp ? std::string("arp")
                                     : fmt::format("{} {} -> {} l4 {} proto {} dport {} type {} "
                                                   "hop {} frag off {} mf {} ext {}",
                                                   ingress ? "ingress" : "egress", p.spec.src,
                                                   p.spec.dst, int(p.spec.l4), int(p.facts.proto),
                                                   p.spec.dport, int(p.spec.icmpType),
                                                   int(p.spec.ttl), p.spec.fragOffset,
                                                   p.spec.moreFragments, p.spec.v6Ext.size()));
      seen[want]++;
    }
    // The run covered the interesting outcomes.
    std::string outcomes;
    for (const auto& [k, n] : seen) outcomes += fmt::format("{}: {}; ", k, n);
    for (std::string_view k : {"pass host-essential", "drop fragment"})
      EXPECT_GT(seen[std::string(k)], 0) << k << " never came up: " << outcomes;
    EXPECT_GE(seen.size(), 10u) << outcomes;
    RecordProperty(def == Action::Deny ? "outcomes_deny" : "outcomes_allow", outcomes);
  }
  ASSERT_TRUE(veth->remove().has_value());
  ASSERT_TRUE(ns.remove().has_value());
}

}  // namespace
}  // namespace edgeward::policy
