#include "policy/patch.h"

#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/yaml_reader.h"

namespace edgeward::policy {
namespace {

std::unexpected<Error> bad(std::string msg) {
  return fail(ErrorCode::InvalidArgument, "patch: " + std::move(msg));
}

// A double-quoted YAML scalar.
std::string yamlQuoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// A prefix as a list item: plain unless it starts with ':' ("::/0").
std::string itemText(const Prefix& p) {
  std::string s = p.str();
  return s.starts_with(':') ? yamlQuoted(s) : s;
}

std::string renderPorts(const std::vector<PortSpec>& ports) {
  std::string out;
  for (const PortSpec& s : ports) {
    out += fmt::format("        - {{protocol: {}", protocolName(s.protocol));
    if (s.protocol == Protocol::Tcp || s.protocol == Protocol::Udp)
      out += s.range.first == s.range.last
                 ? fmt::format(", port: {}", s.range.first)
                 : fmt::format(", port: \"{}-{}\"", s.range.first, s.range.last);
    out += "}\n";
  }
  return out;
}

}  // namespace

Result<std::vector<PrefixChange>> planPatch(const Policy& p,
                                            std::span<const IdentityPatch> patches) {
  std::vector<PrefixChange> out;
  std::set<std::string> patched;
  for (const IdentityPatch& ip : patches) {
    const auto it = std::ranges::find_if(p.identities,
                                         [&](const Identity& i) { return i.name == ip.identity; });
    if (ip.identity == kAnyIdentity)
      return bad("\"any\" is built in and matches every address; it has no prefixes to patch");
    if (it == p.identities.end()) {
      std::vector<std::string_view> names;
      for (const Identity& i : p.identities) names.push_back(i.name);
      return bad(fmt::format("unknown identity {}{}", yaml::quoted(ip.identity),
                             yaml::didYouMean(yaml::suggest(ip.identity, names))));
    }
    if (!patched.insert(ip.identity).second)
      return bad(fmt::format("identity \"{}\" is patched twice in one request", ip.identity));
    if (ip.add.empty() && ip.remove.empty())
      return bad(fmt::format("identity \"{}\": nothing to add or remove", ip.identity));
    const std::set<Prefix> has(it->prefixes.begin(), it->prefixes.end());
    std::map<Prefix, bool> seen;  // -> added
    auto parse = [&](const std::string& text, bool add) -> Result<Prefix> {
      const char* verb = add ? "add" : "remove";
      auto prefix = parsePrefix(text);
      if (!prefix)
        return bad(
            fmt::format("identity \"{}\": {} {}", ip.identity, verb, prefix.error().message()));
      if (auto s = seen.find(*prefix); s != seen.end())
        return bad(fmt::format("identity \"{}\": {} is {}", ip.identity, prefix->str(),
                               s->second == add ? fmt::format("given twice to {}", verb)
                                                : std::string("both added and removed")));
      seen.emplace(*prefix, add);
      if (add && has.contains(*prefix))
        return bad(fmt::format("identity \"{}\": add {}: already one of its prefixes", ip.identity,
                               prefix->str()));
      if (!add && !has.contains(*prefix))
        return bad(fmt::format("identity \"{}\": remove {}: not one of its prefixes", ip.identity,
                               prefix->str()));
      return *prefix;
    };
    for (const auto& text : ip.remove) {
      EW_TRY(prefix, parse(text, false));
      out.push_back({ip.identity, *prefix, false});
    }
    for (const auto& text : ip.add) {
      EW_TRY(prefix, parse(text, true));
      out.push_back({ip.identity, *prefix, true});
    }
    if (ip.remove.size() >= it->prefixes.size() + ip.add.size())
      return bad(fmt::format(
          "identity \"{}\" would have no prefixes left (an identity lists at least one; remove "
          "it from the policy file instead)",
          ip.identity));
  }
  if (out.empty()) return bad("nothing to change (give an identity and prefixes to add or remove)");
  return out;
}

std::string applyPatch(Policy& p, std::string_view text, std::span<const PrefixChange> changes) {
  std::unordered_map<std::string_view, size_t> indexOf;
  for (size_t i = 0; i < p.identities.size(); i++) indexOf[p.identities[i].name] = i;
  std::map<size_t, std::pair<std::set<Prefix>, std::vector<Prefix>>> edits;  // removed, added
  for (const PrefixChange& c : changes) {
    auto& e = edits[indexOf.at(c.identity)];
    if (c.add)
      e.second.push_back(c.prefix);
    else
      e.first.insert(c.prefix);
  }

  bool inPlace = !text.empty();
  for (const Identity& id : p.identities) inPlace = inPlace && id.source;

  // New lists, and the new text of each patched list.
  std::map<uint32_t, std::pair<size_t, std::string>> replaced;  // list begin -> identity, text
  for (auto& [i, e] : edits) {
    Identity& id = p.identities[i];
    std::vector<Prefix> prefixes;
    std::vector<std::string> items;
    for (size_t k = 0; k < id.prefixes.size(); k++) {
      if (e.first.contains(id.prefixes[k])) continue;
      prefixes.push_back(id.prefixes[k]);
      if (inPlace) {
        auto [b, end] = id.source->items[k];
        items.emplace_back(text.substr(b, end - b));
      }
    }
    for (const Prefix& a : e.second) {
      prefixes.push_back(a);
      items.push_back(itemText(a));
    }
    id.prefixes = std::move(prefixes);
    if (!inPlace) continue;
    // Rebuild the list and note where each item lands, relative to the list's start.
    ListSource& src = *id.source;
    std::string list = src.flow ? "[" : "";
    const std::string sep = src.flow ? ", " : "\n" + std::string(src.column, ' ');
    src.items.clear();
    for (size_t k = 0; k < items.size(); k++) {
      if (k) list += sep;
      if (!src.flow) list += "- ";
      src.items.push_back({uint32_t(list.size()), uint32_t(list.size() + items[k].size())});
      list += items[k];
    }
    if (src.flow) list += "]";
    replaced.emplace(src.begin, std::pair{i, std::move(list)});
  }
  if (!inPlace) {
    for (Identity& id : p.identities) id.source.reset();
    return renderPolicy(p);
  }

  // Splice, in text order, and move every later position by what the text grew or shrank.
  std::string out;
  out.reserve(text.size() + 64 * changes.size());
  std::vector<std::pair<uint32_t, int64_t>> shifts;  // from this old offset on, add this
  uint32_t at = 0;
  int64_t delta = 0;
  for (auto& [begin, what] : replaced) {
    auto& [i, list] = what;
    ListSource& src = *p.identities[i].source;
    out.append(text.substr(at, begin - at));
    const uint32_t newBegin = uint32_t(out.size());
    out += list;
    at = src.end;
    delta += int64_t(list.size()) - int64_t(src.end - src.begin);
    shifts.push_back({src.end, delta});
    for (auto& [b, e] : src.items) {
      b += newBegin;
      e += newBegin;
    }
    src.begin = newBegin;
    src.end = uint32_t(out.size());
  }
  out.append(text.substr(at));
  for (size_t i = 0; i < p.identities.size(); i++) {
    if (edits.contains(i)) continue;
    ListSource& src = *p.identities[i].source;
    auto s = std::ranges::upper_bound(shifts, src.begin, {}, [](const auto& x) { return x.first; });
    if (s == shifts.begin()) continue;
    const int64_t d = std::prev(s)->second;
    src.begin = uint32_t(src.begin + d);
    src.end = uint32_t(src.end + d);
    for (auto& [b, e] : src.items) {
      b = uint32_t(b + d);
      e = uint32_t(e + d);
    }
  }
  return out;
}

std::string renderPolicy(const Policy& p) {
  std::string out = fmt::format(
      "apiVersion: edgeward.io/v1\nkind: Policy\nmetadata:\n  name: {}\nspec:\n  defaultAction: "
      "{}\n",
      yamlQuoted(p.name), actionName(p.defaultAction));
  if (!p.identities.empty()) out += "  identities:\n";
  for (const Identity& id : p.identities) {
    out += fmt::format("    {}:\n", yamlQuoted(id.name));
    for (const Prefix& pr : id.prefixes) out += fmt::format("      - {}\n", itemText(pr));
  }
  for (bool ingress : {true, false}) {
    const auto& rules = ingress ? p.ingress : p.egress;
    if (rules.empty()) continue;
    out += ingress ? "  ingress:\n" : "  egress:\n";
    for (const Rule& r : rules) {
      std::vector<std::string> peers;
      for (const auto& peer : r.peers) peers.push_back(yamlQuoted(peer));
      out += fmt::format("    - name: {}\n      {}: [{}]\n", yamlQuoted(r.name),
                         ingress ? "from" : "to", fmt::join(peers, ", "));
      if (!r.ports.empty()) out += "      ports:\n" + renderPorts(r.ports);
      out += fmt::format("      action: {}\n", actionName(r.action));
    }
  }
  if (p.synFlood)
    out += fmt::format("  synFlood: {{perSourcePps: {}, burst: {}}}\n", p.synFlood->perSourcePps,
                       p.synFlood->burst);
  return out;
}

PolicyDiff diffOf(std::span<const PrefixChange> changes) {
  PolicyDiff d;
  for (const PrefixChange& c : changes) {
    auto it = std::ranges::find_if(d.identityChanges,
                                   [&](const IdentityChange& ic) { return ic.name == c.identity; });
    if (it == d.identityChanges.end()) {
      d.identityChanges.push_back({c.identity, {}, {}});
      it = std::prev(d.identityChanges.end());
    }
    (c.add ? it->added : it->removed).push_back(c.prefix);
  }
  return d;
}

}  // namespace edgeward::policy
