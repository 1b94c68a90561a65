#include "policy/compiler.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <map>
#include <set>
#include <unordered_map>

namespace edgeward::policy {
namespace {

using U128 = unsigned __int128;

constexpr uint8_t kSlots[] = {EW_P_TCP, EW_P_UDP, EW_P_ICMP, EW_P_ICMPV6, EW_P_OTHER};

struct VecHash {
  size_t operator()(const std::vector<uint32_t>& v) const {
    size_t h = 1469598103934665603ull;
    for (uint32_t x : v) h = (h ^ x) * 1099511628211ull;
    return h;
  }
};

// 64-bit content hash of a block (xxHash64-style rounds over 8-byte words).
uint64_t hashBytes(const void* data, size_t n) {
  constexpr uint64_t k1 = 0x9E3779B185EBCA87ull, k2 = 0xC2B2AE3D27D4EB4Full;
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = 0x27D4EB2F165667C5ull ^ (n * k1);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h ^= std::rotl(w * k2, 31) * k1;
    h = std::rotl(h, 27) * k1 + 0x85EBCA77C2B2AE63ull;
  }
  for (; i < n; i++) h = std::rotl(h ^ (p[i] * 0x165667B19E3779F9ull), 11) * k1;
  h ^= h >> 33;
  h *= k2;
  h ^= h >> 29;
  return h;
}

template <typename T>
uint64_t hashBlock(const std::vector<T>& v, uint32_t off, uint32_t cnt) {
  return cnt ? hashBytes(v.data() + off, size_t{cnt} * sizeof(T)) : 0;
}

// Boundary of an identity's coverage: +1 at a prefix's first address, -1 after its last.
template <typename A>
struct Event {
  A at;
  uint32_t identity;
  int delta;
};

// An interval of constant (ingress, egress) group.
template <typename A>
struct Iv {
  A start;
  uint32_t gin, gout;
};

// Decision of one port segment: deny beats allow, then the lowest rule id.
struct Decision {
  uint8_t action = EW_ACT_NONE;
  uint32_t rule = EW_RULE_NONE;
  void merge(uint8_t a, uint32_t r) {
    if (a > action || (a == action && r < rule)) {
      action = a;
      rule = r;
    }
  }
  bool operator==(const Decision&) const = default;
};

}  // namespace

// A prefix of the index by bucket; addresses of both families as 128-bit numbers.
struct IndexItem {
  U128 first, last;
  uint32_t identity;
};

struct CompileState {
  std::unordered_map<std::string, uint32_t> identityIndex;  // name -> index in the policy
  std::vector<std::array<std::vector<uint32_t>, EW_DIRS>> identityRules;
  std::array<std::vector<uint32_t>, EW_DIRS> anyRules;
  std::unordered_map<std::vector<uint32_t>, uint32_t, VecHash> groupIds;  // rule ids -> group
  std::unordered_map<std::vector<uint32_t>, std::pair<uint32_t, uint32_t>, VecHash> setGroups;
  std::map<std::pair<uint32_t, uint32_t>, uint32_t> shared[2];  // single-interval entries
  std::map<std::vector<uint64_t>, ew_grp> tables;               // port tables by content
  // Prefixes within one bucket (v4: /16 or longer; v6: /16 or longer) by bucket; wider ones.
  std::vector<std::vector<IndexItem>> byBucket[2];
  std::vector<IndexItem> wide[2];
  size_t garbage[2] = {0, 0};  // interval entries no bucket points at any more
};

