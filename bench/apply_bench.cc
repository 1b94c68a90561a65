// ew_bench_apply: policy apply latency, end to end, against `nft -f` of the same policy exported
// with policy::exportNft (inet table, in a throwaway network namespace), in the same run.
//
// edgeward's apply is the agent's transaction without the store: parse (YAML text -> Policy),
// compile (with the previous image for a change), Dataplane::apply (user-space layout, map
// writes, the one-word switch). Each phase is timed on its own. The firewall program is loaded
// once, sized for the largest policy (optionsFor on its compile); loading it is not part of any
// apply.
//
// Cells:
//   full apply of a policy of N prefixes (default 1k, 100k, 1M): a fresh Dataplane (nothing to
//     reuse, every entry written) against `nft -f` of the exported ruleset into an empty
//     namespace;
//   a 10-prefix change to the 100k policy (5 prefixes removed, 5 added, 10 identities): both
//     generations hold the old policy, the new one is compiled with the old image as `previous`
//     and written incrementally; and the same change as the agent's PatchPolicy makes it (the
//     prefixes checked against the policy in memory, its text edited, compileChange, the
//     incremental write and switch, and the commit of the new text to a PolicyStore in /tmp);
//     against `nft -f` of the new full ruleset and `nft -f` of a file of `delete element` /
//     `add element` commands for just those prefixes, each starting from the old ruleset.
// Median of --rounds rounds (edgeward and nft interleaved within a round).
//
//   sudo ew_bench_apply [--sizes 1000,100000,1000000] [--change-base 100000] [--rounds 5]
//                       [--netns NAME] [--keep-files DIR] [--out FILE]
//
// nftables rulesets are only ever loaded inside the namespace this program creates
// (ewb-apply-<pid> unless --netns names another ewb-apply-* name); it is deleted on every exit
// path. The ruleset files are /tmp/<namespace>-*.nft, removed at exit unless --keep-files DIR
// (then they, and the YAML files, are left in DIR).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <bpf/libbpf.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "bpf/firewall_program.h"
#include "common/netns.h"
#include "dataplane/dataplane.h"
#include "policy/compiler.h"
#include "policy/diff.h"
#include "policy/evaluator.h"
#include "agent/policy_store.h"
#include "policy/nft_export.h"
#include "policy/patch.h"
#include "policy/policy.h"
#include "support/common.h"
#include "support/run.h"
#include "support/packet.h"
#include "support/report.h"

namespace eb = edgeward::bench;
namespace et = edgeward::testing;
namespace nn = edgeward::netns;
namespace pol = edgeward::policy;
using edgeward::Result;
using edgeward::bpf::FirewallProgram;
using edgeward::bpf::Hook;
using Clock = std::chrono::steady_clock;

namespace {

using eb::die;
using eb::g_stop;
using eb::must;
using eb::Stop;

void checkStop() {
  if (g_stop) throw Stop{};
}

std::string human(size_t n) {
  if (n >= 1'000'000 && n % 1'000'000 == 0) return fmt::format("{}M", n / 1'000'000);
  if (n >= 1000 && n % 1000 == 0) return fmt::format("{}k", n / 1000);
  return fmt::format("{}", n);
}

struct Args {
  std::vector<size_t> sizes = {1'000, 100'000, 1'000'000};
  size_t changeBase = 100'000;  // 0: no change cell
  int rounds = 5;
  std::string netns;      // default ewb-apply-<pid>
  std::string keepFiles;  // a directory to leave the YAML and nft files in
  std::string out = "bench/results/apply.md";
  uint64_t seed = 11;
  std::string command;  // as given, for the report
};

constexpr size_t kRules = 1000;  // ingress + egress
constexpr size_t kMaxIdentities = 1000;
constexpr size_t kChangeRemoved = 5, kChangeAdded = 5;
constexpr double kTargetFullRatio = 0.3;  // full 100k apply <= 0.3x nft -f
constexpr double kTargetChangeMs = 10;    // a 10-prefix change
constexpr double kTargetSwitchUs = 1000;  // the switch packets see
constexpr const char* kTable = "edgeward";

// ---------------------------------------------------------------------------------------------
// The policies: identities of IPv4 /24s with about 1 prefix in 20 (at random) an IPv6 /48, spread
// over public unicast space, min(prefixes, 1000) identities (prefix i in identity i mod
// identities), and 1000 rules: egress allow tcp 443 to any, ingress deny tcp 23 from any, and 998
// ingress rules, rule r naming identity r mod identities (every 10th one more, random), each with
// one or two port specs (tcp 90%, udp 10%), 1 in 8 deny. No two prefixes of one identity are
// adjacent, so the nft export has one set element per prefix and an element can be deleted by its
// prefix.

using U128 = unsigned __int128;

// Prefix keys (owner map): the /24 number (IPv4) or the /48 number | 1 << 62 (IPv6).
pol::Prefix prefixOf(uint64_t key) {
  pol::Prefix p;
  if (key & (uint64_t{1} << 62)) {
    p.family = pol::Family::V6;
    p.len = 48;
    for (int i = 0; i < 6; i++) p.addr[i] = static_cast<uint8_t>(key >> (8 * (5 - i)));
  } else {
    p.family = pol::Family::V4;
    p.len = 24;
    p.addr[0] = static_cast<uint8_t>(key >> 16);
    p.addr[1] = static_cast<uint8_t>(key >> 8);
    p.addr[2] = static_cast<uint8_t>(key);
  }
  return p;
}

bool publicV4(uint32_t n24) {
  const uint32_t a = n24 >> 16, b = (n24 >> 8) & 0xff;
  if (a == 0 || a == 10 || a == 127 || a >= 224) return false;
  if (a == 100 && (b & 0xc0) == 64) return false;  // 100.64/10
  if (a == 169 && b == 254) return false;
  if (a == 172 && (b & 0xf0) == 16) return false;
  if (a == 192 && b == 168) return false;
  if (a == 198 && (b & 0xfe) == 18) return false;  // 198.18/15 (benchmarking)
  return true;
}

struct Generated {
  pol::Policy policy;
  std::unordered_map<uint64_t, uint32_t> owner;  // prefix key -> identity index
};

class Gen {
 public:
  explicit Gen(uint64_t seed) : rng_(seed) {}

