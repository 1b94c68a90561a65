// edgeward verdict --policy FILE --pcap FILE: every packet of a capture through the real
// firewall program with BPF_PROG_TEST_RUN (nothing is attached).
#include <arpa/inet.h>
#include <pcap/pcap.h>

#include <nlohmann/json.hpp>

#include "bpf/firewall_program.h"
#include "cli/commands.h"
#include "dataplane/dataplane.h"
#include "policy/compiler.h"
#include "policy/policy.h"

namespace edgeward::cli {
namespace {

struct Options {
  std::string policy, pcap, direction = "ingress", output = "table";
  bool stateful = false;
};

// Frames as Ethernet: Linux cooked (SLL) and raw IP captures get a synthetic Ethernet header.
Result<std::vector<std::vector<uint8_t>>> readPcap(const std::string& path) {
  char err[PCAP_ERRBUF_SIZE] = {};
  pcap_t* p = pcap_open_offline(path.c_str(), err);
  if (!p) {
    std::string e = err;  // libpcap names the file in some messages, not in others
    return fail(e.starts_with(path) ? e : path + ": " + e);
  }
  int link = pcap_datalink(p);
  std::vector<std::vector<uint8_t>> frames;
  pcap_pkthdr* h;
  const u_char* data;
  int rc;
  while ((rc = pcap_next_ex(p, &h, &data)) == 1) {
    std::vector<uint8_t> f;
    uint16_t proto = 0;
    const u_char* l3 = nullptr;
    size_t l3len = 0;
    switch (link) {
      case DLT_EN10MB:
        f.assign(data, data + h->caplen);
        break;
      case DLT_LINUX_SLL:
        if (h->caplen >= 16) {
          proto = static_cast<uint16_t>((data[14] << 8) | data[15]);
          l3 = data + 16;
          l3len = h->caplen - 16;
        }
        break;
      case DLT_RAW:
      case 228:  // DLT_IPV4
      case 229:  // DLT_IPV6
        if (h->caplen >= 1) {
          proto = (data[0] >> 4) == 6 ? 0x86dd : 0x0800;
          l3 = data;
          l3len = h->caplen;
        }
        break;
      default:
        pcap_close(p);
        return failf("{}: link type {} ({}) is not supported; use Ethernet, Linux cooked or raw IP",
                     path, pcap_datalink_val_to_name(link) ? pcap_datalink_val_to_name(link) : "?",
                     link);
    }
    if (l3) {
      f.assign(12, 0);
      f.push_back(proto >> 8);
      f.push_back(proto & 0xff);
      f.insert(f.end(), l3, l3 + l3len);
    }
    frames.push_back(std::move(f));
  }
  if (rc == PCAP_ERROR) {
    std::string e = pcap_geterr(p);
    pcap_close(p);
    return failf("{}: {}", path, e);
  }
  pcap_close(p);
  return frames;
}

// "10.0.0.1:40000 > 10.0.0.2:80 tcp [S]" for the human output.
std::string describe(const std::vector<uint8_t>& f) {
  if (f.size() < 14) return fmt::format("{}-byte frame", f.size());
  size_t off = 12;
  uint16_t et = (f[off] << 8) | f[off + 1];
  while ((et == 0x8100 || et == 0x88a8) && off + 6 <= f.size()) {
    off += 4;
    et = (f[off] << 8) | f[off + 1];
  }
  off += 2;
  char a[INET6_ADDRSTRLEN] = "?", b[INET6_ADDRSTRLEN] = "?";
  uint8_t proto;
  size_t l4;
  if (et == 0x0800 && off + 20 <= f.size()) {
    inet_ntop(AF_INET, &f[off + 12], a, sizeof a);
    inet_ntop(AF_INET, &f[off + 16], b, sizeof b);
    proto = f[off + 9];
    l4 = off + (f[off] & 0xf) * 4;
  } else if (et == 0x86dd && off + 40 <= f.size()) {
    inet_ntop(AF_INET6, &f[off + 8], a, sizeof a);
    inet_ntop(AF_INET6, &f[off + 24], b, sizeof b);
    proto = f[off + 6];
    l4 = off + 40;
  } else if (et == 0x0806) {
    return "arp";
  } else {
    return fmt::format("ethertype 0x{:04x}", et);
  }
  std::string pname = proto == 6    ? "tcp"
                      : proto == 17 ? "udp"
                      : proto == 1  ? "icmp"
                      : proto == 58 ? "icmpv6"
                                    : fmt::format("proto {}", proto);
  if ((proto == 6 || proto == 17) && l4 + 4 <= f.size()) {
    unsigned sp = (f[l4] << 8) | f[l4 + 1], dp = (f[l4 + 2] << 8) | f[l4 + 3];
    std::string flags;
    if (proto == 6 && l4 + 14 <= f.size()) {
      uint8_t fl = f[l4 + 13];
      if (fl & 0x02) flags += 'S';
      if (fl & 0x10) flags += '.';
      if (fl & 0x01) flags += 'F';
      if (fl & 0x04) flags += 'R';
      flags = " [" + flags + "]";
    }
    bool v6 = et == 0x86dd;
    return fmt::format("{}{}{}:{} > {}{}{}:{} {}{}", v6 ? "[" : "", a, v6 ? "]" : "", sp,
                       v6 ? "[" : "", b, v6 ? "]" : "", dp, pname, flags);
  }
  if ((proto == 1 || proto == 58) && l4 + 1 <= f.size())
    return fmt::format("{} > {} {} type {}", a, b, pname, f[l4]);
  return fmt::format("{} > {} {}", a, b, pname);
}

void run(const Options& o) {
  auto policy = orExit(policy::loadPolicyFile(o.policy));
  auto compiled = orExit(policy::compile(policy));
  auto frames = orExit(readPcap(o.pcap));
  auto opts = dataplane::optionsFor(compiled);
  opts.recordVerdict = true;
  auto fw = orExit(bpf::FirewallProgram::load(opts));
  dataplane::Dataplane dp(*fw);
  orExit(dp.apply(compiled));
  const auto hook = o.direction == "egress" ? bpf::Hook::TcEgress : bpf::Hook::XdpIngress;
  const bool json = o.output == "json";
  size_t passed = 0, dropped = 0;

  for (size_t i = 0; i < frames.size(); i++) {
    size_t index = i + 1;  // frame numbers as tcpdump and Wireshark count them
    if (frames[i].size() < 14) {
      // The kernel refuses to run a frame without an Ethernet header; no NIC delivers one.
      std::string msg = fmt::format("frame of {} bytes is shorter than an Ethernet header; not run",
                                    frames[i].size());
      if (json)
        fmt::print("{}\n", nlohmann::json{{"index", index}, {"error", msg}}.dump());
      else
        fmt::print("{:>5}  error  {}\n", index, msg);
      continue;
    }
    if (!o.stateful) orExit(fw->clearState());
    auto r = orExit(fw->testRun(hook, frames[i]));
    const auto& v = r.verdict;
    bool pass = v.action == EW_ACT_ALLOW;
    (pass ? passed : dropped)++;
    const char* rule =
        v.rule < compiled.rules.size() ? compiled.rules[v.rule].name.c_str() : nullptr;
    auto reason = policy::reasonName(v.reason);
    if (json) {
      nlohmann::json j{{"index", index},
                       {"verdict", pass ? "pass" : "drop"},
                       {"rule", rule ? nlohmann::json(rule) : nlohmann::json(nullptr)},
                       {"reason", reason}};
      fmt::print("{}\n", j.dump());
    } else {
      fmt::print("{:>5}  {:<4}  {:<24} {:<16} {}\n", index, pass ? "pass" : "drop",
                 rule ? rule : "-", reason, describe(frames[i]));
    }
  }
  if (!json)
    fmt::print("{} packets: {} passed, {} dropped ({}, {})\n", passed + dropped, passed, dropped,
               o.direction, o.stateful ? "stateful" : "each packet with empty connection tracking");
}

}  // namespace

void addVerdictCommand(CLI::App& app) {
  static Options o;
  auto* cmd = app.add_subcommand(
      "verdict", "Run every packet of a pcap through the firewall program (BPF_PROG_TEST_RUN)");
  cmd->add_option("--policy", o.policy, "Policy file")->required();
  cmd->add_option("--pcap", o.pcap, "Capture file (Ethernet, Linux cooked or raw IP)")->required();
  cmd->add_option("--direction", o.direction, "Judge packets as ingress or egress")
      ->check(CLI::IsMember({"ingress", "egress"}));
  cmd->add_flag("--stateful", o.stateful,
                "Keep connection tracking across packets (default: empty for each packet)");
  cmd->add_option("-o,--output", o.output, "Output format")
      ->check(CLI::IsMember({"table", "json"}));
  cmd->callback([] { run(o); });
}

}  // namespace edgeward::cli
