#include "wasm/plugin_manager.h"

#include <fmt/format.h>

#include "common/one_line.h"

#include "edgeward_event.h"
#include "wasm/rate_limiter.h"

namespace edgeward::wasm {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kMaxPending = 1024;   // async operations per plugin
constexpr size_t kMaxKvBytes = 1 << 20;  // per plugin
constexpr size_t kMaxEmitsPerCall = 64;
constexpr int32_t kStatusOk = 0, kStatusFailed = 1;
constexpr size_t kModuleCacheEntries = 32;

struct Counter {
  std::atomic<uint64_t> v{0};
  void add(uint64_t n = 1) { v.fetch_add(n, std::memory_order_relaxed); }
  uint64_t get() const { return v.load(std::memory_order_relaxed); }
};

}  // namespace

struct PluginManager::Version {
  Manifest manifest;
  Effective eff;
  std::shared_ptr<const CompiledModule> module;
  std::shared_ptr<InstancePool> pool;
};

struct PluginManager::Plugin {
  std::string name;
  PluginManager* mgr = nullptr;
  std::atomic<bool> unloaded{false};
  std::atomic<bool> enabled{true};
  std::atomic<int32_t> nextToken{1};
  std::atomic<uint32_t> pending{0};

  mutable std::mutex mu;  // everything below
  std::shared_ptr<Version> version;
  std::map<std::string, std::string, std::less<>> kv;
  size_t kvBytes = 0;
  std::string disabledReason;
  std::string lastError;

  Counter calls, passed, dropped, replaced, emitted, published, completions, failures, timeouts,
      memoryErrors, stackOverflows, traps, rateLimited, busy, reloads, consecutive, callNs;

  std::shared_ptr<Version> current() const {
    std::lock_guard l(mu);
    return version;
  }
  RateLimiter rate;
};

struct PluginManager::Job {
  Clock::time_point due;
  uint64_t seq = 0;
  std::shared_ptr<Plugin> plugin;
  int32_t token = 0;
  bool publish = false;  // hand to the sink; otherwise complete with `status`
  int32_t status = 0;
  std::string topic;
  std::vector<uint8_t> data;
};

namespace {

// The host services of one plugin instance. Emitted events and the replacement are kept until
// the call returns.
class Services final : public host::HostServices {
 public:
  Services(PluginManager::Plugin& p,
           std::function<void(PluginManager::Plugin&, bool, int32_t, uint32_t, std::string_view,
                              std::span<const uint8_t>)>
               schedule,
           const PluginManager::Callbacks& cb)
      : p_(p), schedule_(std::move(schedule)), cb_(cb) {}

  void begin() {
    emitted.clear();
    replacement.reset();
    dropAsync();
  }
  // Hands the async operations the call issued to the scheduler, once the call has returned and
  // its emits are delivered: a completion never overtakes the call that asked for it.
  void flushAsync() {
    for (auto& a : async_) schedule_(p_, a.publish, a.token, a.ms, a.topic, a.data);
    async_.clear();
  }
  // A failed call's operations never happen.
  void dropAsync() {
    p_.pending.fetch_sub(static_cast<uint32_t>(async_.size()));
    async_.clear();
  }

  void log(int level, std::string_view message) override {
    if (cb_.log) cb_.log(p_.name, level, message);
  }
  int32_t emit(std::string_view topic, std::span<const uint8_t> data) override {
    if (emitted.size() >= kMaxEmitsPerCall) return host::kErrLimit;
    emitted.emplace_back(std::string(topic), std::vector<uint8_t>(data.begin(), data.end()));
    return 0;
  }
  std::optional<std::string> kvGet(std::string_view key) override {
    std::lock_guard l(p_.mu);
    auto it = p_.kv.find(key);
    if (it == p_.kv.end()) return std::nullopt;
    return it->second;
  }
  int32_t kvSet(std::string_view key, std::span<const uint8_t> value) override {
    std::lock_guard l(p_.mu);
    auto it = p_.kv.find(key);
    size_t old = it == p_.kv.end() ? 0 : key.size() + it->second.size();
    size_t next = p_.kvBytes - old + key.size() + value.size();
    if (next > kMaxKvBytes) return host::kErrTooBig;
    std::string v(reinterpret_cast<const char*>(value.data()), value.size());
    if (it == p_.kv.end()) {
      p_.kv.emplace(std::string(key), std::move(v));
    } else {
      it->second = std::move(v);
    }
    p_.kvBytes = next;
    return 0;
  }
  int32_t publish(std::string_view topic, std::span<const uint8_t> data) override {
    return async(true, 0, topic, data);
  }
  int32_t timer(uint32_t ms) override { return async(false, ms, {}, {}); }
  int32_t replace(std::span<const uint8_t> data) override {
    replacement.emplace(data.begin(), data.end());
    return 0;
  }