namespace {

constexpr size_t kMaxChangedBuckets = 4096;

int famIndex(Family f) { return f == Family::V4 ? 0 : 1; }
int famBits(Family f) { return f == Family::V4 ? 32 : 128; }

// First and last address of a prefix, as numbers.
std::pair<U128, U128> rangeOf(const Prefix& p) {
  const int bits = famBits(p.family);
  U128 first = 0;
  for (int b = 0; b < bits / 8; b++) first = (first << 8) | p.addr[b];
  const U128 all = bits == 128 ? ~U128{0} : ((U128{1} << bits) - 1);
  U128 host = p.len >= bits ? U128{0} : p.len == 0 ? all : ((U128{1} << (bits - p.len)) - 1);
  return {first, first | host};
}

uint32_t bucketOf(U128 a, Family f) {
  return static_cast<uint32_t>(a >> (famBits(f) - EW_BUCKET_BITS));
}

class Compiler {
 public:
  Compiler(const Policy& p, const CompileLimits& l, const CompiledPolicy* previous)
      : policy_(p), limits_(l), previous_(previous) {
    out_.state = std::make_shared<CompileState>();
    st_ = out_.state.get();
  }
  // Continues from a compiled image (compileChange): takes it over.
  Compiler(const Policy& p, const CompileLimits& l, CompiledPolicy image)
      : policy_(p), limits_(l), previous_(nullptr), out_(std::move(image)) {
    if (out_.state.use_count() > 1) out_.state = std::make_shared<CompileState>(*out_.state);
    st_ = out_.state.get();
  }

  Result<CompiledPolicy> change(std::span<const PrefixChange> changes);

  Result<CompiledPolicy> run() {
    out_.hdr.default_action = policy_.defaultAction == Action::Allow ? EW_ACT_ALLOW : EW_ACT_DENY;
    if (policy_.synFlood) {
      uint64_t interval = 1000000000ull / policy_.synFlood->perSourcePps;
      if (interval == 0) interval = 1;
      out_.hdr.syn_limit = 1;
      out_.hdr.syn_interval_ns = interval;
      out_.hdr.syn_tolerance_ns = interval * policy_.synFlood->burst;
    }
    indexRules();
    if (out_.rules.size() > limits_.maxRules)
      return failf("policy has {} rules; the limit is {}", out_.rules.size(), limits_.maxRules);

    // Groups 0/1 (rules on "any", per direction) and 2 (no rules) always exist.
    out_.groupRules.resize(EW_GROUP_FIRST);
    out_.groupRules[EW_GROUP_ANY + EW_INGRESS] = st_->anyRules[EW_INGRESS];
    out_.groupRules[EW_GROUP_ANY + EW_EGRESS] = st_->anyRules[EW_EGRESS];
    if (previous_) {
      // Offer the previous ids; the ones this policy does not use are emptied below.
      for (size_t g = EW_GROUP_FIRST; g < previous_->groupRules.size(); g++) {
        out_.groupRules.push_back(previous_->groupRules[g]);
        if (!out_.groupRules.back().empty()) st_->groupIds.emplace(out_.groupRules.back(), g);
      }
    }

    buildFamily<uint32_t>(Family::V4);
    buildFamily<U128>(Family::V6);
    if (previous_ && !dropUnusedGroups()) return Compiler(policy_, limits_, nullptr).run();
    EW_TRY(fits, checkIntervalsAndGroups());
    out_.grp.assign(out_.groupRules.size() * EW_P_COUNT, {});
    for (size_t g = 0; g < out_.groupRules.size(); g++) buildPortTables(g);
    EW_TRY(done, finish());
    out_.bkt4Hash.resize(EW_BUCKETS);
    out_.bkt6Hash.resize(EW_BUCKETS);
    for (uint32_t b = 0; b < EW_BUCKETS; b++) {
      out_.bkt4Hash[b] = hashBlock(out_.iv4, out_.bkt4[b].off, out_.bkt4[b].cnt);
      out_.bkt6Hash[b] = hashBlock(out_.iv6, out_.bkt6[b].off, out_.bkt6[b].cnt);
    }
    return std::move(out_);
  }

 private:
  Result<void> checkIntervalsAndGroups() const {
    if (out_.iv4.size() > limits_.maxIntervals4)
      return failf("policy needs {} IPv4 intervals; the capacity is {}", out_.iv4.size(),
                   limits_.maxIntervals4);
    if (out_.iv6.size() > limits_.maxIntervals6)
      return failf("policy needs {} IPv6 intervals; the capacity is {}", out_.iv6.size(),
                   limits_.maxIntervals6);
    if (out_.groupRules.size() > limits_.maxGroups)
      return failf("policy needs {} rule groups; the capacity is {}", out_.groupRules.size(),
                   limits_.maxGroups);
    return {};
  }

