#include "policy/diff.h"

#include <algorithm>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace edgeward::policy {
namespace {

// Prefixes shown per list in renderDiff before "... and N more".
constexpr size_t kShownPrefixes = 10;

// Sorting 100k prefixes is cheap; touching fresh memory is not (page faults dominate on small
// VMs), so the sort keys are small: an IPv4 prefix is one 64-bit word holding address, length
// and its index in the identity's list.
constexpr int kIndexBits = 26;  // a 64 MiB policy file holds fewer prefixes than 2^26
constexpr uint64_t kIndexMask = (uint64_t{1} << kIndexBits) - 1;

struct Key6 {
  uint64_t hi, lo;
  uint32_t len, index;
  auto operator<=>(const Key6&) const = default;  // address, length, index
  bool same(const Key6& o) const { return hi == o.hi && lo == o.lo && len == o.len; }
};

// An identity's prefixes, sorted like Prefix::operator<=> (IPv4 first, address, length), without
// duplicates.
struct Sorted {
  std::vector<uint64_t> v4;  // address << 32 | length << 26 | index
  std::vector<Key6> v6;
};

Sorted sortedKeys(const std::vector<Prefix>& v) {
  Sorted s;
  size_t n4 = 0;
  for (const Prefix& p : v) n4 += p.family == Family::V4;
  s.v4.reserve(n4);
  s.v6.reserve(v.size() - n4);
  for (uint32_t i = 0; i < v.size(); i++) {
    const auto& a = v[i].addr;
    if (v[i].family == Family::V4) {
      const uint64_t addr =
          uint64_t(a[0]) << 24 | uint64_t(a[1]) << 16 | uint64_t(a[2]) << 8 | a[3];
      s.v4.push_back(addr << 32 | uint64_t(v[i].len) << kIndexBits | i);
    } else {
      Key6 k{0, 0, v[i].len, i};
      for (int b = 0; b < 8; b++) k.hi = k.hi << 8 | a[b];
      for (int b = 8; b < 16; b++) k.lo = k.lo << 8 | a[b];
      s.v6.push_back(k);
    }
  }
  std::sort(s.v4.begin(), s.v4.end());
  s.v4.erase(
      std::unique(s.v4.begin(), s.v4.end(),
                  [](uint64_t x, uint64_t y) { return (x >> kIndexBits) == (y >> kIndexBits); }),
      s.v4.end());
  std::sort(s.v6.begin(), s.v6.end());
  s.v6.erase(
      std::unique(s.v6.begin(), s.v6.end(), [](const Key6& x, const Key6& y) { return x.same(y); }),
      s.v6.end());
  return s;
}

std::vector<Prefix> sortedUnique(const std::vector<Prefix>& v) {
  Sorted s = sortedKeys(v);
  std::vector<Prefix> out;
  out.reserve(s.v4.size() + s.v6.size());
  for (uint64_t k : s.v4) out.push_back(v[k & kIndexMask]);
  for (const Key6& k : s.v6) out.push_back(v[k.index]);
  return out;
}

// Indexes (into `a`'s list) of the keys of `a` that `b` lacks; both sorted.
template <typename K, typename Less, typename Same, typename Index>
void missing(const std::vector<K>& a, const std::vector<K>& b, Less less, Same same, Index index,
             std::vector<uint32_t>& out) {
  size_t j = 0;
  for (const K& k : a) {
    while (j < b.size() && less(b[j], k)) j++;
    if (j < b.size() && same(b[j], k)) continue;
    out.push_back(index(k));
  }
}

// Prefixes of `a` not in `b`, sorted.
std::vector<Prefix> minus(const Sorted& a, const std::vector<Prefix>& aPrefixes, const Sorted& b) {
  std::vector<uint32_t> idx;
  missing(
      a.v4, b.v4, [](uint64_t x, uint64_t y) { return (x >> kIndexBits) < (y >> kIndexBits); },
      [](uint64_t x, uint64_t y) { return (x >> kIndexBits) == (y >> kIndexBits); },
      [](uint64_t k) { return uint32_t(k & kIndexMask); }, idx);
  missing(
      a.v6, b.v6,
      [](const Key6& x, const Key6& y) {
        return std::tie(x.hi, x.lo, x.len) < std::tie(y.hi, y.lo, y.len);
      },
      [](const Key6& x, const Key6& y) { return x.same(y); }, [](const Key6& k) { return k.index; },
      idx);
  std::vector<Prefix> out;
  out.reserve(idx.size());
  for (uint32_t i : idx) out.push_back(aPrefixes[i]);
  return out;
}

std::string renderPort(const PortSpec& s) {
  std::string_view proto = protocolName(s.protocol);
  if (s.range.first == 0 && s.range.last == 65535) return std::string(proto);
  if (s.range.first == s.range.last) return fmt::format("{}/{}", proto, s.range.first);
  return fmt::format("{}/{}-{}", proto, s.range.first, s.range.last);
}

std::string renderSynFlood(const std::optional<SynFlood>& s) {
  if (!s) return "off";
  return fmt::format("{}/s burst {}", s->perSourcePps, s->burst);
}

std::string plural(size_t n, std::string_view word) {
  return fmt::format("{} {}{}", n, word, n == 1 ? "" : "es");
}

void appendPrefixes(std::string& out, char sign, const std::vector<Prefix>& v) {
  for (size_t i = 0; i < v.size() && i < kShownPrefixes; i++)
    fmt::format_to(std::back_inserter(out), " {}{}", sign, v[i].str());
  if (v.size() > kShownPrefixes)
    fmt::format_to(std::back_inserter(out), " ... and {} more", v.size() - kShownPrefixes);
}

void diffRules(const std::vector<Rule>& before, const std::vector<Rule>& after, bool ingress,
               PolicyDiff& d) {
  const std::string dir = ingress ? "ingress" : "egress";
  std::unordered_map<std::string_view, const Rule*> old;
  old.reserve(before.size());
  for (const Rule& r : before) old.emplace(r.name, &r);
  std::unordered_map<std::string_view, bool> seen;
  seen.reserve(after.size());
  for (const Rule& r : after) {
    seen.emplace(r.name, true);
    auto it = old.find(r.name);
    if (it == old.end()) {
      d.rulesAdded.push_back({r.name, dir, "", renderRule(r, ingress)});
      continue;
    }
    const Rule& o = *it->second;
    if (o.peers == r.peers && o.ports == r.ports && o.action == r.action) continue;
    d.rulesChanged.push_back({r.name, dir, renderRule(o, ingress), renderRule(r, ingress)});
  }
  for (const Rule& r : before)
    if (!seen.contains(r.name)) d.rulesRemoved.push_back({r.name, dir, renderRule(r, ingress), ""});
}

template <typename... Args>
void line(std::string& out, fmt::format_string<Args...> f, Args&&... args) {
  fmt::format_to(std::back_inserter(out), f, std::forward<Args>(args)...);
  out += '\n';
}

}  // namespace

