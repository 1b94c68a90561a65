// ew_bench_drop: drops per second on a veth pair, traffic from the kernel's own generator.
//
// Two namespaces, ewb-gen and ewb-fw, joined by the veth pair ewb-g0 <-> ewb-f0. In ewb-gen an
// XDP program that returns XDP_TX is run with BPF_PROG_TEST_RUN in live-frames mode
// (BPF_F_TEST_XDP_LIVE_FRAMES, ctx_in.ingress_ifindex = ewb-g0): the kernel turns XDP_TX into
// a redirect out of ewb-g0, so every repetition puts one frame on the wire towards ewb-f0
// (net/bpf/test_run.c: xdp_test_run_batch). ewb-f0 carries the filter under test:
//   edgeward     the firewall's XDP program, native mode, enforcing the generated policy
//   nftables     the same policy as nft sets in a netdev-family chain on ewb-f0's ingress hook
//   drop-all     xdp_drop_all (the ceiling: an XDP program that does nothing but drop)
// plus diagnostic variants (edgeward with conntrack off, and on tcx ingress; nftables with
// source-only sets, and with a single drop-everything rule: the floor of the skb path).
// Namespaces and veths come from ew_netns (src/common/netns.h) and are removed on every exit.
// ewb-f0 has GRO switched on so that veth accepts XDP frames without an XDP program attached
// (the nftables case); the receive work runs in softirq on the generator's CPU.
// Drops are counted by the receiver: the firewall's reason counters, nft named counters, and
// veth's rx_queue_0_xdp_drops for drop-all. Rounds are interleaved across modes.
//
//   sudo ew_bench_drop [--seconds S] [--rounds N] [--prefixes N] [--rules N] [--out FILE]
//                      [--no-diag] [--dump-nft FILE]
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bpf/firewall_program.h"
#include "common/netns.h"
#include "dataplane/dataplane.h"
#include "policy/compiler.h"
#include "support/common.h"
#include "support/ethtool.h"
#include "support/packet.h"
#include "support/policy_gen.h"
#include "support/report.h"
#include "xdp_drop.skel.h"

namespace eb = edgeward::bench;
namespace et = edgeward::testing;
namespace nn = edgeward::netns;
using edgeward::Result;
using edgeward::UniqueFd;
using edgeward::bpf::FirewallMap;
using edgeward::bpf::FirewallProgram;
using edgeward::bpf::Hook;

namespace {

using eb::g_stop;
using eb::Stop;

using eb::classify;
using eb::die;
using eb::must;

struct Args {
  double seconds = 2.0;
  int rounds = 5;
  size_t prefixes = 10'000;
  size_t rules = 1'000;
  std::string out = "bench/results/drop.md";
  bool diag = true;
  std::string dumpNft;  // also write the port-exact ruleset here
};

constexpr const char* kTable = "ewbench";

// An XDP program that transmits every frame: XDP_TX, the generator's action.
UniqueFd loadTxProgram() {
  const bpf_insn insns[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, XDP_TX},
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  int fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "ewb_gen_tx", "GPL", insns, 2, nullptr);
  if (fd < 0) die(fmt::format("loading the generator program: {}", std::strerror(-fd)));
  return UniqueFd(fd);
}

struct GenResult {
  uint64_t sent = 0;
  double wallS = 0, cpuS = 0;
};

double threadCpuS() { return eb::threadCpuNs() / 1e9; }

// Runs the live-frames generator for `seconds` (in the calling thread's namespace).
GenResult generate(int progFd, int ifindex, const std::vector<uint8_t>& frame, double seconds) {
  xdp_md ctx{};
  ctx.data = 0;
  ctx.data_end = static_cast<uint32_t>(frame.size());
  ctx.ingress_ifindex = static_cast<uint32_t>(ifindex);
  ctx.rx_queue_index = 0;
  constexpr uint32_t kChunk = 1u << 17;
  GenResult g;
  auto t0 = std::chrono::steady_clock::now();
  double c0 = threadCpuS();
  while (true) {
    bpf_test_run_opts o{};
    o.sz = sizeof(o);
    o.data_in = frame.data();
    o.data_size_in = static_cast<uint32_t>(frame.size());
    o.ctx_in = &ctx;
    o.ctx_size_in = sizeof(ctx);
    o.repeat = static_cast<int>(kChunk);
    o.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
    o.batch_size = 0;  // the kernel's default, 64 frames per batch
    if (bpf_prog_test_run_opts(progFd, &o) != 0) {
      if (errno == EINTR && g_stop) throw Stop();
      die(fmt::format("live-frames BPF_PROG_TEST_RUN: {}", std::strerror(errno)));
    }
    g.sent += kChunk;
    g.wallS = eb::msSince(t0) / 1e3;
    if (g.wallS >= seconds) break;
    if (g_stop) throw Stop();
  }
  g.cpuS = threadCpuS() - c0;
  return g;
}