  // After the port tables: the last limit, the header's group count and the statistics.
  Result<void> finish() {
    if (out_.piv.size() > limits_.maxPortEntries)
      return failf("policy needs {} port entries; the capacity is {}", out_.piv.size(),
                   limits_.maxPortEntries);
    out_.hdr.n_groups = static_cast<uint32_t>(out_.groupRules.size());
    out_.grpHash.resize(out_.grp.size());
    for (size_t i = 0; i < out_.grp.size(); i++)
      out_.grpHash[i] = hashBlock(out_.piv, out_.grp[i].off, out_.grp[i].cnt);
    auto& st = out_.stats;
    st.identities = policy_.identities.size();
    st.rules = out_.rules.size();
    st.bytes = (out_.bkt4.size() + out_.bkt6.size()) * sizeof(ew_bucket) +
               out_.iv4.size() * sizeof(ew_iv4) + out_.iv6.size() * sizeof(ew_iv6) +
               out_.grp.size() * sizeof(ew_grp) + out_.piv.size() * sizeof(ew_piv);
    return {};
  }

  void indexRules() {
    auto& idOf = st_->identityIndex;
    for (uint32_t i = 0; i < policy_.identities.size(); i++) idOf[policy_.identities[i].name] = i;
    st_->identityRules.assign(policy_.identities.size(), {});
    auto add = [&](const std::vector<Rule>& rules, uint8_t dir) {
      for (const Rule& r : rules) {
        uint32_t id = static_cast<uint32_t>(out_.rules.size());
        out_.rules.push_back({r.name, dir, r.action, r.line});
        bool any = std::ranges::find(r.peers, kAnyIdentity) != r.peers.end();
        if (any) {
          st_->anyRules[dir].push_back(id);
          continue;
        }
        for (const auto& peer : r.peers) {
          auto it = idOf.find(peer);
          if (it == idOf.end()) continue;  // validated by the parser
          auto& v = st_->identityRules[it->second][dir];
          if (v.empty() || v.back() != id) v.push_back(id);
        }
      }
    };
    add(policy_.ingress, EW_INGRESS);
    add(policy_.egress, EW_EGRESS);
  }

  // Previous ids no interval uses any more are emptied (no port table). Returns false when
  // they are most of the table: then numbering should start afresh.
  bool dropUnusedGroups() {
    std::vector<bool> used(out_.groupRules.size(), false);
    for (uint32_t g = 0; g < EW_GROUP_FIRST; g++) used[g] = true;
    for (const auto& iv : out_.iv4) used[iv.grp[0]] = used[iv.grp[1]] = true;
    for (const auto& iv : out_.iv6) used[iv.grp[0]] = used[iv.grp[1]] = true;
    size_t unused = std::count(used.begin(), used.end(), false);
    if (unused > out_.groupRules.size() / 2) return false;
    bool cleared = false;
    for (size_t g = 0; g < used.size(); g++) {
      if (used[g] || out_.groupRules[g].empty()) continue;
      if (auto it = st_->groupIds.find(out_.groupRules[g]);
          it != st_->groupIds.end() && it->second == g)
        st_->groupIds.erase(it);
      out_.groupRules[g].clear();
      cleared = true;
    }
    if (cleared) st_->setGroups.clear();  // it may name an emptied group
    return true;
  }

  uint32_t groupOf(std::vector<uint32_t> rules) {
    if (rules.empty()) return EW_GROUP_NONE;
    auto [it, inserted] =
        st_->groupIds.try_emplace(rules, static_cast<uint32_t>(out_.groupRules.size()));
    if (inserted) out_.groupRules.push_back(std::move(rules));
    return it->second;
  }

  // Groups (ingress, egress) of the addresses covered by exactly this identity set.
  std::pair<uint32_t, uint32_t> groupsOfSet(const std::vector<uint32_t>& identities) {
    auto cached = st_->setGroups.find(identities);
    if (cached != st_->setGroups.end()) return cached->second;
    std::pair<uint32_t, uint32_t> g;
    for (uint8_t dir : {EW_INGRESS, EW_EGRESS}) {
      std::vector<uint32_t> rules;
      for (uint32_t i : identities)
        rules.insert(rules.end(), st_->identityRules[i][dir].begin(),
                     st_->identityRules[i][dir].end());
      std::ranges::sort(rules);
      rules.erase(std::unique(rules.begin(), rules.end()), rules.end());
      (dir == EW_INGRESS ? g.first : g.second) = groupOf(std::move(rules));
    }
    st_->setGroups.emplace(identities, g);
    return g;
  }