  // A prefix key not in use whose neighbours do not belong to `identity`.
  uint64_t freshKey(const std::unordered_map<uint64_t, uint32_t>& owner, uint32_t identity,
                    bool v6) {
    for (;;) {
      uint64_t k;
      if (v6) {
        // 2001::/16 - 2fff::/16, then 32 random bits: a /48.
        k = ((0x2001 + rng_() % 0xfff) << 32) | (rng_() & 0xffffffffu);
        k |= uint64_t{1} << 62;
      } else {
        k = rng_() % (uint64_t{1} << 24);
        if (!publicV4(static_cast<uint32_t>(k))) continue;
      }
      if (owner.contains(k)) continue;
      auto sameOwner = [&](uint64_t n) {
        auto it = owner.find(n);
        return it != owner.end() && it->second == identity;
      };
      if (sameOwner(k - 1) || sameOwner(k + 1)) continue;
      return k;
    }
  }

  pol::PortSpec ports() {
    static constexpr uint16_t kCommon[] = {22,   25,   53,   80,   110,  143,  443,  993,
                                           3306, 5432, 6379, 8080, 8443, 9090, 9200, 11211};
    pol::PortSpec s;
    s.protocol = rng_() % 10 == 0 ? pol::Protocol::Udp : pol::Protocol::Tcp;
    const uint64_t pick = rng_() % 100;
    if (pick < 50) {
      uint16_t p = kCommon[rng_() % std::size(kCommon)];
      s.range = {p, p};
    } else if (pick < 85) {
      uint16_t p = static_cast<uint16_t>(1024 + rng_() % 59000);
      s.range = {p, p};
    } else {
      uint16_t p = static_cast<uint16_t>(1024 + rng_() % 58000);
      s.range = {p, static_cast<uint16_t>(p + 1 + rng_() % 1000)};
    }
    return s;
  }

  Generated policy(size_t prefixes) {
    Generated g;
    pol::Policy& p = g.policy;
    p.name = fmt::format("apply-bench-{}", human(prefixes));
    p.defaultAction = pol::Action::Deny;
    const size_t nId = std::min(prefixes, kMaxIdentities);
    p.identities.resize(nId);
    for (size_t i = 0; i < nId; i++) p.identities[i].name = fmt::format("site-{:04}", i);
    g.owner.reserve(prefixes * 2);
    for (size_t i = 0; i < prefixes; i++) {
      const uint32_t id = static_cast<uint32_t>(i % nId);
      const uint64_t k = freshKey(g.owner, id, rng_() % 20 == 0);
      g.owner.emplace(k, id);
      p.identities[id].prefixes.push_back(prefixOf(k));
    }
    pol::Rule out;
    out.name = "https-out";
    out.peers = {std::string(pol::kAnyIdentity)};
    out.ports = {{pol::Protocol::Tcp, {443, 443}}};
    p.egress.push_back(out);
    pol::Rule telnet;
    telnet.name = "no-telnet";
    telnet.peers = {std::string(pol::kAnyIdentity)};
    telnet.ports = {{pol::Protocol::Tcp, {23, 23}}};
    telnet.action = pol::Action::Deny;
    p.ingress.push_back(telnet);
    for (size_t r = 0; p.ingress.size() + p.egress.size() < kRules; r++) {
      pol::Rule rule;
      rule.name = fmt::format("r{:04}", r);
      rule.peers.push_back(p.identities[r % nId].name);
      if (r % 10 == 9) {
        const std::string& extra = p.identities[rng_() % nId].name;
        if (extra != rule.peers[0]) rule.peers.push_back(extra);
      }
      rule.ports.push_back(ports());
      if (r % 3 == 0) rule.ports.push_back(ports());
      rule.action = rng_() % 8 == 0 ? pol::Action::Deny : pol::Action::Allow;
      p.ingress.push_back(std::move(rule));
    }
    return g;
  }

  uint64_t next() { return rng_(); }

