// edgeward demo: a throwaway two-namespace lab, the example policy enforced on the server's
// veth, real TCP/UDP/ICMP attempts over IPv4 and IPv6, each explained by the firewall's own
// counters, then the counters table, then everything removed.
//
// Every attempt is also checked against an independent reading of the policy (expected()
// below walks the rules of the parsed Policy, not the compiled map images): the demo doubles
// as an end-to-end test of the compiler and the BPF program.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

#include <fmt/ranges.h>

#include "bpf/firewall_program.h"
#include "cli/commands.h"
#include "cli/counters.h"
#include "common/netns.h"
#include "dataplane/dataplane.h"
#include "policy/compiler.h"
#include "policy/policy.h"

namespace edgeward::cli {
namespace {

namespace fs = std::filesystem;
using netns::Outcome;
using netns::Proto;

constexpr char kPrefix[] = "ewdemo-";
constexpr char kClientNs[] = "ewdemo-client";
constexpr char kServerNs[] = "ewdemo-server";
constexpr char kClientIf[] = "ewdemo-c";
constexpr char kServerIf[] = "ewdemo-s";
constexpr char kClient4[] = "10.200.0.1";
constexpr char kClient6[] = "fd00:200::1";
constexpr char kServer4[] = "10.200.0.2";
constexpr char kServer6[] = "fd00:200::2";
// A second address of the client namespace, standing for another host on the lab network.
constexpr char kStranger4[] = "10.200.0.66";
constexpr char kLockFile[] = "/run/edgeward-demo.lock";
// Probed besides the ports the policy names, to show what no rule allows.
constexpr uint16_t kUnlistedTcpIn = 22, kUnlistedUdpIn = 9999, kUnlistedTcpOut = 443;
constexpr size_t kMaxPortsPerDirection = 8;  // keeps the demo well under 30 s

// Exit codes (docs/cli.md).
constexpr int kExitSetup = 1, kExitMismatch = 2, kExitCleanup = 3, kExitInterrupted = 130;

struct Options {
  std::string policy, mode = "xdp";
};

std::atomic<int> gSignal{0};
void onSignal(int s) { gSignal = s; }

Result<void> checkInterrupted() {
  if (gSignal) return failf("interrupted by signal {}", gSignal.load());
  return {};
}

// --policy, else ./examples/policy.yaml, else the source tree this binary was built from
// (EW_SOURCE_DIR or this file's path), else examples/ in a parent of the executable's folder.
Result<std::string> findPolicy(const std::string& given) {
  if (!given.empty()) return given;
  std::vector<fs::path> candidates = {"examples/policy.yaml"};
#ifdef EW_SOURCE_DIR
  candidates.push_back(fs::path(EW_SOURCE_DIR) / "examples/policy.yaml");
#endif
  candidates.push_back(fs::path(__FILE__).parent_path() / "../../examples/policy.yaml");
  std::error_code ec;
  for (fs::path d = fs::read_symlink("/proc/self/exe", ec).parent_path();
       !ec && d.has_relative_path(); d = d.parent_path())
    candidates.push_back(d / "examples/policy.yaml");
  for (const auto& c : candidates)
    if (fs::is_regular_file(c, ec)) return fs::weakly_canonical(c, ec).string();
  return fail("cannot find examples/policy.yaml; pass --policy FILE");
}

// ---- what the policy says, read directly from the parsed rules ----

struct Attempt {
  uint8_t dir = EW_INGRESS;  // ingress: client -> server; egress: server -> client
  Proto proto = Proto::Tcp;
  std::string src, dst;
  uint16_t port = 0;
};

struct Decision {
  bool pass = false;
  uint32_t rule = EW_RULE_NONE;  // deciding rule, or EW_RULE_NONE for the default action
  uint8_t reason = EW_R_DEFAULT_DENY;
  bool seen = true;  // false: the firewall counted no packet of this attempt
};

bool contains(const policy::Prefix& p, const policy::Prefix& host) {
  if (p.family != host.family) return false;
  for (int bit = 0; bit < p.len; bit++) {
    uint8_t mask = static_cast<uint8_t>(0x80 >> (bit % 8));
    if ((p.addr[bit / 8] & mask) != (host.addr[bit / 8] & mask)) return false;
  }
  return true;
}

bool peerMatches(const policy::Policy& pol, const policy::Rule& r, const policy::Prefix& peer) {
  for (const auto& name : r.peers) {
    if (name == policy::kAnyIdentity) return true;
    for (const auto& id : pol.identities)
      if (id.name == name)
        for (const auto& p : id.prefixes)
          if (contains(p, peer)) return true;
  }
  return false;
}

bool portMatches(const policy::Rule& r, Proto proto, bool v6, uint16_t port) {
  if (r.ports.empty()) return true;
  for (const auto& s : r.ports) {
    switch (s.protocol) {
      case policy::Protocol::Any:
        return true;
      case policy::Protocol::Tcp:
      case policy::Protocol::Udp:
        if ((s.protocol == policy::Protocol::Tcp) == (proto == Proto::Tcp) &&
            proto != Proto::Icmp && port >= s.range.first && port <= s.range.last)
          return true;
        break;
      case policy::Protocol::Icmp:
        if (proto == Proto::Icmp && !v6) return true;
        break;
      case policy::Protocol::Icmpv6:
        if (proto == Proto::Icmp && v6) return true;
        break;
    }
  }
  return false;
}

// Deny beats allow; among rules of the same action the first in the file is reported.
Decision expected(const policy::Policy& pol, const Attempt& a) {
  auto peer = policy::parsePrefix(a.dir == EW_INGRESS ? a.src : a.dst);
  const bool v6 = peer && peer->family == policy::Family::V6;
  const auto& rules = a.dir == EW_INGRESS ? pol.ingress : pol.egress;
  const uint32_t base = a.dir == EW_INGRESS ? 0 : static_cast<uint32_t>(pol.ingress.size());
  uint32_t allow = EW_RULE_NONE, deny = EW_RULE_NONE;
  for (uint32_t i = 0; peer && i < rules.size(); i++) {
    if (!peerMatches(pol, rules[i], *peer) || !portMatches(rules[i], a.proto, v6, a.port)) continue;
    auto& slot = rules[i].action == policy::Action::Deny ? deny : allow;
    slot = std::min(slot, base + i);
  }
  if (deny != EW_RULE_NONE) return {false, deny, EW_R_RULE_DENY};
  if (allow != EW_RULE_NONE) return {true, allow, EW_R_RULE_ALLOW};
  bool pass = pol.defaultAction == policy::Action::Allow;
  return {pass, EW_RULE_NONE, static_cast<uint8_t>(pass ? EW_R_DEFAULT_ALLOW : EW_R_DEFAULT_DENY)};
}

// ---- what the firewall says: counter deltas around one attempt ----

// The decision on the attempt's first packet in its direction: a drop reason if any packet was
// dropped, else why packets passed; the rule is the one of that action and direction that
// counted the most packets. Replies (established, the other direction) are not the decision.
Decision observed(const policy::CompiledPolicy& p, const Counters& d, uint8_t dir) {
  Decision o;
  auto pick = [&](policy::Action act) {
    uint32_t best = EW_RULE_NONE;
    uint64_t most = 0;
    for (uint32_t i = 0; i < p.rules.size() && i < d.rules.size(); i++)
      if (p.rules[i].dir == dir && p.rules[i].action == act && d.rules[i].packets > most) {
        most = d.rules[i].packets;
        best = i;
      }
    return best;
  };
  for (uint8_t r = EW_R_RULE_DENY; r < EW_R_COUNT; r++)
    if (d.reason(dir, r).packets) {
      o.pass = false;
      o.reason = r;
      o.rule = r == EW_R_RULE_DENY ? pick(policy::Action::Deny) : EW_RULE_NONE;
      return o;
    }
  o.pass = true;
  if (d.reason(dir, EW_R_RULE_ALLOW).packets) {
    o.reason = EW_R_RULE_ALLOW;
    o.rule = pick(policy::Action::Allow);
  } else if (d.reason(dir, EW_R_DEFAULT_ALLOW).packets) {
    o.reason = EW_R_DEFAULT_ALLOW;
  } else {
    o.seen = false;
  }
  return o;
}

std::string describe(const policy::CompiledPolicy& p, const Decision& d) {
  std::string verdict = d.pass ? "passed " : "dropped";
  if (!d.seen) return "(no packet reached the firewall)";
  if (d.rule != EW_RULE_NONE && d.rule < p.rules.size())
    return fmt::format("{}  rule {}", verdict, p.rules[d.rule].name);
  switch (d.reason) {
    case EW_R_DEFAULT_ALLOW:
      return verdict + "  (default allow)";
    case EW_R_DEFAULT_DENY:
      return verdict + "  (default deny)";
    default:
      return fmt::format("{}  ({})", verdict, policy::reasonName(d.reason));
  }
}

std::string endpoint(const std::string& addr, Proto proto, uint16_t port) {
  bool v6 = addr.find(':') != std::string::npos;
  if (proto == Proto::Icmp) return addr;
  return v6 ? fmt::format("[{}]:{}", addr, port) : fmt::format("{}:{}", addr, port);
}

// ---- the lab ----

struct Lab {
  UniqueFd lock;
  netns::NetNs client, server;
  netns::VethPair veth;
  std::unique_ptr<netns::EchoServer> clientEcho, serverEcho;
  std::unique_ptr<bpf::FirewallProgram> fw;
  std::vector<UniqueFd> links;

