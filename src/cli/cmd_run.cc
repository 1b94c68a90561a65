// edgeward run --iface IFACE --policy FILE [--mode xdp|tcx] [--netns NAME]: enforce a policy on
// one interface until SIGINT/SIGTERM, printing rates every second, then detach and print totals.
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <ctime>

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

struct Options {
  std::string iface, policy, mode = "xdp", netns;
};

struct Attached {
  std::vector<UniqueFd> links;  // closing them detaches
  std::vector<std::string> hooks;
};

// Attaches inside the interface's namespace: a link's ifindex is resolved in the namespace of
// the thread that creates it. The links stay attached after the thread ends.
Result<Attached> attach(bpf::FirewallProgram& fw, const Options& o) {
  return netns::runIn(o.netns, [&]() -> Result<Attached> {
    EW_TRY(ifindex, bpf::ifindexOf(o.iface));
    Attached a;
    if (o.mode == "xdp") {
      auto native = fw.attach(bpf::Hook::XdpIngress, *ifindex, bpf::XdpMode::Native);
      if (native) {
        a.links.push_back(std::move(*native));
        a.hooks.push_back("xdp-ingress (native)");
      } else {
        EW_TRY(generic, fw.attach(bpf::Hook::XdpIngress, *ifindex, bpf::XdpMode::Generic));
        a.links.push_back(std::move(*generic));
        a.hooks.push_back(
            fmt::format("xdp-ingress (generic; native refused: {})", native.error().str()));
      }
    } else {
      EW_TRY(in, fw.attach(bpf::Hook::TcIngress, *ifindex));
      a.links.push_back(std::move(*in));
      a.hooks.push_back("tcx-ingress");
    }
    EW_TRY(out, fw.attach(bpf::Hook::TcEgress, *ifindex));
    a.links.push_back(std::move(*out));
    a.hooks.push_back("tcx-egress");
    return a;
  });
}

std::string clockNow() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  return buf;
}

// Sleeps until `until` or a signal of `sigs` arrives; returns the signal or 0.
int waitSignal(const sigset_t& sigs, std::chrono::steady_clock::time_point until) {
  for (;;) {
    auto left = until - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return 0;
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    int s = sigtimedwait(&sigs, nullptr, &ts);
    if (s > 0) return s;
    if (errno == EAGAIN) return 0;
  }
}

void run(const Options& o) {
  // Taken synchronously by the main loop; threads started later (runIn) inherit the mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  auto pol = orExit(policy::loadPolicyFile(o.policy));
  auto compiled = orExit(policy::compile(pol));
  if (!o.netns.empty() && !netns::nsExists(o.netns))
    orExit<void>(failf("network namespace {} does not exist (see `ip netns list`)", o.netns));
  const int ifindex = orExit(netns::ifindexIn(o.netns, o.iface));

  auto fw = orExit(bpf::FirewallProgram::load(dataplane::optionsFor(compiled)));
  dataplane::Dataplane dp(*fw);
  orExit(dp.apply(compiled, 1));
  auto attached = orExit(attach(*fw, o));

  const size_t nIngress = static_cast<size_t>(
      std::count_if(compiled.rules.begin(), compiled.rules.end(),
                    [](const policy::RuleInfo& r) { return r.dir == EW_INGRESS; }));
  std::string where = o.netns.empty()
                          ? fmt::format("{} (ifindex {})", o.iface, ifindex)
                          : fmt::format("{} (netns {}, ifindex {})", o.iface, o.netns, ifindex);
  fmt::print("enforcing policy \"{}\" ({} ingress + {} egress rules, default {}) on {}\n", pol.name,
             nIngress, compiled.rules.size() - nIngress, policy::actionName(pol.defaultAction),
             where);
  fmt::print("hooks: {}; Ctrl-C to stop\n", fmt::join(attached.hooks, ", "));
  std::fflush(stdout);

  const auto start = std::chrono::steady_clock::now();
  const auto first = orExit(readCounters(*fw, compiled.rules.size()));
  auto prev = first;
  auto prevAt = start, next = start + std::chrono::seconds(1);
  int exitCode = 0;
  for (;;) {
    int sig = waitSignal(sigs, next);
    if (sig) {
      fmt::print("{}: stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
      break;
    }
    next += std::chrono::seconds(1);
    // The interface (or its namespace) may vanish under us; its links then detach themselves.
    if (auto idx = netns::ifindexIn(o.netns, o.iface); !idx || *idx != ifindex) {
      fmt::print(stderr, "edgeward: interface {} is gone; stopping\n", o.iface);
      exitCode = 1;
      break;
    }
    auto cur = orExit(readCounters(*fw, compiled.rules.size()));
    auto now = std::chrono::steady_clock::now();
    double secs = std::chrono::duration<double>(now - prevAt).count();
    auto d = cur - prev;
    auto pd = passDrop(d);
    size_t top = 0;
    for (size_t i = 1; i < d.rules.size(); i++)
      if (d.rules[i].packets > d.rules[top].packets) top = i;
    std::string topRule =
        d.rules.empty() || d.rules[top].packets == 0
            ? "-"
            : fmt::format("{} ({} pkts)", compiled.rules[top].name, d.rules[top].packets);
    fmt::print("{}  passed {:>7}/s  dropped {:>7}/s  top rule {}\n", clockNow(),
               humanCount(static_cast<double>(pd.passed) / secs),
               humanCount(static_cast<double>(pd.dropped) / secs), topRule);
    std::fflush(stdout);
    prev = std::move(cur);
    prevAt = now;
  }

  attached.links.clear();  // detach
  auto total = orExit(readCounters(*fw, compiled.rules.size())) - first;
  auto pd = passDrop(total);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print("detached from {}. totals over {:.1f} s: {} packets passed, {} dropped\n", o.iface,
             secs, pd.passed, pd.dropped);
  printCounterTable(stdout, compiled, total);
  std::fflush(stdout);
  if (exitCode) throw CLI::RuntimeError(exitCode);
}

}  // namespace

void addRunCommand(CLI::App& app) {
  static Options o;
  auto* cmd = app.add_subcommand(
      "run", "Enforce a policy on an interface until Ctrl-C, printing rates every second");
  cmd->add_option("--iface", o.iface, "Interface to protect")->required();
  cmd->add_option("--policy", o.policy, "Policy file")->required();
  cmd->add_option("--mode", o.mode,
                  "xdp: XDP ingress (native, else generic) + tcx egress; tcx: tcx both ways")
      ->check(CLI::IsMember({"xdp", "tcx"}))
      ->capture_default_str();
  cmd->add_option("--netns", o.netns,
                  "Network namespace of the interface (a name from `ip netns list`)");
  cmd->callback([] { run(o); });
}

}  // namespace edgeward::cli