 private:
  std::mt19937_64 rng_;
};

struct Edit {
  bool add = false;
  uint32_t identity = 0;
  pol::Prefix prefix;
};

// The change: kChangeRemoved prefixes removed from and kChangeAdded added to distinct
// identities (the last of each kind IPv6, the others IPv4).
std::pair<pol::Policy, std::vector<Edit>> change(const Generated& g, Gen& gen) {
  pol::Policy p = g.policy;
  std::vector<Edit> edits;
  std::set<uint32_t> used;
  const size_t nId = p.identities.size();
  auto pickIdentity = [&]() {
    for (;;) {
      uint32_t id = static_cast<uint32_t>(gen.next() % nId);
      if (used.insert(id).second) return id;
    }
  };
  for (size_t i = 0; i < kChangeRemoved; i++) {
    const bool v6 = i + 1 == kChangeRemoved;
    for (;;) {
      uint32_t id = pickIdentity();
      auto& list = p.identities[id].prefixes;
      std::vector<size_t> cand;
      for (size_t k = 0; k < list.size(); k++)
        if ((list[k].family == pol::Family::V6) == v6) cand.push_back(k);
      if (cand.size() < 2) continue;  // keep every identity non-empty in both families
      size_t k = cand[gen.next() % cand.size()];
      edits.push_back({false, id, list[k]});
      list.erase(list.begin() + static_cast<long>(k));
      break;
    }
  }
  for (size_t i = 0; i < kChangeAdded; i++) {
    const bool v6 = i + 1 == kChangeAdded;
    uint32_t id = pickIdentity();
    bool hasFamily = false;
    for (const auto& q : p.identities[id].prefixes)
      hasFamily |= (q.family == pol::Family::V6) == v6;
    if (!hasFamily) {  // the nft delta adds to an existing set
      i--;
      continue;
    }
    pol::Prefix q = prefixOf(gen.freshKey(g.owner, id, v6));
    p.identities[id].prefixes.push_back(q);
    edits.push_back({true, id, q});
  }
  return {std::move(p), std::move(edits)};
}

// The policy as a policy file (docs/policy.md), block style, one prefix per line.
std::string policyYaml(const pol::Policy& p) {
  std::string y;
  y.reserve(p.identities.size() * 64 + 64 * 1024);
  auto out = std::back_inserter(y);
  fmt::format_to(out,
                 "apiVersion: edgeward.io/v1\nkind: Policy\nmetadata:\n  name: {}\nspec:\n"
                 "  defaultAction: {}\n  identities:\n",
                 p.name, pol::actionName(p.defaultAction));
  for (const auto& id : p.identities) {
    fmt::format_to(out, "    {}:\n", id.name);
    for (const auto& q : id.prefixes) fmt::format_to(out, "      - {}\n", q.str());
  }
  auto rules = [&](const std::vector<pol::Rule>& rs, const char* dir, const char* peers) {
    fmt::format_to(out, "  {}:\n", dir);
    for (const auto& r : rs) {
      fmt::format_to(out, "    - name: {}\n      {}: [{}]\n      ports:\n", r.name, peers,
                     fmt::join(r.peers, ", "));
      for (const auto& s : r.ports) {
        if (s.range.first == s.range.last)
          fmt::format_to(out, "        - {{protocol: {}, port: {}}}\n",
                         pol::protocolName(s.protocol), s.range.first);
        else
          fmt::format_to(out, "        - {{protocol: {}, port: \"{}-{}\"}}\n",
                         pol::protocolName(s.protocol), s.range.first, s.range.last);
      }
      fmt::format_to(out, "      action: {}\n", pol::actionName(r.action));
    }
  };
  rules(p.ingress, "ingress", "from");
  rules(p.egress, "egress", "to");
  return y;
}

// `delete element` / `add element` commands for the edits, one transaction.
std::string nftDelta(const pol::Policy& p, const std::vector<Edit>& edits) {
  std::string s;
  for (const Edit& e : edits)
    s += fmt::format("{} element inet {} {} {{ {} }}\n", e.add ? "add" : "delete", kTable,
                     pol::nftSetName(p.identities[e.identity].name, e.prefix.family),
                     e.prefix.str());
  return s;
}

size_t prefixCount(const pol::Policy& p) {
  size_t n = 0;
  for (const auto& id : p.identities) n += id.prefixes.size();
  return n;
}

// ---------------------------------------------------------------------------------------------
// nft in the throwaway namespace.

class NftLab {
 public:
  explicit NftLab(const std::string& name)
      : ns_(must(nn::NetNs::create(name), "creating " + name)) {}

  const std::string& name() const { return ns_.name(); }

  // Wall ms of `ip netns exec NS nft ARGS...`.
  double run(const std::vector<std::string>& args, const std::string& what) {
    std::vector<std::string> cmd = {"netns", "exec", ns_.name(), "nft"};
    cmd.insert(cmd.end(), args.begin(), args.end());
    auto t0 = Clock::now();
    must(nn::ip(cmd), what);
    return eb::msSince(t0);
  }
  std::string output(const std::vector<std::string>& args, const std::string& what) {
    std::vector<std::string> cmd = {"netns", "exec", ns_.name(), "nft"};
    cmd.insert(cmd.end(), args.begin(), args.end());
    return must(nn::ip(cmd), what);
  }
  // Wall ms of `ip netns exec NS true`: what `ip netns exec` itself costs.
  double execOverhead() {
    auto t0 = Clock::now();
    must(nn::ip({"netns", "exec", ns_.name(), "true"}), "ip netns exec true");
    return eb::msSince(t0);
  }
  void flush() { run({"flush", "ruleset"}, "nft flush ruleset"); }
  void remove() { must(ns_.remove(), "deleting namespace " + ns_.name()); }

