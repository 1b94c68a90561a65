#include "agent/agent.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "common/netns.h"
#include "common/yaml_reader.h"
#include "policy/compiler.h"
#include "policy/evaluator.h"
#include "policy/patch.h"
#include "dataplane/selftest.h"

namespace edgeward::agent {

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

namespace {

Result<void> makeDirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return failf("creating {}: {}", dir, ec.message());
  return {};
}

bpf::FirewallOptions optionsOf(const AgentConfig& cfg) {
  bpf::FirewallOptions o;
  o.capIntervals4 = cfg.capacity.ipv4Intervals;
  o.capIntervals6 = cfg.capacity.ipv6Intervals;
  o.capGroups = cfg.capacity.groups;
  o.capPortEntries = cfg.capacity.portEntries;
  o.capRules = cfg.capacity.rules;
  o.conntrackEntries = cfg.capacity.conntrack;
  o.eventRingBytes = cfg.events.ringBytes;
  o.pinDir = cfg.bpffs;
  return o;
}

// The compiler refuses what the loaded maps could not hold.
policy::CompileLimits limitsOf(const AgentConfig& cfg) {
  const auto o = optionsOf(cfg);
  return {.maxRules = o.capRules,
          .maxIntervals4 = o.capIntervals4,
          .maxIntervals6 = o.capIntervals6,
          .maxGroups = o.capGroups,
          .maxPortEntries = o.capPortEntries};
}

Error invalid(const Error& e) { return Error(ErrorCode::InvalidArgument, e.str()); }

}  // namespace

class Agent::Watcher : public api::Subscription {
 public:
  Watcher(Agent* a, uint64_t id) : agent_(a), id_(id) {}
  ~Watcher() override {
    std::lock_guard lock(agent_->watchMu_);
    agent_->watchers_.erase(id_);
  }

 private:
  Agent* agent_;
  uint64_t id_;
};

Agent::Agent(AgentConfig cfg) : cfg_(std::move(cfg)) {}

Agent::~Agent() {
  // Links and maps stay pinned: the data plane keeps enforcing after the agent exits.
  // `edgeward reset` removes them. The event pipeline stops first: its reader thread runs the
  // plugin stage and names events from the agent's state.
  fileSink_.reset();
  source_.reset();
  if (bus_) bus_->setStage({});
  if (bpfStatsFd_ >= 0) ::close(bpfStatsFd_);
}

Result<std::unique_ptr<Agent>> Agent::start(const AgentConfig& cfg) {
  std::unique_ptr<Agent> a(new Agent(cfg));
  EW_TRY(r, a->init());
  return a;
}

api::VersionInfo Agent::info(const StoredVersion& v) const {
  return {v.version, v.hash, v.author, v.appliedAtMs, v.name, v.origin};
}

