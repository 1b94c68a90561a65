// Firewall counters as the run and demo commands show them: snapshots, deltas, the table.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "bpf/firewall_program.h"
#include "common/result.h"
#include "policy/compiler.h"

namespace edgeward::cli {

// Per-rule counters (index: rule id) and per-reason counters (index: dir * EW_R_COUNT + reason).
struct Counters {
  std::vector<ew_counter> rules;
  std::vector<ew_counter> reasons;

  const ew_counter& reason(uint8_t dir, uint8_t r) const { return reasons[dir * EW_R_COUNT + r]; }
};

inline Result<Counters> readCounters(const bpf::FirewallProgram& fw, size_t rules) {
  Counters c;
  EW_TRY(r, fw.readCounters(bpf::FirewallMap::RuleStats, static_cast<uint32_t>(rules)));
  EW_TRY(q, fw.readCounters(bpf::FirewallMap::ReasonStats, uint32_t{EW_DIRS} * EW_R_COUNT));
  c.rules = std::move(*r);
  c.reasons = std::move(*q);
  return c;
}

// later - earlier, element by element.
inline Counters operator-(const Counters& later, const Counters& earlier) {
  Counters d = later;
  for (size_t i = 0; i < d.rules.size() && i < earlier.rules.size(); i++) {
    d.rules[i].packets -= earlier.rules[i].packets;
    d.rules[i].bytes -= earlier.rules[i].bytes;
  }
  for (size_t i = 0; i < d.reasons.size() && i < earlier.reasons.size(); i++) {
    d.reasons[i].packets -= earlier.reasons[i].packets;
    d.reasons[i].bytes -= earlier.reasons[i].bytes;
  }
  return d;
}

// Reasons below EW_R_RULE_DENY pass the packet; the others drop it.
inline bool passes(uint8_t reason) { return reason < EW_R_RULE_DENY; }

struct PassDrop {
  uint64_t passed = 0, dropped = 0;
};

inline PassDrop passDrop(const Counters& c) {
  PassDrop t;
  for (uint8_t dir = 0; dir < EW_DIRS; dir++)
    for (uint8_t r = 0; r < EW_R_COUNT; r++)
      (passes(r) ? t.passed : t.dropped) += c.reason(dir, r).packets;
  return t;
}

// "512 B", "1.5 KiB", "3.2 MiB".
inline std::string humanBytes(uint64_t b) {
  if (b < 1024) return fmt::format("{} B", b);
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b) / 1024;
  int u = 0;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    u++;
  }
  return fmt::format("{:.1f} {}", v, units[u]);
}

// "950", "12.3k", "4.1M".
inline std::string humanCount(double n) {
  if (n < 1000) return fmt::format("{:.0f}", n);
  if (n < 1e6) return fmt::format("{:.1f}k", n / 1e3);
  return fmt::format("{:.1f}M", n / 1e6);
}

// Every rule, then every reason that counted a packet in either direction.
inline void printCounterTable(std::FILE* out, const policy::CompiledPolicy& p, const Counters& c) {
  size_t w = 4;
  for (const auto& r : p.rules) w = std::max(w, r.name.size());
  fmt::print(out, "  {:<{}}  {:<7}  {:<6}  {:>10}  {:>10}\n", "rule", w, "dir", "action", "packets",
             "bytes");
  for (size_t i = 0; i < p.rules.size() && i < c.rules.size(); i++) {
    const auto& r = p.rules[i];
    fmt::print(out, "  {:<{}}  {:<7}  {:<6}  {:>10}  {:>10}\n", r.name, w,
               r.dir == EW_INGRESS ? "ingress" : "egress", policy::actionName(r.action),
               c.rules[i].packets, humanBytes(c.rules[i].bytes));
  }
  fmt::print(out, "\n  {:<16}  {:<6}  {:>10}  {:>10}  {:>10}  {:>10}\n", "reason", "", "in pkts",
             "in bytes", "out pkts", "out bytes");
  for (uint8_t r = 0; r < EW_R_COUNT; r++) {
    const auto &in = c.reason(EW_INGRESS, r), &eg = c.reason(EW_EGRESS, r);
    if (in.packets == 0 && eg.packets == 0) continue;
    fmt::print(out, "  {:<16}  {:<6}  {:>10}  {:>10}  {:>10}  {:>10}\n", policy::reasonName(r),
               passes(r) ? "pass" : "drop", in.packets, humanBytes(in.bytes), eg.packets,
               humanBytes(eg.bytes));
  }
}

}  // namespace edgeward::cli
