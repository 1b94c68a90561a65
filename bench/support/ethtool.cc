#include "support/ethtool.h"

#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstring>
#include <vector>

#include <fmt/format.h>

namespace edgeward::bench {

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
  if (::ioctl(fd, SIOCETHTOOL, &ifr) != 0)
    return failErrno(fmt::format("ethtool {} on {}", what, ifname));
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
  if (auto r = ethtoolIoctl(sock_.get(), ifname, &info, "GDRVINFO"); !r)
    return std::unexpected(r.error());
  const uint32_t n = info.n_stats;
  std::vector<uint8_t> sbuf(sizeof(ethtool_gstrings) + size_t{n} * ETH_GSTRING_LEN);
  auto* gs = reinterpret_cast<ethtool_gstrings*>(sbuf.data());
  gs->cmd = ETHTOOL_GSTRINGS;
  gs->string_set = ETH_SS_STATS;
  gs->len = n;
  if (auto r = ethtoolIoctl(sock_.get(), ifname, gs, "GSTRINGS"); !r)
    return std::unexpected(r.error());
  std::vector<uint8_t> vbuf(sizeof(ethtool_stats) + size_t{n} * sizeof(uint64_t));
  auto* st = reinterpret_cast<ethtool_stats*>(vbuf.data());
  st->cmd = ETHTOOL_GSTATS;
  st->n_stats = n;
  if (auto r = ethtoolIoctl(sock_.get(), ifname, st, "GSTATS"); !r)
    return std::unexpected(r.error());
  std::map<std::string, uint64_t> out;
  for (uint32_t i = 0; i < n; i++) {
    const char* name = reinterpret_cast<const char*>(gs->data) + size_t{i} * ETH_GSTRING_LEN;
    out[std::string(name, strnlen(name, ETH_GSTRING_LEN))] = st->data[i];
  }
  return out;
}

Result<std::array<uint8_t, 6>> Ethtool::mac(const std::string& ifname) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  if (::ioctl(sock_.get(), SIOCGIFHWADDR, &ifr) != 0)
    return failErrno("SIOCGIFHWADDR on " + ifname);
  std::array<uint8_t, 6> m{};
  std::memcpy(m.data(), ifr.ifr_hwaddr.sa_data, 6);
  return m;
}

}  // namespace edgeward::bench
