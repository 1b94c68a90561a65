// The agent: owns the data plane, the versioned policy store and the attachments, and implements
// the API's AgentControl. Every policy change is one transaction: validate, compile, write the
// inactive generation, switch, record the version; a failure at any step changes nothing.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <unordered_map>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/config.h"
#include "agent/module_store.h"
#include "agent/policy_store.h"
#include "api/control.h"
#include "bpf/firewall_program.h"
#include "bpf/flowmon_program.h"
#include "pipeline/event_bus.h"
#include "pipeline/file_sink.h"
#include "pipeline/publisher.h"
#include "pipeline/ring_source.h"
#include "policy/identity_index.h"
#include "wasm/function_runner.h"
#include "wasm/plugin_manager.h"
#include "dataplane/dataplane.h"
#include "dataplane/program_manager.h"
#include "policy/policy.h"

namespace edgeward::agent {

// Wall-clock milliseconds since the epoch (versions, watch events).
int64_t nowMs();

class Agent : public api::AgentControl {
 public:
  // Adopts pinned state (maps, links) when present, loads the program, makes the data plane
  // enforce the stored policy (rewriting nothing when the pinned maps already hold it) and
  // attaches to the configured interfaces.
  static Result<std::unique_ptr<Agent>> start(const AgentConfig& cfg);
  ~Agent() override;

  // AgentControl
  Result<api::ApplyResult> applyPolicy(const api::Caller& who,
                                       const api::ApplyRequest& req) override;
  Result<api::ApplyResult> patchPolicy(const api::Caller& who,
                                       const api::PatchRequest& req) override;
  Result<std::pair<api::VersionInfo, std::string>> getPolicy(std::optional<uint64_t> v) override;
  Result<policy::PolicyDiff> diffPolicy(const std::string& yaml,
                                        const std::string& source) override;
  Result<api::VersionInfo> rollbackPolicy(const api::Caller& who,
                                          std::optional<uint64_t> to) override;
  Result<std::vector<api::VersionInfo>> listVersions() override;
  Result<api::Status> status() override;
  std::unique_ptr<api::Subscription> watch(std::function<void(const api::WatchEvent&)> fn) override;
  Result<std::string> upgradeProgram(const api::Caller& who,
                                     const std::string& objectPath) override;
  Result<void> setSwitches(const api::Caller& who, std::optional<bool> synLimit) override;
  Result<std::vector<api::NamedEvent>> recentEvents(const api::EventFilter& f, size_t n) override;
  Result<std::unique_ptr<api::EventStream>> subscribeEvents(const api::EventFilter& f) override;
  Result<api::LoadedModule> loadModule(const api::Caller& who, const std::string& manifest,
                                       const std::string& wasm, const std::string& source) override;
  Result<void> unloadModule(const api::Caller& who, const std::string& kind,
                            const std::string& name) override;
  Result<std::vector<api::ModuleInfo>> listModules() override;
  Result<api::FunctionOutput> runFunction(const api::Caller& who, const std::string& name,
                                          const std::string& input) override;

  // Runs a deployed function: the body is its stdin, `caller` (the client certificate's
  // identity, or "" without mTLS) reaches it as EW_CALLER. For the HTTP listener.
  Result<api::FunctionOutput> invokeFunction(const std::string& name, std::string input,
                                             const std::string& caller);
  std::vector<wasm::PluginStats> plugins() const;
  std::vector<wasm::FunctionInfo> functions() const;

  // The Prometheus text exposition of every metric (docs/observability.md).
  Result<std::string> metricsText();
  // The bus every event source publishes to (plugins and sinks subscribe here).
  pipeline::EventBus& events() { return *bus_; }

  // For follow mode: apply a policy pushed by the upstream controller.
  Result<api::ApplyResult> applyUpstream(const std::string& yaml, const std::string& origin);
  void setUpstreamState(const std::string& state);

  const AgentConfig& config() const { return cfg_; }
  // What start() found and did, one line each (pinned maps adopted, links adopted or created).
  const std::vector<std::string>& startupNotes() const { return notes_; }

 private:
  using FlowmonStats = std::array<uint64_t, FM_S_COUNT>;
  // Status, and flowmon's raw counters from the same read (when it runs) for the metrics.
  Result<api::Status> status(std::optional<FlowmonStats>* flowmonRaw);
  explicit Agent(AgentConfig cfg);
  Result<void> init();
  Result<void> attachAll();
  // The transaction; mu_ held.
  Result<api::ApplyResult> applyLocked(const std::string& yaml, const std::string& source,
                                       const std::string& author, const std::string& origin,
                                       std::optional<uint64_t> ifVersion, bool dryRun);
  Result<api::ApplyResult> patchLocked(const api::Caller& who, const api::PatchRequest& req);
  // After a failed patch: the active policy and image again, from the active text.
  void restoreActive();
  void publish(api::WatchEvent ev);
  api::VersionInfo info(const StoredVersion& v) const;

