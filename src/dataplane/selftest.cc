#include "dataplane/selftest.h"

#include <arpa/inet.h>

#include <algorithm>
#include <set>

#include <fmt/format.h>

namespace edgeward::dataplane {
namespace {

// The local end of every packet: documentation addresses (RFC 5737, RFC 3849). The program
// decides by the peer address only.
constexpr std::array<uint8_t, 16> kLocal4 = {192, 0, 2, 1};
constexpr std::array<uint8_t, 16> kLocal6 = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
                                             0,    0,    0,    0,    0, 0, 0, 1};

void put16(std::vector<uint8_t>& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}

uint32_t sum16(const uint8_t* p, size_t n, uint32_t acc = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) acc += uint32_t{p[i]} << 8 | p[i + 1];
  if (n & 1) acc += uint32_t{p[n - 1]} << 8;
  return acc;
}

uint16_t fold(uint32_t acc) {
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<uint16_t>(~acc);
}

std::string addrText(bool v6, const std::array<uint8_t, 16>& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(v6 ? AF_INET6 : AF_INET, a.data(), buf, sizeof buf);
  return buf;
}

std::array<uint8_t, 16> v4Bytes(uint32_t hostOrder) {
  return {static_cast<uint8_t>(hostOrder >> 24), static_cast<uint8_t>(hostOrder >> 16),
          static_cast<uint8_t>(hostOrder >> 8), static_cast<uint8_t>(hostOrder)};
}

std::array<uint8_t, 16> v6Bytes(uint64_t hi, uint64_t lo) {
  std::array<uint8_t, 16> a{};
  for (int i = 0; i < 8; i++) {
    a[i] = static_cast<uint8_t>(hi >> (56 - 8 * i));
    a[8 + i] = static_cast<uint8_t>(lo >> (56 - 8 * i));
  }
  return a;
}

// Up to n items of v, evenly spread, keeping the order.
template <typename T>
std::vector<T> spread(const std::vector<T>& v, size_t n) {
  if (v.size() <= n) return v;
  std::vector<T> out;
  for (size_t i = 0; i < n; i++) out.push_back(v[i * v.size() / n]);
  return out;
}

// Peer addresses: the start of each interval whose group is identity-specific in either
// direction, then the others (the "no identity" groups), up to `limit`.
template <typename Iv, typename Addr>
std::vector<std::array<uint8_t, 16>> pickAddresses(const std::vector<Iv>& ivs, Addr addr,
                                                   size_t limit) {
  std::vector<std::array<uint8_t, 16>> specific, other;
  for (const auto& iv : ivs) {
    bool s = iv.grp[EW_INGRESS] >= EW_GROUP_FIRST || iv.grp[EW_EGRESS] >= EW_GROUP_FIRST;
    (s ? specific : other).push_back(addr(iv));
  }
  auto out = spread(specific, limit > 2 ? limit - 2 : limit);
  for (const auto& a : spread(other, limit - out.size())) out.push_back(a);
  return out;
}

}  // namespace

std::string describe(const ExpectedVerdict& v) {
  std::string s = fmt::format("{} {}", v.pass ? "pass" : "drop", policy::reasonName(v.reason));
  if (v.rule == kOtherRule) return s + " (another rule)";
  if (v.rule != EW_RULE_NONE) s += fmt::format(" (rule {})", v.rule);
  return s;
}