std::vector<uint8_t> frameOf(bool udp, const std::string& src, uint16_t dport) {
  et::PacketSpec s;
  s.src = src;
  s.dst = "10.0.0.2";
  s.l4 = udp ? et::L4::Udp : et::L4::Tcp;
  s.sport = 40000;
  s.dport = dport;
  s.tcpFlags = 0x02;
  s.payload = udp ? 18 : 6;  // 60-byte frames (64 on a wire with the FCS)
  return et::buildPacket(s);
}

uint64_t firewallDrops(FirewallProgram& fw) {
  const uint32_t n = uint32_t{EW_DIRS} * EW_R_COUNT;
  auto c = must(fw.readCounters(FirewallMap::ReasonStats, n), "reading counters");
  uint64_t drops = 0;
  for (uint32_t r : {EW_R_RULE_DENY, EW_R_DEFAULT_DENY, EW_R_MALFORMED, EW_R_TRUNCATED,
                     EW_R_FRAGMENT, EW_R_SYN_FLOOD, EW_R_NON_IP, EW_R_IPV6_EXT})
    drops += c[uint32_t{EW_INGRESS} * EW_R_COUNT + r].packets;
  return drops;
}

// `nft ARGS...` inside namespace NS (through `ip netns exec`; nft needs no bpffs).
Result<std::string> nft(const std::string& ns, std::vector<std::string> args) {
  std::vector<std::string> cmd = {"netns", "exec", ns, "nft"};
  cmd.insert(cmd.end(), args.begin(), args.end());
  return nn::ip(cmd);
}

std::map<std::string, uint64_t> nftCounters(const std::string& ns) {
  auto out =
      must(nft(ns, {"-j", "list", "counters", "table", "netdev", kTable}), "reading nft counters");
  std::map<std::string, uint64_t> c;
  auto j = nlohmann::json::parse(out);
  for (const auto& e : j.at("nftables"))
    if (e.contains("counter"))
      c[e["counter"]["name"].get<std::string>()] = e["counter"]["packets"].get<uint64_t>();
  return c;
}

struct Mode {
  std::string name;
  std::function<void()> up, down;
  std::function<uint64_t()> drops;  // receiver's drop count so far
  bool diag = false;
};

struct Sample {
  double mppsWall = 0, mppsCpu = 0;
  uint64_t drops = 0, sent = 0, received = 0, xmitErrors = 0;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; i++) {
    std::string s = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value after " + s);
      return argv[++i];
    };
    if (s == "--seconds")
      a.seconds = std::stod(next());
    else if (s == "--rounds")
      a.rounds = std::stoi(next());
    else if (s == "--prefixes")
      a.prefixes = std::stoul(next());
    else if (s == "--rules")
      a.rules = std::stoul(next());
    else if (s == "--out")
      a.out = next();
    else if (s == "--no-diag")
      a.diag = false;
    else if (s == "--dump-nft")
      a.dumpNft = next();
    else if (s == "--help" || s == "-h") {
      std::puts(
          "ew_bench_drop [--seconds S] [--rounds N] [--prefixes N] [--rules N] [--out FILE] "
          "[--no-diag] [--dump-nft FILE]");
      std::exit(0);
    } else {
      die("unknown argument " + s);
    }
  }
  if (a.seconds <= 0 || a.rounds < 1) die("--seconds and --rounds must be positive");
  return a;
}