  // Interval sweep over boundary events sorted by address, starting at `from` with no
  // identity: intervals of constant (ingress, egress) group, equal neighbours merged.
  template <typename A>
  std::vector<Iv<A>> sweep(const std::vector<Event<A>>& events, A from) {
    std::vector<Iv<A>> ivs{{from, EW_GROUP_NONE, EW_GROUP_NONE}};
    std::map<uint32_t, int> active;  // identity -> covering prefixes
    std::vector<uint32_t> set;
    for (size_t i = 0; i < events.size();) {
      A at = events[i].at;
      for (; i < events.size() && events[i].at == at; i++) {
        int& n = active[events[i].identity];
        n += events[i].delta;
        if (n == 0) active.erase(events[i].identity);
      }
      set.clear();
      for (auto& [id, n] : active) set.push_back(id);
      auto [gin, gout] = groupsOfSet(set);
      if (ivs.back().start == at) {
        ivs.back().gin = gin;
        ivs.back().gout = gout;
        if (ivs.size() > 1 && ivs[ivs.size() - 2].gin == gin && ivs[ivs.size() - 2].gout == gout)
          ivs.pop_back();
      } else if (ivs.back().gin != gin || ivs.back().gout != gout) {
        ivs.push_back({at, gin, gout});
      }
    }
    return ivs;
  }

  bool named(uint32_t identity) const {
    return !st_->identityRules[identity][EW_INGRESS].empty() ||
           !st_->identityRules[identity][EW_EGRESS].empty();
  }

  template <typename A>
  uint32_t emit(A start, uint32_t gin, uint32_t gout) {
    if constexpr (sizeof(A) == 4) {
      out_.iv4.push_back({start, {gin, gout}});
      return static_cast<uint32_t>(out_.iv4.size() - 1);
    } else {
      ew_iv6 e{};
      e.hi = static_cast<uint64_t>(start >> 64);
      e.lo = static_cast<uint64_t>(start);
      e.grp[0] = gin;
      e.grp[1] = gout;
      out_.iv6.push_back(e);
      return static_cast<uint32_t>(out_.iv6.size() - 1);
    }
  }

  // A bucket whose addresses all fall in one interval points at a shared entry per group pair.
  template <typename A>
  ew_bucket sharedEntry(Family fam, A base, uint32_t gin, uint32_t gout) {
    auto& shared = st_->shared[famIndex(fam)];
    auto key = std::make_pair(gin, gout);
    auto it = shared.find(key);
    if (it == shared.end()) it = shared.emplace(key, emit<A>(base, gin, gout)).first;
    return {it->second, 1};
  }

  // Cuts the family's address space into intervals of constant (ingress, egress) group, then
  // fills the bucket table and the interval array.
  template <typename A>
  void buildFamily(Family fam) {
    constexpr int kBits = sizeof(A) == 4 ? 32 : 128;
    const int f = famIndex(fam);
    auto& byBucket = st_->byBucket[f];
    byBucket.assign(EW_BUCKETS, {});

    std::vector<Event<A>> events;
    std::map<Prefix, bool> distinct;
    for (uint32_t i = 0; i < policy_.identities.size(); i++) {
      const auto& ident = policy_.identities[i];
      for (const Prefix& p : ident.prefixes) {
        if (p.family != fam) continue;
        distinct.emplace(p, true);
        auto [first, last] = rangeOf(p);
        if (p.len >= EW_BUCKET_BITS)
          byBucket[bucketOf(first, fam)].push_back({first, last, i});
        else
          st_->wide[f].push_back({first, last, i});
        if (!named(i)) continue;  // an identity no rule names cannot change a verdict
        events.push_back({static_cast<A>(first), i, +1});
        if (static_cast<A>(last) != static_cast<A>(~A{0}))
          events.push_back({static_cast<A>(static_cast<A>(last) + 1), i, -1});
      }
    }
    (fam == Family::V4 ? out_.stats.prefixes4 : out_.stats.prefixes6) = distinct.size();
    std::ranges::sort(events, [](const Event<A>& a, const Event<A>& b) { return a.at < b.at; });
    const std::vector<Iv<A>> ivs = sweep(events, A{0});

    // Buckets: each bucket lists the intervals overlapping it, the first clamped to the
    // bucket's first address. A bucket inside one interval shares an entry per group pair.
    auto& bkt = fam == Family::V4 ? out_.bkt4 : out_.bkt6;
    bkt.assign(EW_BUCKETS, {});
    constexpr int kShift = kBits - EW_BUCKET_BITS;
    size_t cur = 0;  // interval containing the bucket's first address
    for (uint32_t b = 0; b < EW_BUCKETS; b++) {
      A base = static_cast<A>(static_cast<A>(b) << kShift);
      A lastInBucket = static_cast<A>(base | ((A{1} << kShift) - 1));
      while (cur + 1 < ivs.size() && ivs[cur + 1].start <= base) cur++;
      size_t end = cur + 1;
      while (end < ivs.size() && ivs[end].start <= lastInBucket) end++;
      if (end == cur + 1) {
        bkt[b] = sharedEntry<A>(fam, base, ivs[cur].gin, ivs[cur].gout);
        continue;
      }
      uint32_t off = emit<A>(base, ivs[cur].gin, ivs[cur].gout);
      for (size_t k = cur + 1; k < end; k++) emit<A>(ivs[k].start, ivs[k].gin, ivs[k].gout);
      bkt[b] = {off, static_cast<uint32_t>(end - cur)};
    }
  }

