// The event record of the pipeline (ew_event, plugins/sdk/edgeward_event.h) and what user
// space knows about it: names, decoding from the BPF ring buffers, JSON.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "edgeward_event.h"

namespace edgeward::pipeline {

using Event = ew_event;

// Where events come from; each has its own lost-event counter.
enum class Source { Firewall, Flowmon, Plugin };
std::string_view sourceName(Source s);  // "firewall", "flowmon", "plugin"

// "drop", "conn_new", "tcp_open", "tcp_close", "tcp_retransmit", "custom"; nullopt if unknown.
std::optional<std::string_view> kindName(uint16_t kind);
std::optional<uint16_t> kindFromName(std::string_view name);
// "drop" for drops, "allow" for new connections, "" for TCP lifecycle events.
std::string_view verdictOf(const Event& e);
// "tcp", "udp", "icmp", "icmpv6"; "" for other IP protocol numbers.
std::string_view protoName(uint8_t proto);
// Source / destination address as text ("10.0.0.1", "fd00::1").
std::string srcAddr(const Event& e);
std::string dstAddr(const Event& e);

// Converts CLOCK_MONOTONIC nanoseconds (what BPF programs stamp) to CLOCK_REALTIME.
class ClockOffset {
 public:
  ClockOffset() { refresh(); }
  void refresh();  // re-reads both clocks (the wall clock may be stepped)
  uint64_t toRealtime(uint64_t monoNs) const { return monoNs + offset_; }

 private:
  uint64_t offset_ = 0;
};

// Decodes one ring-buffer record. Records of the wrong size are refused (nullopt).
std::optional<Event> decodeFirewall(std::span<const uint8_t> record, const ClockOffset& clock);
std::optional<Event> decodeFlowmon(std::span<const uint8_t> record, const ClockOffset& clock);

// Names the agent knows and events do not carry.
struct EventNames {
  std::function<std::string(uint32_t rule)> rule;          // "" when unknown
  std::function<std::string(const Event&)> peerIdentity;   // "" when none
  std::function<std::string(uint32_t ifindex)> interface;  // "" when unknown
};

// One JSON object (no newline) describing the event, with names when given.
void appendJson(std::string& out, const Event& e, const EventNames* names = nullptr);
std::string toJson(const Event& e, const EventNames* names = nullptr);

}  // namespace edgeward::pipeline