bool PolicyDiff::empty() const {
  return identitiesAdded.empty() && identitiesRemoved.empty() && identityChanges.empty() &&
         rulesAdded.empty() && rulesRemoved.empty() && rulesChanged.empty() &&
         defaultActionBefore == defaultActionAfter && synFloodBefore == synFloodAfter;
}

size_t PolicyDiff::prefixesAdded() const {
  size_t n = 0;
  for (const auto& c : identityChanges) n += c.added.size();
  return n;
}

size_t PolicyDiff::prefixesRemoved() const {
  size_t n = 0;
  for (const auto& c : identityChanges) n += c.removed.size();
  return n;
}

std::string renderRule(const Rule& r, bool ingress) {
  std::string out = fmt::format("{} {} [{}]", actionName(r.action), ingress ? "from" : "to",
                                fmt::join(r.peers, ","));
  if (r.ports.empty()) {
    out += " all";
    return out;
  }
  out += ' ';
  for (size_t i = 0; i < r.ports.size(); i++) {
    if (i) out += ',';
    out += renderPort(r.ports[i]);
  }
  return out;
}

PolicyDiff diff(const Policy& before, const Policy& after) {
  PolicyDiff d;

  std::unordered_map<std::string_view, const Identity*> old;
  old.reserve(before.identities.size());
  for (const Identity& id : before.identities) old.emplace(id.name, &id);
  std::unordered_map<std::string_view, bool> seen;
  seen.reserve(after.identities.size());
  for (const Identity& id : after.identities) {
    seen.emplace(id.name, true);
    auto it = old.find(id.name);
    if (it == old.end()) {
      d.identitiesAdded.push_back(id.name);
      d.identityChanges.push_back({id.name, sortedUnique(id.prefixes), {}});
      continue;
    }
    const Identity& o = *it->second;
    if (o.prefixes == id.prefixes) continue;  // the common case, without sorting
    const Sorted a = sortedKeys(id.prefixes), b = sortedKeys(o.prefixes);
    IdentityChange c{id.name, minus(a, id.prefixes, b), minus(b, o.prefixes, a)};
    if (c.added.empty() && c.removed.empty()) continue;  // reordered only
    d.identityChanges.push_back(std::move(c));
  }
  for (const Identity& id : before.identities) {
    if (seen.contains(id.name)) continue;
    d.identitiesRemoved.push_back(id.name);
    d.identityChanges.push_back({id.name, {}, sortedUnique(id.prefixes)});
  }

  diffRules(before.ingress, after.ingress, true, d);
  diffRules(before.egress, after.egress, false, d);

  d.defaultActionBefore = actionName(before.defaultAction);
  d.defaultActionAfter = actionName(after.defaultAction);
  d.synFloodBefore = renderSynFlood(before.synFlood);
  d.synFloodAfter = renderSynFlood(after.synFlood);
  return d;
}

