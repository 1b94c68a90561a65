// WebAssembly plugins on the event pipeline, and functions for the HTTP listener.
#include <time.h>

#include <cstring>

#include "agent/agent.h"
#include "common/durable_file.h"
#include "wasm/engines.h"

namespace edgeward::agent {
namespace {

std::string kindName(wasm::ModuleKind k) {
  return k == wasm::ModuleKind::Plugin ? "plugin" : "function";
}

// The CLI command that removes a module of `kind`.
std::string removeCommand(const std::string& kind, const std::string& name) {
  return fmt::format("edgeward {} {}", kind == "plugin" ? "plugin unload" : "fn remove", name);
}

std::span<const uint8_t> bytesOf(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

Result<void> Agent::startPlugins() {
  // A long-running agent compiles whole modules at load: with lazy compilation a plugin's first
  // calls would compile under its CPU limit and could fail (fail-open passes them, counted).
  wasm::configureV8({.trapHandler = false, .lazyCompilation = false});
  wasm::OperatorCaps caps;
  for (const auto& [host, writable] : cfg_.plugins.grants) caps.grants.push_back({host, writable});
  wasm::PluginManager::Callbacks cb;
  if (cfg_.publish.file) {
    EW_TRY(pub, pipeline::FilePublisher::start(
                    {.file = *cfg_.publish.file, .durable = cfg_.publish.durable}));
    publisher_ = std::move(*pub);
    notes_.push_back(publisher_->describe());
  }
  cb.emit = [this](const std::string& plugin, std::string_view topic,
                   std::span<const uint8_t> bytes) {
    if (bytes.size() == sizeof(pipeline::Event)) {
      pipeline::Event e;
      std::memcpy(&e, bytes.data(), sizeof e);
      std::lock_guard lock(emittedMu_);
      emitted_.push_back(e);
      return;
    }
    // Any other payload on a topic is a message, sent without an acknowledgement to the guest.
    publishMessage(plugin, topic, bytes, nullptr);
  };
  cb.publish = [this](const std::string& plugin, std::string_view topic,
                      std::span<const uint8_t> bytes,
                      wasm::PluginManager::Callbacks::PublishDone done) {
    publishMessage(plugin, topic, bytes, [done](Result<void> r) { done(r.has_value()); });
  };
  cb.log = [](const std::string& plugin, int level, std::string_view msg) {
    static constexpr const char* kLevels[] = {"debug", "info", "warn", "error"};
    fmt::print(stderr, "edgeward: plugin {} [{}]: {}\n", plugin, kLevels[level & 3], msg);
  };
  cb.disabled = [this](const std::string& plugin, const std::string& why) {
    fmt::print(stderr, "edgeward: plugin {} disabled: {}\n", plugin, why);
    publish({api::WatchEvent::Kind::PluginDisabled,
             {},
             fmt::format("plugin {} disabled: {}", plugin, why),
             nowMs()});
  };
  plugins_ = std::make_unique<wasm::PluginManager>(caps, std::move(cb));
  functions_ = std::make_unique<wasm::FunctionRunner>(caps);
  std::lock_guard lock(modulesMu_);
  std::map<std::pair<std::string, std::string>, std::string> configured;  // -> module file
  for (const ModuleConfig& m : cfg_.plugins.modules) {
    EW_TRY(manifest, wasm::loadManifest(m.manifest));
    auto bytes = files::readFile(m.module, ModuleStore::kMaxModuleBytes);
    if (!bytes) return std::unexpected(bytes.error().context("plugins: cannot read the module"));
    const std::string kind = kindName(manifest->kind);
    auto [at, added] = configured.try_emplace({kind, manifest->name}, m.module);
    if (!added)
      return fail(ErrorCode::InvalidArgument,
                  fmt::format("plugins.modules: {} {} is listed twice ({} and {})", kind,
                              manifest->name, at->second, m.module));
    if (auto r = install(*manifest, std::move(*bytes)); !r)
      return std::unexpected(r.error().context(kind + " " + m.module));
    notes_.push_back(fmt::format("{} {} loaded from {}", kind, manifest->name, m.module));
  }

  // Then what `plugin load` and `fn deploy` stored: later operator actions than the config. One
  // that does not load any more (other grants, a damaged entry) is skipped, not fatal: the
  // firewall must come up; the entry is kept for the operator to fix or remove.
  EW_TRY(store, ModuleStore::open(cfg_.stateDir));
  moduleStore_.emplace(std::move(*store));
  EW_TRY(stored, moduleStore_->list());
  auto warn = [this](std::string note) {
    fmt::print(stderr, "edgeward: {}\n", note);
    notes_.push_back(std::move(note));
  };
  for (const std::string& p : moduleStore_->problems()) warn("modules: " + p);
  for (const std::string& p : stored->problems)
    warn(fmt::format("modules: {}; the entry is kept", p));
  for (StoredModule& s : stored->modules) {
    const std::string manifestPath = s.path + "/" + ModuleStore::kManifestFile;
    auto manifest = wasm::parseManifest(s.manifest, manifestPath);
    if (manifest && (kindName(manifest->kind) != s.kind || manifest->name != s.name))
      manifest = fail(fmt::format("{}: holds the manifest of {} {}", manifestPath,
                                  kindName(manifest->kind), manifest->name));
    auto installed = manifest ? install(*manifest, std::move(s.wasm))
                              : Result<bool>(std::unexpected(manifest.error()));
    auto config = configured.find({s.kind, s.name});
    if (!installed) {
      warn(fmt::format(
          "{} {} stored in {} was not loaded: {}; the entry is kept (`{}` removes "
          "it){}",
          s.kind, s.name, s.path, installed.error().str(), removeCommand(s.kind, s.name),
          config == configured.end() ? "" : "; the one from the config runs"));
      continue;
    }
    notes_.push_back(
        config == configured.end()
            ? fmt::format("{} {} loaded from {} (stored through the API)", s.kind, s.name, s.path)
            : fmt::format("{} {} from {} replaces the one from the config ({}): it was loaded "
                          "through the API later",
                          s.kind, s.name, s.path, config->second));
  }
  if (!plugins_->list().empty())
    bus_->setStage([this](std::vector<pipeline::Event>& b) { runPlugins(b); });
  return {};
}

Result<bool> Agent::install(const wasm::Manifest& manifest, std::string bytes) {
  // sources_ holds exactly what runs, so it says whether this replaces a loaded module.
  const std::pair<std::string, std::string> key{kindName(manifest.kind), manifest.name};
  const bool replaced = sources_.contains(key);
  if (manifest.kind == wasm::ModuleKind::Function) {
    EW_TRY(deployed, functions_->deploy(manifest, bytesOf(bytes)));
  } else {
    EW_TRY(loaded, replaced ? plugins_->replace(manifest, bytesOf(bytes))
                            : plugins_->load(manifest, bytesOf(bytes)));
  }
  sources_[key] = {manifest, std::move(bytes)};
  return replaced;
}

Result<void> Agent::uninstall(const std::string& kind, const std::string& name) {
  if (kind == "function") {
    if (auto r = functions_->remove(name); !r) return fail(ErrorCode::NotFound, r.error().str());
  } else {
    if (auto r = plugins_->unload(name); !r) return fail(ErrorCode::NotFound, r.error().str());
    if (plugins_->list().empty()) bus_->setStage({});
  }
  sources_.erase({kind, name});
  return {};
}

void Agent::publishMessage(const std::string& plugin, std::string_view topic,
                           std::span<const uint8_t> bytes, pipeline::Publisher::Done done) {
  if (!publisher_) {
    // Counted, and said once: the config has no `publish:` destination.
    if (unsentMessages_.fetch_add(1, std::memory_order_relaxed) == 0)
      fmt::print(stderr,
                 "edgeward: plugin {} sent a message on topic {}, but the config has no publish: "
                 "destination; messages are counted and dropped\n",
                 plugin, topic);
    if (done) done(fail(ErrorCode::Unavailable, "no publish destination is configured"));
    return;
  }
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  publisher_->publish(
      {plugin, std::string(topic), std::string(bytes.begin(), bytes.end()),
       static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec)},
      std::move(done));
}

void Agent::runPlugins(std::vector<pipeline::Event>& batch) {
  std::vector<std::span<const uint8_t>> spans;
  spans.reserve(batch.size());
  for (const auto& e : batch) spans.emplace_back(reinterpret_cast<const uint8_t*>(&e), sizeof e);
  auto results = plugins_->onEvents(spans);
  std::vector<pipeline::Event> out;
  out.reserve(batch.size());
  for (size_t i = 0; i < batch.size() && i < results.size(); i++) {
    switch (results[i].verdict) {
      case wasm::Verdict::Pass:
        out.push_back(batch[i]);
        break;
      case wasm::Verdict::Drop:
        break;
      case wasm::Verdict::Replace:
        if (results[i].bytes.size() == sizeof(pipeline::Event)) {
          pipeline::Event e;
          std::memcpy(&e, results[i].bytes.data(), sizeof e);
          out.push_back(e);
        } else {
          out.push_back(batch[i]);  // not an event record: the original goes on
        }
        break;
    }
  }
  {
    std::lock_guard lock(emittedMu_);
    out.insert(out.end(), emitted_.begin(), emitted_.end());
    emitted_.clear();
  }
  batch.swap(out);
}

Result<api::FunctionOutput> Agent::invokeFunction(const std::string& name, std::string input,
                                                  const std::string& caller) {
  if (!functions_) return fail(ErrorCode::Unavailable, "functions are not running");
  std::vector<std::string> env;
  if (!caller.empty()) env.push_back("EW_CALLER=" + caller);
  EW_TRY(r, functions_->invoke(name, std::move(input), std::move(env)));
  return api::FunctionOutput{std::move(r->out), std::move(r->err), r->exitCode};
}

namespace {

api::ModuleInfo infoOf(const wasm::PluginStats& p) {
  api::ModuleInfo m;
  m.kind = "plugin";
  m.name = p.name;
  m.version = p.version;
  m.enabled = p.enabled;
  m.disabledReason = p.disabledReason;
  m.failurePolicy = std::string(wasm::failurePolicyName(p.policy));
  m.calls = p.calls;
  m.passed = p.passed;
  m.dropped = p.dropped;
  m.replaced = p.replaced;
  m.failures = p.failures;
  m.timeouts = p.timeouts;
  m.memoryErrors = p.memoryErrors;
  m.traps = p.traps;
  m.rateLimited = p.rateLimited;
  m.busy = p.busy;
  m.emitted = p.emitted;
  m.published = p.published;
  m.completions = p.completions;
  m.callNsTotal = p.callNsTotal;
  m.instancesLive = p.instancesLive;
  m.lastError = p.lastError;
  return m;
}

api::ModuleInfo infoOf(const wasm::FunctionInfo& f) {
  api::ModuleInfo m;
  m.kind = "function";
  m.name = f.name;
  m.version = f.version;
  m.calls = f.invocations;
  m.failures = f.failures;
  m.rateLimited = f.rateLimited;
  m.instancesLive = f.instancesLive;
  m.callNsTotal = f.callNsTotal;
  m.reset = f.resetsInPlace ? "memcpy" : "instantiate";
  return m;
}

Result<void> admin(const api::Caller& who, std::string_view what) {
  if (who.role != api::Role::Admin)
    return fail(ErrorCode::PermissionDenied, fmt::format("{} may not {}", who.identity, what));
  return {};
}

}  // namespace

Result<api::LoadedModule> Agent::loadModule(const api::Caller& who, const std::string& manifestText,
                                            const std::string& wasmBytes,
                                            const std::string& source) {
  EW_TRY(allowed, admin(who, "load modules"));
  if (!plugins_) return fail(ErrorCode::Unavailable, "plugins are not running");
  auto manifest = wasm::parseManifest(manifestText, source.empty() ? "manifest.yaml" : source);
  if (!manifest) return fail(ErrorCode::InvalidArgument, manifest.error().str());
  const std::string kind = kindName(manifest->kind);
  std::lock_guard lock(modulesMu_);
  // Written before the swap, so that what usually fails (a full disk, an unwritable state
  // directory) fails before anything changed; put in place once the module runs.
  auto pending = moduleStore_->stage(kind, manifest->name, manifestText, wasmBytes);
  if (!pending)
    return fail(ErrorCode::Internal, fmt::format("{} {} not loaded: storing it failed: {}", kind,
                                                 manifest->name, pending.error().str()));
  auto it = sources_.find({kind, manifest->name});
  std::optional<ModuleSource> previous;
  if (it != sources_.end()) previous = it->second;
  auto replaced = install(*manifest, wasmBytes);
  if (!replaced) return fail(ErrorCode::InvalidArgument, replaced.error().str());
  if (auto committed = pending->commit(); !committed) {
    // Memory follows the disk: the previous version (or none) runs again.
    Result<void> undone;
    if (!previous)
      undone = uninstall(kind, manifest->name);
    else if (auto r = install(previous->manifest, std::move(previous->bytes)); !r)
      undone = std::unexpected(r.error());
    return fail(ErrorCode::Internal,
                fmt::format("{} {} not loaded: storing it failed: {}; {}", kind, manifest->name,
                            committed.error().str(),
                            undone ? (previous ? "the previous version runs again"
                                               : "it was unloaded again")
                                   : "undoing the load failed too: " + undone.error().str()));
  }
  if (manifest->kind == wasm::ModuleKind::Function) {
    EW_TRY(f, functions_->info(manifest->name));
    return api::LoadedModule{infoOf(*f), *replaced};
  }
  bus_->setStage([this](std::vector<pipeline::Event>& b) { runPlugins(b); });
  EW_TRY(st, plugins_->stats(manifest->name));
  return api::LoadedModule{infoOf(*st), *replaced};
}

Result<void> Agent::unloadModule(const api::Caller& who, const std::string& kind,
                                 const std::string& name) {
  EW_TRY(allowed, admin(who, "unload modules"));
  if (!plugins_) return fail(ErrorCode::Unavailable, "plugins are not running");
  if (kind != "plugin" && kind != "function")
    return fail(ErrorCode::InvalidArgument,
                fmt::format("unknown module kind \"{}\" (expected plugin or function)", kind));
  std::lock_guard lock(modulesMu_);
  const bool loaded = sources_.contains({kind, name});
  // Also an entry that did not load at start: unloading is how the operator removes it.
  const bool stored = moduleStore_->contains(kind, name);
  if (stored) {
    if (auto r = moduleStore_->remove(kind, name); !r)
      return fail(ErrorCode::Internal,
                  fmt::format("{} {} not unloaded: removing it from the state directory failed: {}",
                              kind, name, r.error().str()));
  }
  if (loaded || !stored) return uninstall(kind, name);
  return {};
}

Result<std::vector<api::ModuleInfo>> Agent::listModules() {
  std::vector<api::ModuleInfo> out;
  for (const auto& p : plugins()) out.push_back(infoOf(p));
  for (const auto& f : functions()) out.push_back(infoOf(f));
  return out;
}

Result<api::FunctionOutput> Agent::runFunction(const api::Caller& who, const std::string& name,
                                               const std::string& input) {
  EW_TRY(allowed, admin(who, "invoke functions"));
  return invokeFunction(name, input, who.identity);
}

std::vector<wasm::PluginStats> Agent::plugins() const {
  return plugins_ ? plugins_->list() : std::vector<wasm::PluginStats>{};
}

std::vector<wasm::FunctionInfo> Agent::functions() const {
  return functions_ ? functions_->list() : std::vector<wasm::FunctionInfo>{};
}

}  // namespace edgeward::agent