void buildFrame(SelfTestPacket& p) {
  const size_t l3 = 14, ipLen = p.v6 ? 40 : 20, l4 = l3 + ipLen;
  const bool icmp = p.proto == 1 || p.proto == 58;
  const size_t l4Len = p.proto == 6 ? 20 : 8;
  const size_t payload = p.proto == 6 ? 0 : 8;
  std::vector<uint8_t> f(l4 + l4Len + payload);
  // Ethernet: locally administered addresses, then the ethertype.
  const uint8_t macs[12] = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01};
  std::copy(std::begin(macs), std::end(macs), f.begin());
  put16(f, 12, p.v6 ? 0x86dd : 0x0800);
  const size_t ipPayload = l4Len + payload;
  if (p.v6) {
    f[l3] = 0x60;
    put16(f, l3 + 4, static_cast<uint16_t>(ipPayload));
    f[l3 + 6] = p.proto;
    f[l3 + 7] = p.hopLimit;
    std::copy(p.src.begin(), p.src.end(), f.begin() + l3 + 8);
    std::copy(p.dst.begin(), p.dst.end(), f.begin() + l3 + 24);
  } else {
    f[l3] = 0x45;
    put16(f, l3 + 2, static_cast<uint16_t>(ipLen + ipPayload));
    put16(f, l3 + 6, 0x4000);  // DF
    f[l3 + 8] = p.hopLimit;
    f[l3 + 9] = p.proto;
    std::copy(p.src.begin(), p.src.begin() + 4, f.begin() + l3 + 12);
    std::copy(p.dst.begin(), p.dst.begin() + 4, f.begin() + l3 + 16);
    put16(f, l3 + 10, fold(sum16(&f[l3], 20)));
  }
  if (icmp) {
    f[l4] = p.icmpType;
    put16(f, l4 + 4, p.dport);  // identifier
    put16(f, l4 + 6, 1);        // sequence
  } else {
    put16(f, l4, p.sport);
    put16(f, l4 + 2, p.dport);
    if (p.proto == 6) {
      f[l4 + 12] = 5 << 4;  // data offset
      f[l4 + 13] = 0x02;    // SYN
      put16(f, l4 + 14, 64240);
    } else {
      put16(f, l4 + 4, static_cast<uint16_t>(l4Len + payload));
    }
  }
  for (size_t i = 0; i < payload; i++) f[l4 + l4Len + i] = static_cast<uint8_t>('a' + i);
  // Transport checksum over the pseudo-header (none for ICMPv4).
  const size_t csum = p.proto == 6 ? l4 + 16 : p.proto == 17 ? l4 + 6 : l4 + 2;
  uint32_t acc = sum16(&f[l4], l4Len + payload);
  if (p.proto != 1) {
    const size_t alen = p.v6 ? 16 : 4;
    acc = sum16(p.src.data(), alen, acc);
    acc = sum16(p.dst.data(), alen, acc);
    acc += p.proto + static_cast<uint32_t>(l4Len + payload);
  }
  uint16_t c = fold(acc);
  if (p.proto == 17 && c == 0) c = 0xffff;
  put16(f, csum, c);
  p.frame = std::move(f);

  if (p.label.empty()) {
    std::string proto = p.proto == 6    ? "tcp"
                        : p.proto == 17 ? "udp"
                        : p.proto == 1  ? "icmp"
                                        : "icmpv6";
    auto end = [&](const std::array<uint8_t, 16>& a, uint16_t port) {
      auto t = addrText(p.v6, a);
      if (icmp) return t;
      return p.v6 ? fmt::format("[{}]:{}", t, port) : fmt::format("{}:{}", t, port);
    };
    p.label = fmt::format("{} {} {} > {}{} on {}", p.ingress ? "ingress" : "egress", proto,
                          end(p.src, p.sport), end(p.dst, p.dport),
                          icmp ? fmt::format(" id {}", p.dport) : "",
                          bpf::FirewallProgram::hookName(p.hook));
  }
}

std::vector<SelfTestPacket> selfTestPackets(const policy::CompiledPolicy& cp, size_t maxPackets) {
  auto peers4 = pickAddresses(
      cp.iv4, [](const ew_iv4& iv) { return v4Bytes(iv.start); }, 12);
  auto peers6 = pickAddresses(
      cp.iv6, [](const ew_iv6& iv) { return v6Bytes(iv.hi, iv.lo); }, 12);
  if (peers4.empty()) peers4.push_back(v4Bytes(0x0a000001));
  if (peers6.empty()) peers6.push_back(v6Bytes(0xfd00000000000000ull, 1));

  // Ports where a decision may change (each interval's first port and the one before it),
  // then common ones.
  std::set<uint16_t> boundary;
  for (const auto& e : cp.piv) {
    boundary.insert(e.start);
    if (e.start > 0) boundary.insert(static_cast<uint16_t>(e.start - 1));
  }
  std::vector<uint16_t> ports = spread(std::vector<uint16_t>(boundary.begin(), boundary.end()), 10);
  for (uint16_t common : {22, 53, 80, 443, 8080})
    if (std::find(ports.begin(), ports.end(), common) == ports.end()) ports.push_back(common);

  std::vector<SelfTestPacket> all;
  auto add = [&](bool v6, const std::array<uint8_t, 16>& peer, bool ingress, uint8_t proto,
                 uint16_t port) {
    SelfTestPacket p;
    p.v6 = v6;
    p.ingress = ingress;
    const auto& local = v6 ? kLocal6 : kLocal4;
    p.src = ingress ? peer : local;
    p.dst = ingress ? local : peer;
    p.proto = proto;
    if (proto == 1 || proto == 58) {
      p.icmpType = proto == 1 ? 8 : 128;
      p.sport = p.dport = port;
    } else {
      p.sport = 40000;
      p.dport = port;
    }
    all.push_back(std::move(p));
  };
  for (int fam = 0; fam < 2; fam++) {
    const bool v6 = fam == 1;
    for (const auto& peer : v6 ? peers6 : peers4)
      for (bool ingress : {true, false}) {
        for (uint16_t port : ports) {
          add(v6, peer, ingress, 6, port);
          add(v6, peer, ingress, 17, port);
        }
        add(v6, peer, ingress, v6 ? 58 : 1, 7);
      }
  }
  auto out = spread(all, maxPackets);
  // Ingress packets alternate between the two ingress hooks, which must agree.
  size_t ingress = 0;
  for (auto& p : out) {
    p.hook = !p.ingress        ? bpf::Hook::TcEgress
             : (ingress++ & 1) ? bpf::Hook::TcIngress
                               : bpf::Hook::XdpIngress;
    buildFrame(p);
  }
  return out;
}

}  // namespace edgeward::dataplane
