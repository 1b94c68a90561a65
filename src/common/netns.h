// Throwaway network labs for the demo, integration tests and benchmarks: named network
// namespaces, veth pairs between them, running code inside a namespace, and small TCP/UDP/ICMP
// probes with an echo server to exchange real traffic.
//
// Safety (DESIGN.md): everything here creates its own objects and removes them on destruction;
// nothing attaches to or configures an interface this code did not create. Namespaces are made
// with `ip netns add` (a bind mount under /var/run/netns); they are entered with
// setns(CLONE_NEWNET) on a dedicated thread, never with `ip netns exec` (it remounts /sys).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace edgeward::netns {

// Runs `ip ARGS...` (iproute2) and returns its standard output; a non-zero exit becomes an
// error carrying the command and what `ip` printed on standard error.
Result<std::string> ip(const std::vector<std::string>& args);

// /var/run/netns/NAME.
std::string nsPath(const std::string& name);

bool nsExists(const std::string& name);

// A named network namespace that lives as long as this object. Move-only.
class NetNs {
 public:
  // Creates NAME; fails if it already exists (use cleanupStale first for leftovers).
  static Result<NetNs> create(const std::string& name);

  NetNs() = default;
  ~NetNs();
  NetNs(NetNs&& o) noexcept : name_(std::exchange(o.name_, {})) {}
  NetNs& operator=(NetNs&& o) noexcept;
  NetNs(const NetNs&) = delete;
  NetNs& operator=(const NetNs&) = delete;

  const std::string& name() const { return name_; }
  bool valid() const { return !name_.empty(); }

  // Deletes the namespace now (and with it every interface inside), reporting failures the
  // destructor can only log.
  Result<void> remove();

 private:
  explicit NetNs(std::string name) : name_(std::move(name)) {}
  std::string name_;
};

// One end of a veth pair.
struct VethEnd {
  std::string name;                    // interface name, at most 15 characters
  std::string netns;                   // namespace to create it in; empty: the current one
  std::vector<std::string> addresses;  // "10.0.0.1/24", "fd00::1/64"; IPv6 ones get nodad
};

// A veth pair created directly inside its namespaces (an end never appears in the caller's
// namespace when it has one of its own), addressed, with both ends and loopback up.
// Destruction deletes the pair (deleting one end deletes both).
class VethPair {
 public:
  static Result<VethPair> create(const VethEnd& a, const VethEnd& b);

  VethPair() = default;
  ~VethPair();
  VethPair(VethPair&& o) noexcept : a_(std::exchange(o.a_, {})), b_(std::exchange(o.b_, {})) {}
  VethPair& operator=(VethPair&& o) noexcept;
  VethPair(const VethPair&) = delete;
  VethPair& operator=(const VethPair&) = delete;

  const VethEnd& a() const { return a_; }
  const VethEnd& b() const { return b_; }
  Result<void> remove();

 private:
  VethEnd a_, b_;
};

// Moves the calling thread into namespace NAME (setns only affects the calling thread).
Result<void> enter(const std::string& name);

// Restores the calling thread's namespace on destruction.
class NsGuard {
 public:
  static Result<NsGuard> enter(const std::string& name);
  ~NsGuard();
  NsGuard(NsGuard&&) = default;
  NsGuard& operator=(NsGuard&&) = delete;

 private:
  NsGuard() = default;
  UniqueFd saved_;
};

// Runs fn() on a new thread inside namespace NAME and returns its result. fn returns a
// Result<T>; so does runIn. Sockets, links and fds fn creates keep their namespace after the
// thread ends, so fn may hand them back. An empty NAME runs fn in the current namespace.
template <typename F>
auto runIn(const std::string& name, F&& fn) -> std::invoke_result_t<F&> {
  using R = std::invoke_result_t<F&>;
  std::optional<R> out;
  std::thread t([&] {
    if (!name.empty())
      if (auto e = enter(name); !e) {
        out.emplace(std::unexpected(std::move(e).error()));
        return;
      }
    out.emplace(fn());
  });
  t.join();
  return std::move(*out);
}

// Index of interface IFACE inside namespace NAME (empty: the current namespace).
Result<int> ifindexIn(const std::string& name, const std::string& iface);

// Removes namespaces whose names start with PREFIX and interfaces of the current namespace
// whose names start with PREFIX: leftovers of a run that was killed. Returns how many.
Result<size_t> cleanupStale(std::string_view prefix);

// Like cleanupStale for names "<base><pid>-..." whose process <pid> no longer exists, so
// concurrent runs (each using its own pid) leave each other alone.
Result<size_t> cleanupDead(std::string_view base);

// ---------------------------------------------------------------------------------------------
// Traffic. Probes run in the calling thread's namespace (wrap them in runIn).

enum class Proto : uint8_t { Tcp, Udp, Icmp };
std::string_view protoName(Proto p);

// What a probe saw.
enum class Outcome : uint8_t {
  Reply,       // the echo came back
  Timeout,     // nothing came back in time (a dropped packet looks like this)
  Refused,     // TCP RST or ICMP port unreachable
  SendFailed,  // the local stack refused to send (an egress drop can surface as ENOBUFS/EPERM)
};
std::string_view outcomeName(Outcome o);

struct Probe {
  Proto proto = Proto::Tcp;
  std::string src;    // source address to bind, or empty for the kernel's choice
  std::string dst;    // IPv4 or IPv6 address
  uint16_t port = 0;  // ignored for ICMP
  std::chrono::milliseconds timeout{300};
};

// TCP: connect, send a line, read the echo. UDP: one datagram and its echo. ICMP: one echo
// request (raw socket; needs CAP_NET_RAW) and its reply. Errors are local failures only (bad
// address, no socket); what the network did is the Outcome.
Result<Outcome> probe(const Probe& p);

// Sends `count` UDP datagrams (paced, 16 per millisecond) from src (empty: any) to dst:port,
// then collects replies for up
// to `wait` (stopping once `count` came back) and returns how many came back. Keeping the socket
// open that long matters: a reply to a closed port would draw an ICMP error back to the sender.
Result<int> sendUdp(const std::string& src, const std::string& dst, uint16_t port, int count,
                    std::chrono::milliseconds wait = std::chrono::milliseconds(0));

// TCP and UDP echo servers on [::]:port (dual stack) in a namespace, served by one thread.
class EchoServer {
 public:
  struct Listen {
    Proto proto;
    uint16_t port;
  };
  static Result<std::unique_ptr<EchoServer>> start(const std::string& netns,
                                                   const std::vector<Listen>& ports);
  ~EchoServer();
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;

  // TCP connections accepted and UDP datagrams received so far, over all ports.
  uint64_t tcpAccepted() const { return tcpAccepted_.load(); }
  uint64_t udpReceived() const { return udpReceived_.load(); }

 private:
  EchoServer() = default;
  void serve();

  std::vector<std::pair<Listen, UniqueFd>> sockets_;
  UniqueFd stop_;  // eventfd
  std::atomic<uint64_t> tcpAccepted_{0}, udpReceived_{0};
  std::thread thread_;
};

}  // namespace edgeward::netns