  class Watcher;
  class EventStreamImpl;

  // What events do not carry and the agent knows: rule names, identities, interfaces.
  // A new table after each policy change; the identity index is built on first use, from the
  // policy active then (no copy of a large policy on the apply path).
  struct EventNameTable {
    std::vector<std::string> rules;
    Agent* agent = nullptr;
    std::unordered_map<uint32_t, std::string> interfaces;
    mutable std::once_flag indexed;
    mutable policy::IdentityIndex identities;
    std::string identityOf(const pipeline::Event& e) const;
  };
  // Event pipeline (agent_events.cc).
  Result<void> startEvents();
  Result<void> writeEventConfig();
  void refreshNames();  // after the active policy or the links changed; mu_ held
  std::shared_ptr<const EventNameTable> names() const;
  api::NamedEvent named(const pipeline::Event& e, const EventNameTable& t) const;
  pipeline::Subscription::Filter filterOf(const api::EventFilter& f) const;
  void recordApply(double seconds, bool ok);
  // WebAssembly plugins and functions (agent_plugins.cc).
  Result<void> startPlugins();
  void runPlugins(std::vector<pipeline::Event>& batch);
  void publishMessage(const std::string& plugin, std::string_view topic,
                      std::span<const uint8_t> bytes, pipeline::Publisher::Done done);
  // Loads a module into the running managers, or replaces the one of the same kind and name
  // (true); the plugin stage is the caller's. Records its source. modulesMu_ held.
  Result<bool> install(const wasm::Manifest& manifest, std::string bytes);
  // Unloads it (ErrorCode::NotFound when it is not loaded). modulesMu_ held.
  Result<void> uninstall(const std::string& kind, const std::string& name);

  AgentConfig cfg_;
  std::mutex mu_;  // serialises transactions and guards the fields below
  std::optional<PolicyStore> store_;
  std::unique_ptr<dataplane::ProgramManager> pm_;  // the program and its links
  bpf::FirewallProgram* fw_ = nullptr;             // pm_->program()
  std::unique_ptr<dataplane::Dataplane> dp_;
  std::optional<policy::Policy> active_;            // parsed active policy
  std::optional<policy::CompiledPolicy> compiled_;  // its image (hint for the next compile)
  std::optional<StoredVersion> activeVersion_;
  std::string activeText_;           // the active version's exact text (what the store holds)
  std::string objectRecord() const;  // file naming the program build upgraded to
  bool attached_ = false;
  std::string upstreamState_;
  std::vector<std::string> notes_;
  int64_t startedAtMs_ = 0;

  // Event pipeline; declared in start order, so destroyed sinks first, the bus last.
  std::unique_ptr<pipeline::EventBus> bus_;
  std::unique_ptr<bpf::FlowmonProgram> flowmon_;
  std::unique_ptr<pipeline::RingSource> source_;
  std::unique_ptr<pipeline::JsonFileSink> fileSink_;
  mutable std::mutex namesMu_;
  std::shared_ptr<const EventNameTable> names_;
  int bpfStatsFd_ = -1;
  // Messages from plugins (ew_publish, ew_emit on a topic); null without `publish:` config
  // (declared before the plugins: it outlives them).
  std::unique_ptr<pipeline::Publisher> publisher_;
  std::atomic<uint64_t> unsentMessages_{0};  // plugin messages with nowhere to go
  std::unique_ptr<wasm::PluginManager> plugins_;
  std::unique_ptr<wasm::FunctionRunner> functions_;
  std::mutex modulesMu_;  // serialises load/unload (and installing the plugin stage)
  std::optional<ModuleStore> moduleStore_;  // modules loaded through the API; modulesMu_
  // What each loaded module was loaded from (kind, name -> manifest, bytes), to put the previous
  // version back when storing its replacement fails; modulesMu_.
  struct ModuleSource {
    wasm::Manifest manifest;
    std::string bytes;
  };
  std::map<std::pair<std::string, std::string>, ModuleSource> sources_;
  std::mutex emittedMu_;
  std::vector<pipeline::Event> emitted_;  // events plugins emitted, joined to the next batch

  // Apply durations for the metrics: histogram buckets (seconds) and totals.
  std::mutex applyStatsMu_;
  std::vector<uint64_t> applyBuckets_;
  uint64_t appliesOk_ = 0, appliesFailed_ = 0;
  double applySeconds_ = 0;

  std::mutex watchMu_;
  uint64_t nextWatcher_ = 0;
  std::map<uint64_t, std::function<void(const api::WatchEvent&)>> watchers_;
};

}  // namespace edgeward::agent