Result<void> Agent::init() {
  startedAtMs_ = nowMs();
  EW_TRY(d1, makeDirs(cfg_.stateDir));
  EW_TRY(d2, makeDirs(cfg_.bpffs));
  EW_TRY(store, PolicyStore::open(cfg_.stateDir, cfg_.keepVersions));
  store_.emplace(std::move(*store));

  // A build upgraded to from a file stays the build after a restart.
  auto opts = optionsOf(cfg_);
  if (auto obj = yaml::readFile(objectRecord(), 4096); obj && std::filesystem::exists(*obj))
    opts.objectPath = *obj;
  EW_TRY(pm, dataplane::ProgramManager::start(opts));
  pm_ = std::move(*pm);
  fw_ = &pm_->program();
  dp_ = std::make_unique<dataplane::Dataplane>(*fw_);
  notes_.push_back(fmt::format("program: {}{}",
                               opts.objectPath.empty() ? "built-in build" : opts.objectPath,
                               fw_->programInfo(bpf::Hook::XdpIngress)
                                   ? ", tag " + fw_->programInfo(bpf::Hook::XdpIngress)->tag
                                   : ""));
  for (const auto& line : pm_->startLog()) notes_.push_back(line);

  // The policy to enforce: the stored current version, else the configured file.
  std::optional<StoredVersion> current = store_->current();
  std::string yaml;
  if (current) {
    EW_TRY(got, store_->get(current->version));
    yaml = got->second;
  } else if (!cfg_.policyFile.empty()) {
    EW_TRY(text, yaml::readFile(cfg_.policyFile, 64u << 20));
    yaml = *text;
  }
  if (!yaml.empty()) {
    std::lock_guard lock(mu_);
    const std::string source =
        current ? fmt::format("version {}", current->version) : cfg_.policyFile;
    EW_TRY(parsed, policy::parsePolicy(yaml, source));
    EW_TRY(compiled, policy::compile(*parsed, limitsOf(cfg_)));
    EW_TRY(pinnedVersion, dp_->pinnedVersion());
    if (current && fw_->adoptedMaps() && *pinnedVersion == current->version) {
      // The pinned maps already enforce this version: adopt it without writing anything.
      EW_TRY(adopt, dp_->adopt(*compiled));
      notes_.push_back(
          fmt::format("pinned maps adopted: they enforce version {} already", current->version));
    } else {
      if (fw_->adoptedMaps())
        notes_.push_back(fmt::format("pinned maps adopted: they held version {}, applying {}",
                                     *pinnedVersion, current ? current->version : 1));
      if (!current) {
        EW_TRY(v, store_->commit(yaml, parsed->name, "agent", "startup: " + cfg_.policyFile));
        current = *v;
      }
      EW_TRY(applied, dp_->apply(*compiled, current->version));
    }
    active_ = std::move(*parsed);
    compiled_ = std::move(*compiled);
    activeVersion_ = current;
    activeText_ = std::move(yaml);
  }
  EW_TRY(events, startEvents());
  EW_TRY(attached, attachAll());
  std::lock_guard lock(mu_);
  refreshNames();
  return {};
}

Result<void> Agent::attachAll() {
  if (!active_) return {};  // nothing is attached before the first policy: no default deny yet
  for (const InterfaceConfig& iface : cfg_.interfaces) {
    const bpf::Hook in =
        iface.mode == AttachMode::Xdp ? bpf::Hook::XdpIngress : bpf::Hook::TcIngress;
    for (bpf::Hook h : {in, bpf::Hook::TcEgress}) {
      auto link = [&]() -> Result<const dataplane::ManagedLink*> {
        std::optional<netns::NsGuard> inside;  // back to our namespace when it goes
        if (!iface.netns.empty()) {
          EW_TRY(g, netns::NsGuard::enter(iface.netns));
          inside.emplace(std::move(*g));
        }
        return pm_->ensureLink(iface.netns, iface.name, h);
      }();
      if (!link)
        return std::unexpected(link.error().context(fmt::format(
            "interface {}{}", iface.name, iface.netns.empty() ? "" : " in netns " + iface.netns)));
      notes_.push_back(fmt::format("{}{} {}: {}", iface.netns.empty() ? "" : iface.netns + "/",
                                   iface.name, bpf::FirewallProgram::hookName(h), (*link)->origin));
    }
  }
  attached_ = true;
  return {};
}

std::string Agent::objectRecord() const { return cfg_.stateDir + "/program-object"; }