 private:
  nn::NetNs ns_;
};

struct TempFiles {
  std::vector<std::string> paths;
  bool keep = false;
  ~TempFiles() {
    if (!keep)
      for (const auto& p : paths) ::unlink(p.c_str());
  }
  std::string write(const std::string& path, const std::string& text) {
    paths.push_back(path);
    std::ofstream f(path);
    f << text;
    if (!f.flush()) die("cannot write " + path);
    return path;
  }
};

// ---------------------------------------------------------------------------------------------
// edgeward's phases.

// What parsePolicy spends in yaml-cpp: one event pass over the document (yaml::Reader checks
// that it holds one document) and YAML::Load (tokenises again and builds the node tree). The
// rest of parsePolicy is reading the nodes and validating.
struct NullHandler : YAML::EventHandler {
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

struct YamlCost {
  double eventsMs = 0, loadMs = 0;
};

YamlCost yamlCost(const std::string& text) {
  YamlCost c;
  auto t0 = Clock::now();
  {
    std::istringstream in{text};
    YAML::Parser parser(in);
    NullHandler h;
    while (parser.HandleNextDocument(h)) {
    }
  }
  c.eventsMs = eb::msSince(t0);
  t0 = Clock::now();
  {
    YAML::Node n = YAML::Load(text);
    c.loadMs = eb::msSince(t0);
    t0 = Clock::now();
  }
  c.loadMs += eb::msSince(t0);  // freeing the tree is part of it too
  return c;
}

struct Phases {
  double parseMs = 0, compileMs = 0, planMs = 0, writeMs = 0, switchUs = 0, totalMs = 0;
  size_t entries = 0, kept = 0;
  bool fullRewrite = false;
};

struct Series {
  std::vector<double> yamlEvents, yamlLoad;
  std::vector<double> parse, compile, plan, write, sw, total, entries, nft, nftDelta, ratio;
};

// parse -> compile (with `previous`) -> apply, each phase timed; returns the compiled image.
pol::CompiledPolicy applyOnce(edgeward::dataplane::Dataplane& dp, const std::string& yaml,
                              const pol::CompiledPolicy* previous, uint64_t version, Phases& ph) {
  auto t0 = Clock::now();
  auto parsed = must(pol::parsePolicy(yaml, "bench.yaml"), "parse");
  auto t1 = Clock::now();
  auto compiled = must(pol::compile(parsed, {}, previous), "compile");
  auto t2 = Clock::now();
  auto st = must(dp.apply(compiled, version), "apply");
  auto t3 = Clock::now();
  using Ms = std::chrono::duration<double, std::milli>;
  ph.parseMs = Ms(t1 - t0).count();
  ph.compileMs = Ms(t2 - t1).count();
  ph.writeMs = st.writeMs;
  ph.switchUs = st.switchUs;
  ph.planMs = Ms(t3 - t2).count() - st.writeMs - st.switchUs / 1000;
  ph.totalMs = Ms(t3 - t0).count();
  ph.entries = st.entriesWritten;
  ph.kept = st.entriesKept;
  ph.fullRewrite = st.fullRewrite;
  return compiled;
}

void add(Series& s, const Phases& ph) {
  s.parse.push_back(ph.parseMs);
  s.compile.push_back(ph.compileMs);
  s.plan.push_back(ph.planMs);
  s.write.push_back(ph.writeMs);
  s.sw.push_back(ph.switchUs);
  s.total.push_back(ph.totalMs);
  s.entries.push_back(static_cast<double>(ph.entries));
}

std::string ms(double v) {
  if (v >= 100) return fmt::format("{:.0f}", v);
  if (v >= 10) return fmt::format("{:.1f}", v);
  return fmt::format("{:.2f}", v);
}
std::string med(const std::vector<double>& v) { return ms(eb::median(v)); }
std::string spread(const std::vector<double>& v) {
  return fmt::format("{} ({}–{})", ms(eb::median(v)), ms(eb::minOf(v)), ms(eb::maxOf(v)));
}

// Checks the firewall against the reference evaluator for SYNs and UDP packets from a host in
// each edited prefix to the ports of the rules naming its identity (and an unused port).
void verifyEdits(FirewallProgram& fw, const pol::Policy& p, const std::vector<Edit>& edits) {
  for (const Edit& e : edits) {
    const bool v6 = e.prefix.family == pol::Family::V6;
    pol::Prefix host = e.prefix;
    host.addr[v6 ? 15 : 3] = 7;
    std::string src = host.str();
    src = src.substr(0, src.find('/'));
    std::vector<std::pair<pol::Protocol, uint16_t>> probes = {{pol::Protocol::Tcp, 61001}};
    for (const auto& r : p.ingress)
      for (const auto& peer : r.peers)
        if (peer == p.identities[e.identity].name)
          for (const auto& s : r.ports) probes.push_back({s.protocol, s.range.first});
    for (auto [proto, port] : probes) {
      et::PacketSpec s;
      s.v6 = v6;
      s.src = src;
      s.dst = v6 ? "fd00::2" : "10.0.0.2";
      s.l4 = proto == pol::Protocol::Udp ? et::L4::Udp : et::L4::Tcp;
      s.dport = port;
      s.sport = 40000;
      auto frame = et::buildPacket(s);
      pol::PacketFacts f;
      f.family = e.prefix.family;
      f.src = host.addr;
      auto dst = must(pol::parsePrefix(s.dst), "address");
      f.dst = dst.addr;
      f.proto = proto == pol::Protocol::Udp ? 17 : 6;
      f.dport = port;
      auto want = pol::evaluate(p, f);
      auto got = must(fw.testRun(Hook::XdpIngress, frame, 1), "test run");
      if (got.pass != want.pass)
        die(fmt::format("after the change, {} {} port {}: firewall says {}, the policy {}",
                        e.add ? "added" : "removed", src, port, got.pass ? "pass" : "drop",
                        want.pass ? "pass" : "drop"));
    }
  }
}

// Checks that the nft sets hold the added prefixes and not the removed ones.
void verifyNftEdits(NftLab& lab, const pol::Policy& p, const std::vector<Edit>& edits) {
  for (const Edit& e : edits) {
    const std::string set = pol::nftSetName(p.identities[e.identity].name, e.prefix.family);
    std::string listing = lab.output({"list", "set", "inet", kTable, set}, "nft list set " + set);
    const std::string want = e.prefix.str();
    bool present = false;
    for (size_t at = listing.find(want); at != std::string::npos && !present;
         at = listing.find(want, at + 1)) {
      auto part = [](char ch) {
        return std::isxdigit(static_cast<unsigned char>(ch)) || ch == '.' || ch == ':' || ch == '/';
      };
      present = (at == 0 || !part(listing[at - 1])) &&
                (at + want.size() == listing.size() || !part(listing[at + want.size()]));
    }
    if (present != e.add)
      die(fmt::format("nft: set {} {} {} after the delta", set, present ? "holds" : "lacks",
                      e.prefix.str()));
  }
}

Args parse(int argc, char** argv) {
  Args a;
  a.command = "ew_bench_apply";
  for (int i = 1; i < argc; i++) a.command += std::string(" ") + argv[i];
  auto list = [](const std::string& v) {
    std::vector<size_t> out;
    size_t pos = 0;
    while (pos < v.size()) {
      size_t comma = v.find(',', pos);
      out.push_back(std::stoul(v.substr(pos, comma == std::string::npos ? comma : comma - pos)));
      pos = comma == std::string::npos ? v.size() : comma + 1;
    }
    return out;
  };
  for (int i = 1; i < argc; i++) {
    std::string s = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value after " + s);
      return argv[++i];
    };
    if (s == "--sizes")
      a.sizes = list(next());
    else if (s == "--change-base")
      a.changeBase = std::stoul(next());
    else if (s == "--rounds")
      a.rounds = std::stoi(next());
    else if (s == "--netns")
      a.netns = next();
    else if (s == "--keep-files")
      a.keepFiles = next();
    else if (s == "--out")
      a.out = next();
    else if (s == "--seed")
      a.seed = std::stoull(next());
    else if (s == "--help" || s == "-h") {
      std::puts(
          "ew_bench_apply [--sizes 1000,100000,1000000] [--change-base 100000 (0: none)]\n"
          "               [--rounds 5] [--netns NAME] [--keep-files DIR] [--seed N] [--out FILE]");
      std::exit(0);
    } else {
      die("unknown argument " + s);
    }
  }
  if (a.rounds < 1) die("--rounds must be >= 1");
  if (a.sizes.empty() && !a.changeBase) die("nothing to measure");
  if (a.netns.empty()) a.netns = fmt::format("ewb-apply-{}", getpid());
  if (a.netns.rfind("ewb-apply-", 0) != 0) die("--netns must start with ewb-apply-");
  return a;
}

int run(const Args& a) {
  const std::string machine = eb::machineLine();
  Gen gen(a.seed);
  TempFiles files;
  files.keep = !a.keepFiles.empty();
  const std::string dir = a.keepFiles.empty() ? "/tmp" : a.keepFiles;
  auto fileName = [&](const std::string& what) {
    return fmt::format("{}/{}-{}", dir, a.netns, what);
  };

  // --- the policies, their YAML and their nft exports
  struct Cell {
    size_t prefixes = 0;
    Generated g;
    std::string yaml, nftFile;
    size_t nftBytes = 0, sets = 0, v6 = 0;
    double genMs = 0, exportMs = 0;
  };
  std::vector<size_t> all = a.sizes;
  if (a.changeBase && std::find(all.begin(), all.end(), a.changeBase) == all.end())
    all.push_back(a.changeBase);
  std::vector<Cell> cells;
  for (size_t n : all) {
    checkStop();
    std::fprintf(stderr, "== generating %s prefixes\n", human(n).c_str());
    Cell c;
    c.prefixes = n;
    auto t0 = Clock::now();
    c.g = gen.policy(n);
    c.yaml = policyYaml(c.g.policy);
    c.genMs = eb::msSince(t0);
    t0 = Clock::now();
    std::string nft = pol::exportNft(c.g.policy, {.device = "", .table = kTable});
    c.exportMs = eb::msSince(t0);
    c.nftBytes = nft.size();
    for (const auto& id : c.g.policy.identities) {
      bool v4 = false, v6 = false;
      for (const auto& q : id.prefixes) (q.family == pol::Family::V4 ? v4 : v6) = true;
      c.sets += v4 + v6;
      for (const auto& q : id.prefixes) c.v6 += q.family == pol::Family::V6;
    }
    c.nftFile = files.write(fileName(fmt::format("{}.nft", human(n))), nft);
    if (!a.keepFiles.empty()) files.write(fileName(fmt::format("{}.yaml", human(n))), c.yaml);
    cells.push_back(std::move(c));
  }
  auto cellOf = [&](size_t n) -> Cell& {
    for (auto& c : cells)
      if (c.prefixes == n) return c;
    die("no cell");
  };

  // --- the program, sized for the largest policy
  const Cell& largest = *std::max_element(cells.begin(), cells.end(),
                                          [](auto& x, auto& y) { return x.prefixes < y.prefixes; });
  std::fprintf(stderr, "== loading the firewall program sized for %s prefixes\n",
               human(largest.prefixes).c_str());
  auto sizing = must(pol::compile(largest.g.policy), "compile");
  auto opts = edgeward::dataplane::optionsFor(sizing);
  auto t0 = Clock::now();
  auto fw = must(FirewallProgram::load(opts), "loading the firewall program");
  const double loadMs = eb::msSince(t0);
  const std::string capacities = fmt::format(
      "{} IPv4 / {} IPv6 intervals, {} groups, {} port entries, {} rules per generation",
      opts.capIntervals4, opts.capIntervals6, opts.capGroups, opts.capPortEntries, opts.capRules);
  sizing = {};

  NftLab lab(a.netns);
  std::fprintf(stderr, "== namespace %s\n", lab.name().c_str());
  std::vector<double> overhead;
  for (int i = 0; i < 5; i++) overhead.push_back(lab.execOverhead());
  const double execMs = eb::median(overhead);
  uint64_t version = 1;

  // --- full applies
  struct FullResult {
    size_t prefixes;
    Series s;
    pol::CompileStats stats;
    size_t iv4 = 0, iv6 = 0;
    std::vector<double> nftRaw;
  };
  std::vector<FullResult> full;
  for (size_t n : a.sizes) {
    Cell& c = cellOf(n);
    FullResult r{n, {}, {}, 0, 0, {}};
    for (int round = 0; round < a.rounds; round++) {
      checkStop();
      // edgeward: a fresh data plane knows nothing of what the maps hold: it writes all.
      edgeward::dataplane::Dataplane dp(*fw);
      Phases ph;
      auto compiled = applyOnce(dp, c.yaml, nullptr, version++, ph);
      if (!ph.fullRewrite) die("a fresh data plane did not rewrite the generation");
      add(r.s, ph);
      r.stats = compiled.stats;
      r.iv4 = compiled.iv4.size();
      r.iv6 = compiled.iv6.size();
      compiled = {};
      auto yc = yamlCost(c.yaml);
      r.s.yamlEvents.push_back(yc.eventsMs);
      r.s.yamlLoad.push_back(yc.loadMs);
      checkStop();
      // nft: a full load into an empty namespace.
      lab.flush();
      double raw = lab.run({"-f", c.nftFile}, "nft -f " + c.nftFile);
      r.nftRaw.push_back(raw);
      r.s.nft.push_back(raw - execMs);
      r.s.ratio.push_back(ph.totalMs / (raw - execMs));
      std::fprintf(stderr,
                   "   %s round %d: parse %.0f, compile %.0f, plan %.0f, write %.1f ms, switch "
                   "%.1f us; total %.0f ms; nft -f %.0f ms\n",
                   human(n).c_str(), round + 1, ph.parseMs, ph.compileMs, ph.planMs, ph.writeMs,
                   ph.switchUs, ph.totalMs, raw - execMs);
    }
    lab.flush();
    full.push_back(std::move(r));
  }

  // --- the 10-prefix change
  std::optional<Series> chg;
  struct PatchSeries {
    std::vector<double> patch, compile, plan, write, sw, store, total, applied, entries;
  } pt;
  std::vector<double> diffMs, nftFullRaw, nftDeltaRaw;
  std::string changeNote;
  size_t changeEntriesKept = 0;
  if (a.changeBase) {
    Cell& c = cellOf(a.changeBase);
    auto [after, edits] = change(c.g, gen);
    if (prefixCount(after) != prefixCount(c.g.policy) + kChangeAdded - kChangeRemoved)
      die("the change does not have the intended size");
    const std::string afterYaml = policyYaml(after);
    const std::string afterNft =
        files.write(fileName("change-full.nft"), pol::exportNft(after, {.table = kTable}));
    const std::string delta = files.write(fileName("change-delta.nft"), nftDelta(after, edits));
    if (!a.keepFiles.empty()) files.write(fileName("change.yaml"), afterYaml);
    const pol::Policy parsedBefore = must(pol::parsePolicy(c.yaml, "bench.yaml"), "parse");
    auto before = must(pol::compile(parsedBefore), "compile");
    std::vector<pol::IdentityPatch> patches;
    for (const Edit& e : edits) {
      const std::string& name = after.identities[e.identity].name;
      auto it = std::ranges::find_if(patches, [&](const auto& x) { return x.identity == name; });
      if (it == patches.end()) it = patches.insert(patches.end(), {name, {}, {}});
      (e.add ? it->add : it->remove).push_back(e.prefix.str());
    }
    edgeward::testing::TempDir storeDir("ewb-apply-store");
    auto store = must(edgeward::agent::PolicyStore::open(storeDir.path(), 20), "store");
    must(store.commit(c.yaml, parsedBefore.name, "bench", "apply"), "store commit");
    chg.emplace();
    for (int round = 0; round < a.rounds; round++) {
      checkStop();
      // Both generations hold the old policy (as after a run of small changes).
      edgeward::dataplane::Dataplane dp(*fw);
      must(dp.apply(before, version++), "apply");
      must(dp.apply(before, version++), "apply");
      std::this_thread::sleep_for(std::chrono::milliseconds(30));  // past apply()'s grace period
      Phases ph;
      auto compiled = applyOnce(dp, afterYaml, &before, version++, ph);
      if (ph.fullRewrite) die("the change rewrote the whole generation");
      add(*chg, ph);
      changeEntriesKept = ph.kept;
      if (round == 0) verifyEdits(*fw, after, edits);

      // The same change as PatchPolicy: policy and image in memory, text edited, store commit.
      {
        edgeward::dataplane::Dataplane pdp(*fw);
        must(pdp.apply(before, version++), "apply");
        must(pdp.apply(before, version++), "apply");
        pol::Policy live = parsedBefore;
        auto image = must(pol::compile(live), "compile");
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
        auto t0 = Clock::now();
        auto changes = must(pol::planPatch(live, patches), "planPatch");
        std::string text = pol::applyPatch(live, c.yaml, changes);
        auto t1 = Clock::now();
        auto patched = must(pol::compileChange(live, std::move(image), changes), "compileChange");
        auto t2 = Clock::now();
        auto st = must(pdp.apply(patched, version++), "apply");
        auto t3 = Clock::now();
        must(store.commit(text, live.name, "bench", "patch"), "store commit");
        auto t4 = Clock::now();
        if (st.fullRewrite) die("the patch rewrote the whole generation");
        using Ms = std::chrono::duration<double, std::milli>;
        pt.patch.push_back(Ms(t1 - t0).count());
        pt.compile.push_back(Ms(t2 - t1).count());
        pt.plan.push_back(Ms(t3 - t2).count() - st.writeMs - st.switchUs / 1000);
        pt.write.push_back(st.writeMs);
        pt.sw.push_back(st.switchUs);
        pt.store.push_back(Ms(t4 - t3).count());
        pt.applied.push_back(Ms(t3 - t0).count());
        pt.total.push_back(Ms(t4 - t0).count());
        pt.entries.push_back(static_cast<double>(st.entriesWritten));
        if (round == 0) {
          verifyEdits(*fw, after, edits);
          auto reread = must(pol::parsePolicy(text, "patched.yaml"), "parse the patched text");
          if (prefixCount(reread) != prefixCount(after) || pol::diff(reread, after).prefixesAdded())
            die("the patched text does not hold the changed policy");
        }
        std::fprintf(stderr,
                     "   patch round %d: patch %.2f, compileChange %.2f, plan %.2f, write %.2f ms "
                     "(%zu entries), switch %.1f us, store %.2f ms; total %.2f ms\n",
                     round + 1, pt.patch.back(), pt.compile.back(), pt.plan.back(), pt.write.back(),
                     st.entriesWritten, pt.sw.back(), pt.store.back(), pt.total.back());
      }
      auto yc = yamlCost(afterYaml);
      chg->yamlEvents.push_back(yc.eventsMs);
      chg->yamlLoad.push_back(yc.loadMs);
      auto td = Clock::now();
      auto d = pol::diff(c.g.policy, after);
      diffMs.push_back(eb::msSince(td));
      checkStop();
      // nft: from the old ruleset, the new full ruleset; then again from the old one, the delta.
      lab.flush();
      lab.run({"-f", c.nftFile}, "nft -f (old ruleset)");
      double rawFull = lab.run({"-f", afterNft}, "nft -f " + afterNft);
      lab.flush();
      lab.run({"-f", c.nftFile}, "nft -f (old ruleset)");
      double rawDelta = lab.run({"-f", delta}, "nft -f " + delta);
      if (round == 0) verifyNftEdits(lab, after, edits);
      nftFullRaw.push_back(rawFull);
      nftDeltaRaw.push_back(rawDelta);
      chg->nft.push_back(rawFull - execMs);
      chg->nftDelta.push_back(rawDelta - execMs);
      std::fprintf(stderr,
                   "   change round %d: parse %.0f, compile %.0f, plan %.1f, write %.2f ms (%zu "
                   "entries), switch %.1f us; total %.0f ms; nft -f full %.0f ms, delta %.1f ms\n",
                   round + 1, ph.parseMs, ph.compileMs, ph.planMs, ph.writeMs, ph.entries,
                   ph.switchUs, ph.totalMs, rawFull - execMs, rawDelta - execMs);
    }
    lab.flush();
    changeNote = fmt::format(
        "{} prefixes removed and {} added (IPv6 /48 among each), in {} different identities of "
        "the {} policy",
        kChangeRemoved, kChangeAdded, kChangeRemoved + kChangeAdded, human(a.changeBase));
  }
  lab.remove();

  // --- the report
  std::string md;
  md += "# Policy apply latency\n\n";
  md += fmt::format("Measured {}. Load average at the end: {}. Source: commit {}.\n\n", machine,
                    eb::loadNow(), eb::sourceRevision());
  md += fmt::format(
      "Command: `{}`. Median of {} rounds; edgeward and nft alternate within a round.\n\n",
      a.command, a.rounds);
  md += fmt::format(
      "Policies: {} rules (egress allow tcp 443 to any, ingress deny tcp 23 from any, and "
      "ingress rules each naming one identity, every 10th a second one; one or two port specs, "
      "tcp 90% / udp 10%, 1 in 8 deny), up to {} identities; prefixes are IPv4 /24s, about 1 in 20 "
      "an "
      "IPv6 /48, spread over public unicast space, never two adjacent ones in one identity. "
      "Firewall program loaded once for all cells, sized by optionsFor() on the largest "
      "policy's compile ({}), in {:.0f} ms: not part of any apply.\n\n",
      kRules, kMaxIdentities, capacities, loadMs);
  md += fmt::format(
      "nft: `ip netns exec {} nft -f FILE` of `policy::exportNft` (inet table `{}`: one interval "
      "set per identity and family, rules referencing them, fragment chains), in a namespace "
      "created for the run and deleted after. nftables {}. Times are wall time minus the cost of "
      "`ip netns exec NS true` measured in the same run ({:.1f} ms); nft's own start-up is "
      "included.\n\n",
      "ewb-apply-PID", kTable,
      [] {
        std::string v;
        if (FILE* f = ::popen("nft --version 2>/dev/null", "r")) {
          char buf[128];
          if (std::fgets(buf, sizeof buf, f)) v = buf;
          ::pclose(f);
        }
        while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) v.pop_back();
        return v.empty() ? std::string("?") : v;
      }(),
      execMs);

