#include "policy/compiler.h"

#include <algorithm>
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

class Compiler {
 public:
  Compiler(const Policy& p, const CompileLimits& l, const CompiledPolicy* previous)
      : policy_(p), limits_(l), previous_(previous) {}

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
    groupRules_.resize(EW_GROUP_FIRST);
    groupRules_[EW_GROUP_ANY + EW_INGRESS] = anyRules_[EW_INGRESS];
    groupRules_[EW_GROUP_ANY + EW_EGRESS] = anyRules_[EW_EGRESS];
    if (previous_) {
      // Offer the previous ids; the ones this policy does not use are emptied below.
      for (size_t g = EW_GROUP_FIRST; g < previous_->groupRules.size(); g++) {
        groupRules_.push_back(previous_->groupRules[g]);
        if (!groupRules_.back().empty()) groupIds_.emplace(groupRules_.back(), g);
      }
    }

    buildFamily<uint32_t>(Family::V4);
    buildFamily<U128>(Family::V6);
    if (previous_ && !dropUnusedGroups()) return Compiler(policy_, limits_, nullptr).run();
    if (out_.iv4.size() > limits_.maxIntervals4)
      return failf("policy needs {} IPv4 intervals; the capacity is {}", out_.iv4.size(),
                   limits_.maxIntervals4);
    if (out_.iv6.size() > limits_.maxIntervals6)
      return failf("policy needs {} IPv6 intervals; the capacity is {}", out_.iv6.size(),
                   limits_.maxIntervals6);
    if (groupRules_.size() > limits_.maxGroups)
      return failf("policy needs {} rule groups; the capacity is {}", groupRules_.size(),
                   limits_.maxGroups);
    buildPortTables();
    if (out_.piv.size() > limits_.maxPortEntries)
      return failf("policy needs {} port entries; the capacity is {}", out_.piv.size(),
                   limits_.maxPortEntries);