  // Recomputes one bucket from the prefixes that overlap it; its new block goes at the end.
  template <typename A>
  void rebuildBucket(Family fam, uint32_t b) {
    constexpr int kShift = (sizeof(A) == 4 ? 32 : 128) - EW_BUCKET_BITS;
    const int f = famIndex(fam);
    const A base = static_cast<A>(static_cast<A>(b) << kShift);
    const A lastInBucket = static_cast<A>(base | ((A{1} << kShift) - 1));
    std::vector<Event<A>> events;
    auto add = [&](const IndexItem& it) {
      if (it.last < U128{base} || it.first > U128{lastInBucket} || !named(it.identity)) return;
      events.push_back({std::max(static_cast<A>(it.first), base), it.identity, +1});
      if (it.last < U128{lastInBucket})
        events.push_back({static_cast<A>(static_cast<A>(it.last) + 1), it.identity, -1});
    };
    for (const auto& it : st_->byBucket[f][b]) add(it);
    for (const auto& it : st_->wide[f]) add(it);
    std::ranges::sort(events, [](const Event<A>& x, const Event<A>& y) { return x.at < y.at; });
    const std::vector<Iv<A>> ivs = sweep(events, base);

    auto& bkt = fam == Family::V4 ? out_.bkt4 : out_.bkt6;
    if (bkt[b].cnt > 1) st_->garbage[f] += bkt[b].cnt;
    if (ivs.size() == 1) {
      bkt[b] = sharedEntry<A>(fam, base, ivs[0].gin, ivs[0].gout);
    } else {
      uint32_t off = emit<A>(ivs[0].start, ivs[0].gin, ivs[0].gout);
      for (size_t k = 1; k < ivs.size(); k++) emit<A>(ivs[k].start, ivs[k].gin, ivs[k].gout);
      bkt[b] = {off, static_cast<uint32_t>(ivs.size())};
    }
    if constexpr (sizeof(A) == 4)
      out_.bkt4Hash[b] = hashBlock(out_.iv4, bkt[b].off, bkt[b].cnt);
    else
      out_.bkt6Hash[b] = hashBlock(out_.iv6, bkt[b].off, bkt[b].cnt);
  }

