#include "wasm/function_runner.h"

#include <atomic>
#include <chrono>

#include <fmt/format.h>

#include "common/one_line.h"

#include "wasm/rate_limiter.h"

namespace edgeward::wasm {
namespace {

constexpr size_t kModuleCacheEntries = 32;
constexpr auto kBusyWait = std::chrono::seconds(1);

std::unexpected<Error> notDeployed(const std::string& name) {
  return fail(ErrorCode::NotFound, fmt::format("function {} is not deployed", name));
}

}  // namespace

struct FunctionRunner::Function {
  Manifest manifest;
  Effective eff;
  std::shared_ptr<InstancePool> pool;
  std::atomic<uint64_t> invocations{0};
  std::atomic<uint64_t> failures{0};
  std::atomic<uint64_t> rateLimited{0};
  std::array<std::atomic<uint64_t>, kCallBucketCount> callBuckets{};
  std::atomic<uint64_t> callNsTotal{0};
  bool resetsInPlace = true;
  RateLimiter rate;

  FunctionInfo info() const;
  void recordCall(std::chrono::steady_clock::duration d) {
    const uint64_t ns =
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
    callNsTotal.fetch_add(ns, std::memory_order_relaxed);
    size_t b = 0;
    while (b < std::size(kCallBuckets) && double(ns) > kCallBuckets[b] * 1e9) b++;
    callBuckets[b].fetch_add(1, std::memory_order_relaxed);
  }
};

FunctionRunner::FunctionRunner(OperatorCaps caps, VmFactory engine)
    : caps_(std::move(caps)), engine_(std::move(engine)), cache_(engine_, kModuleCacheEntries) {}

FunctionRunner::~FunctionRunner() = default;

Result<void> FunctionRunner::deploy(const Manifest& m, std::span<const uint8_t> wasm) {
  auto err = [&](const Error& e) {
    return std::unexpected(Error(ErrorCode::InvalidArgument,
                                 fmt::format("function {}: {}", m.name, oneLine(e.message()))));
  };
  if (m.kind != ModuleKind::Function)
    return err(Error("the manifest is for a Plugin, not a Function"));
  auto f = std::make_shared<Function>();
  f->manifest = m;
  EW_TRY(eff, resolve(m, caps_));
  f->eff = std::move(*eff);
  // Exported mutable globals let the pool reset a used instance instead of instantiating again.
  auto exported = exportMutableGlobals(wasm);
  if (!exported) return err(exported.error());
  auto mod = cache_.getCapped(*exported, f->eff.limits.memoryBytes);
  if (!mod) return err(mod.error());
  const Export* start = (*mod)->info().findExport("_start", ExternKind::Func);
  if (!start || start->type != FuncType{})
    return err(
        Error("the module is not a WASI command: it does not export _start () -> () (build it "
              "without -mexec-model=reactor)"));

  // Without a snapshot, restore() says no and every call gets a new instantiation.
  auto resettable = resettableInPlace(wasm);
  if (!resettable) return err(resettable.error());
  const bool snapshots = *resettable;
  f->resetsInPlace = snapshots;

  wasi::WasiConfig wc = wasiConfigFor(m, f->eff);
  VmFactory factory = engine_;
  auto module = *mod;
  uint64_t cpu = f->eff.limits.cpuPerCallNs;
  f->pool = InstancePool::make(
      [=]() -> Result<std::unique_ptr<Instance>> {
        EW_TRY(inst, makeInstance(factory, module, cpu, wc, nullptr, "_start"));
        if (snapshots) EW_CHECK((*inst)->vm->snapshot());
        return std::move(*inst);
      },
      // A command runs once per instance: put the state saved after instantiation back (a
      // memcpy), or instantiate again (same VM) when the memory grew or the code keeps state
      // elsewhere (a table it changes, a segment it drops).
      [snapshots](Instance& i) -> Result<void> {
        EW_TRY(r, i.wasi->reset());
        EW_TRY(restored, i.vm->restore());
        if (*restored) return {};
        EW_TRY(l, i.vm->link());
        EW_TRY(e, i.vm->getFunction("_start"));
        i.entry = *e;
        if (snapshots) EW_CHECK(i.vm->snapshot());
        return {};
      },
      f->eff.limits.instances);
  auto warm = f->pool->prewarm(std::min<uint32_t>(2, f->eff.limits.instances));
  if (!warm) return err(warm.error());
  std::lock_guard l(mu_);
  functions_[m.name] = std::move(f);
  return {};
}

Result<void> FunctionRunner::remove(const std::string& name) {
  std::lock_guard l(mu_);
  if (!functions_.erase(name)) return notDeployed(name);
  return {};
}

FunctionInfo FunctionRunner::Function::info() const {
  FunctionInfo i;
  i.name = manifest.name;
  i.version = manifest.version;
  i.limits = eff.limits;
  i.invocations = invocations;
  i.failures = failures;
  i.rateLimited = rateLimited;
  i.instancesLive = pool->stats().live;
  for (size_t b = 0; b < kCallBucketCount; b++) i.callBuckets[b] = callBuckets[b];
  i.callNsTotal = callNsTotal;
  i.resetsInPlace = resetsInPlace;
  return i;
}

std::vector<FunctionInfo> FunctionRunner::list() const {
  std::lock_guard l(mu_);
  std::vector<FunctionInfo> out;
  for (const auto& [name, f] : functions_) out.push_back(f->info());
  return out;
}

Result<FunctionInfo> FunctionRunner::info(const std::string& name) const {
  std::lock_guard l(mu_);
  auto it = functions_.find(name);
  if (it == functions_.end()) return notDeployed(name);
  return it->second->info();
}

Result<InvokeResult> FunctionRunner::invoke(const std::string& name, std::string input,
                                            std::vector<std::string> extraEnv) {
  std::shared_ptr<Function> f;
  {
    std::lock_guard l(mu_);
    auto it = functions_.find(name);
    if (it == functions_.end()) return notDeployed(name);
    f = it->second;
  }
  if (!f->rate.take(f->eff.limits.callsPerSecond)) {
    f->rateLimited++;
    return fail(ErrorCode::Unavailable,
                fmt::format("function {}: over its limit of {} calls per second", name,
                            f->eff.limits.callsPerSecond));
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto lease = f->pool->acquire(kBusyWait);
  if (!lease)
    return fail(ErrorCode::Unavailable,
                fmt::format("function {}: {}", name, lease.error().message()));
  f->invocations++;
  struct Timed {  // records the call's duration however it ends
    Function& f;
    std::chrono::steady_clock::time_point t0;
    ~Timed() { f.recordCall(std::chrono::steady_clock::now() - t0); }
  } timed{*f, t0};
  Instance& inst = **lease;
  inst.wasi->beginCall(std::move(input), std::move(extraEnv));
  auto r = inst.vm->call(inst.entry, {});
  if (!r) {
    f->failures++;
    lease->discard();
    return fail(ErrorCode::Unknown, fmt::format("function {}: {}", name, r.error().message()));
  }
  InvokeResult out;
  out.out = inst.wasi->takeOut();
  out.err = inst.wasi->takeErr();
  out.exitCode = r->exitCode.value_or(0);
  // Resetting in place (a memcpy of the saved memory) is cheaper than handing the instance to
  // the recycler thread; when it cannot (the memory grew), the recycler instantiates again.
  if (inst.wasi->reset()) {
    auto restored = inst.vm->restore();
    if (restored && *restored) lease->markFresh();
  }
  return out;
}

}  // namespace edgeward::wasm