  if (!full.empty()) {
    md += "## Full apply\n\n";
    eb::MdTable t({"prefixes", "YAML MB", "parse ms", "compile ms", "plan ms", "map write ms",
                   "entries written", "switch µs", "**total ms**", "nft -f ms", "× nft"});
    for (const auto& r : full) {
      const Cell& c = cellOf(r.prefixes);
      t.row({human(r.prefixes), fmt::format("{:.1f}", c.yaml.size() / 1e6), med(r.s.parse),
             med(r.s.compile), med(r.s.plan), med(r.s.write),
             fmt::format("{:.0f}", eb::median(r.s.entries)),
             fmt::format("{:.1f}", eb::median(r.s.sw)), "**" + med(r.s.total) + "**", med(r.s.nft),
             fmt::format("{:.2f}×", eb::median(r.s.ratio))});
    }
    md += t.str();
    md +=
        "\n`parse` = policy::parsePolicy of the YAML text; `compile` = policy::compile (no "
        "previous image); `plan` = Dataplane::apply's user-space layout (content-addressed "
        "blocks, what to write); `map write` and `switch` = ApplyStats::writeMs and switchUs; "
        "`total` = parse start to apply return (median of the round totals, so not the sum of "
        "the medians). A fresh Dataplane per round, so every cell is a full rewrite of the "
        "inactive generation. `× nft` = total ÷ nft, per round, median.\n\n";
    eb::MdTable sz({"prefixes", "identities", "IPv6 prefixes", "IPv4 intervals", "IPv6 intervals",
                    "map MB", "nft sets", "nft file MB", "generate + YAML ms", "exportNft ms"});
    for (const auto& r : full) {
      const Cell& c = cellOf(r.prefixes);
      sz.row({human(r.prefixes), fmt::format("{}", r.stats.identities), fmt::format("{}", c.v6),
              fmt::format("{}", r.iv4), fmt::format("{}", r.iv6),
              fmt::format("{:.1f}", r.stats.bytes / 1e6), fmt::format("{}", c.sets),
              fmt::format("{:.1f}", c.nftBytes / 1e6), fmt::format("{:.0f}", c.genMs),
              fmt::format("{:.0f}", c.exportMs)});
    }
    md += sz.str();
  }