  std::vector<std::pair<std::string, std::vector<uint8_t>>> emitted;
  std::optional<std::vector<uint8_t>> replacement;

 private:
  int32_t async(bool publish, uint32_t ms, std::string_view topic, std::span<const uint8_t> data) {
    if (p_.pending.fetch_add(1) >= kMaxPending) {
      p_.pending.fetch_sub(1);
      return host::kErrLimit;
    }
    int32_t token = p_.nextToken.fetch_add(1);
    if (p_.nextToken.load() <= 0) p_.nextToken.store(1);  // wrapped: tokens stay positive
    async_.push_back(
        {publish, token, ms, std::string(topic), std::vector<uint8_t>(data.begin(), data.end())});
    return token;
  }

  struct Async {
    bool publish;
    int32_t token;
    uint32_t ms;
    std::string topic;
    std::vector<uint8_t> data;
  };
  std::vector<Async> async_;

  PluginManager::Plugin& p_;
  std::function<void(PluginManager::Plugin&, bool, int32_t, uint32_t, std::string_view,
                     std::span<const uint8_t>)>
      schedule_;
  const PluginManager::Callbacks& cb_;
};

Services& servicesOf(Instance& i) { return static_cast<Services&>(*i.services); }

// Copies `data` into the instance's host->guest buffer, growing it through ew_alloc.
Result<uint32_t> put(Instance& i, std::span<const uint8_t> data) {
  if (data.size() > i.bufCap) {
    uint32_t want = std::max<uint32_t>(static_cast<uint32_t>(data.size()), 256);
    uint64_t arg = want;
    EW_TRY(r, i.vm->call(i.alloc, std::span<const uint64_t>(&arg, 1)));
    uint32_t ptr = static_cast<uint32_t>(r->value.value_or(0));
    if (ptr == 0) return fail(fmt::format("ew_alloc({}) returned 0 (out of memory)", want));
    i.buf = ptr;
    i.bufCap = want;
  }
  if (!i.vm->getMemory().write(i.buf, data))
    return fail(fmt::format("ew_alloc returned {} which is outside guest memory", i.buf));
  return i.buf;
}

Result<void> checkExport(const ModuleInfo& info, std::string_view name, const FuncType& want,
                         bool required) {
  const Export* e = info.findExport(name, ExternKind::Func);
  if (!e) {
    if (required)
      return failf("the module does not export {} {} (see plugins/sdk/edgeward_plugin.h)", name,
                   describe(want));
    return {};
  }
  if (e->type != want)
    return failf("the module exports {} as {}, the plugin ABI needs {}", name, describe(e->type),
                 describe(want));
  return {};
}

}  // namespace

PluginManager::PluginManager(OperatorCaps caps, Callbacks callbacks, VmFactory engine)
    : caps_(std::move(caps)),
      cb_(std::move(callbacks)),
      engine_(std::move(engine)),
      cache_(engine_, kModuleCacheEntries),
      jobs_([](const Job& a, const Job& b) {
        return a.due != b.due ? a.due > b.due : a.seq > b.seq;
      }) {
  relay_->manager = this;
  async_ = std::thread([this] { asyncLoop(); });
}

PluginManager::~PluginManager() {
  {
    std::lock_guard l(relay_->mu);  // a sink answering from now on reaches nobody
    relay_->manager = nullptr;
  }
  {
    std::lock_guard l(asyncMu_);
    stop_ = true;
  }
  asyncCv_.notify_all();
  async_.join();
  std::lock_guard l(mu_);
  plugins_ = std::make_shared<const PluginList>();
}

