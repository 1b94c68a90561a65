#include "pipeline/event.h"

#include <arpa/inet.h>
#include <time.h>

#include <cstring>

#include <fmt/format.h>

#include "firewall.h"
#include "flowmon.h"
#include "bpf/flowmon_program.h"
#include "policy/compiler.h"

namespace edgeward::pipeline {
namespace {

uint64_t clockNs(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

std::string addr(const Event& e, const uint8_t* a) {
  char buf[INET6_ADDRSTRLEN] = "";
  if (e.family == 4)
    inet_ntop(AF_INET, a, buf, sizeof buf);
  else if (e.family == 6)
    inet_ntop(AF_INET6, a, buf, sizeof buf);
  return buf;
}

void appendEscaped(std::string& out, std::string_view s) {
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<unsigned>(c));
    } else {
      out += c;
    }
  }
}

void appendField(std::string& out, std::string_view key, std::string_view value) {
  out += ",\"";
  out += key;
  out += "\":\"";
  appendEscaped(out, value);
  out += '"';
}

}  // namespace

std::string_view sourceName(Source s) {
  switch (s) {
    case Source::Firewall:
      return "firewall";
    case Source::Flowmon:
      return "flowmon";
    case Source::Plugin:
      return "plugin";
  }
  return "?";
}

namespace {
constexpr std::pair<uint16_t, std::string_view> kKinds[] = {
    {EW_EV_DROP, "drop"},
    {EW_EV_CONN_NEW, "conn_new"},
    {EW_EV_TCP_OPEN, "tcp_open"},
    {EW_EV_TCP_CLOSE, "tcp_close"},
    {EW_EV_TCP_RETRANSMIT, "tcp_retransmit"},
    {EW_EV_CUSTOM, "custom"}};
}  // namespace

std::optional<std::string_view> kindName(uint16_t kind) {
  for (auto [k, n] : kKinds)
    if (k == kind) return n;
  return std::nullopt;
}

std::optional<uint16_t> kindFromName(std::string_view name) {
  for (auto [k, n] : kKinds)
    if (n == name) return k;
  return std::nullopt;
}

std::string_view verdictOf(const Event& e) {
  if (e.kind == EW_EV_DROP) return "drop";
  if (e.kind == EW_EV_CONN_NEW) return "allow";
  return {};
}

std::string_view protoName(uint8_t p) {
  switch (p) {
    case 6:
      return "tcp";
    case 17:
      return "udp";
    case 1:
      return "icmp";
    case 58:
      return "icmpv6";
    default:
      return {};
  }
}

std::string srcAddr(const Event& e) { return addr(e, e.saddr); }
std::string dstAddr(const Event& e) { return addr(e, e.daddr); }

void ClockOffset::refresh() { offset_ = clockNs(CLOCK_REALTIME) - clockNs(CLOCK_MONOTONIC); }

std::optional<Event> decodeFirewall(std::span<const uint8_t> record, const ClockOffset& clock) {
  if (record.size() != sizeof(ew_fw_event)) return std::nullopt;
  ew_fw_event r;
  std::memcpy(&r, record.data(), sizeof r);
  if (r.kind != EW_FW_EV_DROP && r.kind != EW_FW_EV_CONN_NEW) return std::nullopt;
  Event e{};
  e.kind = r.kind == EW_FW_EV_DROP ? EW_EV_DROP : EW_EV_CONN_NEW;
  e.version = EW_EVENT_VERSION;
  e.size = sizeof(Event);
  e.family = r.family;
  e.proto = r.proto;
  e.direction = r.dir == EW_EGRESS ? EW_DIR_EGRESS : EW_DIR_INGRESS;
  e.reason = r.reason;
  e.ifindex = r.ifindex;
  e.rule = r.rule;
  e.ts_ns = clock.toRealtime(r.ts_ns);
  std::memcpy(e.saddr, r.saddr, 16);
  std::memcpy(e.daddr, r.daddr, 16);
  e.sport = r.sport;
  e.dport = r.dport;
  e.pkt_len = r.pkt_len;
  e.sampled_out = r.sampled_out;
  return e;
}