  std::optional<double> changeMs, changeWriteSwitchMs, patchMs, patchStoreMs;
  if (chg) {
    md += fmt::format("\n## A 10-prefix change to the {} policy\n\n", human(a.changeBase));
    md += changeNote +
          ". Both generations hold the old policy before each round; the new one "
          "is compiled with the old image as `previous` and written "
          "incrementally. nft starts from the old ruleset each time.\n\n";
    eb::MdTable t({"path", "parse ms", "compile ms", "plan ms", "map write ms", "entries written",
                   "switch µs", "**total ms**"});
    t.row(
        {"edgeward (a): full path: parse the whole new YAML, compile with previous, "
         "incremental apply",
         med(chg->parse), med(chg->compile), med(chg->plan), med(chg->write),
         fmt::format("{:.0f}", eb::median(chg->entries)),
         fmt::format("{:.1f}", eb::median(chg->sw)), "**" + med(chg->total) + "**"});
    std::vector<double> ws;
    for (size_t i = 0; i < chg->write.size(); i++) ws.push_back(chg->write[i] + chg->sw[i] / 1000);
    t.row({"edgeward (b): map write + switch alone", "", "", "", med(chg->write),
           fmt::format("{:.0f}", eb::median(chg->entries)),
           fmt::format("{:.1f}", eb::median(chg->sw)), "**" + med(ws) + "**"});
    t.row({"edgeward (c): patch (PatchPolicy's path, see below)", med(pt.patch), med(pt.compile),
           med(pt.plan), med(pt.write), fmt::format("{:.0f}", eb::median(pt.entries)),
           fmt::format("{:.1f}", eb::median(pt.sw)),
           "**" + med(pt.applied) + "** (+ store " + med(pt.store) + " = " + med(pt.total) + ")"});
    t.row({"nft -f of the new full ruleset", "", "", "", "", "", "", "**" + med(chg->nft) + "**"});
    t.row({"nft -f of add/delete element for the 10 prefixes", "", "", "", "", "", "",
           "**" + med(chg->nftDelta) + "**"});
    md += t.str();
    md += fmt::format(
        "\nNot in the totals: policy::diff of old and new policy (the agent computes it in the "
        "same transaction) took {} ms; the agent also writes the YAML to its store. The change "
        "kept {} interval and port entries of the generation in place. Checked in round 1: packets "
        "from hosts in every added and "
        "removed prefix, to the ports of the rules naming their identity and to an unused port, "
        "get the reference evaluator's verdict from the firewall; the nft sets hold the added "
        "prefixes and not the removed ones after the delta.\n",
        med(diffMs), changeEntriesKept);
    md +=
        "\n(c) is what `edgeward policy patch` / the PatchPolicy RPC does in the agent, without "
        "the gRPC call: `parse ms` here is planPatch (the prefixes checked against the policy in "
        "memory) plus applyPatch (the policy's prefix lists and its text edited in place); "
        "`compile ms` is compileChange (only the buckets the prefixes touch); then "
        "Dataplane::apply, which compares per-bucket content hashes with what the generation "
        "holds; the total is up to the switch, and `+ store` adds PolicyStore::commit of the new "
        "full text (SHA-256, temporary file, fsync, rename; four files). Checked in round 1: "
        "the firewall gives the evaluator's verdicts for the changed prefixes, and the edited "
        "text parses to the changed policy.\n";
    changeMs = eb::median(chg->total);
    patchMs = eb::median(pt.applied);
    patchStoreMs = eb::median(pt.total);
    changeWriteSwitchMs = eb::median(ws);
  }