Result<std::shared_ptr<PluginManager::Version>> PluginManager::build(
    const Manifest& m, std::span<const uint8_t> wasm, const std::shared_ptr<Plugin>& plugin) {
  if (m.kind != ModuleKind::Plugin)
    return failf("{}: the manifest is for a Function, not a Plugin", m.name);
  auto err = [&](const Error& e) {
    return std::unexpected(Error(ErrorCode::InvalidArgument,
                                 fmt::format("plugin {}: {}", m.name, oneLine(e.message()))));
  };
  auto v = std::make_shared<Version>();
  v->manifest = m;
  auto eff = resolve(m, caps_);
  if (!eff) return std::unexpected(eff.error());
  v->eff = std::move(*eff);
  auto mod = cache_.getCapped(wasm, v->eff.limits.memoryBytes);
  if (!mod) return err(mod.error());
  v->module = *mod;
  using enum ValType;
  const ModuleInfo& info = v->module->info();
  for (auto [name, type, required] :
       {std::tuple{"ew_on_event", FuncType{{I32, I32}, {I32}}, true},
        {"ew_alloc", FuncType{{I32}, {I32}}, true},
        {"ew_on_complete", FuncType{{I32, I32, I32, I32}, {}}, false}}) {
    auto ok = checkExport(info, name, type, required);
    if (!ok) return err(ok.error());
  }
  if (!info.memory) return err(Error("the module has no memory of its own"));

  Plugin* p = plugin.get();
  auto scheduleFn = [this](Plugin& pl, bool publish, int32_t token, uint32_t ms,
                           std::string_view topic, std::span<const uint8_t> data) {
    Job j;
    j.due = Clock::now() + std::chrono::milliseconds(ms);
    j.plugin = nullptr;
    std::lock_guard l(mu_);
    for (auto& sp : *plugins_)
      if (sp.get() == &pl) j.plugin = sp;
    if (!j.plugin) {
      pl.pending.fetch_sub(1);
      return;
    }
    j.token = token;
    j.publish = publish;
    j.topic = std::string(topic);
    j.data.assign(data.begin(), data.end());
    this->schedule(std::move(j));
  };
  wasi::WasiConfig wc = wasiConfigFor(m, v->eff);
  wc.sink = [this, p](int fd, std::string_view bytes) {
    if (cb_.log) cb_.log(p->name, fd == 2 ? 2 : 1, bytes);
  };
  VmFactory factory = engine_;
  auto module = v->module;
  uint64_t cpu = v->eff.limits.cpuPerCallNs;
  const Callbacks& cb = cb_;
  v->pool = InstancePool::make(
      [=, &cb]() {
        return makeInstance(factory, module, cpu, wc,
                            std::make_unique<Services>(*p, scheduleFn, cb), "ew_on_event");
      },
      nullptr, v->eff.limits.instances);
  // Pre-warming also proves the module instantiates (imports resolve, start function runs).
  auto warm = v->pool->prewarm(std::min<uint32_t>(2, v->eff.limits.instances));
  if (!warm) return err(warm.error());
  return v;
}

Result<void> PluginManager::load(const Manifest& manifest, std::span<const uint8_t> wasm) {
  {
    std::lock_guard l(mu_);
    for (auto& p : *plugins_)
      if (p->name == manifest.name)
        return fail(ErrorCode::Conflict,
                    fmt::format("plugin {} is already loaded (replace it, or unload it first)",
                                manifest.name));
  }
  auto plugin = std::make_shared<Plugin>();
  plugin->name = manifest.name;
  plugin->mgr = this;
  EW_TRY(v, build(manifest, wasm, plugin));
  plugin->version = *v;
  std::lock_guard l(mu_);
  for (auto& p : *plugins_)
    if (p->name == manifest.name)
      return fail(ErrorCode::Conflict, fmt::format("plugin {} is already loaded", manifest.name));
  auto next = std::make_shared<PluginList>(*plugins_);
  next->push_back(std::move(plugin));
  plugins_ = std::move(next);
  return {};
}

