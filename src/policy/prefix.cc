#include <arpa/inet.h>

#include <charconv>

#include "policy/policy.h"

namespace edgeward::policy {

namespace {

int familyBits(Family f) { return f == Family::V4 ? 32 : 128; }

// Zeroes the bits of `addr` beyond `len`; returns true if any was set.
bool clearHostBits(std::array<uint8_t, 16>& addr, int len, int bits) {
  bool had = false;
  for (int i = len; i < bits; ++i) {
    uint8_t mask = uint8_t(0x80u >> (i % 8));
    if (addr[i / 8] & mask) {
      had = true;
      addr[i / 8] &= uint8_t(~mask);
    }
  }
  return had;
}

}  // namespace

std::string Prefix::str() const {
  char buf[INET6_ADDRSTRLEN] = {};
  int af = family == Family::V4 ? AF_INET : AF_INET6;
  if (!inet_ntop(af, addr.data(), buf, sizeof buf)) return "?";
  return fmt::format("{}/{}", buf, len);
}

Result<Prefix> parsePrefix(std::string_view text) {
  // Messages start with the text as written, so "<path>: <message>" reads naturally.
  std::string shown = text.empty() ? std::string("\"\"") : std::string(text);
  std::string_view addrText = text;
  std::optional<std::string_view> lenText;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    addrText = text.substr(0, slash);
    lenText = text.substr(slash + 1);
  }

  Prefix p;
  // inet_pton wants a NUL-terminated string; it rejects leading zeros ("010.0.0.1"), short
  // forms ("10.1") and zone indexes ("fe80::1%eth0"), which is what a policy wants.
  std::string addrStr(addrText);
  if (addrStr.find(':') != std::string::npos) {
    p.family = Family::V6;
    if (inet_pton(AF_INET6, addrStr.c_str(), p.addr.data()) != 1)
      return failf("{}: not a valid IPv6 address", shown);
  } else {
    p.family = Family::V4;
    if (inet_pton(AF_INET, addrStr.c_str(), p.addr.data()) != 1)
      return failf("{}: not a valid IPv4 or IPv6 address", shown);
  }

  int bits = familyBits(p.family);
  if (!lenText) {
    p.len = uint8_t(bits);
    return p;
  }
  unsigned len = 0;
  auto [end, ec] = std::from_chars(lenText->data(), lenText->data() + lenText->size(), len);
  bool digitsOnly =
      !lenText->empty() && lenText->find_first_not_of("0123456789") == std::string_view::npos;
  if (!digitsOnly || ec != std::errc() || end != lenText->data() + lenText->size()) {
    if (digitsOnly)
      return failf("{}: prefix length {} is out of range 0-{}", shown, *lenText, bits);
    return failf("{}: prefix length \"{}\" is not a number", shown, *lenText);
  }
  if (len > unsigned(bits))
    return failf("{}: prefix length {} is out of range 0-{}", shown, len, bits);
  p.len = uint8_t(len);

  if (clearHostBits(p.addr, int(len), bits))
    return failf("{}: host bits set (did you mean {}?)", shown, p.str());
  return p;
}

std::string_view actionName(Action a) {
  switch (a) {
    case Action::Allow:
      return "allow";
    case Action::Deny:
      return "deny";
  }
  return "?";
}

std::string_view protocolName(Protocol p) {
  switch (p) {
    case Protocol::Any:
      return "any";
    case Protocol::Tcp:
      return "tcp";
    case Protocol::Udp:
      return "udp";
    case Protocol::Icmp:
      return "icmp";
    case Protocol::Icmpv6:
      return "icmpv6";
  }
  return "?";
}

}  // namespace edgeward::policy