std::optional<Event> decodeFlowmon(std::span<const uint8_t> record, const ClockOffset& clock) {
  if (record.size() != sizeof(fm_event)) return std::nullopt;
  fm_event r;
  std::memcpy(&r, record.data(), sizeof r);
  Event e{};
  switch (r.kind) {
    case FM_EV_OPEN:
      e.kind = EW_EV_TCP_OPEN;
      break;
    case FM_EV_CLOSE:
      e.kind = EW_EV_TCP_CLOSE;
      e.value = r.duration_ns;
      break;
    case FM_EV_RETRANSMIT:
      e.kind = EW_EV_TCP_RETRANSMIT;
      e.value = 1;
      break;
    default:
      return std::nullopt;
  }
  e.version = EW_EVENT_VERSION;
  e.size = sizeof(Event);
  e.family = r.family;
  e.proto = 6;
  // Source is the end that opened the connection: the remote end of an accepted one.
  e.direction = r.passive ? EW_DIR_INGRESS : EW_DIR_EGRESS;
  e.reason = r.state;
  e.rule = EW_RULE_NONE;
  e.ts_ns = clock.toRealtime(r.ts_ns);
  const uint32_t* src = r.passive ? r.raddr : r.laddr;
  const uint32_t* dst = r.passive ? r.laddr : r.raddr;
  std::memcpy(e.saddr, src, 16);
  std::memcpy(e.daddr, dst, 16);
  e.sport = r.passive ? r.rport : r.lport;
  e.dport = r.passive ? r.lport : r.rport;
  e.netns = r.netns;
  // A dual-stack socket talking IPv4 has v4-mapped addresses (::ffff:a.b.c.d): report IPv4.
  auto mapped = [](const uint8_t* a) {
    static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(a, kPrefix, 12) == 0;
  };
  if (e.family == 6 && mapped(e.saddr) && mapped(e.daddr)) {
    e.family = 4;
    std::memmove(e.saddr, e.saddr + 12, 4);
    std::memmove(e.daddr, e.daddr + 12, 4);
    std::memset(e.saddr + 4, 0, 12);
    std::memset(e.daddr + 4, 0, 12);
  }
  return e;
}

void appendJson(std::string& out, const Event& e, const EventNames* names) {
  auto kind = kindName(e.kind);
  fmt::format_to(std::back_inserter(out), "{{\"time_ns\":{},\"kind\":\"{}\"", e.ts_ns,
                 kind ? *kind : "unknown");
  if (auto v = verdictOf(e); !v.empty()) appendField(out, "verdict", v);
  if (e.family == 4 || e.family == 6) {
    fmt::format_to(std::back_inserter(out), ",\"family\":{}", e.family);
    appendField(out, "src", srcAddr(e));
    appendField(out, "dst", dstAddr(e));
  }
  if (auto p = protoName(e.proto); !p.empty())
    appendField(out, "proto", p);
  else if (e.proto)
    fmt::format_to(std::back_inserter(out), ",\"proto\":{}", e.proto);
  fmt::format_to(std::back_inserter(out), ",\"sport\":{},\"dport\":{}", e.sport, e.dport);
  appendField(out, "direction", e.direction == EW_DIR_EGRESS ? "egress" : "ingress");
  const bool firewall = e.kind == EW_EV_DROP || e.kind == EW_EV_CONN_NEW;
  if (firewall) {
    appendField(out, "reason", policy::reasonName(e.reason));
    fmt::format_to(std::back_inserter(out), ",\"ifindex\":{},\"len\":{}", e.ifindex, e.pkt_len);
    if (names && names->interface)
      if (auto n = names->interface(e.ifindex); !n.empty()) appendField(out, "interface", n);
    if (e.rule != EW_RULE_NONE) {
      fmt::format_to(std::back_inserter(out), ",\"rule_id\":{}", e.rule);
      if (names && names->rule)
        if (auto n = names->rule(e.rule); !n.empty()) appendField(out, "rule", n);
    }
    if (names && names->peerIdentity)
      if (auto n = names->peerIdentity(e); !n.empty()) appendField(out, "identity", n);
    if (e.kind == EW_EV_DROP)
      fmt::format_to(std::back_inserter(out), ",\"sampled_out\":{}", e.sampled_out);
  } else if (e.kind != EW_EV_CUSTOM) {
    appendField(out, "state", bpf::FlowmonProgram::stateName(e.reason));
    fmt::format_to(std::back_inserter(out), ",\"netns\":{}", e.netns);
    if (e.kind == EW_EV_TCP_CLOSE)
      fmt::format_to(std::back_inserter(out), ",\"duration_ns\":{}", e.value);
  }
  out += '}';
}

std::string toJson(const Event& e, const EventNames* names) {
  std::string s;
  appendJson(s, e, names);
  return s;
}

}  // namespace edgeward::pipeline