std::string renderDiff(const PolicyDiff& d) {
  if (d.empty()) return "no changes\n";
  std::string out;
  const std::unordered_set<std::string_view> added(d.identitiesAdded.begin(),
                                                   d.identitiesAdded.end());
  const std::unordered_set<std::string_view> removed(d.identitiesRemoved.begin(),
                                                     d.identitiesRemoved.end());
  for (const IdentityChange& c : d.identityChanges) {
    if (added.contains(c.name)) {
      line(out, "+ identity {} ({})", c.name, plural(c.added.size(), "prefix"));
    } else if (removed.contains(c.name)) {
      line(out, "- identity {} ({})", c.name, plural(c.removed.size(), "prefix"));
    } else {
      std::string text = fmt::format("~ identity {}:", c.name);
      appendPrefixes(text, '+', c.added);
      appendPrefixes(text, '-', c.removed);
      line(out, "{}", text);
    }
  }
  for (const RuleChange& r : d.rulesAdded)
    line(out, "+ rule {} ({}): {}", r.name, r.direction, r.after);
  for (const RuleChange& r : d.rulesRemoved)
    line(out, "- rule {} ({}): {}", r.name, r.direction, r.before);
  for (const RuleChange& r : d.rulesChanged)
    line(out, "~ rule {} ({}): {} -> {}", r.name, r.direction, r.before, r.after);
  if (d.defaultActionBefore != d.defaultActionAfter)
    line(out, "~ defaultAction: {} -> {}", d.defaultActionBefore, d.defaultActionAfter);
  if (d.synFloodBefore != d.synFloodAfter)
    line(out, "~ synFlood: {} -> {}", d.synFloodBefore, d.synFloodAfter);
  return out;
}

}  // namespace edgeward::policy
