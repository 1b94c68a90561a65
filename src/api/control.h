// What the API needs from the agent. The agent implements it; the gRPC service (and any other
// front end) adapts requests onto it. No business logic lives in src/api.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "pipeline/event.h"
#include "policy/diff.h"
#include "policy/patch.h"

namespace edgeward::api {

enum class Role { Viewer, Admin };

// Who is calling: from the client certificate (URI SAN, else CN) over mTLS, or "local" on the
// unix socket (whose 0600 mode already limits it to root: local callers are admins).
struct Caller {
  std::string identity;
  Role role = Role::Viewer;
};

struct VersionInfo {
  uint64_t version = 0;     // monotonically increasing; 0 = no policy yet
  std::string hash;         // "sha256:<hex>" of the policy text
  std::string author;       // Caller::identity of whoever applied it
  int64_t appliedAtMs = 0;  // unix time, milliseconds
  std::string name;         // metadata.name
  std::string origin;       // "apply", "rollback to N", "upstream <addr> ...", "startup: FILE"
};

struct ApplyRequest {
  std::string yaml;
  std::string source = "policy.yaml";  // file name for error messages
  std::optional<uint64_t> ifVersion;   // refuse with ErrorCode::Conflict unless current
  bool dryRun = false;
};

// Prefixes added to and removed from identities of the active policy (PatchPolicy).
struct PatchRequest {
  std::vector<policy::IdentityPatch> identities;
  std::optional<uint64_t> ifVersion;  // refuse with ErrorCode::Conflict unless current
  bool dryRun = false;
};

struct ApplyResult {
  VersionInfo version;      // the new version, or the current one when dry-run / unchanged
  policy::PolicyDiff diff;  // from the current policy to the requested one
  bool changed = false;     // false for dry-run and for a policy identical to the current one
  double applyMs = 0;       // parse + compile + map writes + switch
};

struct InterfaceStatus {
  std::string name;
  std::string netns;  // empty: the agent's namespace
  std::string mode;   // "xdp-native", "xdp-generic", "tcx"
  bool attached = false;
};

struct RuleCounter {
  uint32_t id = 0;
  std::string name;
  std::string direction;  // "ingress", "egress"
  std::string action;     // "allow", "deny"
  uint64_t packets = 0, bytes = 0;
};

struct ReasonCounter {
  std::string direction;
  std::string reason;  // policy::reasonName
  bool pass = false;
  uint64_t packets = 0, bytes = 0;
};

// What became of events (docs/observability.md): lost ones are counted, never hidden.
struct EventCounters {
  uint64_t firewallSent = 0;      // drop and connection events the firewall wrote
  uint64_t flowmonSent = 0;       // TCP lifecycle events flowmon wrote
  uint64_t published = 0;         // handed to subscribers
  uint64_t firewallLost = 0;      // ring buffer full (drop and connection events)
  uint64_t flowmonLost = 0;       // ring buffer full
  uint64_t subscriberLost = 0;    // a subscriber (stream, file) fell behind
  uint64_t dropsSampledOut = 0;   // left out by 1-in-N sampling
  uint64_t dropsRateLimited = 0;  // over the per-peer event rate
  bool flowmon = false;           // TCP lifecycle monitoring is running
};

struct Status {
  VersionInfo policy;
  std::vector<InterfaceStatus> interfaces;
  std::string programTag;         // kernel tag of the active firewall program
  int64_t programLoadedAtMs = 0;  // when the kernel loaded it (wall clock, ms since the epoch)
  uint64_t packetsPassed = 0, packetsDropped = 0;
  uint64_t conntrackEntries = 0;
  std::string upstream;  // "" (none), "connected <addr>", "disconnected <addr>: <why>"
  int64_t startedAtMs = 0;
  bool synLimit = true;            // run-time switch
  std::vector<RuleCounter> rules;  // per rule of the active policy
  std::vector<ReasonCounter> reasons;
  EventCounters events;
};

// Which events a reader wants; empty fields match everything.
struct EventFilter {
  std::vector<uint16_t> kinds;   // EW_EV_*
  std::string rule;              // rule name
  std::string identity;          // identity of the peer address
  std::optional<uint16_t> port;  // source or destination port
  std::string verdict;           // "drop" or "allow"
};

// An event with the names the agent knows.
struct NamedEvent {
  pipeline::Event event{};
  std::string rule, identity, interface;
};

class EventStream {
 public:
  struct Batch {
    std::vector<NamedEvent> events;
    uint64_t lost = 0;  // events this stream missed since the previous batch (it fell behind)
    bool closed = false;
  };
  virtual ~EventStream() = default;
  virtual Batch next(std::chrono::milliseconds timeout) = 0;
};

struct WatchEvent {
  enum class Kind {
    PolicyApplied,
    PolicyRolledBack,
    ProgramReplaced,
    UpstreamChanged,
    PluginDisabled
  };
  Kind kind = Kind::PolicyApplied;
  VersionInfo version;
  std::string message;
  int64_t atMs = 0;
};

// Keeps a watch subscription alive; destroying it unsubscribes.
class Subscription {
 public:
  virtual ~Subscription() = default;
};

// A WebAssembly plugin or function loaded in the agent.
struct ModuleInfo {
  std::string kind;  // "plugin", "function"
  std::string name, version;
  bool enabled = true;
  std::string disabledReason, failurePolicy;
  uint64_t calls = 0, passed = 0, dropped = 0, replaced = 0, failures = 0, timeouts = 0,
           memoryErrors = 0, traps = 0, rateLimited = 0, busy = 0, callNsTotal = 0, emitted = 0,
           published = 0, completions = 0;
  uint32_t instancesLive = 0;
  std::string lastError;
  std::string reset;  // functions: "memcpy" (saved state put back) or "instantiate" (each call)
};

struct LoadedModule {
  ModuleInfo module;
  bool replaced = false;  // a module of that kind and name was loaded before
};

struct FunctionOutput {
  std::string out, err;
  int exitCode = 0;
};

class AgentControl {
 public:
  virtual ~AgentControl() = default;
  virtual Result<ApplyResult> applyPolicy(const Caller& who, const ApplyRequest& req) = 0;
  // Changes prefixes of the active policy's identities in one transaction, without sending or
  // re-reading the whole policy; the new version's text is the old one with those lists edited.
  virtual Result<ApplyResult> patchPolicy(const Caller& who, const PatchRequest& req) = 0;
  // The policy text and its version; nullopt = the active one.
  virtual Result<std::pair<VersionInfo, std::string>> getPolicy(std::optional<uint64_t> v) = 0;
  virtual Result<policy::PolicyDiff> diffPolicy(const std::string& yaml,
                                                const std::string& source) = 0;
  // Back to `to`, or to the version before the active one.
  virtual Result<VersionInfo> rollbackPolicy(const Caller& who, std::optional<uint64_t> to) = 0;
  virtual Result<std::vector<VersionInfo>> listVersions() = 0;
  virtual Result<Status> status() = 0;
  virtual std::unique_ptr<Subscription> watch(std::function<void(const WatchEvent&)> fn) = 0;
  // Replaces the firewall program with the BPF object at objectPath ("" = the installed one),
  // keeping maps and attachments; returns a one-line report ("program tag a1b2.. -> c3d4..").
  virtual Result<std::string> upgradeProgram(const Caller& who, const std::string& objectPath) = 0;
  // Run-time switches; a field left nullopt keeps its value.
  virtual Result<void> setSwitches(const Caller& who, std::optional<bool> synLimit) = 0;
  // The last `n` events the filter accepts (oldest first), and a stream of new ones.
  virtual Result<std::vector<NamedEvent>> recentEvents(const EventFilter&, size_t) {
    return fail(ErrorCode::Unavailable, "this agent has no event pipeline");
  }
  virtual Result<std::unique_ptr<EventStream>> subscribeEvents(const EventFilter&) {
    return fail(ErrorCode::Unavailable, "this agent has no event pipeline");
  }
  // WebAssembly modules: load (or replace by name), unload, list, run a function.
  virtual Result<LoadedModule> loadModule(const Caller&, const std::string& /*manifest*/,
                                          const std::string& /*wasm*/,
                                          const std::string& /*source*/) {
    return fail(ErrorCode::Unavailable, "this agent runs no WebAssembly modules");
  }
  virtual Result<void> unloadModule(const Caller&, const std::string& /*kind*/,
                                    const std::string& /*name*/) {
    return fail(ErrorCode::Unavailable, "this agent runs no WebAssembly modules");
  }
  virtual Result<std::vector<ModuleInfo>> listModules() { return std::vector<ModuleInfo>{}; }
  virtual Result<FunctionOutput> runFunction(const Caller&, const std::string& /*name*/,
                                             const std::string& /*input*/) {
    return fail(ErrorCode::Unavailable, "this agent runs no WebAssembly modules");
  }
};

}  // namespace edgeward::api