  // Removes everything, in reverse order of creation; reports every failure.
  Result<void> teardown() {
    links.clear();
    fw.reset();
    clientEcho.reset();
    serverEcho.reset();
    std::vector<std::string> errors;
    for (auto r : {veth.remove(), server.remove(), client.remove()})
      if (!r) errors.push_back(r.error().str());
    for (const char* ns : {kClientNs, kServerNs})
      if (netns::nsExists(ns)) errors.push_back(fmt::format("namespace {} still exists", ns));
    if (!errors.empty()) return failf("cleanup: {}", fmt::join(errors, "; "));
    return {};
  }
};

Result<void> build(Lab& lab) {
  lab.lock.reset(::open(kLockFile, O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!lab.lock.valid()) return failErrno(fmt::format("opening {}", kLockFile));
  if (::flock(lab.lock.get(), LOCK_EX | LOCK_NB))
    return fail("another edgeward demo is running (it holds /run/edgeward-demo.lock)");
  // Leftovers of a demo that was killed (SIGKILL, power loss): ours by name, and nobody runs it.
  EW_TRY(stale, netns::cleanupStale(kPrefix));
  if (*stale) fmt::print("removed {} leftover(s) of an earlier demo\n", *stale);

  EW_TRY(client, netns::NetNs::create(kClientNs));
  lab.client = std::move(*client);
  EW_TRY(server, netns::NetNs::create(kServerNs));
  lab.server = std::move(*server);
  EW_TRY(veth, netns::VethPair::create(
                   {kClientIf,
                    kClientNs,
                    {fmt::format("{}/24", kClient4), fmt::format("{}/64", kClient6),
                     fmt::format("{}/24", kStranger4)}},
                   {kServerIf,
                    kServerNs,
                    {fmt::format("{}/24", kServer4), fmt::format("{}/64", kServer6)}}));
  lab.veth = std::move(*veth);
  return {};
}

Result<std::vector<std::string>> attach(Lab& lab, const std::string& mode) {
  return netns::runIn(kServerNs, [&]() -> Result<std::vector<std::string>> {
    EW_TRY(ifindex, bpf::ifindexOf(kServerIf));
    std::vector<std::string> hooks;
    if (mode == "xdp") {
      auto native = lab.fw->attach(bpf::Hook::XdpIngress, *ifindex, bpf::XdpMode::Native);
      if (native) {
        lab.links.push_back(std::move(*native));
        hooks.push_back("xdp-ingress (native)");
      } else {
        EW_TRY(generic, lab.fw->attach(bpf::Hook::XdpIngress, *ifindex, bpf::XdpMode::Generic));
        lab.links.push_back(std::move(*generic));
        hooks.push_back("xdp-ingress (generic)");
      }
    } else {
      EW_TRY(in, lab.fw->attach(bpf::Hook::TcIngress, *ifindex));
      lab.links.push_back(std::move(*in));
      hooks.push_back("tcx-ingress");
    }
    EW_TRY(out, lab.fw->attach(bpf::Hook::TcEgress, *ifindex));
    lab.links.push_back(std::move(*out));
    hooks.push_back("tcx-egress");
    return hooks;
  });
}

// Ports worth probing in one direction: the first port of every tcp/udp range the rules name,
// plus ports no rule is likely to allow.
std::vector<netns::EchoServer::Listen> portsOf(const std::vector<policy::Rule>& rules,
                                               std::vector<netns::EchoServer::Listen> extra) {
  std::vector<netns::EchoServer::Listen> out;
  std::set<std::pair<Proto, uint16_t>> seen;
  auto add = [&](Proto p, uint16_t port) {
    if (port != 0 && seen.emplace(p, port).second) out.push_back({p, port});
  };
  for (const auto& r : rules)
    for (const auto& s : r.ports) {
      if (out.size() >= kMaxPortsPerDirection) break;
      if (s.protocol == policy::Protocol::Tcp) add(Proto::Tcp, s.range.first);
      if (s.protocol == policy::Protocol::Udp) add(Proto::Udp, s.range.first);
    }
  for (const auto& e : extra) add(e.proto, e.port);
  std::stable_sort(out.begin(), out.end(),
                   [](const auto& a, const auto& b) { return a.proto < b.proto; });
  return out;
}

std::string listenList(const std::vector<netns::EchoServer::Listen>& ports) {
  std::vector<std::string> tcp, udp;
  for (const auto& l : ports) (l.proto == Proto::Tcp ? tcp : udp).push_back(std::to_string(l.port));
  return fmt::format("tcp {}, udp {}", tcp.empty() ? "-" : fmt::format("{}", fmt::join(tcp, " ")),
                     udp.empty() ? "-" : fmt::format("{}", fmt::join(udp, " ")));
}

struct Tally {
  size_t attempts = 0, mismatches = 0;
};

Result<void> attempt(Lab& lab, const policy::Policy& pol, const policy::CompiledPolicy& cp,
                     const Attempt& a, Tally& t) {
  EW_TRY(ok, checkInterrupted());
  EW_TRY(before, readCounters(*lab.fw, cp.rules.size()));
  const Decision want = expected(pol, a);
  // A drop shows as silence, so its wait is the demo's running time; an expected reply may
  // take longer on a loaded machine and costs nothing when it comes at once.
  netns::Probe pr{a.proto, a.src, a.dst, a.port, std::chrono::milliseconds(want.pass ? 1500 : 300)};
  EW_TRY(outcome, netns::runIn(a.dir == EW_INGRESS ? kClientNs : kServerNs,
                               [&] { return netns::probe(pr); }));
  // Let the connection's last packets (FIN, ACK) land in this attempt's window, not the next.
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EW_TRY(after, readCounters(*lab.fw, cp.rules.size()));
  const Decision seen = observed(cp, *after - *before, a.dir);
  t.attempts++;

  std::vector<std::string> problems;
  if (!seen.seen) problems.push_back("the firewall counted no packet");
  if (seen.seen && (seen.pass != want.pass || seen.rule != want.rule || seen.reason != want.reason))
    problems.push_back(fmt::format("the policy says {}", describe(cp, want)));
  if (seen.seen && seen.pass != (*outcome == Outcome::Reply))
    problems.push_back(fmt::format("but the probe got: {}", netns::outcomeName(*outcome)));
  if (!problems.empty()) t.mismatches++;
  fmt::print("  {:<5} {:<12} -> {:<20} {}{}\n", netns::protoName(a.proto), a.src,
             endpoint(a.dst, a.proto, a.port), describe(cp, seen),
             problems.empty() ? "" : fmt::format("   MISMATCH: {}", fmt::join(problems, ", ")));
  std::fflush(stdout);
  return {};
}

Result<int> demo(Lab& lab, const Options& o) {
  EW_TRY(path, findPolicy(o.policy));
  EW_TRY(pol, policy::loadPolicyFile(*path));
  EW_TRY(cp, policy::compile(*pol));
  fmt::print("policy {} (\"{}\": {} ingress + {} egress rules, default {})\n", *path, pol->name,
             pol->ingress.size(), pol->egress.size(), policy::actionName(pol->defaultAction));

  EW_TRY(built, build(lab));
  fmt::print("lab: {} [{} {} {}] <-- veth {}/{} --> {} [{} {}]\n", kClientNs, kClient4, kClient6,
             kStranger4, kClientIf, kServerIf, kServerNs, kServer4, kServer6);
  EW_TRY(fw, bpf::FirewallProgram::load(dataplane::optionsFor(*cp)));
  lab.fw = std::move(*fw);
  dataplane::Dataplane dp(*lab.fw);
  EW_TRY(applied, dp.apply(*cp, 1));
  EW_TRY(interrupted, checkInterrupted());
  EW_TRY(hooks, attach(lab, o.mode));
  fmt::print("firewall on {} in {}: {}\n", kServerIf, kServerNs, fmt::join(*hooks, " + "));

  auto inPorts =
      portsOf(pol->ingress, {{Proto::Tcp, kUnlistedTcpIn}, {Proto::Udp, kUnlistedUdpIn}});
  auto outPorts = portsOf(pol->egress, {{Proto::Tcp, kUnlistedTcpOut}});
  EW_TRY(se, netns::EchoServer::start(kServerNs, inPorts));
  lab.serverEcho = std::move(*se);
  EW_TRY(ce, netns::EchoServer::start(kClientNs, outPorts));
  lab.clientEcho = std::move(*ce);
  fmt::print("echo servers: {} {}; {} {}\n\n", kServerNs, listenList(inPorts), kClientNs,
             listenList(outPorts));

  Tally t;
  const std::pair<const char*, const char*> fams[] = {{kClient4, kServer4}, {kClient6, kServer6}};
  fmt::print("client -> server (ingress, decided by {})\n", hooks->front());
  for (const auto& [c, s] : fams) {
    for (const auto& l : inPorts) {
      EW_TRY(r, attempt(lab, *pol, *cp, {EW_INGRESS, l.proto, c, s, l.port}, t));
    }
    EW_TRY(r, attempt(lab, *pol, *cp, {EW_INGRESS, Proto::Icmp, c, s, 0}, t));
  }
  const uint16_t strangerPort = inPorts.empty() ? 80 : inPorts.front().port;
  EW_TRY(r1,
         attempt(lab, *pol, *cp, {EW_INGRESS, Proto::Tcp, kStranger4, kServer4, strangerPort}, t));
  EW_TRY(r2, attempt(lab, *pol, *cp, {EW_INGRESS, Proto::Icmp, kStranger4, kServer4, 0}, t));

  fmt::print("\nserver -> client (egress, decided by {})\n", hooks->back());
  for (const auto& [c, s] : fams) {
    for (const auto& l : outPorts) {
      EW_TRY(r, attempt(lab, *pol, *cp, {EW_EGRESS, l.proto, s, c, l.port}, t));
    }
    EW_TRY(r, attempt(lab, *pol, *cp, {EW_EGRESS, Proto::Icmp, s, c, 0}, t));
  }

  EW_TRY(total, readCounters(*lab.fw, cp->rules.size()));
  fmt::print(
      "\ncounters (all attempts; a rule also counts the replies of connections it allowed)\n");
  printCounterTable(stdout, *cp, *total);
  fmt::print("\n{} attempts: ", t.attempts);
  if (t.mismatches)
    fmt::print("{} did not match what the policy says (MISMATCH above)\n", t.mismatches);
  else
    fmt::print("every verdict matches the policy\n");
  return t.mismatches ? kExitMismatch : 0;
}

// Never throws (fputs, not fmt::print): used where a closed stdout must not stop the cleanup.
void say(std::FILE* f, const std::string& line) {
  std::fputs(line.c_str(), f);
  std::fflush(f);
}

int runDemo(const Options& o) {
  struct sigaction sa {
  }, ign{}, oldInt{}, oldTerm{}, oldPipe{};
  sa.sa_handler = onSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &oldInt);
  sigaction(SIGTERM, &sa, &oldTerm);
  // `edgeward demo | head` closes our stdout early: a write must fail, not kill us before the
  // namespaces are gone.
  ign.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ign, &oldPipe);

