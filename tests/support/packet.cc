#include "support/packet.h"

#include <arpa/inet.h>
#include <pcap/pcap.h>

#include <stdexcept>

namespace edgeward::testing {
namespace {

void put16(std::vector<uint8_t>& b, size_t at, uint16_t v) {
  b[at] = v >> 8;
  b[at + 1] = v & 0xff;
}

uint32_t sum16(const uint8_t* p, size_t n, uint32_t acc = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) acc += (p[i] << 8) | p[i + 1];
  if (n & 1) acc += p[n - 1] << 8;
  return acc;
}

uint16_t fold(uint32_t acc) {
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<uint16_t>(~acc);
}

size_t extLen(uint8_t type) { return type == 44 ? 8 : 8; }

}  // namespace

size_t l3Offset(const PacketSpec& s) { return 14 + 4 * s.vlans.size(); }

size_t l4Offset(const PacketSpec& s) {
  size_t off = l3Offset(s);
  if (!s.v6) return off + 20 + 4 * s.ipv4OptionWords;
  off += 40;
  for (uint8_t e : s.v6Ext) off += extLen(e);
  return off;
}

std::vector<uint8_t> buildPacket(const PacketSpec& s) {
  size_t l4len = 0;
  switch (s.l4) {
    case L4::Tcp:
      l4len = 20;
      break;
    case L4::Udp:
      l4len = 8;
      break;
    case L4::Icmp:
    case L4::Icmpv6:
      l4len = 8;
      break;
    case L4::None:
      l4len = 0;
      break;
  }
  const size_t l3 = l3Offset(s), l4 = l4Offset(s);
  std::vector<uint8_t> b(l4 + l4len + s.payload, 0);

  // Ethernet: fixed locally administered MACs.
  const uint8_t dmac[6] = {0x02, 0, 0, 0, 0, 2}, smac[6] = {0x02, 0, 0, 0, 0, 1};
  std::copy(dmac, dmac + 6, b.begin());
  std::copy(smac, smac + 6, b.begin() + 6);
  size_t off = 12;
  for (size_t i = 0; i < s.vlans.size(); i++) {
    put16(b, off, i < s.vlanTpids.size() ? s.vlanTpids[i] : 0x8100);
    put16(b, off + 2, s.vlans[i]);
    off += 4;
  }
  put16(b, off, s.v6 ? 0x86dd : 0x0800);

  uint8_t proto = s.l4 == L4::None ? s.ipProto : static_cast<uint8_t>(s.l4);
  uint8_t src[16] = {}, dst[16] = {};
  int af = s.v6 ? AF_INET6 : AF_INET;
  if (inet_pton(af, s.src.c_str(), src) != 1 || inet_pton(af, s.dst.c_str(), dst) != 1)
    throw std::invalid_argument("bad address in PacketSpec: " + s.src + " / " + s.dst);
  const size_t alen = s.v6 ? 16 : 4;

  if (!s.v6) {
    size_t ihl = 20 + 4 * s.ipv4OptionWords;
    b[l3] = 0x40 | (ihl / 4);
    put16(b, l3 + 2, static_cast<uint16_t>(b.size() - l3));
    put16(b, l3 + 4, 0x1234);
    put16(b, l3 + 6, (s.moreFragments ? 0x2000 : 0) | (s.fragOffset & 0x1fff));
    b[l3 + 8] = s.ttl;
    b[l3 + 9] = proto;
    std::copy(src, src + 4, b.begin() + l3 + 12);
    std::copy(dst, dst + 4, b.begin() + l3 + 16);
    for (size_t i = 20; i < ihl; i++) b[l3 + i] = 1;  // NOP options
    put16(b, l3 + 10, fold(sum16(&b[l3], ihl)));
  } else {
    b[l3] = 0x60;
    put16(b, l3 + 4, static_cast<uint16_t>(b.size() - l3 - 40));
    b[l3 + 7] = s.ttl;
    std::copy(src, src + 16, b.begin() + l3 + 8);
    std::copy(dst, dst + 16, b.begin() + l3 + 24);
    // Chain: fixed header -> ext[0] -> ... -> transport.
    size_t at = l3 + 40;
    uint8_t* nextField = &b[l3 + 6];
    for (uint8_t e : s.v6Ext) {
      *nextField = e;
      nextField = &b[at];
      if (e == 44) {
        put16(b, at + 2, static_cast<uint16_t>((s.fragOffset << 3) | (s.moreFragments ? 1 : 0)));
        put16(b, at + 4, 0x1234);
      } else {
        b[at + 1] = 0;  // 8 bytes
        b[at + 2] = 1;  // PadN option covering the rest
        b[at + 3] = 4;
      }
      at += extLen(e);
    }
    *nextField = proto;
  }

  switch (s.l4) {
    case L4::Tcp:
      put16(b, l4, s.sport);
      put16(b, l4 + 2, s.dport);
      b[l4 + 12] = 5 << 4;
      b[l4 + 13] = s.tcpFlags;
      put16(b, l4 + 14, 65535);
      break;
    case L4::Udp:
      put16(b, l4, s.sport);
      put16(b, l4 + 2, s.dport);
      put16(b, l4 + 4, static_cast<uint16_t>(8 + s.payload));
      break;
    case L4::Icmp:
    case L4::Icmpv6:
      b[l4] = s.icmpType;
      b[l4 + 1] = s.icmpCode;
      put16(b, l4 + 4, s.icmpId);
      put16(b, l4 + 6, 1);
      break;
    case L4::None:
      break;
  }
  // Transport checksum (pseudo-header for TCP/UDP/ICMPv6).
  if (s.l4 != L4::None && s.fragOffset == 0 && !s.moreFragments) {
    size_t len = b.size() - l4;
    uint32_t acc = 0;
    if (s.l4 != L4::Icmp) {
      acc = sum16(src, alen, acc);
      acc = sum16(dst, alen, acc);
      acc += proto;
      acc += static_cast<uint32_t>(len);
    }
    size_t csumAt = s.l4 == L4::Tcp ? l4 + 16 : s.l4 == L4::Udp ? l4 + 6 : l4 + 2;
    uint16_t c = fold(sum16(&b[l4], len, acc));
    if (s.l4 == L4::Udp && c == 0) c = 0xffff;
    put16(b, csumAt, c);
  }
  return b;
}

void writePcap(const std::string& path, const std::vector<std::vector<uint8_t>>& frames) {
  pcap_t* dead = pcap_open_dead(DLT_EN10MB, 65535);
  pcap_dumper_t* d = pcap_dump_open(dead, path.c_str());
  if (!d) {
    std::string err = pcap_geterr(dead);
    pcap_close(dead);
    throw std::runtime_error("pcap_dump_open " + path + ": " + err);
  }
  for (const auto& f : frames) {
    pcap_pkthdr h{};
    h.caplen = h.len = static_cast<uint32_t>(f.size());
    pcap_dump(reinterpret_cast<u_char*>(d), &h, f.data());
  }
  pcap_dump_close(d);
  pcap_close(dead);
}

}  // namespace edgeward::testing