Result<void> PluginManager::replace(const Manifest& manifest, std::span<const uint8_t> wasm) {
  std::shared_ptr<Plugin> plugin;
  {
    std::lock_guard l(mu_);
    for (auto& p : *plugins_)
      if (p->name == manifest.name) plugin = p;
  }
  if (!plugin)
    return fail(ErrorCode::NotFound, fmt::format("plugin {} is not loaded", manifest.name));
  EW_TRY(v, build(manifest, wasm, plugin));
  std::shared_ptr<Version> old;
  {
    std::lock_guard l(plugin->mu);
    old = std::exchange(plugin->version, *v);
    plugin->disabledReason.clear();
  }
  plugin->consecutive.v = 0;
  plugin->enabled = true;
  return {};  // `old` goes when its last in-flight call returns its instance
}

Result<void> PluginManager::unload(const std::string& name) {
  std::shared_ptr<Plugin> gone;
  {
    std::lock_guard l(mu_);
    auto next = std::make_shared<PluginList>();
    for (auto& p : *plugins_) {
      if (p->name == name) {
        gone = p;
      } else {
        next->push_back(p);
      }
    }
    plugins_ = std::move(next);
  }
  if (!gone) return fail(ErrorCode::NotFound, fmt::format("plugin {} is not loaded", name));
  gone->unloaded = true;  // pending completions are dropped
  return {};
}

Result<void> PluginManager::enable(const std::string& name) {
  auto list = snapshot();
  for (auto& p : *list)
    if (p->name == name) {
      std::lock_guard l(p->mu);
      p->disabledReason.clear();
      p->consecutive.v = 0;
      p->enabled = true;
      return {};
    }
  return fail(ErrorCode::NotFound, fmt::format("plugin {} is not loaded", name));
}

std::shared_ptr<const PluginManager::PluginList> PluginManager::snapshot() const {
  std::lock_guard l(mu_);
  return plugins_;
}

namespace {

PluginStats statsOf(const PluginManager::Plugin& p);

}  // namespace

std::vector<PluginStats> PluginManager::list() const {
  std::vector<PluginStats> out;
  auto list = snapshot();
  for (auto& p : *list) out.push_back(statsOf(*p));
  return out;
}

Result<PluginStats> PluginManager::stats(const std::string& name) const {
  auto list = snapshot();
  for (auto& p : *list)
    if (p->name == name) return statsOf(*p);
  return fail(ErrorCode::NotFound, fmt::format("plugin {} is not loaded", name));
}

namespace {

PluginStats statsOf(const PluginManager::Plugin& p) {
  PluginStats s;
  s.name = p.name;
  auto v = p.current();
  {
    std::lock_guard l(p.mu);
    s.disabledReason = p.disabledReason;
    s.lastError = p.lastError;
  }
  s.enabled = p.enabled;
  s.version = v->manifest.version;
  s.policy = v->manifest.failure;
  s.limits = v->eff.limits;
  s.calls = p.calls.get();
  s.passed = p.passed.get();
  s.dropped = p.dropped.get();
  s.replaced = p.replaced.get();
  s.emitted = p.emitted.get();
  s.published = p.published.get();
  s.completions = p.completions.get();
  s.failures = p.failures.get();
  s.timeouts = p.timeouts.get();
  s.memoryErrors = p.memoryErrors.get();
  s.stackOverflows = p.stackOverflows.get();
  s.traps = p.traps.get();
  s.rateLimited = p.rateLimited.get();
  s.busy = p.busy.get();
  s.reloads = p.reloads.get();
  s.consecutiveFailures = p.consecutive.get();
  s.callNsTotal = p.callNs.get();
  auto ps = v->pool->stats();
  s.instancesLive = ps.live;
  s.instancesIdle = ps.idle;
  return s;
}

Verdict policyVerdict(FailurePolicy p) {
  return p == FailurePolicy::FailClosed ? Verdict::Drop : Verdict::Pass;
}

}  // namespace

EventResult PluginManager::onEvent(std::span<const uint8_t> event) {
  return std::move(onEvents(std::span<const std::span<const uint8_t>>(&event, 1))[0]);
}

