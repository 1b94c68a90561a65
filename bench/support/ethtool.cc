#include "support/netlab.h"

#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <fmt/format.h>

namespace edgeward::bench {

int sh(const std::string& cmd, bool quiet) {
  std::string full = quiet ? cmd + " >/dev/null 2>&1" : cmd;
  int st = std::system(full.c_str());
  if (st == -1 || !WIFEXITED(st)) return -1;
  return WEXITSTATUS(st);
}

Result<std::string> shOutput(const std::string& cmd) {
  FILE* f = ::popen(cmd.c_str(), "r");
  if (!f) return failErrno("popen " + cmd);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  int st = ::pclose(f);
  if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
    return failf("command failed: {}", cmd);
  return out;
}

Result<NetnsEnter> NetnsEnter::enter(const std::string& name) {
  NetnsEnter e;
  e.home_.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!e.home_.valid()) return failErrno("opening the current network namespace");
  std::string path = "/var/run/netns/" + name;
  UniqueFd target(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!target.valid()) return failErrno("opening " + path);
  if (::setns(target.get(), CLONE_NEWNET) != 0) return failErrno("setns " + name);
  return e;
}

NetnsEnter::~NetnsEnter() {
  if (home_.valid() && ::setns(home_.get(), CLONE_NEWNET) != 0)
    std::perror("setns back to the original namespace");
}

Result<VethLab> VethLab::create(const VethLabSpec& s) {
  for (const auto& ns : {s.nsA, s.nsB})
    if (::access(("/var/run/netns/" + ns).c_str(), F_OK) == 0)
      return failf("namespace {} already exists (a previous run?); remove it with `ip netns del {}`",
                   ns, ns);
  VethLab lab(s);
  lab.owned_ = true;  // from here on the destructor removes whatever exists
  const std::vector<std::string> cmds = {
      fmt::format("ip netns add {}", s.nsA),
      fmt::format("ip netns add {}", s.nsB),
      fmt::format("ip link add {} netns {} address {} type veth peer name {} netns {} address {}",
                  s.ifA, s.nsA, s.macA, s.ifB, s.nsB, s.macB),
      fmt::format("ip -n {} link set lo up", s.nsA),
      fmt::format("ip -n {} link set lo up", s.nsB),
      fmt::format("ip -n {} addr add {} dev {}", s.nsA, s.addrA, s.ifA),
      fmt::format("ip -n {} addr add {} dev {}", s.nsB, s.addrB, s.ifB),
      fmt::format("ip -n {} link set {} up", s.nsA, s.ifA),
      fmt::format("ip -n {} link set {} up", s.nsB, s.ifB),
  };
  for (const auto& c : cmds)
    if (sh(c) != 0) return failf("setting up the veth lab: `{}` failed", c);
  return lab;
}

void VethLab::destroy() {
  if (!owned_) return;
  owned_ = false;
  // Deleting a namespace deletes its veth end (and with it the peer), nft tables and XDP links.
  sh(fmt::format("ip netns del {}", s_.nsA), true);
  sh(fmt::format("ip netns del {}", s_.nsB), true);
}

Result<Ethtool> Ethtool::open() {
  Ethtool e;
  e.sock_.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!e.sock_.valid()) return failErrno("socket for ethtool ioctls");
  return e;
}

namespace {
Result<void> ethtoolIoctl(int fd, const std::string& ifname, void* data, const char* what) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  ifr.ifr_data = static_cast<char*>(data);
  if (::ioctl(fd, SIOCETHTOOL, &ifr) != 0) return failErrno(fmt::format("ethtool {} on {}", what, ifname));
  return {};
}
}  // namespace

Result<void> Ethtool::setGro(const std::string& ifname, bool on) {
  ethtool_value v{};
  v.cmd = ETHTOOL_SGRO;
  v.data = on ? 1 : 0;
  return ethtoolIoctl(sock_.get(), ifname, &v, "SGRO");
}

Result<std::map<std::string, uint64_t>> Ethtool::stats(const std::string& ifname) {
  ethtool_drvinfo info{};
  info.cmd = ETHTOOL_GDRVINFO;
  if (auto r = ethtoolIoctl(sock_.get(), ifname, &info, "GDRVINFO"); !r) return std::unexpected(r.error());
  const uint32_t n = info.n_stats;
  std::vector<uint8_t> sbuf(sizeof(ethtool_gstrings) + size_t{n} * ETH_GSTRING_LEN);
  auto* gs = reinterpret_cast<ethtool_gstrings*>(sbuf.data());
  gs->cmd = ETHTOOL_GSTRINGS;
  gs->string_set = ETH_SS_STATS;
  gs->len = n;
  if (auto r = ethtoolIoctl(sock_.get(), ifname, gs, "GSTRINGS"); !r) return std::unexpected(r.error());
  std::vector<uint8_t> vbuf(sizeof(ethtool_stats) + size_t{n} * sizeof(uint64_t));
  auto* st = reinterpret_cast<ethtool_stats*>(vbuf.data());
  st->cmd = ETHTOOL_GSTATS;
  st->n_stats = n;
  if (auto r = ethtoolIoctl(sock_.get(), ifname, st, "GSTATS"); !r) return std::unexpected(r.error());
  std::map<std::string, uint64_t> out;
  for (uint32_t i = 0; i < n; i++) {
    const char* name = reinterpret_cast<const char*>(gs->data) + size_t{i} * ETH_GSTRING_LEN;
    out[std::string(name, strnlen(name, ETH_GSTRING_LEN))] = st->data[i];
  }
  return out;
}

}  // namespace edgeward::bench
