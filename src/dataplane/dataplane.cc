#include "dataplane/dataplane.h"

#include <bit>
#include <thread>

namespace edgeward::dataplane {

using bpf::FirewallMap;

bpf::FirewallOptions optionsFor(const policy::CompiledPolicy& p, bpf::FirewallOptions o) {
  auto fit = [](size_t need, uint32_t floor) {
    return std::max<uint32_t>(floor, std::bit_ceil(static_cast<uint32_t>(need + need / 4 + 1)));
  };
  o.capIntervals4 = fit(p.iv4.size(), o.capIntervals4);
  o.capIntervals6 = fit(p.iv6.size(), o.capIntervals6);
  o.capGroups = fit(p.hdr.n_groups, o.capGroups);
  o.capPortEntries = fit(p.piv.size(), o.capPortEntries);
  o.capRules = fit(p.rules.size(), o.capRules);
  return o;
}

Result<void> Dataplane::apply(const policy::CompiledPolicy& p, uint64_t version) {
  const auto& o = fw_.options();
  auto tooBig = [](const char* what, size_t need, uint32_t cap) {
    return failf("policy needs {} {}; the loaded program holds {}", need, what, cap);
  };
  if (p.iv4.size() > o.capIntervals4)
    return tooBig("IPv4 intervals", p.iv4.size(), o.capIntervals4);
  if (p.iv6.size() > o.capIntervals6)
    return tooBig("IPv6 intervals", p.iv6.size(), o.capIntervals6);
  if (p.hdr.n_groups > o.capGroups) return tooBig("rule groups", p.hdr.n_groups, o.capGroups);
  if (p.piv.size() > o.capPortEntries)
    return tooBig("port entries", p.piv.size(), o.capPortEntries);
  if (p.rules.size() > o.capRules) return tooBig("rules", p.rules.size(), o.capRules);

  // Packets that read the old active generation just before the last switch may still be
  // inside the program; they run for microseconds under RCU. Before overwriting that
  // generation, let a grace period far longer than any program run pass.
  auto since = std::chrono::steady_clock::now() - lastSwitch_;
  if (since < kGrace) std::this_thread::sleep_for(kGrace - since);

  EW_TRY(cfg, fw_.readConfig());
  const uint32_t next = (cfg->gen & 1) ^ 1;
  const uint32_t iv4Base = next * o.capIntervals4, iv6Base = next * o.capIntervals6;
  const uint32_t grpBase = next * o.capGroups * EW_P_COUNT, pivBase = next * o.capPortEntries;

  // Rebase the image's relative offsets onto the inactive generation's region.
  auto bkt4 = p.bkt4, bkt6 = p.bkt6;
  for (auto& b : bkt4) b.off += iv4Base;
  for (auto& b : bkt6) b.off += iv6Base;
  auto grp = p.grp;
  for (auto& g : grp) g.off += pivBase;

  EW_TRY(r1, fw_.writeArray<ew_iv4>(FirewallMap::Iv4, iv4Base, p.iv4));
  EW_TRY(r2, fw_.writeArray<ew_iv6>(FirewallMap::Iv6, iv6Base, p.iv6));
  EW_TRY(r3, fw_.writeArray<ew_piv>(FirewallMap::Piv, pivBase, p.piv));
  EW_TRY(r4, fw_.writeArray<ew_grp>(FirewallMap::Grp, grpBase, grp));
  EW_TRY(r5, fw_.writeArray<ew_bucket>(FirewallMap::Bkt4, next * EW_BUCKETS, bkt4));
  EW_TRY(r6, fw_.writeArray<ew_bucket>(FirewallMap::Bkt6, next * EW_BUCKETS, bkt6));
  ew_policy_hdr hdr = p.hdr;
  hdr.bkt_base = next * EW_BUCKETS;
  hdr.grp_base = grpBase;
  hdr.version = version;
  EW_TRY(r7, fw_.writeArray(FirewallMap::Policy, next, &hdr, 1, sizeof(hdr)));

  // The switch: one word. Packets already running finish on the generation they read.
  cfg->gen = next;
  EW_TRY(r8, fw_.writeConfig(*cfg));
  lastSwitch_ = std::chrono::steady_clock::now();
  gen_ = next;
  active_ = p;
  return {};
}

Result<void> Dataplane::setFlags(uint32_t set, uint32_t clear) {
  EW_TRY(cfg, fw_.readConfig());
  cfg->flags = (cfg->flags | set) & ~clear;
  return fw_.writeConfig(*cfg);
}

}  // namespace edgeward::dataplane
