#include "policy/nft_export.h"

#include <arpa/inet.h>

#include <algorithm>
#include <iterator>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "common/one_line.h"

namespace edgeward::policy {
namespace {

using U128 = unsigned __int128;

constexpr size_t kMaxNftName = 255;     // NFT_NAME_MAXLEN without the NUL
constexpr size_t kMaxNftComment = 128;  // nft refuses longer comments
constexpr size_t kCutIdentity = 50;     // encodes to at most 201 characters

bool isAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

std::string comment(std::string_view text) {
  // Names are [A-Za-z0-9_.-] (the parser checks), so only the length needs care.
  if (text.size() > kMaxNftComment) text = text.substr(0, kMaxNftComment);
  return fmt::format("comment \"{}\"", text);
}

// Inclusive address intervals, in the family's width.
struct Interval {
  U128 first, last;
};

U128 toInt(const std::array<uint8_t, 16>& a, Family f) {
  U128 v = 0;
  for (int i = 0; i < (f == Family::V4 ? 4 : 16); i++) v = (v << 8) | a[i];
  return v;
}

std::string addrText(U128 v, Family f) {
  std::array<uint8_t, 16> a{};
  const int n = f == Family::V4 ? 4 : 16;
  for (int i = n - 1; i >= 0; i--, v >>= 8) a[i] = uint8_t(v);
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(f == Family::V4 ? AF_INET : AF_INET6, a.data(), buf, sizeof buf);
  return buf;
}

// "10.0.0.0/8", "10.0.0.1" (a host), or "10.0.0.0-10.0.0.191" when the interval is no prefix.
std::string elementText(const Interval& iv, Family f) {
  const int bits = f == Family::V4 ? 32 : 128;
  const U128 size = iv.last - iv.first;  // + 1 may overflow for /0
  if (size == 0) return addrText(iv.first, f);
  // A prefix: size + 1 is a power of two and first is aligned to it.
  const U128 span = size + 1;
  const bool whole = bits == 128 ? size == ~U128{0} : size == (U128{1} << 32) - 1;
  if (whole) return fmt::format("{}/0", addrText(0, f));
  if ((span & size) == 0 && (iv.first & size) == 0) {
    int hostBits = 0;
    while ((U128{1} << hostBits) != span) hostBits++;
    return fmt::format("{}/{}", addrText(iv.first, f), bits - hostBits);
  }
  return fmt::format("{}-{}", addrText(iv.first, f), addrText(iv.last, f));
}

// The identity's prefixes of one family as sorted, disjoint, non-adjacent intervals (nft refuses
// overlapping elements in an interval set).
std::vector<Interval> intervals(const Identity& id, Family f) {
  const int bits = f == Family::V4 ? 32 : 128;
  std::vector<Interval> v;
  for (const Prefix& p : id.prefixes) {
    if (p.family != f) continue;
    const U128 first = toInt(p.addr, f);
    const int host = bits - p.len;
    const U128 mask = host == 128 ? ~U128{0} : (U128{1} << host) - 1;
    v.push_back({first, first | mask});
  }
  std::sort(v.begin(), v.end(), [](const Interval& a, const Interval& b) {
    return a.first < b.first || (a.first == b.first && a.last > b.last);
  });
  std::vector<Interval> merged;
  for (const Interval& iv : v) {
    if (!merged.empty()) {
      Interval& back = merged.back();
      const bool touches = back.last == ~U128{0} || iv.first <= back.last + 1;
      if (touches) {
        back.last = std::max(back.last, iv.last);
        continue;
      }
    }
    merged.push_back(iv);
  }
  return merged;
}

// Port ranges merged into disjoint ones.
std::vector<PortRange> mergePorts(std::vector<PortRange> v) {
  std::sort(v.begin(), v.end(), [](const PortRange& a, const PortRange& b) {
    return a.first < b.first || (a.first == b.first && a.last > b.last);
  });
  std::vector<PortRange> out;
  for (const PortRange& r : v) {
    if (!out.empty() && uint32_t(r.first) <= uint32_t(out.back().last) + 1) {
      out.back().last = std::max(out.back().last, r.last);
      continue;
    }
    out.push_back(r);
  }
  return out;
}

bool fullRange(const std::vector<PortRange>& merged) {
  return merged.size() == 1 && merged[0].first == 0 && merged[0].last == 65535;
}

std::string portText(const PortRange& r) {
  return r.first == r.last ? fmt::format("{}", r.first) : fmt::format("{}-{}", r.first, r.last);
}

// What a rule says about layer 4, per protocol.
struct L4 {
  bool all = false;                 // no ports, or protocol any: no layer-4 match at all
  std::vector<PortRange> tcp, udp;  // merged; empty = not covered
  bool icmp = false, icmpv6 = false;
};

L4 layer4(const Rule& r) {
  L4 l;
  if (r.ports.empty()) {
    l.all = true;
    return l;
  }
  std::vector<PortRange> tcp, udp;
  for (const PortSpec& s : r.ports) {
    switch (s.protocol) {
      case Protocol::Any:
        l.all = true;
        break;
      case Protocol::Tcp:
        tcp.push_back(s.range);
        break;
      case Protocol::Udp:
        udp.push_back(s.range);
        break;
      case Protocol::Icmp:
        l.icmp = true;
        break;
      case Protocol::Icmpv6:
        l.icmpv6 = true;
        break;
    }
  }
  l.tcp = mergePorts(std::move(tcp));
  l.udp = mergePorts(std::move(udp));
  return l;
}

std::string portMatch(std::string_view proto, const std::vector<PortRange>& ports) {
  if (fullRange(ports)) return fmt::format("meta l4proto {}", proto);
  if (ports.size() == 1) return fmt::format("{} dport {}", proto, portText(ports[0]));
  std::vector<std::string> items;
  for (const PortRange& r : ports) items.push_back(portText(r));
  return fmt::format("{} dport {{ {} }}", proto, fmt::join(items, ", "));
}

// Layer-4 matches of a whole (unfragmented) packet; "" = none needed.
std::vector<std::string> l4Matches(const L4& l) {
  if (l.all) return {""};
  std::vector<std::string> m;
  if (!l.tcp.empty()) m.push_back(portMatch("tcp", l.tcp));
  if (!l.udp.empty()) m.push_back(portMatch("udp", l.udp));
  if (l.icmp) m.push_back("meta l4proto icmp");
  if (l.icmpv6) m.push_back("meta l4proto ipv6-icmp");
  return m;
}

std::string protoSet(const std::vector<std::string_view>& protos) {
  if (protos.size() == 1) return fmt::format("meta l4proto {}", protos[0]);
  return fmt::format("meta l4proto {{ {} }}", fmt::join(protos, ", "));
}

class Exporter {
 public:
  Exporter(const Policy& p, const NftOptions& o) : policy_(p), opt_(o) {}

