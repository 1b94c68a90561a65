// ethtool ioctls the drop benchmark needs (no ethtool binary on this machine): GRO on a veth
// end, its statistics (veth reports per-queue XDP counters), and its MAC address. The socket
// belongs to the namespace that was current when open() ran; enter the namespace first
// (netns::NsGuard) to work on its interfaces.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>

#include "common/result.h"
#include "common/unique_fd.h"

namespace edgeward::bench {

class Ethtool {
 public:
  static Result<Ethtool> open();
  Result<void> setGro(const std::string& ifname, bool on);
  Result<std::map<std::string, uint64_t>> stats(const std::string& ifname);
  Result<std::array<uint8_t, 6>> mac(const std::string& ifname);

 private:
  UniqueFd sock_;
};

}  // namespace edgeward::bench