int run(const Args& a) {
  const std::string machine = eb::machineLine();
  // --- policy, firewall, traffic
  auto gen = eb::generatePolicy({a.prefixes, a.rules, 7});
  auto compiled = must(edgeward::policy::compile(gen.policy), "compile");
  auto fw = must(FirewallProgram::load(edgeward::dataplane::optionsFor(compiled)),
                 "loading the firewall");
  edgeward::dataplane::Dataplane dp(*fw);
  must(dp.apply(compiled, 1), "apply");

  // A source in an identity named by a deny rule, to a tcp port of that rule (rule-deny);
  // UDP from the same source to a port no rule covers (default-deny, after a conntrack miss).
  std::vector<uint8_t> tcp, udp;
  std::string src, tcpWhy, udpWhy;
  for (size_t r = 0; r < gen.policy.ingress.size() && tcp.empty(); r++) {
    const auto& rule = gen.policy.ingress[r];
    if (rule.action != edgeward::policy::Action::Deny || gen.ruleIdentities[r].identities.empty())
      continue;
    const edgeward::policy::PortSpec* spec = nullptr;
    for (const auto& s : rule.ports)
      if (s.protocol == edgeward::policy::Protocol::Tcp) spec = &s;
    if (!spec) continue;
    for (uint32_t id : gen.ruleIdentities[r].identities)
      for (const auto& p : gen.policy.identities[id].prefixes) {
        if (p.family != edgeward::policy::Family::V4 || !tcp.empty()) continue;
        std::string s = eb::hostIn(p, 12345);
        auto f = frameOf(false, s, spec->range.first);
        if (classify(*fw, f) != EW_R_RULE_DENY) continue;
        auto u = frameOf(true, s, eb::kUnusedPortBase + 2);
        if (classify(*fw, u) != EW_R_DEFAULT_DENY) continue;
        tcp = f;
        udp = u;
        src = s;
        tcpWhy = fmt::format("rule-deny (rule {}, tcp {})", rule.name, spec->range.first);
        udpWhy = fmt::format("default-deny (udp {}), after a conntrack lookup miss",
                             eb::kUnusedPortBase + 2);
      }
  }
  if (tcp.empty()) die("the generated policy has no usable deny rule");
  must(fw->clearCounters(FirewallMap::ReasonStats, uint32_t{EW_DIRS} * EW_R_COUNT),
       "clearing counters");

  auto rsExact = eb::nftRuleset(compiled, kTable, "ewb-f0", true);
  auto rsSaddr = eb::nftRuleset(compiled, kTable, "ewb-f0", false);
  if (!a.dumpNft.empty()) std::ofstream(a.dumpNft) << rsExact.text;
  auto writeTmp = [](const std::string& text, const char* name) {
    std::string path = fmt::format("/tmp/ewb-{}-{}.nft", name, getpid());
    std::ofstream(path) << text;
    return path;
  };
  const std::string fileExact = writeTmp(rsExact.text, "exact"),
                    fileSaddr = writeTmp(rsSaddr.text, "saddr");
  // The floor of the nftables path: same hook, one rule that counts and drops everything.
  const std::string fileFloor =
      writeTmp(fmt::format("table netdev {} {{\n  counter c_deny {{}}\n  counter c_allow {{}}\n  "
                           "counter c_default {{}}\n"
                           "  chain ingress {{\n    type filter hook ingress device \"ewb-f0\" "
                           "priority -500; policy accept;\n"
                           "    counter name \"c_default\" drop\n  }}\n}}\n",
                           kTable),
               "floor");
  struct RmFiles {
    std::vector<std::string> f;
    ~RmFiles() {
      for (auto& p : f) ::unlink(p.c_str());
    }
  } rmFiles{{fileExact, fileSaddr, fileFloor}};

  xdp_drop* dropSkel = xdp_drop__open_and_load();
  if (!dropSkel) die("loading xdp_drop");
  std::unique_ptr<xdp_drop, void (*)(xdp_drop*)> dropOwner(dropSkel, xdp_drop__destroy);
  UniqueFd txProg = loadTxProgram();

  // --- the lab: ewb-gen:ewb-g0 <-> ewb-fw:ewb-f0, removed on every exit path (RAII; the veth
  // pair goes first, then the namespaces, with the nft table and XDP links inside them).
  struct Lab {
    std::string nsA = "ewb-gen", nsB = "ewb-fw", ifA = "ewb-g0", ifB = "ewb-f0";
  } L;
  auto nsGen = must(nn::NetNs::create(L.nsA), "creating namespace " + L.nsA);
  auto nsFw = must(nn::NetNs::create(L.nsB), "creating namespace " + L.nsB);
  auto veth =
      must(nn::VethPair::create({L.ifA, L.nsA, {"10.0.0.1/24"}}, {L.ifB, L.nsB, {"10.0.0.2/24"}}),
           "creating the veth pair");
  int fwIf = must(nn::ifindexIn(L.nsB, L.ifB), "ifindex"),
      genIf = must(nn::ifindexIn(L.nsA, L.ifA), "ifindex");
  std::optional<eb::Ethtool> fwEth, genEth;
  {
    auto in = must(nn::NsGuard::enter(L.nsB), "entering " + L.nsB);
    fwEth = must(eb::Ethtool::open(), "ethtool socket");
    must(fwEth->setGro(L.ifB, true), "switching GRO on");
    // Address the frames to the receiver, as a real sender would.
    auto mac = must(fwEth->mac(L.ifB), "MAC address");
    for (auto* f : {&tcp, &udp}) std::copy(mac.begin(), mac.end(), f->begin());
  }
  {
    auto in = must(nn::NsGuard::enter(L.nsA), "entering " + L.nsA);
    genEth = must(eb::Ethtool::open(), "ethtool socket");
    auto mac = must(genEth->mac(L.ifA), "MAC address");
    for (auto* f : {&tcp, &udp}) std::copy(mac.begin(), mac.end(), f->begin() + 6);
  }
  auto statOf = [&](eb::Ethtool& e, const std::string& ifname, const std::string& key) -> uint64_t {
    auto st = must(e.stats(ifname), "ethtool stats of " + ifname);
    auto it = st.find(key);
    return it == st.end() ? 0 : it->second;
  };

  double nftLoadMs[3] = {0, 0, 0};
  UniqueFd link;
  auto attachXdp = [&](int progFd) {
    auto in = must(nn::NsGuard::enter(L.nsB), "entering " + L.nsB);
    bpf_link_create_opts o{};
    o.sz = sizeof(o);
    o.flags = XDP_FLAGS_DRV_MODE;
    int fd = bpf_link_create(progFd, fwIf, BPF_XDP, &o);
    if (fd < 0) die(fmt::format("attaching XDP (native) to {}: {}", L.ifB, std::strerror(-fd)));
    link.reset(fd);
  };
  auto nftLoad = [&](const std::string& file, int which) {
    auto t0 = std::chrono::steady_clock::now();
    must(nft(L.nsB, {"-f", file}), "nft -f " + file);
    nftLoadMs[which] = eb::msSince(t0);
  };
  auto nftDrop = [&] {
    must(nft(L.nsB, {"delete", "table", "netdev", kTable}), "deleting the nft table");
  };
  auto nftDrops = [&] {
    auto c = nftCounters(L.nsB);
    return c["c_deny"] + c["c_default"];
  };

  std::vector<Mode> modes = {
      {"edgeward (XDP native)", [&] { attachXdp(fw->progFd(Hook::XdpIngress)); },
       [&] { link.reset(); }, [&] { return firewallDrops(*fw); }},
      {"nftables (netdev ingress, sets)", [&] { nftLoad(fileExact, 0); }, nftDrop, nftDrops},
      {"XDP drop-all", [&] { attachXdp(bpf_program__fd(dropSkel->progs.xdp_drop_all)); },
       [&] { link.reset(); }, [&] { return statOf(*fwEth, L.ifB, "rx_queue_0_xdp_drops"); }},
      {"edgeward, conntrack off",
       [&] {
         must(dp.setFlags(0, EW_F_CONNTRACK), "conntrack off");
         attachXdp(fw->progFd(Hook::XdpIngress));
       },
       [&] {
         link.reset();
         must(dp.setFlags(EW_F_CONNTRACK, 0), "conntrack on");
       },
       [&] { return firewallDrops(*fw); }, true},
      {"edgeward, drop events off",
       [&] {
         must(dp.setFlags(0, EW_F_EV_DROP), "drop events off");
         attachXdp(fw->progFd(Hook::XdpIngress));
       },
       [&] {
         link.reset();
         must(dp.setFlags(EW_F_EV_DROP, 0), "drop events on");
       },
       [&] { return firewallDrops(*fw); }, true},
      {"nftables, source-only sets (looser policy)", [&] { nftLoad(fileSaddr, 1); }, nftDrop,
       nftDrops, true},
      {"nftables, one rule: drop all (skb-path floor)", [&] { nftLoad(fileFloor, 2); }, nftDrop,
       nftDrops, true},
      {"edgeward on tcx ingress (skb path)",
       [&] {
         auto in = must(nn::NsGuard::enter(L.nsB), "entering " + L.nsB);
         link = must(fw->attach(Hook::TcIngress, fwIf), "attaching tcx");
       },
       [&] { link.reset(); }, [&] { return firewallDrops(*fw); }, true},
  };
  if (!a.diag) modes.resize(3);

  struct Traffic {
    std::string name, why;
    const std::vector<uint8_t>* frame;
  };
  const Traffic traffic[] = {{"TCP SYN", tcpWhy, &tcp}, {"UDP", udpWhy, &udp}};
  std::vector<std::vector<std::vector<Sample>>> samples(
      std::size(traffic), std::vector<std::vector<Sample>>(modes.size()));

  std::fprintf(
      stderr,
      "policy: %zu prefixes, %zu rules; nft sets: %zu elements (exact), %zu (source-only)\n",
      a.prefixes, a.rules, rsExact.elements, rsSaddr.elements);
  for (int round = 0; round < a.rounds; round++)
    for (size_t t = 0; t < std::size(traffic); t++)
      for (size_t m = 0; m < modes.size(); m++) {
        Mode& mode = modes[m];
        mode.up();
        struct Down {
          Mode& m;
          ~Down() {
            try {
              m.down();
            } catch (const std::exception& e) {
              std::fprintf(stderr, "ew_bench_drop: undoing %s: %s\n", m.name.c_str(), e.what());
            }
          }
        } down{mode};
        Sample s;
        {
          auto in = must(nn::NsGuard::enter(L.nsA), "entering " + L.nsA);
          generate(txProg.get(), genIf, *traffic[t].frame, 0.2);  // warm-up
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        uint64_t d0 = mode.drops();
        uint64_t r0 = statOf(*fwEth, L.ifB, "rx_queue_0_xdp_packets");
        uint64_t e0 = statOf(*genEth, L.ifA, "tx_queue_0_xdp_xmit_errors");
        GenResult g;
        {
          auto in = must(nn::NsGuard::enter(L.nsA), "entering " + L.nsA);
          g = generate(txProg.get(), genIf, *traffic[t].frame, a.seconds);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        s.drops = mode.drops() - d0;
        s.received = statOf(*fwEth, L.ifB, "rx_queue_0_xdp_packets") - r0;
        s.xmitErrors = statOf(*genEth, L.ifA, "tx_queue_0_xdp_xmit_errors") - e0;
        s.sent = g.sent;
        s.mppsWall = s.drops / g.wallS / 1e6;
        s.mppsCpu = s.drops / g.cpuS / 1e6;
        samples[t][m].push_back(s);
        std::fprintf(stderr,
                     "round %d %-8s %-45s %6.3f Mpps (wall) %6.3f Mpps/CPU-s  sent %lu received "
                     "%lu dropped %lu xmit-err %lu\n",
                     round + 1, traffic[t].name.c_str(), mode.name.c_str(), s.mppsWall, s.mppsCpu,
                     static_cast<unsigned long>(s.sent), static_cast<unsigned long>(s.received),
                     static_cast<unsigned long>(s.drops), static_cast<unsigned long>(s.xmitErrors));
      }

  // --- report
  std::string md;
  md += "# Drops per second on a veth pair (in-kernel generator)\n\n";
  md += fmt::format("Measured {}. Load average at the end: {}. Source: commit {}.\n\n", machine,
                    eb::loadNow(), eb::sourceRevision());
  md += fmt::format(
      "Command: `ew_bench_drop --seconds {} --rounds {} --prefixes {} --rules {}`. Policy: {} "
      "prefixes ({} identities), {} rules, defaultAction deny. Traffic: one 60-byte frame "
      "from {} repeated by BPF_F_TEST_XDP_LIVE_FRAMES (XDP_TX out of ewb-g0 into ewb-f0). "
      "Figures are medians of {} interleaved rounds of {} s.\n\n",
      a.seconds, a.rounds, a.prefixes, a.rules, a.prefixes, eb::identitiesFor(a.prefixes), a.rules,
      src, a.rounds, a.seconds);
  md += fmt::format(
      "nftables ruleset: `table netdev {}` with a chain on ewb-f0's ingress hook (priority -500); "
      "deny/allow sets keyed `ip saddr . meta l4proto . th dport` (flags interval), {} elements; "
      "loaded with `nft -f` in {:.0f} ms. The source-only variant has {} elements (loaded in "
      "{:.0f} ms) and is looser than the policy (ports ignored): a lower bound on nftables' "
      "cost.\n\n",
      kTable, rsExact.elements, nftLoadMs[0], rsSaddr.elements, nftLoadMs[1]);
  const size_t kFw = 0, kNft = 1, kDropAll = 2;
  for (size_t t = 0; t < std::size(traffic); t++) {
    md += fmt::format("## {} — firewall verdict: {}\n\n", traffic[t].name, traffic[t].why);
    eb::MdTable tb({"filter on ewb-f0", "Mpps (wall clock)", "Mpps per CPU-second",
                    "min-max (wall)", "× nftables (wall · CPU)", "× drop-all (wall · CPU)",
                    "dropped / received"});
    auto med = [&](size_t m, bool cpu) {
      std::vector<double> v;
      for (const auto& s : samples[t][m]) v.push_back(cpu ? s.mppsCpu : s.mppsWall);
      return eb::median(v);
    };
    // Ratios within a round, then the median over rounds.
    auto ratio = [&](size_t m, size_t ref, bool cpu = false) {
      std::vector<double> v;
      for (size_t r = 0; r < samples[t][m].size(); r++) {
        const Sample &x = samples[t][m][r], &y = samples[t][ref][r];
        double den = cpu ? y.mppsCpu : y.mppsWall;
        if (den > 0) v.push_back((cpu ? x.mppsCpu : x.mppsWall) / den);
      }
      return eb::median(v);
    };
    for (size_t m = 0; m < modes.size(); m++) {
      std::vector<double> w;
      uint64_t d = 0, rcv = 0;
      for (const auto& s : samples[t][m]) {
        w.push_back(s.mppsWall);
        d += s.drops;
        rcv += s.received;
      }
      tb.row({modes[m].name, fmt::format("{:.2f}", med(m, false)),
              fmt::format("{:.2f}", med(m, true)),
              fmt::format("{:.2f}-{:.2f}", eb::minOf(w), eb::maxOf(w)),
              fmt::format("{:.2f}× · {:.2f}×", ratio(m, kNft), ratio(m, kNft, true)),
              fmt::format("{:.2f}× · {:.2f}×", ratio(m, kDropAll), ratio(m, kDropAll, true)),
              rcv ? fmt::format("{:.3f}", static_cast<double>(d) / rcv) : "-"});
    }
    md += tb.str();
    double vsNft = ratio(kFw, kNft), vsDrop = ratio(kFw, kDropAll);
    double vsNftC = ratio(kFw, kNft, true), vsDropC = ratio(kFw, kDropAll, true);
    auto verdict = [](double w, double c, double target) {
      return w >= target && c >= target ? "met"
                                        : (w < target && c < target ? "missed" : "borderline");
    };
    md += fmt::format(
        "\nTargets: edgeward ≥ 2.5× nftables: {:.2f}× wall, {:.2f}× CPU (**{}**); "
        "edgeward ≥ 0.8× drop-all: {:.2f}× wall, {:.2f}× CPU (**{}**).\n\n",
        vsNft, vsNftC, verdict(vsNft, vsNftC, 2.5), vsDrop, vsDropC, verdict(vsDrop, vsDropC, 0.8));
  }
  md +=
      "Ratios are taken within each round (same traffic, back-to-back) and the median over rounds "
      "is shown. \"Mpps per CPU-second\" divides by the generator thread's CPU time instead of "
      "wall "
      "time (generation and the receiver's softirq both run in that thread's context), which "
      "discounts time the thread spent preempted by other work on the machine.\n";

  eb::writeReport(md, a.out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return eb::benchMain("ew_bench_drop", "namespaces, XDP, nft", "namespaces removed",
                       [&] { return run(parse(argc, argv)); });
}