  std::string run() {
    const bool netdev = !opt_.device.empty();
    const std::string family = netdev ? "netdev" : "inet";
    line("# edgeward policy \"{}\"{} as an nftables ruleset (edgeward policy export).",
         oneLine(policy_.name),
         policy_.source.empty() ? "" : fmt::format(" from {}", oneLine(policy_.source)));
    line(
        "# Same verdicts as the edgeward firewall; differences: docs/policy.md, "
        "\"Export to nftables\".");
    if (netdev)
      line(
          "# netdev hooks see frames before connection tracking: replies are judged by the "
          "rules.");
    if (policy_.synFlood)
      line("# Not exported: synFlood ({}/s burst {} per source); see docs/policy.md.",
           policy_.synFlood->perSourcePps, policy_.synFlood->burst);
    line("# `nft -f` on this file replaces table {} {} and nothing else.", family, opt_.table);
    line("table {} {} {{}}", family, opt_.table);
    line("delete table {} {}", family, opt_.table);
    line("table {} {} {{", family, opt_.table);
    sets();
    chain("input", true, netdev);
    chain("output", false, netdev);
    line("}}");
    return std::move(out_);
  }

 private:
  template <typename... Args>
  void line(fmt::format_string<Args...> f, Args&&... args) {
    fmt::format_to(std::back_inserter(out_), f, std::forward<Args>(args)...);
    out_ += '\n';
  }

