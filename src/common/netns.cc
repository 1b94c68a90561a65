#include "common/netns.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

extern char** environ;

namespace edgeward::netns {
namespace {

using Clock = std::chrono::steady_clock;

// Destructors report here: plain stdio, which cannot throw.
void logCleanup(const Error& e) {
  std::fprintf(stderr, "edgeward: cleanup: %s\n", e.str().c_str());
}

std::string joined(const std::vector<std::string>& args) {
  std::string s = "ip";
  for (const auto& a : args) s += " " + a;
  return s;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Arguments that select a namespace for `ip`: {"-n", NAME} or nothing.
std::vector<std::string> inNs(const std::string& ns, std::vector<std::string> args) {
  if (!ns.empty()) args.insert(args.begin(), {"-n", ns});
  return args;
}

bool linkExists(const std::string& ns, const std::string& name) {
  return static_cast<bool>(ip(inNs(ns, {"link", "show", "dev", name})));
}

// Names in /var/run/netns.
std::vector<std::string> namespaces() {
  std::vector<std::string> out;
  DIR* d = opendir("/var/run/netns");
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  closedir(d);
  return out;
}

std::vector<std::string> links() {
  std::vector<std::string> out;
  struct if_nameindex* list = ::if_nameindex();
  if (!list) return out;
  for (struct if_nameindex* i = list; i->if_index != 0; i++) out.emplace_back(i->if_name);
  if_freenameindex(list);
  return out;
}

// Deletes namespaces and links of the current namespace whose names satisfy stale().
template <typename Pred>
Result<size_t> removeMatching(Pred stale) {
  size_t n = 0;
  std::string errors;
  for (const auto& name : links()) {
    if (!stale(name)) continue;
    if (auto r = ip({"link", "del", "dev", name}); !r && linkExists("", name))
      errors += (errors.empty() ? "" : "; ") + r.error().str();
    else
      n++;
  }
  for (const auto& name : namespaces()) {
    if (!stale(name)) continue;
    if (auto r = ip({"netns", "del", name}); !r && nsExists(name))
      errors += (errors.empty() ? "" : "; ") + r.error().str();
    else
      n++;
  }
  if (!errors.empty()) return fail("removing leftovers: " + errors);
  return n;
}

// ---- sockets ----

struct SockAddr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_UNSPEC;
};

Result<SockAddr> sockAddr(const std::string& text, uint16_t port) {
  SockAddr a;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
  if (inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    a.len = sizeof(*v4);
    a.family = AF_INET;
    return a;
  }
  if (inet_pton(AF_INET6, text.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    a.len = sizeof(*v6);
    a.family = AF_INET6;
    return a;
  }
  return failf("\"{}\" is not an IPv4 or IPv6 address", text);
}

Result<UniqueFd> openSocket(int family, int type, int proto, const std::string& src) {
  UniqueFd fd(::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto));
  if (!fd.valid()) return failErrno("socket");
  if (!src.empty()) {
    EW_TRY(a, sockAddr(src, 0));
    if (a->family != family) return failf("source {} and destination differ in family", src);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a->ss), a->len))
      return failErrno(fmt::format("binding to {}", src));
  }
  return fd;
}

// Waits for events on fd until deadline; false on timeout.
bool waitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() < 0) return false;
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()) + 1);
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

Outcome fromErrno(int err) {
  switch (err) {
    case ECONNREFUSED:
    case ECONNRESET:
      return Outcome::Refused;
    case EPERM:
    case EACCES:
    case ENOBUFS:
      return Outcome::SendFailed;
    default:
      return Outcome::Timeout;
  }
}

constexpr char kMessage[] = "edgeward probe\n";

Result<Outcome> tcpProbe(const Probe& p, const SockAddr& dst) {
  EW_TRY(fd, openSocket(dst.family, SOCK_STREAM, 0, p.src));
  const auto deadline = Clock::now() + p.timeout;
  if (::connect(fd->get(), reinterpret_cast<const sockaddr*>(&dst.ss), dst.len) != 0) {
    if (errno != EINPROGRESS) return fromErrno(errno);
    if (!waitFor(fd->get(), POLLOUT, deadline)) return Outcome::Timeout;
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(fd->get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) return fromErrno(err);
  }
  if (::send(fd->get(), kMessage, sizeof(kMessage) - 1, MSG_NOSIGNAL) < 0) return fromErrno(errno);
  const auto replyDeadline = Clock::now() + p.timeout;
  if (!waitFor(fd->get(), POLLIN, replyDeadline)) return Outcome::Timeout;
  char buf[64];
  ssize_t n = ::recv(fd->get(), buf, sizeof buf, 0);
  if (n > 0) return Outcome::Reply;
  return n == 0 ? Outcome::Refused : fromErrno(errno);
}

