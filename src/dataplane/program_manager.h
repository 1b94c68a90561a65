// Owns the active firewall program and its links, and replaces the program without losing a
// packet: adoption of pinned state at start, and upgrades behind a self-test with rollback.
//
// Restart: start() loads the program on the pinned maps (nothing re-initialised) and adopts
// every pinned link. A link already running the same code (kernel tag and load-time switches)
// is left alone; any other is moved to the new program with bpf_link_update, so packets go
// from the old program to the new one with no gap and no window without a program.
//
// Upgrade: upgrade() loads the new build or switches (1) into a throwaway instance with its own
// maps holding a copy of the live policy, and runs the self-test packets through it with
// BPF_PROG_TEST_RUN, so conntrack and counters of the live maps are not touched; (2) on a match
// loads it for real on the live maps, then (3) moves every link with bpf_link_update. Any error
// or difference stops the upgrade; links already moved are moved back. The program object
// behind program() keeps its address (its contents are swapped), so a Dataplane built on it
// stays valid.
//
// Not thread-safe: serialise calls with every other use of program() (e.g. Dataplane::apply).
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bpf/firewall_program.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "dataplane/selftest.h"

namespace edgeward::dataplane {

// One link of the firewall to an interface hook.
struct ManagedLink {
  std::string pinName;        // FirewallProgram::linkPinName(netns, ifname, hook)
  std::string pinPath;        // empty when not pinned
  std::string netns, ifname;  // empty for an adopted link no ensureLink() has claimed yet
  bpf::Hook hook = bpf::Hook::XdpIngress;
  int ifindex = 0;
  std::string origin;  // "attached", "adopted", "adopted, updated"
  UniqueFd fd;         // the link
  UniqueFd prog;       // the program the link runs (kept open: the rollback target)
};

struct SelfTestMismatch {
  std::string label;
  ExpectedVerdict expected, actual;
};

struct UpgradeResult {
  bool ok = false;
  std::string reason;       // empty on success; else why the upgrade stopped (and rolled back)
  std::string programTag;   // tag of ew_xdp_ingress that runs afterwards (new on success)
  bool rolledBack = false;  // some links had been moved to the new program and were moved back
  size_t linksUpdated = 0;  // links running the new program (0 unless ok)
  size_t selfTestPackets = 0;
  std::vector<SelfTestMismatch> mismatches;  // the first few differences
};

class ProgramManager {
 public:
  // Loads the program (with opts.pinDir: on the pinned maps, adopting them) and adopts every
  // link pinned under <pinDir>/links; links whose interface is gone are removed.
  static Result<std::unique_ptr<ProgramManager>> start(const bpf::FirewallOptions& opts);

  // The active program. Same object for the manager's whole life.
  bpf::FirewallProgram& program() { return *fw_; }
  const bpf::FirewallProgram& program() const { return *fw_; }
  const std::vector<ManagedLink>& links() const { return links_; }
  // What start() did with the pinned links, one line each (for logs).
  const std::vector<std::string>& startLog() const { return startLog_; }

  // The link of the program to `hook` of interface `ifname`: the adopted pinned one when there
  // is one, else a new link (pinned when the program has a pinDir). Call it on a thread inside
  // the interface's network namespace; `netns` only names the pin.
  Result<const ManagedLink*> ensureLink(const std::string& netns, const std::string& ifname,
                                        bpf::Hook hook, bpf::XdpMode mode = bpf::XdpMode::Auto);
  // Detaches one link and removes its pin.
  Result<void> removeLink(const std::string& pinName);

  // The verdicts a program loaded with `opts` gives the packets, run on a throwaway instance
  // holding a copy of the live policy (conntrack empty before each packet). With the active
  // program's options, an oracle of what the running build decides.
  Result<std::vector<ExpectedVerdict>> decide(const bpf::FirewallOptions& opts,
                                              std::span<const SelfTestPacket> packets) const;

  // Cases for the self-test: each packet with what the running program decides.
  Result<std::vector<SelfTestCase>> casesFromCurrent(std::vector<SelfTestPacket> packets) const;

  // Replaces the program by a build / load-time switches given in newOpts (start from
  // program().options() and change objectPath or recordVerdict; capacities must stay, pinDir
  // is the active one's). The self-test packets must decide as `cases` expect.
  UpgradeResult upgrade(const bpf::FirewallOptions& newOpts, std::span<const SelfTestCase> cases);

 private:
  ProgramManager() = default;
  Result<void> adoptPinnedLinks();
  std::string tag() const;

  std::unique_ptr<bpf::FirewallProgram> fw_;
  std::vector<ManagedLink> links_;
  std::vector<std::string> startLog_;
};

}  // namespace edgeward::dataplane
