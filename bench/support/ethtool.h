// A tiny network lab for the benchmarks: two namespaces joined by a veth pair, removed in the
// destructor (and by bench/run.sh's trap if the process is killed). Shells out to `ip`; enters
// namespaces with setns(CLONE_NEWNET) on the calling thread (ip netns exec would hide bpffs).
// Used instead of ew_netns while src/common/netns.h is being written.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "common/result.h"
#include "common/unique_fd.h"

namespace edgeward::bench {

// Runs a shell command; returns its exit status (or -1). Output goes to our stdout/stderr
// unless `quiet`.
int sh(const std::string& cmd, bool quiet = false);

// Runs a command and captures its stdout.
Result<std::string> shOutput(const std::string& cmd);

class NetnsEnter {
 public:
  // Moves the calling thread into /var/run/netns/<name>; the destructor moves it back.
  static Result<NetnsEnter> enter(const std::string& name);
  NetnsEnter(NetnsEnter&&) = default;
  NetnsEnter& operator=(NetnsEnter&&) = default;
  ~NetnsEnter();

 private:
  NetnsEnter() = default;
  UniqueFd home_;
};

struct VethLabSpec {
  std::string nsA = "ewb-gen", nsB = "ewb-fw";
  std::string ifA = "ewb-g0", ifB = "ewb-f0";
  std::string macA = "02:00:00:00:00:01", macB = "02:00:00:00:00:02";
  std::string addrA = "10.0.0.1/24", addrB = "10.0.0.2/24";
};

class VethLab {
 public:
  // Fails (and creates nothing) if either namespace already exists.
  static Result<VethLab> create(const VethLabSpec& s = {});
  VethLab(VethLab&& o) noexcept : s_(o.s_), owned_(o.owned_) { o.owned_ = false; }
  VethLab& operator=(VethLab&&) = delete;
  ~VethLab() { destroy(); }
  void destroy();
  const VethLabSpec& spec() const { return s_; }

 private:
  explicit VethLab(const VethLabSpec& s) : s_(s) {}
  VethLabSpec s_;
  bool owned_ = false;
};

// ethtool ioctls on an interface of the current namespace (no ethtool binary needed).
class Ethtool {
 public:
  static Result<Ethtool> open();  // socket in the calling thread's current namespace
  Result<void> setGro(const std::string& ifname, bool on);
  Result<std::map<std::string, uint64_t>> stats(const std::string& ifname);

 private:
  UniqueFd sock_;
};

}  // namespace edgeward::bench