std::vector<EventResult> PluginManager::onEvents(std::span<const std::span<const uint8_t>> events) {
  std::vector<EventResult> out(events.size());
  std::vector<std::span<const uint8_t>> data(events.begin(), events.end());
  std::vector<uint16_t> kinds(events.size(), 0);
  for (size_t i = 0; i < events.size(); i++)
    if (events[i].size() >= 2) std::memcpy(&kinds[i], events[i].data(), 2);
  auto list = snapshot();
  for (auto& p : *list) {
    auto ver = p->current();
    const auto& subs = ver->manifest.events;
    std::optional<InstancePool::Lease> lease;  // one instance for the whole batch
    for (size_t i = 0; i < events.size(); i++) {
      if (out[i].verdict == Verdict::Drop) continue;
      if (!subs.empty() && std::find(subs.begin(), subs.end(), kinds[i]) == subs.end()) continue;
      std::vector<uint8_t> replacement;
      Verdict v = run(*p, ver, lease, data[i], replacement);
      if (v == Verdict::Drop) {
        out[i] = {Verdict::Drop, {}};
      } else if (v == Verdict::Replace) {
        out[i].verdict = Verdict::Replace;
        out[i].bytes = std::move(replacement);
        data[i] = out[i].bytes;
      }
    }
  }
  return out;
}

Verdict PluginManager::run(Plugin& p, const std::shared_ptr<Version>& v,
                           std::optional<InstancePool::Lease>& lease, std::span<const uint8_t> data,
                           std::vector<uint8_t>& replacement) {
  FailurePolicy policy = v->manifest.failure;
  if (!p.enabled) return policyVerdict(policy);
  if (!p.rate.take(v->eff.limits.callsPerSecond)) {
    p.rateLimited.add();
    return policyVerdict(policy);
  }
  if (!lease) {
    auto l = v->pool->acquire(std::chrono::nanoseconds(v->eff.limits.cpuPerCallNs));
    if (!l) {
      p.busy.add();
      return policyVerdict(policy);
    }
    lease.emplace(std::move(*l));
  }
  Instance& inst = **lease;
  Services& s = servicesOf(inst);
  s.begin();
  auto t0 = Clock::now();
  auto ptr = put(inst, data);
  Result<CallOutcome> r = ptr ? Result<CallOutcome>() : std::unexpected(ptr.error());
  if (ptr) {
    uint64_t args[2] = {*ptr, data.size()};
    r = inst.vm->call(inst.entry, args);
  }
  p.callNs.add(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()));
  p.calls.add();
  if (!r) {
    Failure kind = inst.vm->failure();
    s.dropAsync();
    lease->discard();
    lease.reset();
    return failed(p, *v, r.error(), kind);
  }
  auto emitted = std::move(s.emitted);
  auto repl = std::move(s.replacement);
  int32_t code = static_cast<int32_t>(r->value.value_or(0));
  if (code < 0 || code > 2 || (code == 2 && !repl)) {
    // A guest that answers nonsense is broken: its instance goes, like one that trapped.
    s.dropAsync();
    lease->discard();
    lease.reset();
    std::string why =
        code == 2
            ? "ew_on_event returned EW_REPLACE without calling ew_replace"
            : fmt::format("ew_on_event returned {}, not EW_PASS, EW_DROP or EW_REPLACE", code);
    return failed(p, *v, Error(why), Failure::Trap);
  }
  if (!emitted.empty()) {
    p.emitted.add(emitted.size());
    if (cb_.emit)
      for (auto& [topic, bytes] : emitted) cb_.emit(p.name, topic, bytes);
  }
  s.flushAsync();
  Verdict verdict = Verdict::Pass;
  if (code == 0) {
    p.passed.add();
  } else if (code == 1) {
    verdict = Verdict::Drop;
    p.dropped.add();
  } else {
    verdict = Verdict::Replace;
    replacement = std::move(*repl);
    p.replaced.add();
  }
  p.consecutive.v = 0;
  return verdict;
}