Result<api::ApplyResult> Agent::applyLocked(const std::string& yaml, const std::string& source,
                                            const std::string& author, const std::string& origin,
                                            std::optional<uint64_t> ifVersion, bool dryRun) {
  auto t0 = std::chrono::steady_clock::now();
  uint64_t currentVersion = activeVersion_ ? activeVersion_->version : 0;
  if (ifVersion && *ifVersion != currentVersion)
    return fail(ErrorCode::Conflict,
                fmt::format("version conflict: the active policy is version {}, not {}",
                            currentVersion, *ifVersion));
  auto parsed = policy::parsePolicy(yaml, source);
  if (!parsed) return std::unexpected(invalid(parsed.error()));
  auto compiled = policy::compile(*parsed, limitsOf(cfg_), compiled_ ? &*compiled_ : nullptr);
  if (!compiled) return std::unexpected(invalid(compiled.error().context(source)));

  api::ApplyResult res;
  res.diff = policy::diff(active_ ? *active_ : policy::Policy{}, *parsed);
  if (activeVersion_) res.version = info(*activeVersion_);
  if (dryRun) return res;
  if (activeVersion_ && activeVersion_->hash == PolicyStore::hashOf(yaml)) return res;

  uint64_t next = store_->nextVersion();
  EW_TRY(applied, dp_->apply(*compiled, next));
  auto committed = store_->commit(yaml, parsed->name, author, origin);
  if (!committed) {
    // Recording failed: go back to the previous generation so maps and store agree.
    if (auto r = dp_->revert(); !r)
      return std::unexpected(committed.error().context(
          fmt::format("recording the new version (and reverting failed: {})", r.error().str())));
    return std::unexpected(committed.error().context("recording the new version"));
  }
  active_ = std::move(*parsed);
  compiled_ = std::move(*compiled);
  activeVersion_ = *committed;
  activeText_ = yaml;
  refreshNames();
  res.version = info(*committed);
  res.changed = true;
  res.applyMs =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (!attached_) {
    EW_TRY(att, attachAll());
  }
  return res;
}

Result<api::ApplyResult> Agent::applyPolicy(const api::Caller& who, const api::ApplyRequest& req) {
  if (who.role != api::Role::Admin)
    return fail(ErrorCode::PermissionDenied, who.identity + " may not apply policies");
  Result<api::ApplyResult> r;
  {
    std::lock_guard lock(mu_);
    r = applyLocked(req.yaml, req.source, who.identity, "apply", req.ifVersion, req.dryRun);
  }
  if (!r || r->changed) recordApply(r ? r->applyMs / 1000 : 0, r.has_value());
  if (r && r->changed)
    publish({api::WatchEvent::Kind::PolicyApplied, r->version,
             fmt::format("version {} applied by {} in {:.1f} ms", r->version.version, who.identity,
                         r->applyMs),
             nowMs()});
  return r;
}

Result<api::ApplyResult> Agent::patchPolicy(const api::Caller& who, const api::PatchRequest& req) {
  if (who.role != api::Role::Admin)
    return fail(ErrorCode::PermissionDenied, who.identity + " may not patch policies");
  Result<api::ApplyResult> r;
  {
    std::lock_guard lock(mu_);
    r = patchLocked(who, req);
  }
  if (!r || r->changed) recordApply(r ? r->applyMs / 1000 : 0, r.has_value());
  if (r && r->changed)
    publish({api::WatchEvent::Kind::PolicyApplied, r->version,
             fmt::format("version {} patched by {} in {:.1f} ms", r->version.version, who.identity,
                         r->applyMs),
             nowMs()});
  return r;
}