  // Port intervals of group g per protocol slot; identical tables are stored once.
  void buildPortTables(size_t g) {
    auto& tables = st_->tables;
    {
      for (uint8_t slot : kSlots) {
        // Boundaries where some rule's coverage starts or ends.
        struct Cover {
          uint32_t first, last;
          uint8_t action;
          uint32_t rule;
        };
        std::vector<Cover> covers;
        for (uint32_t id : out_.groupRules[g]) {
          const Rule& r = ruleById(id);
          uint8_t a = r.action == Action::Deny ? EW_ACT_DENY : EW_ACT_ALLOW;
          if (r.ports.empty()) {
            covers.push_back({0, 65535, a, id});
            continue;
          }
          for (const PortSpec& s : r.ports)
            if (specCoversSlot(s, slot)) covers.push_back({s.range.first, s.range.last, a, id});
        }
        if (covers.empty()) continue;
        // Sweep over ports, keeping the covering (action, rule) pairs ordered best first.
        struct Edge {
          uint32_t at;
          bool open;
          uint32_t cover;
        };
        std::vector<Edge> edges;
        for (uint32_t c = 0; c < covers.size(); c++) {
          edges.push_back({covers[c].first, true, c});
          if (covers[c].last < 65535) edges.push_back({covers[c].last + 1, false, c});
        }
        std::ranges::sort(edges, [](const Edge& a, const Edge& b) { return a.at < b.at; });
        auto better = [](const std::pair<uint8_t, uint32_t>& a,
                         const std::pair<uint8_t, uint32_t>& b) {
          return a.first != b.first ? a.first > b.first : a.second < b.second;
        };
        std::multiset<std::pair<uint8_t, uint32_t>, decltype(better)> live(better);
        std::vector<std::pair<uint16_t, Decision>> segs;
        auto close = [&](uint32_t at) {
          Decision d;
          if (!live.empty()) d = {live.begin()->first, live.begin()->second};
          if (!segs.empty() && segs.back().first == at) {
            segs.back().second = d;
            if (segs.size() > 1 && segs[segs.size() - 2].second == d) segs.pop_back();
          } else if (segs.empty() || !(segs.back().second == d)) {
            segs.push_back({static_cast<uint16_t>(at), d});
          }
        };
        if (edges.front().at != 0) close(0);
        for (size_t e = 0; e < edges.size();) {
          uint32_t at = edges[e].at;
          for (; e < edges.size() && edges[e].at == at; e++) {
            auto key = std::make_pair(covers[edges[e].cover].action, covers[edges[e].cover].rule);
            if (edges[e].open)
              live.insert(key);
            else
              live.erase(live.find(key));
          }
          close(at);
        }
        if (segs.size() == 1 && segs[0].second.action == EW_ACT_NONE) continue;
        std::vector<uint64_t> sig;
        for (auto& [start, d] : segs)
          sig.push_back((uint64_t{start} << 40) | (uint64_t{d.action} << 32) | d.rule);
        auto it = tables.find(sig);
        if (it == tables.end()) {
          ew_grp t{static_cast<uint32_t>(out_.piv.size()), static_cast<uint32_t>(segs.size())};
          for (auto& [start, d] : segs) out_.piv.push_back({start, d.action, 0, d.rule});
          it = tables.emplace(std::move(sig), t).first;
        }
        out_.grp[g * EW_P_COUNT + slot] = it->second;
      }
    }
  }

  const Rule& ruleById(uint32_t id) const {
    return id < policy_.ingress.size() ? policy_.ingress[id]
                                       : policy_.egress[id - policy_.ingress.size()];
  }