  void sets() {
    for (const Identity& id : policy_.identities) {
      for (Family f : {Family::V4, Family::V6}) {
        auto ivs = intervals(id, f);
        if (ivs.empty()) continue;
        const std::string name = nftSetName(id.name, f);
        setOf_[{id.name, f}] = name;
        line("\tset {} {{", name);
        line("\t\ttype {}", f == Family::V4 ? "ipv4_addr" : "ipv6_addr");
        line("\t\tflags interval");
        line("\t\t{}", comment(fmt::format("identity {}", id.name)));
        line("\t\telements = {{");
        for (size_t i = 0; i < ivs.size(); i++)
          line("\t\t\t{}{}", elementText(ivs[i], f), i + 1 < ivs.size() ? "," : "");
        line("\t\t}}");
        line("\t}}");
        out_ += '\n';
      }
    }
  }

  // Address matches of a rule's peers; {""} for any; empty when no peer has an address.
  std::vector<std::string> addressMatches(const Rule& r, bool ingress) const {
    if (std::find(r.peers.begin(), r.peers.end(), kAnyIdentity) != r.peers.end()) return {""};
    const char* dir = ingress ? "saddr" : "daddr";
    std::vector<std::string> m;
    for (const std::string& peer : r.peers) {
      for (Family f : {Family::V4, Family::V6}) {
        auto it = setOf_.find({peer, f});
        if (it == setOf_.end()) continue;
        m.push_back(fmt::format("{} {} @{}", f == Family::V4 ? "ip" : "ip6", dir, it->second));
      }
    }
    return m;
  }

  void rule(std::string_view indent, const std::string& addr, const std::string& l4,
            std::string_view verdict, std::string_view note) {
    std::string match = addr;
    if (!l4.empty()) match += match.empty() ? l4 : " " + l4;
    if (!match.empty()) match += ' ';
    line("{}{}counter {} {}", indent, match, verdict, comment(note));
  }

  // Deny rules, then allow rules, of one direction: with drop terminating first, "a deny rule
  // matches" wins over "an allow rule matches", whatever the order in the file.
  std::vector<const Rule*> ordered(bool ingress) const {
    const auto& rules = ingress ? policy_.ingress : policy_.egress;
    std::vector<const Rule*> v;
    for (Action a : {Action::Deny, Action::Allow})
      for (const Rule& r : rules)
        if (r.action == a) v.push_back(&r);
    return v;
  }

  void chain(std::string_view name, bool ingress, bool netdev) {
    const std::string frag = fmt::format("{}_fragment", name);
    line("\tchain {} {{", name);
    if (netdev)
      line("\t\ttype filter hook {} device \"{}\" priority filter; policy {};",
           ingress ? "ingress" : "egress", opt_.device, nftVerdict(policy_.defaultAction));
    else
      line("\t\ttype filter hook {} priority filter; policy {};", name,
           nftVerdict(policy_.defaultAction));
    if (netdev)
      line("\t\tmeta protocol arp counter accept comment \"host-essential: ARP\"");
    else
      line("\t\tct state established,related counter accept comment \"established\"");
    // Fragments are judged without ports (goto: what the fragment chain does not decide, the
    // chain policy does).
    line("\t\tip frag-off & 0x3fff != 0 goto {}", frag);
    line("\t\tfrag more-fragments 1 goto {}", frag);
    line("\t\tfrag frag-off != 0 goto {}", frag);
    line(
        "\t\ticmpv6 type {{ 133, 134, 135, 136 }} ip6 hoplimit 255 counter accept comment "
        "\"host-essential: neighbour discovery\"");
    line(
        "\t\ticmpv6 type {{ 130, 131, 132, 143 }} ip6 hoplimit 1 counter accept comment "
        "\"host-essential: MLD\"");
    for (const Rule* r : ordered(ingress)) {
      const auto addrs = addressMatches(*r, ingress);
      const auto l4s = l4Matches(layer4(*r));
      for (const auto& a : addrs)
        for (const auto& l : l4s) rule("\t\t", a, l, nftVerdict(r->action), r->name);
    }
    line("\t}}");
    out_ += '\n';

    // A fragment may match a rule fully (every port of its protocol) or partially (some ports).
    // Walking the rules best first (deny, then allow, each in file order), the first rule it
    // matches at all decides: fully, with the rule's action; partially, the verdict would
    // depend on the port, so it drops (edgeward: reason "fragment").
    line("\tchain {} {{", frag);
    for (const Rule* r : ordered(ingress)) {
      const L4 l = layer4(*r);
      std::vector<std::string_view> full, partial;
      if (!l.all) {
        if (!l.tcp.empty()) (fullRange(l.tcp) ? full : partial).push_back("tcp");
        if (!l.udp.empty()) (fullRange(l.udp) ? full : partial).push_back("udp");
        if (l.icmp) full.push_back("icmp");
        if (l.icmpv6) full.push_back("ipv6-icmp");
      }
      constexpr std::string_view kFragNote = " (port-dependent fragment)";
      const std::string fragNote = fmt::format(
          "{}{}", std::string_view(r->name).substr(0, kMaxNftComment - kFragNote.size()),
          kFragNote);
      for (const auto& a : addressMatches(*r, ingress)) {
        if (l.all) {
          rule("\t\t", a, "", nftVerdict(r->action), r->name);
          continue;
        }
        if (!full.empty()) rule("\t\t", a, protoSet(full), nftVerdict(r->action), r->name);
        if (!partial.empty()) rule("\t\t", a, protoSet(partial), "drop", fragNote);
      }
    }
    line("\t}}");
    if (ingress) out_ += '\n';
  }