// The patch transaction: validate, edit the policy and its text in memory, recompile the
// touched buckets, write the inactive generation, switch, record the version. Until the switch
// only the in-memory policy and image changed; on any failure they are rebuilt from the text.
Result<api::ApplyResult> Agent::patchLocked(const api::Caller& who, const api::PatchRequest& req) {
  auto t0 = std::chrono::steady_clock::now();
  uint64_t currentVersion = activeVersion_ ? activeVersion_->version : 0;
  if (req.ifVersion && *req.ifVersion != currentVersion)
    return fail(ErrorCode::Conflict,
                fmt::format("version conflict: the active policy is version {}, not {}",
                            currentVersion, *req.ifVersion));
  if (!active_)
    return fail(ErrorCode::NotFound, "no policy has been applied yet: apply one before patching");
  if (!compiled_) {
    EW_TRY(image, policy::compile(*active_, limitsOf(cfg_)));
    compiled_ = std::move(*image);
  }
  EW_TRY(changes, policy::planPatch(*active_, req.identities));
  api::ApplyResult res;
  res.diff = policy::diffOf(*changes);
  res.diff.defaultActionBefore = res.diff.defaultActionAfter =
      std::string(policy::actionName(active_->defaultAction));
  res.version = info(*activeVersion_);
  if (req.dryRun) return res;

  std::string text = policy::applyPatch(*active_, activeText_, *changes);
  auto compiled = policy::compileChange(*active_, std::move(*compiled_), *changes, limitsOf(cfg_));
  if (!compiled) {
    restoreActive();
    return std::unexpected(invalid(compiled.error()));
  }
  uint64_t next = store_->nextVersion();
  auto applied = dp_->apply(*compiled, next);
  if (!applied) {
    restoreActive();
    return std::unexpected(applied.error());
  }
  auto committed = store_->commit(text, active_->name, who.identity, "patch");
  if (!committed) {
    auto reverted = dp_->revert();
    restoreActive();
    if (!reverted)
      return std::unexpected(committed.error().context(fmt::format(
          "recording the new version (and reverting failed: {})", reverted.error().str())));
    return std::unexpected(committed.error().context("recording the new version"));
  }
  compiled_ = std::move(*compiled);
  activeVersion_ = *committed;
  activeText_ = std::move(text);
  refreshNames();
  res.version = info(*committed);
  res.changed = true;
  res.applyMs =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

void Agent::restoreActive() {
  const std::string source = fmt::format("version {}", activeVersion_->version);
  auto parsed = policy::parsePolicy(activeText_, source);
  auto compiled =
      parsed ? policy::compile(*parsed, limitsOf(cfg_)) : std::unexpected(parsed.error());
  if (!parsed || !compiled) {
    // The text was enforced before, so this does not happen; without an image the next change
    // is a full apply.
    compiled_.reset();
    return;
  }
  active_ = std::move(*parsed);
  compiled_ = std::move(*compiled);
}

Result<api::ApplyResult> Agent::applyUpstream(const std::string& yaml, const std::string& origin) {
  Result<api::ApplyResult> r;
  {
    std::lock_guard lock(mu_);
    r = applyLocked(yaml, origin, origin, origin, std::nullopt, false);
  }
  if (!r || r->changed) recordApply(r ? r->applyMs / 1000 : 0, r.has_value());
  if (r && r->changed)
    publish({api::WatchEvent::Kind::PolicyApplied, r->version,
             fmt::format("version {} from {}", r->version.version, origin), nowMs()});
  return r;
}

Result<std::pair<api::VersionInfo, std::string>> Agent::getPolicy(std::optional<uint64_t> v) {
  std::lock_guard lock(mu_);
  if (!v) {
    if (!activeVersion_) return fail(ErrorCode::NotFound, "no policy has been applied yet");
    v = activeVersion_->version;
  }
  EW_TRY(got, store_->get(*v));
  return std::pair{info(got->first), got->second};
}

Result<policy::PolicyDiff> Agent::diffPolicy(const std::string& yaml, const std::string& source) {
  auto parsed = policy::parsePolicy(yaml, source);
  if (!parsed) return std::unexpected(invalid(parsed.error()));
  std::lock_guard lock(mu_);
  return policy::diff(active_ ? *active_ : policy::Policy{}, *parsed);
}

Result<api::VersionInfo> Agent::rollbackPolicy(const api::Caller& who, std::optional<uint64_t> to) {
  if (who.role != api::Role::Admin)
    return fail(ErrorCode::PermissionDenied, who.identity + " may not roll back policies");
  Result<api::ApplyResult> r;
  {
    std::lock_guard lock(mu_);
    if (!activeVersion_) return fail(ErrorCode::NotFound, "no policy has been applied yet");
    if (!to) {
      EW_TRY(list, store_->list());
      for (const auto& v : *list)  // newest first
        if (v.version < activeVersion_->version && v.hash != activeVersion_->hash) {
          to = v.version;
          break;
        }
      if (!to) return fail(ErrorCode::NotFound, "there is no earlier version to roll back to");
    }
    auto got = store_->get(*to);
    if (!got)
      return fail(ErrorCode::NotFound, fmt::format("version {} is not kept (see `edgeward policy "
                                                   "versions`)",
                                                   *to));
    r = applyLocked(got->second, fmt::format("version {}", *to), who.identity,
                    fmt::format("rollback to {}", *to), std::nullopt, false);
  }
  if (!r) return std::unexpected(r.error());
  publish({api::WatchEvent::Kind::PolicyRolledBack, r->version,
           fmt::format("rolled back to the content of version {} as version {} by {}", *to,
                       r->version.version, who.identity),
           nowMs()});
  return r->version;
}

Result<std::vector<api::VersionInfo>> Agent::listVersions() {
  std::lock_guard lock(mu_);
  EW_TRY(list, store_->list());
  std::vector<api::VersionInfo> out;
  for (const auto& v : *list) out.push_back(info(v));
  return out;
}

std::unique_ptr<api::Subscription> Agent::watch(std::function<void(const api::WatchEvent&)> fn) {
  std::lock_guard lock(watchMu_);
  uint64_t id = nextWatcher_++;
  watchers_[id] = std::move(fn);
  return std::make_unique<Watcher>(this, id);
}

void Agent::publish(api::WatchEvent ev) {
  std::lock_guard lock(watchMu_);
  for (auto& [id, fn] : watchers_) fn(ev);
}

void Agent::setUpstreamState(const std::string& state) {
  {
    std::lock_guard lock(mu_);
    if (upstreamState_ == state) return;
    upstreamState_ = state;
  }
  publish({api::WatchEvent::Kind::UpstreamChanged, {}, "upstream " + state, nowMs()});
}

Result<void> Agent::setSwitches(const api::Caller& who, std::optional<bool> synLimit) {
  if (who.role != api::Role::Admin)
    return fail(ErrorCode::PermissionDenied, who.identity + " may not change switches");
  std::lock_guard lock(mu_);
  if (synLimit) {
    EW_TRY(r, dp_->setFlags(*synLimit ? EW_F_SYN_LIMIT : 0, *synLimit ? 0 : EW_F_SYN_LIMIT));
  }
  return {};
}

Result<std::string> Agent::upgradeProgram(const api::Caller& who, const std::string& objectPath) {
  if (who.role != api::Role::Admin)
    return fail(ErrorCode::PermissionDenied, who.identity + " may not upgrade the program");
  dataplane::UpgradeResult r;
  {
    std::lock_guard lock(mu_);
    if (!compiled_ || !active_)
      return fail(ErrorCode::InvalidArgument, "no policy is active: nothing to self-test against");
    if (!objectPath.empty() && !std::filesystem::exists(objectPath))
      return fail(ErrorCode::InvalidArgument, objectPath + ": no such file");
    // The self-test: what the active policy must decide for packets drawn from it, computed
    // by the literal evaluator (not by the running program).
    std::vector<dataplane::SelfTestCase> cases;
    for (auto& pkt : dataplane::selfTestPackets(*compiled_)) {
      policy::PacketFacts f;
      f.family = pkt.v6 ? policy::Family::V6 : policy::Family::V4;
      f.ingress = pkt.ingress;
      f.src = pkt.src;
      f.dst = pkt.dst;
      f.proto = pkt.proto;
      f.dport = pkt.dport;
      f.icmpType = pkt.icmpType;
      f.hopLimit = pkt.hopLimit;
      policy::Verdict v = policy::evaluate(*active_, f);
      cases.push_back({std::move(pkt), {v.pass, v.reason, v.rule}});
    }
    auto opts = fw_->options();
    opts.objectPath = objectPath;
    r = pm_->upgrade(opts, cases);
    if (r.ok) {
      // Remember the build so a restart keeps it (an empty path means the built-in one).
      std::ofstream(objectRecord(), std::ios::trunc) << objectPath;
    }
  }
  if (!r.ok) {
    std::string why = r.reason;
    for (const auto& m : r.mismatches)
      why += fmt::format("; {}: expected {}, got {}", m.label, dataplane::describe(m.expected),
                         dataplane::describe(m.actual));
    return fail(ErrorCode::InvalidArgument,
                fmt::format("upgrade refused{}: {}", r.rolledBack ? " and rolled back" : "", why));
  }
  std::string report = fmt::format(
      "program upgraded to tag {} ({}): {} self-test packets matched, "
      "{} links moved with bpf_link_update",
      r.programTag, objectPath.empty() ? "built-in" : objectPath, r.selfTestPackets,
      r.linksUpdated);
  publish({api::WatchEvent::Kind::ProgramReplaced, {}, report, nowMs()});
  return report;
}

}  // namespace edgeward::agent
