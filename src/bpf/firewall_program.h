// The firewall BPF program: load, map access, attach, BPF_PROG_TEST_RUN.
// The only code that talks libbpf for the firewall; knows map layouts, not policy types.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "firewall.h"

struct firewall;  // the generated skeleton

namespace edgeward::bpf {

// Capacities are per generation; the arrays hold EW_GENERATIONS times as many entries.
struct FirewallOptions {
  uint32_t capIntervals4 = 1u << 16;
  uint32_t capIntervals6 = 1u << 16;
  uint32_t capGroups = 1u << 14;
  uint32_t capPortEntries = 1u << 16;
  uint32_t capRules = 1u << 14;
  uint32_t conntrackEntries = 1u << 18;
  bool recordVerdict = false;  // per-packet verdict record, for `edgeward verdict`
};

enum class FirewallMap {
  Config,
  Policy,
  Bkt4,
  Bkt6,
  Iv4,
  Iv6,
  Grp,
  Piv,
  RuleStats,
  ReasonStats,
  Ct4,
  Ct6,
  Syn
};

enum class Hook { XdpIngress, TcIngress, TcEgress };

enum class XdpMode { Auto, Native, Generic };

struct TestRunResult {
  int retval = 0;
  bool pass = false;
  ew_verdict_rec verdict{};  // valid when loaded with recordVerdict
  uint32_t nsPerRun = 0;     // kernel-measured duration per repetition
};

class FirewallProgram {
 public:
  static Result<std::unique_ptr<FirewallProgram>> load(const FirewallOptions& opts);
  ~FirewallProgram();
  FirewallProgram(const FirewallProgram&) = delete;
  FirewallProgram& operator=(const FirewallProgram&) = delete;

  const FirewallOptions& options() const { return opts_; }
  int mapFd(FirewallMap m) const;
  int progFd(Hook h) const;

  // Writes values[i] at index first + i of an array map (batched).
  Result<void> writeArray(FirewallMap m, uint32_t first, const void* values, uint32_t count,
                          size_t valueSize);
  template <typename T>
  Result<void> writeArray(FirewallMap m, uint32_t first, std::span<const T> values) {
    return writeArray(m, first, values.data(), static_cast<uint32_t>(values.size()), sizeof(T));
  }
  Result<ew_config> readConfig() const;
  Result<void> writeConfig(const ew_config& c);

  // Per-CPU counters summed over CPUs: indexes [0, count) of a per-CPU ew_counter array.
  Result<std::vector<ew_counter>> readCounters(FirewallMap m, uint32_t count) const;
  Result<void> clearCounters(FirewallMap m, uint32_t count);
  // Removes every connection tracking and SYN limiter entry.
  Result<void> clearState();
  // Number of live conntrack entries (IPv4 + IPv6).
  Result<size_t> conntrackEntries() const;

  // Runs one packet (an Ethernet frame) through the program with BPF_PROG_TEST_RUN.
  Result<TestRunResult> testRun(Hook h, std::span<const uint8_t> frame, uint32_t repeat = 1);

  // Attaches through a BPF link; returns the link fd (closing it detaches).
  Result<UniqueFd> attach(Hook h, int ifindex, XdpMode mode = XdpMode::Auto);

  // Loaded programs by name: "ew_xdp_ingress" ...
  static std::string_view hookName(Hook h);

 private:
  FirewallProgram() = default;
  ::firewall* skel_ = nullptr;
  FirewallOptions opts_;
  int ncpus_ = 1;
};

// Ifindex of an interface in the current network namespace, or an error naming it.
Result<int> ifindexOf(const std::string& name);

}  // namespace edgeward::bpf