  static std::string_view nftVerdict(Action a) { return a == Action::Allow ? "accept" : "drop"; }

  struct KeyHash {
    size_t operator()(const std::pair<std::string, Family>& k) const {
      return std::hash<std::string>()(k.first) * 3 + size_t(k.second);
    }
  };

  const Policy& policy_;
  const NftOptions& opt_;
  std::string out_;
  std::unordered_map<std::pair<std::string, Family>, std::string, KeyHash> setOf_;
};

bool validDevice(std::string_view d) {
  if (d.empty() || d.size() > 15 || d == "." || d == "..") return false;
  return std::all_of(d.begin(), d.end(), [](char c) {
    return isAlnum(c) || c == '_' || c == '.' || c == '@' || c == '+' || c == '=' || c == '-';
  });
}

bool validTable(std::string_view t) {
  if (t.empty() || t.size() > 64 || (!isAlnum(t[0]) && t[0] != '_') || (t[0] >= '0' && t[0] <= '9'))
    return false;
  return std::all_of(t.begin(), t.end(), [](char c) { return isAlnum(c) || c == '_'; });
}

}  // namespace

Result<void> checkNftOptions(const NftOptions& o) {
  if (!validTable(o.table))
    return fail(ErrorCode::InvalidArgument,
                fmt::format("table name \"{}\": use 1-64 letters, digits and '_', not starting "
                            "with a digit",
                            o.table));
  if (!o.device.empty() && !validDevice(o.device))
    return fail(ErrorCode::InvalidArgument,
                fmt::format("device name \"{}\": use 1-15 letters, digits or _.@+=-", o.device));
  return {};
}

namespace {

std::string encodeName(std::string_view identity) {
  std::string s;
  s.reserve(identity.size() + 8);
  if (!identity.empty() && identity[0] >= '0' && identity[0] <= '9') s += '_';
  for (char c : identity) {
    if (isAlnum(c)) {
      s += c;
    } else if (c == '_') {
      s += "__";
    } else if (c == '.') {
      s += "_d";
    } else if (c == '-') {
      s += "_h";
    } else {
      s += fmt::format("_u{:02x}", uint8_t(c));  // not a valid identity name; still distinct
    }
  }
  return s;
}

}  // namespace

std::string nftSetName(std::string_view identity, Family family) {
  const std::string_view suffix = family == Family::V4 ? "_v4" : "_v6";
  std::string s = encodeName(identity);
  if (s.size() + suffix.size() > kMaxNftName) {
    // A cut name ends in "_x<hash>"; "_x" follows a whole escape and appears in no uncut name.
    uint64_t h = 1469598103934665603ull;
    for (char c : identity) h = (h ^ uint8_t(c)) * 1099511628211ull;
    s = fmt::format("{}_x{:016x}", encodeName(identity.substr(0, kCutIdentity)), h);
  }
  s += suffix;
  return s;
}

std::string exportNft(const Policy& policy, const NftOptions& options) {
  return Exporter(policy, options).run();
}

}  // namespace edgeward::policy
