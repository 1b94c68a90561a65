// The agent: owns the data plane, the versioned policy store and the attachments, and implements
// the API's AgentControl. Every policy change is one transaction: validate, compile, write the
// inactive generation, switch, record the version; a failure at any step changes nothing.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/config.h"
#include "agent/policy_store.h"
#include "api/control.h"
#include "bpf/firewall_program.h"
#include "dataplane/dataplane.h"
#include "dataplane/program_manager.h"
#include "policy/policy.h"

namespace edgeward::agent {

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

  // For follow mode: apply a policy pushed by the upstream controller.
  Result<api::ApplyResult> applyUpstream(const std::string& yaml, const std::string& origin);
  void setUpstreamState(const std::string& state);

  const AgentConfig& config() const { return cfg_; }
  // What start() found and did, one line each (pinned maps adopted, links adopted or created).
  const std::vector<std::string>& startupNotes() const { return notes_; }

 private:
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

  std::mutex watchMu_;
  uint64_t nextWatcher_ = 0;
  std::map<uint64_t, std::function<void(const api::WatchEvent&)>> watchers_;
};

}  // namespace edgeward::agent