  const Policy& policy_;
  const CompileLimits& limits_;
  const CompiledPolicy* previous_;
  CompiledPolicy out_;
  CompileState* st_ = nullptr;
};

Result<CompiledPolicy> Compiler::change(std::span<const PrefixChange> changes) {
  auto full = [&]() { return Compiler(policy_, limits_, &out_).run(); };
  if (policy_.identities.size() != st_->identityRules.size()) return full();
  std::vector<uint32_t> touched[2];
  for (const PrefixChange& c : changes) {
    auto id = st_->identityIndex.find(c.identity);
    if (id == st_->identityIndex.end() || policy_.identities[id->second].name != c.identity)
      return fail(
          ErrorCode::InvalidArgument,
          fmt::format("compileChange: identity \"{}\" is not in the compiled policy", c.identity));
    const Family fam = c.prefix.family;
    const int f = famIndex(fam);
    auto [first, last] = rangeOf(c.prefix);
    const bool narrow = c.prefix.len >= EW_BUCKET_BITS;
    auto& items = narrow ? st_->byBucket[f][bucketOf(first, fam)] : st_->wide[f];
    auto same = [&](const IndexItem& it) { return it.first == first && it.last == last; };
    size_t before = std::ranges::count_if(items, same);
    if (c.add) {
      items.push_back({first, last, id->second});
    } else {
      auto it = std::ranges::find_if(
          items, [&](const IndexItem& x) { return same(x) && x.identity == id->second; });
      if (it == items.end())
        return fail(ErrorCode::InvalidArgument,
                    fmt::format("compileChange: {} is not a prefix of identity \"{}\"",
                                c.prefix.str(), c.identity));
      items.erase(it);
    }
    size_t after = before + (c.add ? 1 : 0) - (c.add ? 0 : 1);
    auto& distinct = fam == Family::V4 ? out_.stats.prefixes4 : out_.stats.prefixes6;
    if (before == 0 && after == 1) distinct++;
    if (before == 1 && after == 0) distinct--;
    if (!named(id->second)) continue;  // cannot change a verdict
    uint32_t b0 = bucketOf(first, fam), b1 = bucketOf(last, fam);
    if (b1 - b0 >= kMaxChangedBuckets || touched[f].size() > kMaxChangedBuckets) return full();
    for (uint32_t b = b0;; b++) {
      touched[f].push_back(b);
      if (b == b1) break;
    }
  }
  const size_t groupsBefore = out_.groupRules.size();
  for (int f = 0; f < 2; f++) {
    std::ranges::sort(touched[f]);
    touched[f].erase(std::unique(touched[f].begin(), touched[f].end()), touched[f].end());
    for (uint32_t b : touched[f]) {
      if (f == 0)
        rebuildBucket<uint32_t>(Family::V4, b);
      else
        rebuildBucket<U128>(Family::V6, b);
    }
  }
  // Old blocks of rebuilt buckets are left behind: start afresh once they outweigh the live ones.
  if (st_->garbage[0] * 2 > out_.iv4.size() + 1024 || st_->garbage[1] * 2 > out_.iv6.size() + 1024)
    return full();
  EW_TRY(fits, checkIntervalsAndGroups());
  out_.grp.resize(out_.groupRules.size() * EW_P_COUNT);
  for (size_t g = groupsBefore; g < out_.groupRules.size(); g++) buildPortTables(g);
  EW_TRY(done, finish());
  return std::move(out_);
}

}  // namespace

Result<CompiledPolicy> compileChange(const Policy& policy, CompiledPolicy image,
                                     std::span<const PrefixChange> changes,
                                     const CompileLimits& limits) {
  if (!image.state) return compile(policy, limits, &image);
  return Compiler(policy, limits, std::move(image)).change(changes);
}

bool specCoversSlot(const PortSpec& s, uint8_t slot) {
  switch (s.protocol) {
    case Protocol::Any:
      return true;
    case Protocol::Tcp:
      return slot == EW_P_TCP;
    case Protocol::Udp:
      return slot == EW_P_UDP;
    case Protocol::Icmp:
      return slot == EW_P_ICMP;
    case Protocol::Icmpv6:
      return slot == EW_P_ICMPV6;
  }
  return false;
}

uint32_t CompiledPolicy::ruleId(std::string_view name) const {
  for (uint32_t i = 0; i < rules.size(); i++)
    if (rules[i].name == name) return i;
  return EW_RULE_NONE;
}

Result<CompiledPolicy> compile(const Policy& policy, const CompileLimits& limits,
                               const CompiledPolicy* previous) {
  return Compiler(policy, limits, previous).run();
}

std::string_view reasonName(uint8_t reason) {
  switch (reason) {
    case EW_R_RULE_ALLOW:
      return "rule-allow";
    case EW_R_DEFAULT_ALLOW:
      return "default-allow";
    case EW_R_CT_ESTABLISHED:
      return "established";
    case EW_R_HOST_ESSENTIAL:
      return "host-essential";
    case EW_R_RULE_DENY:
      return "rule-deny";
    case EW_R_DEFAULT_DENY:
      return "default-deny";
    case EW_R_MALFORMED:
      return "malformed";
    case EW_R_TRUNCATED:
      return "truncated";
    case EW_R_FRAGMENT:
      return "fragment";
    case EW_R_SYN_FLOOD:
      return "syn-flood";
    case EW_R_NON_IP:
      return "non-ip";
    case EW_R_IPV6_EXT:
      return "ipv6-ext-headers";
  }
  return "unknown";
}

}  // namespace edgeward::policy