    out_.hdr.n_groups = static_cast<uint32_t>(groupRules_.size());
    out_.groupRules = groupRules_;
    auto& st = out_.stats;
    st.identities = policy_.identities.size();
    st.rules = out_.rules.size();
    st.bytes = (out_.bkt4.size() + out_.bkt6.size()) * sizeof(ew_bucket) +
               out_.iv4.size() * sizeof(ew_iv4) + out_.iv6.size() * sizeof(ew_iv6) +
               out_.grp.size() * sizeof(ew_grp) + out_.piv.size() * sizeof(ew_piv);
    return std::move(out_);
  }

 private:
  void indexRules() {
    std::unordered_map<std::string_view, uint32_t> idOf;
    for (uint32_t i = 0; i < policy_.identities.size(); i++) idOf[policy_.identities[i].name] = i;
    identityRules_.assign(policy_.identities.size(), {});
    auto add = [&](const std::vector<Rule>& rules, uint8_t dir) {
      for (const Rule& r : rules) {
        uint32_t id = static_cast<uint32_t>(out_.rules.size());
        out_.rules.push_back({r.name, dir, r.action, r.line});
        bool any = std::ranges::find(r.peers, kAnyIdentity) != r.peers.end();
        if (any) {
          anyRules_[dir].push_back(id);
          continue;
        }
        for (const auto& peer : r.peers) {
          auto it = idOf.find(peer);
          if (it == idOf.end()) continue;  // validated by the parser
          auto& v = identityRules_[it->second][dir];
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
    std::vector<bool> used(groupRules_.size(), false);
    for (uint32_t g = 0; g < EW_GROUP_FIRST; g++) used[g] = true;
    for (const auto& iv : out_.iv4) used[iv.grp[0]] = used[iv.grp[1]] = true;
    for (const auto& iv : out_.iv6) used[iv.grp[0]] = used[iv.grp[1]] = true;
    size_t unused = std::count(used.begin(), used.end(), false);
    if (unused > groupRules_.size() / 2) return false;
    for (size_t g = 0; g < used.size(); g++)
      if (!used[g]) groupRules_[g].clear();
    return true;
  }

  uint32_t groupOf(std::vector<uint32_t> rules) {
    if (rules.empty()) return EW_GROUP_NONE;
    auto [it, inserted] = groupIds_.try_emplace(rules, static_cast<uint32_t>(groupRules_.size()));
    if (inserted) groupRules_.push_back(std::move(rules));
    return it->second;
  }

  // Groups (ingress, egress) of the addresses covered by exactly this identity set.
  std::pair<uint32_t, uint32_t> groupsOfSet(const std::vector<uint32_t>& identities) {
    auto cached = setGroups_.find(identities);
    if (cached != setGroups_.end()) return cached->second;
    std::pair<uint32_t, uint32_t> g;
    for (uint8_t dir : {EW_INGRESS, EW_EGRESS}) {
      std::vector<uint32_t> rules;
      for (uint32_t i : identities)
        rules.insert(rules.end(), identityRules_[i][dir].begin(), identityRules_[i][dir].end());
      std::ranges::sort(rules);
      rules.erase(std::unique(rules.begin(), rules.end()), rules.end());
      (dir == EW_INGRESS ? g.first : g.second) = groupOf(std::move(rules));
    }
    setGroups_.emplace(identities, g);
    return g;
  }

  // Cuts the family's address space into intervals of constant (ingress, egress) group, then
  // fills the bucket table and the interval array.
  template <typename A>
  void buildFamily(Family fam) {
    constexpr int kBits = sizeof(A) == 4 ? 32 : 128;
    using Wide = std::conditional_t<kBits == 32, uint64_t, U128>;
    const A kMax = static_cast<A>(~A{0});

    // Boundary events: +identity at a prefix's first address, -identity after its last.
    struct Event {
      A at;
      uint32_t identity;
      int delta;
    };
    std::vector<Event> events;
    std::map<Prefix, bool> distinct;
    for (uint32_t i = 0; i < policy_.identities.size(); i++) {
      const auto& ident = policy_.identities[i];
      for (const Prefix& p : ident.prefixes) {
        if (p.family != fam) continue;
        distinct.emplace(p, true);
        if (identityRules_[i][EW_INGRESS].empty() && identityRules_[i][EW_EGRESS].empty())
          continue;  // an identity no rule names cannot change a verdict
        A first = 0;
        for (int b = 0; b < kBits / 8; b++) first = (first << 8) | p.addr[b];
        A hostMask = p.len == 0 ? kMax : static_cast<A>((Wide{1} << (kBits - p.len)) - 1);
        if (p.len == kBits) hostMask = 0;
        A last = first | hostMask;
        events.push_back({first, i, +1});
        if (last != kMax) events.push_back({static_cast<A>(last + 1), i, -1});
      }
    }
    (fam == Family::V4 ? out_.stats.prefixes4 : out_.stats.prefixes6) = distinct.size();
    std::ranges::sort(events, [](const Event& a, const Event& b) { return a.at < b.at; });

    // Sweep: intervals as (start, ingress group, egress group), merged when equal.
    struct Iv {
      A start;
      uint32_t gin, gout;
    };
    std::vector<Iv> ivs{{0, EW_GROUP_NONE, EW_GROUP_NONE}};
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

    // Buckets: each bucket lists the intervals overlapping it, the first clamped to the
    // bucket's first address. A bucket inside one interval shares an entry per group pair.
    auto& bkt = fam == Family::V4 ? out_.bkt4 : out_.bkt6;
    bkt.assign(EW_BUCKETS, {});
    std::map<std::pair<uint32_t, uint32_t>, uint32_t> shared;
    auto emit = [&](A start, uint32_t gin, uint32_t gout) -> uint32_t {
      if constexpr (kBits == 32) {
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
    };
    constexpr int kShift = kBits - EW_BUCKET_BITS;
    size_t cur = 0;  // interval containing the bucket's first address
    for (uint32_t b = 0; b < EW_BUCKETS; b++) {
      A base = static_cast<A>(static_cast<A>(b) << kShift);
      A lastInBucket = static_cast<A>(base | ((A{1} << kShift) - 1));
      while (cur + 1 < ivs.size() && ivs[cur + 1].start <= base) cur++;
      size_t end = cur + 1;
      while (end < ivs.size() && ivs[end].start <= lastInBucket) end++;
      if (end == cur + 1) {
        auto key = std::make_pair(ivs[cur].gin, ivs[cur].gout);
        auto it = shared.find(key);
        if (it == shared.end()) it = shared.emplace(key, emit(base, key.first, key.second)).first;
        bkt[b] = {it->second, 1};
        continue;
      }
      uint32_t off = emit(base, ivs[cur].gin, ivs[cur].gout);
      for (size_t k = cur + 1; k < end; k++) emit(ivs[k].start, ivs[k].gin, ivs[k].gout);
      bkt[b] = {off, static_cast<uint32_t>(end - cur)};
    }
  }

  // Port intervals per group and protocol slot; identical tables are stored once.
  void buildPortTables() {
    out_.grp.assign(groupRules_.size() * EW_P_COUNT, {});
    std::map<std::vector<uint64_t>, ew_grp> tables;
    for (size_t g = 0; g < groupRules_.size(); g++) {
      for (uint8_t slot : kSlots) {
        // Boundaries where some rule's coverage starts or ends.
        struct Cover {
          uint32_t first, last;
          uint8_t action;
          uint32_t rule;
        };
        std::vector<Cover> covers;
        for (uint32_t id : groupRules_[g]) {
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
  std::vector<std::array<std::vector<uint32_t>, EW_DIRS>> identityRules_;
  std::array<std::vector<uint32_t>, EW_DIRS> anyRules_;
  std::vector<std::vector<uint32_t>> groupRules_;
  std::unordered_map<std::vector<uint32_t>, uint32_t, VecHash> groupIds_;
  std::unordered_map<std::vector<uint32_t>, std::pair<uint32_t, uint32_t>, VecHash> setGroups_;
};

}  // namespace

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