  int code = 0;
  {
    Lab lab;  // its destructors clean up whatever teardown() below did not reach
    try {
      auto r = demo(lab, o);
      if (!r) {
        say(stderr, fmt::format("edgeward: {}\n", r.error().str()));
        code = kExitSetup;
      } else {
        code = *r;
      }
    } catch (const std::exception& e) {
      say(stderr, fmt::format("edgeward: {}\n", e.what()));
      code = kExitSetup;
    }
    const bool built = lab.client.valid() || lab.server.valid();
    if (auto c = lab.teardown(); !c) {
      say(stderr, fmt::format("edgeward: {}\n", c.error().str()));
      code = kExitCleanup;
    } else if (built) {
      say(stdout, fmt::format("cleanup: removed {}, {} and the veth pair\n", kClientNs, kServerNs));
    }
  }
  if (gSignal && code != kExitCleanup) code = kExitInterrupted;
  sigaction(SIGINT, &oldInt, nullptr);
  sigaction(SIGTERM, &oldTerm, nullptr);
  sigaction(SIGPIPE, &oldPipe, nullptr);
  return code;
}

}  // namespace

void addDemoCommand(CLI::App& app) {
  static Options o;
  auto* cmd = app.add_subcommand(
      "demo",
      "Build a two-namespace lab, enforce examples/policy.yaml on the server, probe it, clean up");
  cmd->add_option("--policy", o.policy, "Policy to enforce (default: examples/policy.yaml)");
  cmd->add_option("--mode", o.mode, "xdp: XDP ingress + tcx egress; tcx: tcx both ways")
      ->check(CLI::IsMember({"xdp", "tcx"}))
      ->capture_default_str();
  cmd->callback([] {
    if (int code = runDemo(o); code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace edgeward::cli