Result<Outcome> udpProbe(const Probe& p, const SockAddr& dst) {
  EW_TRY(fd, openSocket(dst.family, SOCK_DGRAM, 0, p.src));
  // Connected, so an ICMP port unreachable comes back as ECONNREFUSED.
  if (::connect(fd->get(), reinterpret_cast<const sockaddr*>(&dst.ss), dst.len))
    return failErrno("connect (udp)");
  if (::send(fd->get(), kMessage, sizeof(kMessage) - 1, 0) < 0) return fromErrno(errno);
  if (!waitFor(fd->get(), POLLIN, Clock::now() + p.timeout)) return Outcome::Timeout;
  char buf[64];
  ssize_t n = ::recv(fd->get(), buf, sizeof buf, 0);
  if (n > 0) return Outcome::Reply;
  return fromErrno(errno);
}

uint16_t checksum(const uint8_t* data, size_t len) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += (data[i] << 8) | data[i + 1];
  if (len & 1) sum += data[len - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

std::atomic<uint16_t> icmpSeq{1};

Result<Outcome> icmpProbe(const Probe& p, const SockAddr& dst) {
  const bool v6 = dst.family == AF_INET6;
  EW_TRY(fd, openSocket(dst.family, SOCK_RAW, v6 ? int{IPPROTO_ICMPV6} : int{IPPROTO_ICMP}, p.src));
  // Identifier and sequence tell our reply from others' (every raw socket sees every reply).
  const uint16_t id = static_cast<uint16_t>(::getpid() ^ 0x5a5a);
  const uint16_t seq = icmpSeq.fetch_add(1);
  uint8_t pkt[8 + 16] = {};
  pkt[0] = v6 ? ICMP6_ECHO_REQUEST : ICMP_ECHO;
  pkt[4] = id >> 8;
  pkt[5] = id & 0xff;
  pkt[6] = seq >> 8;
  pkt[7] = seq & 0xff;
  std::memcpy(pkt + 8, "edgeward-probe!!", 16);
  if (!v6) {  // the kernel computes the ICMPv6 checksum (it needs the pseudo-header)
    uint16_t c = checksum(pkt, sizeof pkt);
    pkt[2] = c >> 8;
    pkt[3] = c & 0xff;
  }
  if (::sendto(fd->get(), pkt, sizeof pkt, 0, reinterpret_cast<const sockaddr*>(&dst.ss), dst.len) <
      0)
    return fromErrno(errno);
  const auto deadline = Clock::now() + p.timeout;
  while (waitFor(fd->get(), POLLIN, deadline)) {
    uint8_t buf[1500];
    ssize_t n = ::recv(fd->get(), buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return fromErrno(errno);
    }
    size_t off = 0;
    if (!v6) {  // IPv4 raw sockets deliver the IP header too
      if (n < 20) continue;
      off = (buf[0] & 0xf) * 4u;
    }
    if (static_cast<size_t>(n) < off + 8) continue;
    const uint8_t* h = buf + off;
    const uint8_t want = v6 ? ICMP6_ECHO_REPLY : ICMP_ECHOREPLY;
    if (h[0] == want && ((h[4] << 8) | h[5]) == id && ((h[6] << 8) | h[7]) == seq)
      return Outcome::Reply;
  }
  return Outcome::Timeout;
}

}  // namespace

// ---- ip, namespaces, veths ----