  md += "\n## Where parsing goes\n\n";
  {
    eb::MdTable t(
        {"cell", "parsePolicy ms", "yaml-cpp event pass ms", "YAML::Load ms", "the rest ms"});
    auto row = [&](const std::string& name, const Series& s) {
      std::vector<double> rest;
      for (size_t i = 0; i < s.parse.size(); i++)
        rest.push_back(s.parse[i] - s.yamlEvents[i] - s.yamlLoad[i]);
      t.row({name, med(s.parse), med(s.yamlEvents), med(s.yamlLoad), med(rest)});
    };
    for (const auto& r : full) row("full " + human(r.prefixes), r.s);
    if (chg) row("change (" + human(a.changeBase) + ")", *chg);
    md += t.str();
    md +=
        "\nparsePolicy (through yaml::Reader) now builds its node tree from one libyaml event "
        "pass and then validates and builds the Policy. For comparison, the two yaml-cpp passes "
        "the reader used before (an event pass checking for one document, then YAML::Load, "
        "which tokenises again and builds a node tree) are timed on their own on the same text "
        "(Load including freeing the tree). `the rest` = parsePolicy minus the two; negative "
        "means parsePolicy is faster than yaml-cpp's passes alone.\n";
  }

  md += "\n## Targets\n\n";
  for (const auto& r : full)
    if (r.prefixes == 100'000) {
      double ratio = eb::median(r.s.ratio);
      md += fmt::format(
          "- Full 100k apply ≤ {:.1f}× nft -f: {:.2f}× ({} ms against {} ms): **{}**.\n",
          kTargetFullRatio, ratio, med(r.s.total), med(r.s.nft),
          ratio <= kTargetFullRatio ? "met" : "missed");
    }
  auto met = [](double v) { return v <= kTargetChangeMs ? "met" : "missed"; };
  if (changeMs)
    md += fmt::format(
        "- 10-prefix change ≤ {:.0f} ms: full path {} ms (**{}**); map write + switch alone {} ms "
        "({}).\n",
        kTargetChangeMs, ms(*changeMs), met(*changeMs), ms(*changeWriteSwitchMs),
        *changeWriteSwitchMs <= kTargetChangeMs ? "within" : "over");
  if (patchMs)
    md += fmt::format(
        "- 10-prefix change ≤ {:.0f} ms as a patch (PatchPolicy's path): {} ms to the switch "
        "(**{}**), {} ms with the store commit (**{}**).\n",
        kTargetChangeMs, ms(*patchMs), met(*patchMs), ms(*patchStoreMs), met(*patchStoreMs));
  {
    double worst = 0;
    for (const auto& r : full) worst = std::max(worst, eb::maxOf(r.s.sw));
    if (chg) worst = std::max(worst, eb::maxOf(chg->sw));
    md += fmt::format("- Switch ≤ {:.0f} µs: largest of all rounds {:.1f} µs: **{}**.\n",
                      kTargetSwitchUs, worst, worst <= kTargetSwitchUs ? "met" : "missed");
  }

  md += "\n## Spread (median (min–max) over the rounds)\n\n";
  eb::MdTable sp({"cell", "parse ms", "compile ms", "plan ms", "map write ms", "switch µs",
                  "total ms", "nft -f ms (wall, with ip netns exec)", "nft delta ms (wall)"});
  for (const auto& r : full)
    sp.row({"full " + human(r.prefixes), spread(r.s.parse), spread(r.s.compile), spread(r.s.plan),
            spread(r.s.write), spread(r.s.sw), spread(r.s.total), spread(r.nftRaw), ""});
  if (chg)
    sp.row({"change", spread(chg->parse), spread(chg->compile), spread(chg->plan),
            spread(chg->write), spread(chg->sw), spread(chg->total), spread(nftFullRaw),
            spread(nftDeltaRaw)});
  if (!pt.total.empty())
    sp.row({"patch", spread(pt.patch), spread(pt.compile), spread(pt.plan), spread(pt.write),
            spread(pt.sw), spread(pt.applied) + " (store " + spread(pt.store) + ")", "", ""});
  md += sp.str();

  eb::writeReport(md, a.out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return eb::benchMain("ew_bench_apply", "BPF maps, namespaces, nft", "namespace removed",
                       [&] { return run(parse(argc, argv)); });
}