Verdict PluginManager::failed(Plugin& p, Version& v, const Error& e, Failure kind) {
  p.failures.add();
  switch (kind) {
    case Failure::Timeout:
      p.timeouts.add();
      break;
    case Failure::Memory:
      p.memoryErrors.add();
      break;
    case Failure::Stack:
      p.stackOverflows.add();
      break;
    default:
      p.traps.add();
      break;
  }
  uint64_t n = p.consecutive.v.fetch_add(1) + 1;
  std::string reason;
  {
    std::lock_guard l(p.mu);
    p.lastError = e.message();
    uint32_t after = v.manifest.disableAfter;
    if (after && n >= after && p.enabled) {
      p.enabled = false;
      p.disabledReason =
          fmt::format("disabled after {} consecutive failures; last: {}", n, e.message());
      reason = p.disabledReason;
    }
  }
  if (!reason.empty()) {
    if (cb_.log) cb_.log(p.name, 3, reason);
    if (cb_.disabled) cb_.disabled(p.name, reason);
  }
  if (v.manifest.failure == FailurePolicy::Reload) {
    v.pool->discardAll();
    p.reloads.add();
    auto warm = v.pool->prewarm(1);
    if (!warm && cb_.log) cb_.log(p.name, 3, "reload: " + warm.error().message());
  }
  return policyVerdict(v.manifest.failure);
}

void PluginManager::schedule(Job job, bool answersPublish) {
  {
    std::lock_guard l(asyncMu_);
    job.seq = ++jobSeq_;
    jobs_.push(std::move(job));
    if (answersPublish) publishing_--;  // with the push: waitIdle never sees neither
  }
  asyncCv_.notify_all();
}

void PluginManager::asyncLoop() {
  std::unique_lock l(asyncMu_);
  while (!stop_) {
    if (jobs_.empty()) {
      asyncCv_.wait(l);
      continue;
    }
    auto due = jobs_.top().due;
    if (due > Clock::now()) {
      asyncCv_.wait_until(l, due);
      continue;
    }
    Job job = jobs_.top();
    jobs_.pop();
    const bool handOver = job.publish && cb_.publish;
    if (handOver) publishing_++;
    busyAsync_ = true;
    l.unlock();
    if (handOver) {
      auto once = std::make_shared<std::atomic<bool>>(false);
      cb_.publish(job.plugin->name, job.topic, job.data,
                  [relay = relay_, once, plugin = job.plugin, token = job.token](bool ok) {
                    if (once->exchange(true)) return;
                    std::lock_guard rl(relay->mu);
                    if (relay->manager) relay->manager->publishDone(plugin, token, ok);
                  });
    } else {
      complete(job, job.publish ? kStatusFailed : job.status);  // no sink: the publish failed
      job.plugin->pending.fetch_sub(1);
    }
    job.plugin.reset();
    l.lock();
    busyAsync_ = false;
    asyncCv_.notify_all();
  }
}

void PluginManager::publishDone(std::shared_ptr<Plugin> plugin, int32_t token, bool ok) {
  if (ok) plugin->published.add();
  Job j;
  j.due = Clock::now();
  j.plugin = std::move(plugin);
  j.token = token;
  j.status = ok ? kStatusOk : kStatusFailed;
  schedule(std::move(j), /*answersPublish=*/true);
}

void PluginManager::complete(const Job& job, int32_t status) {
  Plugin& p = *job.plugin;
  if (p.unloaded || !p.enabled) return;
  auto v = p.current();
  auto lease = v->pool->acquire(std::chrono::seconds(1));
  if (!lease) {
    p.busy.add();
    return;
  }
  Instance& inst = **lease;
  if (inst.onComplete < 0) return;
  Services& s = servicesOf(inst);
  s.begin();
  uint64_t args[4] = {static_cast<uint32_t>(job.token), static_cast<uint32_t>(status), 0, 0};
  auto r = inst.vm->call(inst.onComplete, args);
  p.completions.add();
  if (!r) {
    Failure kind = inst.vm->failure();
    s.dropAsync();
    lease->discard();
    lease->release();
    failed(p, *v, r.error().context("ew_on_complete"), kind);
    return;
  }
  auto emitted = std::move(s.emitted);
  p.emitted.add(emitted.size());
  if (cb_.emit)
    for (auto& [topic, bytes] : emitted) cb_.emit(p.name, topic, bytes);
  s.flushAsync();
  lease->release();
}

bool PluginManager::waitIdle(std::chrono::milliseconds timeout) {
  std::unique_lock l(asyncMu_);
  return asyncCv_.wait_for(l, timeout,
                           [&] { return jobs_.empty() && !busyAsync_ && publishing_ == 0; });
}

}  // namespace edgeward::wasm