Result<std::string> ip(const std::vector<std::string>& args) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC)) return failErrno("pipe");
  if (::pipe2(err, O_CLOEXEC)) {
    ::close(out[0]);
    ::close(out[1]);
    return failErrno("pipe");
  }
  UniqueFd outR(out[0]), outW(out[1]), errR(err[0]), errW(err[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, outW.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, errW.get(), 2);
  // The caller may block SIGINT/SIGTERM (edgeward run waits for them); `ip` must not inherit it.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  // Its own process group: a Ctrl-C meant for us must not kill an `ip netns del` in cleanup.
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  std::vector<char*> argv;
  std::string prog = "ip";
  argv.push_back(prog.data());
  std::vector<std::string> copy = args;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawnp(&pid, "ip", &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return failErrno("running ip (is iproute2 installed?)", rc);
  outW.reset();
  errW.reset();

  std::string stdoutText, stderrText;
  pollfd fds[2] = {{outR.get(), POLLIN, 0}, {errR.get(), POLLIN, 0}};
  int open = 2;
  while (open > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || !fds[i].revents) continue;
      char buf[4096];
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        (i == 0 ? stdoutText : stderrText).append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        fds[i].fd = -1;
        open--;
      }
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return failErrno("waiting for ip");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string why = trimmed(stderrText);
    if (why.empty())
      why = WIFEXITED(status) ? fmt::format("exit code {}", WEXITSTATUS(status))
                              : "killed by a signal";
    return failf("`{}` failed: {}", joined(args), why);
  }
  return stdoutText;
}

std::string nsPath(const std::string& name) { return "/var/run/netns/" + name; }

bool nsExists(const std::string& name) {
  return !name.empty() && ::access(nsPath(name).c_str(), F_OK) == 0;
}

Result<NetNs> NetNs::create(const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos)
    return failf("\"{}\" is not a valid namespace name", name);
  if (nsExists(name))
    return failf("network namespace {} already exists (a leftover? `ip netns del {}`)", name, name);
  EW_TRY(r, ip({"netns", "add", name}));
  NetNs ns(name);
  EW_TRY(lo, ip({"-n", name, "link", "set", "dev", "lo", "up"}));
  return ns;
}

NetNs::~NetNs() {
  if (auto r = remove(); !r) logCleanup(r.error());
}

NetNs& NetNs::operator=(NetNs&& o) noexcept {
  if (this != &o) {
    if (auto r = remove(); !r) logCleanup(r.error());
    name_ = std::exchange(o.name_, {});
  }
  return *this;
}

Result<void> NetNs::remove() {
  if (name_.empty()) return {};
  std::string name = std::exchange(name_, {});
  if (auto r = ip({"netns", "del", name}); !r && nsExists(name)) return std::unexpected(r.error());
  return {};
}

