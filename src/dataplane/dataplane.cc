#include "dataplane/dataplane.h"

#include <algorithm>
#include <bit>
#include <thread>

namespace edgeward::dataplane {

using bpf::FirewallMap;
using Clock = std::chrono::steady_clock;

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

template <typename T>
struct Writes {
  std::vector<uint32_t> keys;
  std::vector<T> vals;
  void add(uint32_t k, const T& v) {
    keys.push_back(k);
    vals.push_back(v);
  }
};

struct Dataplane::Plan {
  Generation next;
  Writes<ew_iv4> iv4;
  Writes<ew_iv6> iv6;
  Writes<ew_piv> piv;
  Writes<ew_grp> grp;
  Writes<ew_bucket> bkt4, bkt6;
  ew_policy_hdr hdr{};
  size_t kept = 0;
  bool full = false;
  // planChanges(): what to change in the generation's mirror instead of replacing it.
  bool incremental = false;
  std::vector<std::pair<uint32_t, ew_bucket>> set4, set6;          // bucket -> entry
  std::vector<std::pair<uint32_t, ew_grp>> setG;                   // group slot -> entry
  std::vector<std::pair<std::string, uint32_t>> add4, add6, addP;  // new blocks -> position
};

namespace {

// Places blocks (off, cnt) of `src` into [base, base + cap): a block whose bytes the
// generation already holds keeps its place; the others go into the gaps. Returns the new
// position of each block, or nothing when the gaps are too small (then lay out afresh).
template <typename T>
std::optional<std::vector<uint32_t>> place(const std::vector<T>& src,
                                           const std::vector<std::pair<uint32_t, uint32_t>>& blocks,
                                           const std::unordered_map<std::string, uint32_t>& old,
                                           uint32_t base, uint32_t cap,
                                           std::unordered_map<std::string, uint32_t>& index,
                                           Writes<T>& writes, size_t& kept) {
  std::vector<uint32_t> pos(blocks.size(), UINT32_MAX);
  std::vector<std::string> keys(blocks.size());
  std::vector<std::pair<uint32_t, uint32_t>> used;  // [start, end)
  std::vector<size_t> pending;
  for (size_t i = 0; i < blocks.size(); i++) {
    auto [off, cnt] = blocks[i];
    keys[i].assign(reinterpret_cast<const char*>(src.data() + off), size_t{cnt} * sizeof(T));
    if (auto it = index.find(keys[i]); it != index.end()) {
      pos[i] = it->second;
    } else if (auto o = old.find(keys[i]); o != old.end()) {
      pos[i] = o->second;
      index.emplace(keys[i], pos[i]);
      used.push_back({pos[i], pos[i] + cnt});
      kept += cnt;
    } else {
      pending.push_back(i);
    }
  }
  std::ranges::sort(used);
  std::vector<std::pair<uint32_t, uint32_t>> gaps;  // [start, end)
  uint32_t cursor = base;
  for (auto [s, e] : used) {
    if (s > cursor) gaps.push_back({cursor, s});
    cursor = std::max(cursor, e);
  }
  if (base + cap > cursor) gaps.push_back({cursor, base + cap});
  size_t g = 0;
  for (size_t i : pending) {
    if (auto it = index.find(keys[i]); it != index.end()) {  // a duplicate placed just now
      pos[i] = it->second;
      continue;
    }
    uint32_t cnt = blocks[i].second;
    size_t tries = g;
    while (g < gaps.size() && gaps[g].second - gaps[g].first < cnt) g++;
    if (g == gaps.size()) {
      // Next-fit ran off the end; one first-fit pass over the earlier gaps.
      for (g = 0; g < tries && gaps[g].second - gaps[g].first < cnt; g++) {
      }
      if (g == tries) return std::nullopt;
    }
    pos[i] = gaps[g].first;
    gaps[g].first += cnt;
    index.emplace(keys[i], pos[i]);
    for (uint32_t k = 0; k < cnt; k++) writes.add(pos[i] + k, src[blocks[i].first + k]);
  }
  return pos;
}

// End of the used part of a region: past the last block placed.
uint32_t endOf(const std::vector<uint32_t>& pos,
               const std::vector<std::pair<uint32_t, uint32_t>>& blocks, uint32_t base) {
  uint32_t end = base;
  for (size_t i = 0; i < blocks.size(); i++) end = std::max(end, pos[i] + blocks[i].second);
  return end;
}

// One block for planChanges(): where the generation already holds its content, else above the
// used part (written). Nothing when the region is full.
template <typename T>
std::optional<uint32_t> placeAbove(const std::vector<T>& src, uint32_t off, uint32_t cnt,
                                   const std::unordered_map<std::string, uint32_t>& held,
                                   std::vector<std::pair<std::string, uint32_t>>& added,
                                   uint32_t& end, uint32_t limit, Writes<T>& writes) {
  std::string key(reinterpret_cast<const char*>(src.data() + off), size_t{cnt} * sizeof(T));
  if (auto it = held.find(key); it != held.end()) return it->second;
  for (const auto& [k, pos] : added)
    if (k == key) return pos;
  if (end + cnt > limit) return std::nullopt;
  uint32_t pos = end;
  end += cnt;
  for (uint32_t k = 0; k < cnt; k++) writes.add(pos + k, src[off + k]);
  added.emplace_back(std::move(key), pos);
  return pos;
}

std::vector<std::pair<uint32_t, uint32_t>> bucketBlocks(const std::vector<ew_bucket>& b) {
  std::vector<std::pair<uint32_t, uint32_t>> out(b.size());
  for (size_t i = 0; i < b.size(); i++) out[i] = {b[i].off, b[i].cnt};
  return out;
}

}  // namespace

Result<void> Dataplane::plan(const policy::CompiledPolicy& p, uint32_t g, Plan& out,
                             bool fresh) const {
  const auto& o = fw_.options();
  const Generation& cur = gens_[g];
  fresh = fresh || !cur.known;
  static const std::unordered_map<std::string, uint32_t> kNone;
  auto oldOf = [&](const Blocks& b) -> const std::unordered_map<std::string, uint32_t>& {
    return fresh ? kNone : b.at;
  };

  auto pos4 = place(p.iv4, bucketBlocks(p.bkt4), oldOf(cur.iv4), g * o.capIntervals4,
                    o.capIntervals4, out.next.iv4.at, out.iv4, out.kept);
  auto pos6 = place(p.iv6, bucketBlocks(p.bkt6), oldOf(cur.iv6), g * o.capIntervals6,
                    o.capIntervals6, out.next.iv6.at, out.iv6, out.kept);
  std::vector<std::pair<uint32_t, uint32_t>> portBlocks;
  std::vector<size_t> portOf(p.grp.size(), SIZE_MAX);
  for (size_t i = 0; i < p.grp.size(); i++)
    if (p.grp[i].cnt) {
      portOf[i] = portBlocks.size();
      portBlocks.push_back({p.grp[i].off, p.grp[i].cnt});
    }
  auto posP = place(p.piv, portBlocks, oldOf(cur.piv), g * o.capPortEntries, o.capPortEntries,
                    out.next.piv.at, out.piv, out.kept);
  if (!pos4 || !pos6 || !posP) {
    if (fresh) return fail("the policy does not fit the loaded maps");
    out = Plan{};
    return plan(p, g, out, true);  // fragmented: lay the generation out from scratch
  }
  out.full = fresh;

  auto buckets = [&](const std::vector<ew_bucket>& src, const std::vector<uint32_t>& pos,
                     const std::vector<ew_bucket>& was, std::vector<ew_bucket>& now,
                     Writes<ew_bucket>& w) {
    now.resize(src.size());
    for (size_t b = 0; b < src.size(); b++) {
      now[b] = {pos[b], src[b].cnt};
      if (fresh || was.size() != src.size() || was[b].off != now[b].off || was[b].cnt != now[b].cnt)
        w.add(g * EW_BUCKETS + static_cast<uint32_t>(b), now[b]);
    }
  };
  buckets(p.bkt4, *pos4, cur.bkt4, out.next.bkt4, out.bkt4);
  buckets(p.bkt6, *pos6, cur.bkt6, out.next.bkt6, out.bkt6);

  out.next.h4 = p.bkt4Hash;
  out.next.h6 = p.bkt6Hash;
  out.next.hg = p.grpHash;
  out.next.end4 = endOf(*pos4, bucketBlocks(p.bkt4), g * o.capIntervals4);
  out.next.end6 = endOf(*pos6, bucketBlocks(p.bkt6), g * o.capIntervals6);
  out.next.endP = endOf(*posP, portBlocks, g * o.capPortEntries);

  const uint32_t grpBase = g * o.capGroups * EW_P_COUNT;
  out.next.grp.resize(p.grp.size());
  for (size_t i = 0; i < p.grp.size(); i++) {
    ew_grp e = p.grp[i].cnt ? ew_grp{(*posP)[portOf[i]], p.grp[i].cnt} : ew_grp{0, 0};
    out.next.grp[i] = e;
    if (fresh || i >= cur.grp.size() || cur.grp[i].off != e.off || cur.grp[i].cnt != e.cnt)
      out.grp.add(grpBase + static_cast<uint32_t>(i), e);
  }
  out.hdr = p.hdr;
  out.hdr.bkt_base = g * EW_BUCKETS;
  out.hdr.grp_base = grpBase;
  out.next.known = true;
  return {};
}

bool Dataplane::planChanges(const policy::CompiledPolicy& p, uint32_t g, Plan& out) const {
  const Generation& cur = gens_[g];
  if (!cur.known || cur.h4.size() != EW_BUCKETS || cur.h6.size() != EW_BUCKETS ||
      p.bkt4Hash.size() != EW_BUCKETS || p.bkt6Hash.size() != EW_BUCKETS ||
      p.grpHash.size() != p.grp.size() || cur.hg.size() != cur.grp.size())
    return false;
  const auto& o = fw_.options();
  out.incremental = true;
  out.next.end4 = cur.end4;
  out.next.end6 = cur.end6;
  out.next.endP = cur.endP;
  out.kept = (cur.end4 - g * o.capIntervals4) + (cur.end6 - g * o.capIntervals6) +
             (cur.endP - g * o.capPortEntries);

  auto buckets = [&](const auto& iv, const std::vector<ew_bucket>& src,
                     const std::vector<uint64_t>& hash, const std::vector<ew_bucket>& was,
                     const std::vector<uint64_t>& wasHash, const Blocks& held,
                     std::vector<std::pair<std::string, uint32_t>>& added, uint32_t& end,
                     uint32_t limit, auto& ivWrites, Writes<ew_bucket>& w,
                     std::vector<std::pair<uint32_t, ew_bucket>>& set) {
    for (uint32_t b = 0; b < EW_BUCKETS; b++) {
      if (hash[b] == wasHash[b] && src[b].cnt == was[b].cnt) continue;
      auto pos = placeAbove(iv, src[b].off, src[b].cnt, held.at, added, end, limit, ivWrites);
      if (!pos) return false;
      ew_bucket now{*pos, src[b].cnt};
      if (now.off != was[b].off || now.cnt != was[b].cnt) w.add(g * EW_BUCKETS + b, now);
      set.push_back({b, now});
    }
    return true;
  };
  if (!buckets(p.iv4, p.bkt4, p.bkt4Hash, cur.bkt4, cur.h4, cur.iv4, out.add4, out.next.end4,
               (g + 1) * o.capIntervals4, out.iv4, out.bkt4, out.set4) ||
      !buckets(p.iv6, p.bkt6, p.bkt6Hash, cur.bkt6, cur.h6, cur.iv6, out.add6, out.next.end6,
               (g + 1) * o.capIntervals6, out.iv6, out.bkt6, out.set6))
    return false;

  const uint32_t grpBase = g * o.capGroups * EW_P_COUNT;
  for (uint32_t i = 0; i < p.grp.size(); i++) {
    const bool had = i < cur.grp.size();
    if (had && p.grpHash[i] == cur.hg[i] && p.grp[i].cnt == cur.grp[i].cnt) continue;
    ew_grp e{0, 0};
    if (p.grp[i].cnt) {
      auto pos = placeAbove(p.piv, p.grp[i].off, p.grp[i].cnt, cur.piv.at, out.addP, out.next.endP,
                            (g + 1) * o.capPortEntries, out.piv);
      if (!pos) return false;
      e = {*pos, p.grp[i].cnt};
    }
    if (!had || cur.grp[i].off != e.off || cur.grp[i].cnt != e.cnt) out.grp.add(grpBase + i, e);
    out.setG.push_back({i, e});
  }
  out.hdr = p.hdr;
  out.hdr.bkt_base = g * EW_BUCKETS;
  out.hdr.grp_base = grpBase;
  return true;
}

Result<void> Dataplane::write(const Plan& pl, ApplyStats& st) {
  auto put = [&](FirewallMap m, const auto& w) -> Result<void> {
    using T = typename std::decay_t<decltype(w.vals)>::value_type;
    st.entriesWritten += w.keys.size();
    return fw_.writeArrayAt(m, w.keys.data(), w.vals.data(), static_cast<uint32_t>(w.keys.size()),
                            sizeof(T));
  };
  // Leaves first (intervals, ports), then the tables that point at them.
  EW_TRY(a, put(FirewallMap::Iv4, pl.iv4));
  EW_TRY(b, put(FirewallMap::Iv6, pl.iv6));
  EW_TRY(c, put(FirewallMap::Piv, pl.piv));
  EW_TRY(d, put(FirewallMap::Grp, pl.grp));
  EW_TRY(e, put(FirewallMap::Bkt4, pl.bkt4));
  EW_TRY(f, put(FirewallMap::Bkt6, pl.bkt6));
  return {};
}

Result<ApplyStats> Dataplane::apply(const policy::CompiledPolicy& p, uint64_t version) {
  const auto& o = fw_.options();
  auto tooBig = [](const char* what, size_t need, uint32_t cap) {
    return fail(ErrorCode::InvalidArgument,
                fmt::format("policy needs {} {}; the loaded program holds {}", need, what, cap));
  };
  if (p.iv4.size() > o.capIntervals4)
    return tooBig("IPv4 intervals", p.iv4.size(), o.capIntervals4);
  if (p.iv6.size() > o.capIntervals6)
    return tooBig("IPv6 intervals", p.iv6.size(), o.capIntervals6);
  if (p.hdr.n_groups > o.capGroups) return tooBig("rule groups", p.hdr.n_groups, o.capGroups);
  if (p.piv.size() > o.capPortEntries)
    return tooBig("port entries", p.piv.size(), o.capPortEntries);
  if (p.rules.size() > o.capRules) return tooBig("rules", p.rules.size(), o.capRules);

  EW_TRY(cfg, fw_.readConfig());
  const uint32_t next = (cfg->gen & 1) ^ 1;
  ApplyStats st;
  st.generation = next;
  Plan pl;
  if (!planChanges(p, next, pl)) {
    pl = Plan{};
    EW_TRY(planned, plan(p, next, pl, false));
  }

  // Packets that read the old active generation just before the last switch may still be
  // inside the program; they run for microseconds under RCU. Before overwriting that
  // generation, let a grace period far longer than any program run pass.
  auto since = Clock::now() - lastSwitch_;
  if (since < kGrace) std::this_thread::sleep_for(kGrace - since);

  auto t0 = Clock::now();
  gens_[next].known = false;  // from here until the end it holds neither image for sure
  EW_TRY(written, write(pl, st));
  ew_policy_hdr hdr = pl.hdr;
  hdr.version = version;
  EW_TRY(h, fw_.writeArray(FirewallMap::Policy, next, &hdr, 1, sizeof(hdr)));
  st.entriesWritten += 1;
  auto t1 = Clock::now();

  // The switch: one word. Packets already running finish on the generation they read.
  cfg->gen = next;
  EW_TRY(sw, fw_.writeConfig(*cfg));
  auto t2 = Clock::now();
  lastSwitch_ = t2;
  gen_ = next;
  if (pl.incremental) {
    Generation& G = gens_[next];
    for (auto& [b, e] : pl.set4) {
      G.bkt4[b] = e;
      G.h4[b] = p.bkt4Hash[b];
    }
    for (auto& [b, e] : pl.set6) {
      G.bkt6[b] = e;
      G.h6[b] = p.bkt6Hash[b];
    }
    G.grp.resize(p.grp.size());
    G.hg.resize(p.grp.size());
    for (auto& [i, e] : pl.setG) {
      G.grp[i] = e;
      G.hg[i] = p.grpHash[i];
    }
    for (auto& [k, pos] : pl.add4) G.iv4.at.emplace(std::move(k), pos);
    for (auto& [k, pos] : pl.add6) G.iv6.at.emplace(std::move(k), pos);
    for (auto& [k, pos] : pl.addP) G.piv.at.emplace(std::move(k), pos);
    G.end4 = pl.next.end4;
    G.end6 = pl.next.end6;
    G.endP = pl.next.endP;
    G.known = true;
  } else {
    gens_[next] = std::move(pl.next);
  }
  st.entriesKept = pl.kept;
  st.fullRewrite = pl.full;
  st.writeMs = std::chrono::duration<double, std::milli>(t1 - t0).count();
  st.switchUs = std::chrono::duration<double, std::micro>(t2 - t1).count();
  return st;
}

Result<void> Dataplane::revert() {
  EW_TRY(cfg, fw_.readConfig());
  const uint32_t prev = (cfg->gen & 1) ^ 1;
  if (!gens_[prev].known) return fail("the previous generation does not hold a complete policy");
  cfg->gen = prev;
  EW_TRY(sw, fw_.writeConfig(*cfg));
  lastSwitch_ = Clock::now();
  gen_ = prev;
  return {};
}

Result<uint64_t> Dataplane::pinnedVersion() const {
  EW_TRY(cfg, fw_.readConfig());
  ew_policy_hdr hdr{};
  EW_TRY(r, fw_.readArray(FirewallMap::Policy, cfg->gen & 1, &hdr, 1, sizeof(hdr)));
  return hdr.version;
}

Result<void> Dataplane::adopt(const policy::CompiledPolicy&) {
  // The maps enforce the policy already. Their exact layout is not known here, so neither
  // generation is mirrored: the next apply lays the inactive one out afresh.
  EW_TRY(cfg, fw_.readConfig());
  gen_ = cfg->gen & 1;
  gens_[0] = gens_[1] = Generation{};
  lastSwitch_ = Clock::now();  // the previous process may have switched just before it died
  return {};
}

Result<void> Dataplane::setFlags(uint32_t set, uint32_t clear) {
  EW_TRY(cfg, fw_.readConfig());
  cfg->flags = (cfg->flags | set) & ~clear;
  return fw_.writeConfig(*cfg);
}

}  // namespace edgeward::dataplane
