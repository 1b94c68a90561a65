// A client of the agent's gRPC API, as used by the CLI. Every call returns the agent's answer or
// an Error whose message is the server's one-line status message and whose code mirrors the
// gRPC status (ABORTED -> Conflict, PERMISSION_DENIED/UNAUTHENTICATED -> PermissionDenied, ...).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "api/control.h"
#include "common/result.h"

namespace edgeward::api {

inline constexpr const char* kDefaultServer = "unix:///run/edgeward/agent.sock";

struct ClientOptions {
  // "unix:///path/to/agent.sock" or "host:port" (mutual TLS: needs caFile, certFile, keyFile).
  std::string server = kDefaultServer;
  std::string caFile;      // PEM: the CA that signed the agent's certificate
  std::string certFile;    // PEM: this client's certificate
  std::string keyFile;     // PEM: its private key
  std::string serverName;  // name to verify in the agent's certificate; "" = the host in `server`
  std::chrono::milliseconds timeout{30000};  // per call (not for watch)
};

// One event as the agent sends it (proto edgeward.v1.Event).
struct EventRecord {
  std::string kind;
  uint64_t timeNs = 0;
  std::string verdict;
  uint32_t family = 0;
  std::string src, dst;
  uint32_t proto = 0, sport = 0, dport = 0;
  std::string direction, reason;
  uint32_t ifindex = 0;
  std::string interface;
  int64_t ruleId = -1;
  std::string rule, identity;
  uint32_t pktLen = 0, sampledOut = 0;
  uint64_t durationNs = 0;
  uint32_t netns = 0;
};

struct EventsRequest {
  std::vector<std::string> kinds;
  std::string rule, identity, verdict;
  uint16_t port = 0;
  uint32_t recent = 0;
  bool follow = false;
};

class AgentClient {
 public:
  // Checks the options and reads the credentials; does not contact the agent (the first call
  // does, and reports an unreachable agent as ErrorCode::Unavailable).
  static Result<AgentClient> connect(const ClientOptions& options);

  AgentClient(AgentClient&&) noexcept;
  AgentClient& operator=(AgentClient&&) noexcept;
  ~AgentClient();

  Result<ApplyResult> applyPolicy(const ApplyRequest& req);
  Result<ApplyResult> patchPolicy(const PatchRequest& req);
  Result<std::pair<VersionInfo, std::string>> getPolicy(std::optional<uint64_t> version = {});
  Result<policy::PolicyDiff> diffPolicy(const std::string& yaml, const std::string& source);
  Result<VersionInfo> rollbackPolicy(std::optional<uint64_t> to = {});
  Result<std::vector<VersionInfo>> listVersions();
  Result<Status> status();
  Result<std::string> upgradeProgram(const std::string& objectPath);
  Result<void> setSwitches(std::optional<bool> synLimit);
  // WebAssembly modules: the loaded module (kind, name) and whether it replaced one.
  Result<std::pair<ModuleInfo, bool>> loadModule(const std::string& manifest,
                                                 const std::string& wasm,
                                                 const std::string& source);
  Result<void> unloadModule(const std::string& kind, const std::string& name);
  Result<std::vector<ModuleInfo>> listModules();
  Result<FunctionOutput> invokeFunction(const std::string& name, const std::string& input);

  // Calls onEvent for each event until it returns false, `stop` is requested, or the agent ends
  // the stream. Blocks. Returns success when stopped by onEvent or `stop`; otherwise the error
  // the stream ended with (Unavailable "agent shutting down" when the agent stops).
  // onSubscribed, if set, runs once the agent has registered the watch.
  Result<void> watch(const std::function<bool(const WatchEvent&)>& onEvent,
                     std::stop_token stop = {}, const std::function<void()>& onSubscribed = {});

  // Streams events: onBatch gets each batch and how many events the stream missed before it
  // (it fell behind); returning false stops. Blocks like watch().
  Result<void> events(const EventsRequest& req,
                      const std::function<bool(const std::vector<EventRecord>&, uint64_t)>& onBatch,
                      std::stop_token stop = {});

  const std::string& server() const;

 private:
  struct Impl;
  explicit AgentClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgeward::api
