// PluginManager: the thread-safe API the agent's event pipeline calls.
//
//   wasm::PluginManager pm(caps, callbacks);             // one per agent
//   pm.load(manifest, wasmBytes);                        // validate, compile, pre-warm, add
//   auto r = pm.onEvent(eventBytes);                     // any thread, concurrently
//   if (r.verdict == wasm::Verdict::Replace) use(r.bytes);
//   pm.replace(manifest2, wasmBytes2);                   // hot: in-flight calls finish on v1
//   pm.stats("name"); pm.list(); pm.unload("name");
//
// Events go through every enabled plugin subscribed to their kind, in load order; a replacement
// feeds the next plugin, a drop stops the chain. Emitted events, published messages and log
// lines reach the agent through Callbacks, never while a guest runs.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "wasm/engines.h"
#include "wasm/instance_pool.h"
#include "wasm/manifest.h"
#include "wasm/module_cache.h"

namespace edgeward::wasm {

enum class Verdict { Pass, Drop, Replace };

struct EventResult {
  Verdict verdict = Verdict::Pass;
  std::vector<uint8_t> bytes;  // the replacement, for Verdict::Replace
};

struct PluginStats {
  std::string name;
  std::string version;
  bool enabled = true;
  std::string disabledReason;
  FailurePolicy policy = FailurePolicy::FailOpen;
  Limits limits;
  uint64_t calls = 0;  // ew_on_event calls that ran
  uint64_t passed = 0;
  uint64_t dropped = 0;
  uint64_t replaced = 0;
  uint64_t emitted = 0;
  uint64_t published = 0;
  uint64_t completions = 0;  // ew_on_complete calls
  uint64_t failures = 0;     // all failed calls, of which:
  uint64_t timeouts = 0;
  uint64_t memoryErrors = 0;
  uint64_t stackOverflows = 0;
  uint64_t traps = 0;        // other traps, host-function refusals and bad verdicts
  uint64_t rateLimited = 0;  // events not given to the plugin: over callsPerSecond
  uint64_t busy = 0;         // events not given to the plugin: every instance busy
  uint64_t reloads = 0;
  uint64_t consecutiveFailures = 0;
  uint64_t callNsTotal = 0;
  uint32_t instancesLive = 0;
  uint32_t instancesIdle = 0;
  std::string lastError;
};

class PluginManager {
 public:
  struct Callbacks {
    // ew_emit: (plugin, topic, bytes), after the call that emitted returned.
    std::function<void(const std::string&, std::string_view, std::span<const uint8_t>)> emit;
    // ew_publish: hands (plugin, topic, bytes) to the sink, which calls `done(true)` once it has
    // taken the message (for a queue: stored durably; for MQTT: acknowledged) or `done(false)`;
    // the guest's ew_on_complete then gets EW_OK or EW_FAILED. Called on the manager's async
    // thread; `done` may be called later, from any thread, once (later calls are ignored).
    using PublishDone = std::function<void(bool)>;
    std::function<void(const std::string&, std::string_view, std::span<const uint8_t>, PublishDone)>
        publish;
    // ew_log and guest stdout/stderr lines: (plugin, level 0-3, message).
    std::function<void(const std::string&, int, std::string_view)> log;
    // A plugin was disabled (name, reason): for status, metrics and the event stream.
    std::function<void(const std::string&, const std::string&)> disabled;
  };

  PluginManager(OperatorCaps caps, Callbacks callbacks,
                VmFactory engine = availableEngines()[0].create);
  ~PluginManager();
  PluginManager(const PluginManager&) = delete;
  PluginManager& operator=(const PluginManager&) = delete;

  // Adds a plugin; on any error nothing changes.
  Result<void> load(const Manifest& manifest, std::span<const uint8_t> wasm);
  // Swaps in a new version of a loaded plugin once it is compiled and pre-warmed; calls running
  // on the old version finish there. kv state and counters carry over; the plugin is enabled.
  Result<void> replace(const Manifest& manifest, std::span<const uint8_t> wasm);
  Result<void> unload(const std::string& name);
  // Re-enables a disabled plugin.
  Result<void> enable(const std::string& name);
  std::vector<PluginStats> list() const;
  Result<PluginStats> stats(const std::string& name) const;

  EventResult onEvent(std::span<const uint8_t> event);
  // A batch (as read from a ring buffer): each plugin runs the whole batch on one instance,
  // which saves the per-event instance hand-over. Results are in the order of `events`.
  std::vector<EventResult> onEvents(std::span<const std::span<const uint8_t>> events);

  // Waits until no async completion is pending, publishes handed to the sink included (tests,
  // orderly shutdown).
  bool waitIdle(std::chrono::milliseconds timeout);
  ModuleCache& cache() { return cache_; }

  struct Plugin;
  struct Version;

 private:
  struct Job;
  Result<std::shared_ptr<Version>> build(const Manifest& m, std::span<const uint8_t> wasm,
                                         const std::shared_ptr<Plugin>& plugin);
  using PluginList = std::vector<std::shared_ptr<Plugin>>;
  std::shared_ptr<const PluginList> snapshot() const;
  // One call of ew_on_event on `lease` (acquired if empty; emptied when the call failed).
  Verdict run(Plugin& p, const std::shared_ptr<Version>& v,
              std::optional<InstancePool::Lease>& lease, std::span<const uint8_t> data,
              std::vector<uint8_t>& replacement);
  Verdict failed(Plugin& p, Version& v, const Error& e, Failure kind);
  // Queues a job; `answersPublish`: it completes a publish handed to the sink (publishing_).
  void schedule(Job job, bool answersPublish = false);
  void asyncLoop();
  // The sink's answer to a publish: its completion is scheduled now.
  void publishDone(std::shared_ptr<Plugin> plugin, int32_t token, bool ok);
  void complete(const Job& job, int32_t status);

  OperatorCaps caps_;
  Callbacks cb_;
  VmFactory engine_;
  ModuleCache cache_;
  mutable std::mutex mu_;
  // Load order; copied on write so an event takes one shared_ptr, not the list.
  std::shared_ptr<const PluginList> plugins_ = std::make_shared<const PluginList>();

  // Async completions (ew_publish, ew_timer): one thread, ordered by due time then token order.
  std::mutex asyncMu_;
  std::condition_variable asyncCv_;
  std::priority_queue<Job, std::vector<Job>, std::function<bool(const Job&, const Job&)>> jobs_;
  uint64_t jobSeq_ = 0;
  bool busyAsync_ = false;
  uint64_t publishing_ = 0;  // handed to the sink, not answered yet
  bool stop_ = false;
  std::thread async_;
  // What a sink's `done` reaches: cleared (under its lock) when the manager goes away first.
  struct Relay {
    std::mutex mu;
    PluginManager* manager = nullptr;
  };
  std::shared_ptr<Relay> relay_ = std::make_shared<Relay>();
};

}  // namespace edgeward::wasm
