#include "dataplane/program_manager.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <thread>

#include <fmt/format.h>

namespace edgeward::dataplane {

using bpf::FirewallMap;
using bpf::FirewallOptions;
using bpf::FirewallProgram;
using bpf::Hook;

namespace {

namespace fs = std::filesystem;

// The self-test and decide() instances hold a copy of the policy, not of the connection
// table: a small table keeps their memory small (its size does not change the code).
constexpr uint32_t kScratchConntrack = 1024;
constexpr size_t kMaxMismatchesReported = 5;

Result<UniqueFd> dupFd(int fd) {
  int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (d < 0) return failErrno("duplicating a program fd");
  return UniqueFd(d);
}

bool ruleBased(uint8_t reason) {
  return reason == EW_R_RULE_ALLOW || reason == EW_R_RULE_DENY || reason == EW_R_CT_ESTABLISHED;
}

// A throwaway instance of `opts` deciding with the live policy of `live`.
Result<std::unique_ptr<FirewallProgram>> scratchCopy(FirewallOptions opts,
                                                     const FirewallProgram& live) {
  opts.pinDir.clear();
  opts.conntrackEntries = kScratchConntrack;
  EW_TRY(fw, FirewallProgram::load(opts));
  EW_TRY(copied, (*fw)->copyPolicyFrom(live));
  return std::move(*fw);
}

// Runs one packet on an idle instance and reads what it decided: from the verdict record when
// loaded with recordVerdict, else from the counters it moved (so the exact build under test
// runs, not a variant with the recorder switched on). Without the record, a rule other than
// `expectRule` shows as kOtherRule.
Result<ExpectedVerdict> runOne(FirewallProgram& fw, const SelfTestPacket& p, uint32_t expectRule) {
  EW_TRY(cleared, fw.clearState());
  if (fw.options().recordVerdict) {
    EW_TRY(r, fw.testRun(p.hook, p.frame));
    return ExpectedVerdict{r->pass, r->verdict.reason, r->verdict.rule};
  }
  constexpr uint32_t kSlots = uint32_t{EW_DIRS} * EW_R_COUNT;
  const bool countRule = expectRule != EW_RULE_NONE && expectRule < fw.options().capRules;
  EW_TRY(before, fw.readCounters(FirewallMap::ReasonStats, kSlots));
  ew_counter ruleBefore{};
  if (countRule) {
    EW_TRY(c, fw.readCounter(FirewallMap::RuleStats, expectRule));
    ruleBefore = *c;
  }
  EW_TRY(r, fw.testRun(p.hook, p.frame));
  EW_TRY(after, fw.readCounters(FirewallMap::ReasonStats, kSlots));
  ExpectedVerdict v;
  v.pass = r->pass;
  v.reason = 0xff;
  for (uint32_t i = 0; i < kSlots; i++)
    if ((*after)[i].packets != (*before)[i].packets) {
      v.reason = static_cast<uint8_t>(i % EW_R_COUNT);
      break;
    }
  if (v.reason == 0xff) return failf("{}: the program counted no reason", p.label);
  if (ruleBased(v.reason)) {
    v.rule = kOtherRule;
    if (countRule) {
      EW_TRY(c, fw.readCounter(FirewallMap::RuleStats, expectRule));
      if (c->packets != ruleBefore.packets) v.rule = expectRule;
    }
  }
  return v;
}

std::string mismatchText(const SelfTestMismatch& m) {
  return fmt::format("{}: expected {}, the new program decided {}", m.label, describe(m.expected),
                     describe(m.actual));
}

}  // namespace

Result<std::unique_ptr<ProgramManager>> ProgramManager::start(const FirewallOptions& opts) {
  std::unique_ptr<ProgramManager> pm(new ProgramManager());
  EW_TRY(fw, FirewallProgram::load(opts));
  pm->fw_ = std::move(*fw);
  if (!opts.pinDir.empty()) {
    EW_TRY(adopted, pm->adoptPinnedLinks());
    EW_TRY(pinned, pm->fw_->pinPrograms());
  }
  return pm;
}

Result<void> ProgramManager::adoptPinnedLinks() {
  const std::string dir = fw_->options().pinDir + "/links";
  std::error_code ec;
  if (!fs::exists(dir, ec)) return {};
  std::vector<fs::path> pins;
  for (const auto& e : fs::directory_iterator(dir, ec)) pins.push_back(e.path());
  if (ec) return fail(fmt::format("listing {}: {}", dir, ec.message()));
  std::sort(pins.begin(), pins.end());

  for (const auto& pin : pins) {
    const std::string path = pin.string(), name = pin.filename().string();
    EW_TRY(fd, FirewallProgram::adoptLink(path));
    EW_TRY(info, FirewallProgram::linkInfo(fd->get()));
    if (name.ends_with(bpf::kPinTempSuffix) || info->ifindex == 0) {
      // A pin a replacement left half done, or a link whose interface is gone.
      EW_TRY(detached, FirewallProgram::detachLink(fd->get()));
      if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        return failErrno(fmt::format("removing {}", path));
      startLog_.push_back(fmt::format(
          "removed {}: {}", name,
          info->ifindex == 0 ? "its interface is gone" : "left over from an interrupted pin"));
      continue;
    }
    if (!info->hook) return failf("{} is not a firewall link (link type {})", path, info->type);
    ManagedLink l;
    l.pinName = name;
    l.pinPath = path;
    l.hook = *info->hook;
    l.ifindex = info->ifindex;
    EW_TRY(prog, FirewallProgram::programById(info->progId));
    EW_TRY(same, fw_->sameCode(l.hook, info->progId));
    if (*same) {
      l.prog = std::move(*prog);
      l.origin = "adopted";
    } else {
      EW_TRY(upd, FirewallProgram::updateLinkTo(fd->get(), fw_->progFd(l.hook), prog->get()));
      EW_TRY(mine, dupFd(fw_->progFd(l.hook)));
      l.prog = std::move(*mine);
      l.origin = "adopted, updated";
    }
    l.fd = std::move(*fd);
    startLog_.push_back(fmt::format("{} {} ({} on ifindex {})", l.origin, name,
                                    FirewallProgram::hookName(l.hook), l.ifindex));
    links_.push_back(std::move(l));
  }
  return {};
}

Result<const ManagedLink*> ProgramManager::ensureLink(const std::string& netns,
                                                      const std::string& ifname, Hook hook,
                                                      bpf::XdpMode mode) {
  const std::string name = FirewallProgram::linkPinName(netns, ifname, hook);
  EW_TRY(ifindex, bpf::ifindexOf(ifname));
  auto it = std::find_if(links_.begin(), links_.end(),
                         [&](const ManagedLink& l) { return l.pinName == name; });
  if (it != links_.end()) {
    if (it->ifindex == *ifindex) {
      it->netns = netns;
      it->ifname = ifname;
      return &*it;
    }
    // The name now belongs to another interface: the pinned link is stale.
    EW_TRY(removed, removeLink(name));
  }
  ManagedLink l;
  l.pinName = name;
  l.netns = netns;
  l.ifname = ifname;
  l.hook = hook;
  l.ifindex = *ifindex;
  l.origin = "attached";
  EW_TRY(fd, fw_->attach(hook, *ifindex, mode));
  if (!fw_->options().pinDir.empty()) {
    EW_TRY(path, fw_->pinLink(fd->get(), name));
    l.pinPath = *path;
  }
  EW_TRY(prog, dupFd(fw_->progFd(hook)));
  l.fd = std::move(*fd);
  l.prog = std::move(*prog);
  links_.push_back(std::move(l));
  return &links_.back();
}

Result<void> ProgramManager::removeLink(const std::string& pinName) {
  auto it = std::find_if(links_.begin(), links_.end(),
                         [&](const ManagedLink& l) { return l.pinName == pinName; });
  if (it == links_.end()) return fail(ErrorCode::NotFound, "no link " + pinName);
  EW_TRY(detached, FirewallProgram::detachLink(it->fd.get()));
  if (!it->pinPath.empty() && ::unlink(it->pinPath.c_str()) != 0 && errno != ENOENT)
    return failErrno(fmt::format("removing {}", it->pinPath));
  links_.erase(it);
  return {};
}

Result<std::vector<ExpectedVerdict>> ProgramManager::decide(
    const FirewallOptions& opts, std::span<const SelfTestPacket> packets) const {
  FirewallOptions o = opts;
  o.recordVerdict = true;  // an oracle: the exact rule matters more than the exact build
  EW_TRY(scratch, scratchCopy(o, *fw_));
  std::vector<ExpectedVerdict> out;
  out.reserve(packets.size());
  for (const auto& p : packets) {
    EW_TRY(v, runOne(**scratch, p, EW_RULE_NONE));
    out.push_back(*v);
  }
  return out;
}

Result<std::vector<SelfTestCase>> ProgramManager::casesFromCurrent(
    std::vector<SelfTestPacket> packets) const {
  EW_TRY(verdicts, decide(fw_->options(), packets));
  std::vector<SelfTestCase> cases;
  cases.reserve(packets.size());
  for (size_t i = 0; i < packets.size(); i++)
    cases.push_back({std::move(packets[i]), (*verdicts)[i]});
  return cases;
}

std::string ProgramManager::tag() const {
  auto info = fw_->programInfo(Hook::XdpIngress);
  return info ? info->tag : std::string();
}

UpgradeResult ProgramManager::upgrade(const FirewallOptions& newOpts,
                                      std::span<const SelfTestCase> cases) {
  UpgradeResult res;
  res.programTag = tag();
  res.selfTestPackets = cases.size();
  FirewallOptions opts = newOpts;
  opts.pinDir = fw_->options().pinDir;

  // 1. The new build on its own maps with a copy of the live policy: verifier, then verdicts.
  // Meanwhile (the verifier takes about a second per load) the same build is loaded a second
  // time, on the live maps; it only goes live if the first one passed.
  std::unique_ptr<FirewallProgram> loaded;
  Error loadError;
  std::thread loader([&] {
    auto r = FirewallProgram::loadSharing(opts, *fw_);
    if (r)
      loaded = std::move(*r);
    else
      loadError = r.error();
  });
  struct Join {
    std::thread& t;
    ~Join() {
      if (t.joinable()) t.join();
    }
  } join{loader};
  auto scratch = scratchCopy(opts, *fw_);
  if (!scratch) {
    res.reason = "the new program did not load: " + scratch.error().str();
    return res;
  }
  size_t differing = 0;
  for (const auto& c : cases) {
    auto v = runOne(**scratch, c.packet, c.expected.rule);
    if (!v) {
      res.reason = "self-test: " + v.error().str();
      return res;
    }
    if (*v == c.expected) continue;
    if (differing++ < kMaxMismatchesReported)
      res.mismatches.push_back({c.packet.label, c.expected, *v});
  }
  if (differing) {
    res.reason = fmt::format("self-test: {} of {} packets decided differently; first: {}",
                             differing, cases.size(), mismatchText(res.mismatches.front()));
    return res;
  }

  // 2. The same build for real, sharing the live maps.
  loader.join();
  if (!loaded) {
    res.reason = "the new program did not load on the live maps: " + loadError.str();
    return res;
  }
  for (Hook h : bpf::kAllHooks) {
    auto tested = (*scratch)->programInfo(h);
    auto same = tested ? loaded->sameCode(h, tested->id) : Result<bool>(false);
    if (!same || !*same) {
      res.reason = fmt::format("the program loaded on the live maps is not the one tested ({})",
                               FirewallProgram::programName(h));
      return res;
    }
  }
  scratch->reset();

  // 3. Move every link; on the first failure move the moved ones back.
  std::erase_if(links_, [](const ManagedLink& l) {
    auto info = FirewallProgram::linkInfo(l.fd.get());
    if (!info || info->ifindex != 0) return false;
    if (!l.pinPath.empty()) ::unlink(l.pinPath.c_str());
    return true;  // the interface is gone: nothing to move
  });
  for (size_t i = 0; i < links_.size(); i++) {
    ManagedLink& l = links_[i];
    auto r = FirewallProgram::updateLinkTo(l.fd.get(), loaded->progFd(l.hook), l.prog.get());
    if (r) continue;
    res.reason = fmt::format("updating link {}: {}", l.pinName, r.error().str());
    for (size_t j = 0; j < i; j++) {
      ManagedLink& b = links_[j];
      auto back = FirewallProgram::updateLinkTo(b.fd.get(), b.prog.get(), loaded->progFd(b.hook));
      if (!back)
        res.reason +=
            fmt::format("; ROLLBACK FAILED for link {}: {}", b.pinName, back.error().str());
    }
    res.rolledBack = i > 0;
    if (res.rolledBack) res.reason += fmt::format("; {} link(s) moved back", i);
    return res;
  }

  // 4. The new program is the active one; the old object goes (its programs with it).
  for (ManagedLink& l : links_) {
    auto mine = dupFd(loaded->progFd(l.hook));
    if (mine) l.prog = std::move(*mine);
  }
  fw_->swap(*loaded);
  loaded.reset();
  res.ok = true;
  res.linksUpdated = links_.size();
  res.programTag = tag();
  if (!fw_->options().pinDir.empty())
    if (auto p = fw_->pinPrograms(); !p)
      res.reason = "warning: the programs were not re-pinned: " + p.error().str();
  return res;
}

}  // namespace edgeward::dataplane
