// Builds Ethernet frames for BPF_PROG_TEST_RUN fixtures, pcap files and benchmarks.
// Fields have sane defaults; checksums are computed so frames are valid on a wire too.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace edgeward::testing {

enum class L4 : uint8_t { Tcp = 6, Udp = 17, Icmp = 1, Icmpv6 = 58, None = 255 };

struct PacketSpec {
  bool v6 = false;
  std::string src = "10.0.0.1";  // IPv4 or IPv6 text
  std::string dst = "10.0.0.2";
  L4 l4 = L4::Tcp;
  uint8_t ipProto = 0;  // with L4::None: the IP protocol number of an opaque payload
  uint16_t sport = 40000;
  uint16_t dport = 80;
  uint8_t tcpFlags = 0x02;  // SYN
  uint8_t icmpType = 8;     // echo request (128 for ICMPv6)
  uint8_t icmpCode = 0;
  uint16_t icmpId = 1;
  uint8_t ttl = 64;             // hop limit for IPv6
  size_t payload = 0;           // payload bytes after the transport header
  std::vector<uint16_t> vlans;  // 802.1Q tags, outermost first
  uint8_t ipv4OptionWords = 0;  // IHL - 5
  // IPv4 fragments: offset in 8-byte units and the MF flag.
  uint16_t fragOffset = 0;
  bool moreFragments = false;
  // IPv6 extension headers in order (0 hop-by-hop, 43 routing, 60 dest opts, 44 fragment).
  std::vector<uint8_t> v6Ext;
  // TPID of each entry of `vlans` (0x88a8 for an 802.1ad outer tag); missing entries are 0x8100.
  std::vector<uint16_t> vlanTpids;
};

// The frame for a spec.
std::vector<uint8_t> buildPacket(const PacketSpec& s);

// Offsets useful to corrupt a built frame.
size_t l3Offset(const PacketSpec& s);
size_t l4Offset(const PacketSpec& s);

// Writes frames to a pcap file (Ethernet link type).
void writePcap(const std::string& path, const std::vector<std::vector<uint8_t>>& frames);

}  // namespace edgeward::testing