Result<VethPair> VethPair::create(const VethEnd& a, const VethEnd& b) {
  for (const auto* e : {&a, &b}) {
    if (e->name.empty() || e->name.size() >= IFNAMSIZ)
      return failf("interface name \"{}\" must have 1 to {} characters", e->name, IFNAMSIZ - 1);
    if (!e->netns.empty() && !nsExists(e->netns))
      return failf("network namespace {} does not exist", e->netns);
  }
  std::vector<std::string> add = {"link", "add", "name", a.name};
  if (!a.netns.empty()) add.insert(add.end(), {"netns", a.netns});
  add.insert(add.end(), {"type", "veth", "peer", "name", b.name});
  if (!b.netns.empty()) add.insert(add.end(), {"netns", b.netns});
  EW_TRY(created, ip(add));
  VethPair pair;  // owns the pair from here: an error below deletes it
  pair.a_ = a;
  pair.b_ = b;
  for (const auto* e : {&a, &b}) {
    for (const auto& addr : e->addresses) {
      std::vector<std::string> cmd = {"addr", "add", addr, "dev", e->name};
      // No duplicate address detection: the address is usable at once, not after ~1 s.
      if (addr.find(':') != std::string::npos) cmd.push_back("nodad");
      EW_TRY(r, ip(inNs(e->netns, cmd)));
    }
    EW_TRY(up, ip(inNs(e->netns, {"link", "set", "dev", e->name, "up"})));
  }
  // Carrier-on is applied asynchronously (linkwatch, up to a second later); until then the
  // device's queue is the noop qdisc and drops what is sent, e.g. the first neighbour
  // solicitation. Ready means operationally up with its real qdisc, on both ends.
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  for (const auto* e : {&a, &b}) {
    for (;;) {
      EW_TRY(show, ip(inNs(e->netns, {"-o", "link", "show", "dev", e->name})));
      if (show->find("state UP") != std::string::npos &&
          show->find("qdisc noop") == std::string::npos)
        break;
      if (Clock::now() > deadline) return failf("{} did not come up: {}", e->name, trimmed(*show));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  return pair;
}

VethPair::~VethPair() {
  if (auto r = remove(); !r) logCleanup(r.error());
}

VethPair& VethPair::operator=(VethPair&& o) noexcept {
  if (this != &o) {
    if (auto r = remove(); !r) logCleanup(r.error());
    a_ = std::exchange(o.a_, {});
    b_ = std::exchange(o.b_, {});
  }
  return *this;
}

Result<void> VethPair::remove() {
  if (a_.name.empty()) return {};
  VethEnd a = std::exchange(a_, {});
  b_ = {};
  // Deleting a namespace deletes its interfaces: nothing left to do then.
  if (!a.netns.empty() && !nsExists(a.netns)) return {};
  if (auto r = ip(inNs(a.netns, {"link", "del", "dev", a.name})); !r && linkExists(a.netns, a.name))
    return std::unexpected(r.error());
  return {};
}

Result<void> enter(const std::string& name) {
  UniqueFd fd(::open(nsPath(name).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return failErrno(fmt::format("network namespace {}", name));
  if (::setns(fd.get(), CLONE_NEWNET)) return failErrno(fmt::format("entering netns {}", name));
  return {};
}

Result<NsGuard> NsGuard::enter(const std::string& name) {
  NsGuard g;
  g.saved_.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!g.saved_.valid()) return failErrno("opening the current network namespace");
  EW_TRY(r, netns::enter(name));
  return g;
}

NsGuard::~NsGuard() {
  if (saved_.valid() && ::setns(saved_.get(), CLONE_NEWNET))
    std::fprintf(stderr, "edgeward: returning to the original network namespace: %s\n",
                 std::strerror(errno));
}

Result<int> ifindexIn(const std::string& name, const std::string& iface) {
  return runIn(name, [&]() -> Result<int> {
    unsigned idx = ::if_nametoindex(iface.c_str());
    if (idx == 0) {
      if (name.empty()) return failf("interface \"{}\" does not exist", iface);
      return failf("interface \"{}\" does not exist in network namespace {}", iface, name);
    }
    return static_cast<int>(idx);
  });
}

Result<size_t> cleanupStale(std::string_view prefix) {
  // A short prefix could match someone else's objects ("e" matches eth0).
  if (prefix.size() < 4) return failf("prefix \"{}\" is too short to clean up safely", prefix);
  return removeMatching([&](const std::string& n) { return n.starts_with(prefix); });
}

Result<size_t> cleanupDead(std::string_view base) {
  if (base.size() < 3) return failf("prefix \"{}\" is too short to clean up safely", base);
  return removeMatching([&](const std::string& n) {
    if (!n.starts_with(base)) return false;
    size_t i = base.size(), j = i;
    while (j < n.size() && n[j] >= '0' && n[j] <= '9') j++;
    if (j == i || j >= n.size() || n[j] != '-' || j - i > 9) return false;
    pid_t pid = static_cast<pid_t>(std::stol(n.substr(i, j - i)));
    return pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH;
  });
}

// ---- traffic ----

std::string_view protoName(Proto p) {
  switch (p) {
    case Proto::Tcp:
      return "tcp";
    case Proto::Udp:
      return "udp";
    case Proto::Icmp:
      return "icmp";
  }
  return "?";
}

std::string_view outcomeName(Outcome o) {
  switch (o) {
    case Outcome::Reply:
      return "reply";
    case Outcome::Timeout:
      return "timeout";
    case Outcome::Refused:
      return "refused";
    case Outcome::SendFailed:
      return "send failed";
  }
  return "?";
}

Result<Outcome> probe(const Probe& p) {
  EW_TRY(dst, sockAddr(p.dst, p.port));
  switch (p.proto) {
    case Proto::Tcp:
      return tcpProbe(p, *dst);
    case Proto::Udp:
      return udpProbe(p, *dst);
    case Proto::Icmp:
      return icmpProbe(p, *dst);
  }
  return fail("unknown protocol");
}

Result<int> sendUdp(const std::string& src, const std::string& dst, uint16_t port, int count,
                    std::chrono::milliseconds wait) {
  EW_TRY(to, sockAddr(dst, port));
  EW_TRY(fd, openSocket(to->family, SOCK_DGRAM, 0, src));
  int replies = 0;
  auto drain = [&] {
    char buf[2048];
    while (::recv(fd->get(), buf, sizeof buf, 0) >= 0) replies++;
  };
  for (int i = 0; i < count; i++) {
    while (::sendto(fd->get(), kMessage, sizeof(kMessage) - 1, 0,
                    reinterpret_cast<const sockaddr*>(&to->ss), to->len) < 0) {
      if (errno != EAGAIN && errno != EINTR) return failErrno(fmt::format("sending to {}", dst));
      pollfd pf{fd->get(), POLLOUT, 0};
      ::poll(&pf, 1, 10);
    }
    drain();
    // Paced: a burst can overflow a veth's XDP ring (256 frames) and lose packets before any
    // program sees them, and callers compare counters with what was sent.
    if (i % 16 == 15) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const auto deadline = Clock::now() + wait;
  while (replies < count && waitFor(fd->get(), POLLIN, deadline)) drain();
  return replies;
}

Result<std::unique_ptr<EchoServer>> EchoServer::start(const std::string& netns,
                                                      const std::vector<Listen>& ports) {
  std::unique_ptr<EchoServer> s(new EchoServer());
  s->stop_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!s->stop_.valid()) return failErrno("eventfd");
  // Sockets belong to the namespace they were created in, whichever thread serves them.
  auto opened = runIn(netns, [&]() -> Result<void> {
    for (const auto& l : ports) {
      if (l.proto == Proto::Icmp) continue;  // the kernel answers pings itself
      const bool tcp = l.proto == Proto::Tcp;
      UniqueFd fd(
          ::socket(AF_INET6, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      if (!fd.valid()) return failErrno("socket");
      int zero = 0, one = 1;
      ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);  // IPv4 too
      ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_port = htons(l.port);
      a.sin6_addr = in6addr_any;
      if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a))
        return failErrno(fmt::format("binding {} port {}", protoName(l.proto), l.port));
      if (tcp && ::listen(fd.get(), 64)) return failErrno("listen");
      s->sockets_.emplace_back(l, std::move(fd));
    }
    return {};
  });
  if (!opened) return std::unexpected(opened.error());
  s->thread_ = std::thread([p = s.get()] { p->serve(); });
  return s;
}

EchoServer::~EchoServer() {
  uint64_t one = 1;
  if (::write(stop_.get(), &one, sizeof one) < 0) {
    // An eventfd write only fails when the counter overflows; the thread stops anyway.
  }
  if (thread_.joinable()) thread_.join();
}

void EchoServer::serve() {
  std::vector<UniqueFd> conns;
  for (;;) {
    std::vector<pollfd> fds;
    fds.push_back({stop_.get(), POLLIN, 0});
    for (auto& [l, fd] : sockets_) fds.push_back({fd.get(), POLLIN, 0});
    for (auto& c : conns) fds.push_back({c.get(), POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents) return;
    size_t i = 1;
    for (auto& [l, fd] : sockets_) {
      if (!fds[i++].revents) continue;
      if (l.proto == Proto::Tcp) {
        int c = ::accept4(fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c >= 0) {
          conns.emplace_back(c);
          tcpAccepted_++;
        }
      } else {
        char buf[2048];
        sockaddr_storage from{};
        socklen_t len = sizeof from;
        ssize_t n =
            ::recvfrom(fd.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
        if (n >= 0) {
          udpReceived_++;
          ::sendto(fd.get(), buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from),
                   len);
        }
      }
    }
    // Connections accepted in this round are polled from the next one; `i` walks the old ones.
    std::vector<UniqueFd> keep;
    const size_t polled = fds.size() - i;
    for (size_t k = 0; k < conns.size(); k++) {
      if (k >= polled || !fds[i + k].revents) {
        keep.push_back(std::move(conns[k]));
        continue;
      }
      // One echo per connection, then close: enough for a probe, nothing to leak.
      char buf[2048];
      ssize_t n = ::recv(conns[k].get(), buf, sizeof buf, 0);
      if (n > 0) ::send(conns[k].get(), buf, static_cast<size_t>(n), MSG_NOSIGNAL);
      if (n < 0 && errno == EAGAIN) keep.push_back(std::move(conns[k]));
    }
    conns = std::move(keep);
  }
}

}  // namespace edgeward::netns
