#include "wasm/instance_pool.h"

#include <algorithm>

#include <fmt/format.h>

namespace edgeward::wasm {

std::shared_ptr<InstancePool> InstancePool::make(Create create, Recycle recycle, uint32_t maxLive) {
  return std::shared_ptr<InstancePool>(
      new InstancePool(std::move(create), std::move(recycle), std::max(1u, maxLive)));
}

Result<void> InstancePool::prewarm(uint32_t n) {
  n = std::min(n, maxLive_);
  while (true) {
    {
      std::lock_guard l(mu_);
      if (idle_.size() >= n || live_ >= maxLive_) return {};
      live_++;
    }
    auto inst = create_();
    std::lock_guard l(mu_);
    if (!inst) {
      live_--;
      return std::unexpected(inst.error());
    }
    counters_.created++;
    idle_.push_back(std::move(*inst));
    cv_.notify_one();
  }
}

Result<InstancePool::Lease> InstancePool::acquire(std::chrono::nanoseconds wait) {
  Lease lease;
  lease.pool_ = shared_from_this();
  {
    std::unique_lock l(mu_);
    auto ready = [&] { return !idle_.empty() || live_ < maxLive_; };
    if (!ready() && !cv_.wait_for(l, wait, ready))
      return fail(ErrorCode::Unavailable, fmt::format("all {} instances are busy", maxLive_));
    if (!idle_.empty()) {
      const auto self = std::this_thread::get_id();
      auto mine = std::find_if(idle_.rbegin(), idle_.rend(),
                               [&](const auto& i) { return i->lastThread == self; });
      auto it = mine == idle_.rend() ? std::prev(idle_.end()) : std::prev(mine.base());
      lease.inst_ = std::move(*it);
      idle_.erase(it);
    } else {
      live_++;  // room for one more: this caller creates it
    }
  }
  if (lease.inst_) {  // binding (the isolate's lock) happens outside the pool's lock
    lease.inst_->lastThread = std::this_thread::get_id();
    lease.inst_->vm->bind();
    return lease;
  }
  auto inst = create_();
  std::lock_guard l(mu_);
  if (!inst) {
    live_--;
    cv_.notify_one();
    return std::unexpected(inst.error());
  }
  counters_.created++;
  lease.inst_ = std::move(*inst);
  lease.inst_->lastThread = std::this_thread::get_id();
  lease.inst_->vm->bind();
  return lease;
}

InstancePool::~InstancePool() {
  {
    std::lock_guard l(mu_);
    stop_ = true;
  }
  dirtyCv_.notify_all();
  if (recycler_.joinable()) recycler_.join();
}

void InstancePool::recycleLoop() {
  std::unique_lock l(mu_);
  while (true) {
    dirtyCv_.wait(l, [&] { return stop_ || !dirty_.empty(); });
    if (stop_) return;
    auto inst = std::move(dirty_.back());
    dirty_.pop_back();
    l.unlock();
    bool ok = static_cast<bool>(recycle_(*inst));
    if (!ok) inst.reset();
    l.lock();
    if (ok) {
      idle_.push_back(std::move(inst));
    } else {
      live_--;
      counters_.discarded++;
    }
    cv_.notify_one();
  }
}

void InstancePool::give(std::unique_ptr<Instance> inst, bool discard, bool fresh) {
  if (!discard && recycle_ && !fresh) {
    std::lock_guard l(mu_);
    dirty_.push_back(std::move(inst));
    if (!recycler_.joinable()) recycler_ = std::thread([this] { recycleLoop(); });
    dirtyCv_.notify_one();
    return;
  }
  if (discard) inst.reset();  // outside the lock: disposing an isolate takes a while
  std::lock_guard l(mu_);
  if (discard) {
    live_--;
    counters_.discarded++;
  } else {
    idle_.push_back(std::move(inst));
  }
  cv_.notify_one();
}

void InstancePool::discardAll() {
  std::vector<std::unique_ptr<Instance>> drop;
  {
    std::lock_guard l(mu_);
    drop.swap(idle_);
    live_ -= static_cast<uint32_t>(drop.size());
    counters_.discarded += drop.size();
  }
  cv_.notify_all();
}

InstancePool::Stats InstancePool::stats() const {
  std::lock_guard l(mu_);
  Stats s = counters_;
  s.live = live_;
  s.idle = static_cast<uint32_t>(idle_.size());
  return s;
}

InstancePool::Lease& InstancePool::Lease::operator=(Lease&& o) noexcept {
  if (this != &o) {
    release();
    pool_ = std::move(o.pool_);
    inst_ = std::move(o.inst_);
    discard_ = o.discard_;
    fresh_ = o.fresh_;
  }
  return *this;
}

InstancePool::Lease::~Lease() { release(); }

void InstancePool::Lease::release() {
  if (inst_) inst_->vm->unbind();
  if (pool_ && inst_) pool_->give(std::move(inst_), discard_, fresh_);
  pool_.reset();
  inst_.reset();
}

}  // namespace edgeward::wasm

namespace edgeward::wasm {

Result<std::unique_ptr<Instance>> makeInstance(const VmFactory& factory,
                                               std::shared_ptr<const CompiledModule> module,
                                               uint64_t cpuLimitNs, wasi::WasiConfig wasiConfig,
                                               std::unique_ptr<host::HostServices> services,
                                               std::string_view entry) {
  auto inst = std::make_unique<Instance>();
  EW_TRY(w, wasi::WasiContext::create(std::move(wasiConfig)));
  inst->wasi = std::move(*w);
  inst->services = std::move(services);
  inst->vm = factory(VmOptions{cpuLimitNs});
  EW_TRY(loaded, inst->vm->load(module));
  for (auto& f : inst->wasi->functions()) inst->vm->registerCallback(std::move(f));
  if (inst->services)
    for (auto& f : host::hostFunctions(*inst->services)) inst->vm->registerCallback(std::move(f));
  EW_TRY(linked, inst->vm->link());
  if (inst->vm->hasFunction("_initialize")) {
    EW_TRY(init, inst->vm->getFunction("_initialize"));
    auto r = inst->vm->call(*init, {});
    if (!r) return std::unexpected(r.error().context("_initialize"));
  }
  EW_TRY(e, inst->vm->getFunction(entry));
  inst->entry = *e;
  if (inst->vm->hasFunction("ew_alloc")) inst->alloc = *inst->vm->getFunction("ew_alloc");
  if (inst->vm->hasFunction("ew_on_complete"))
    inst->onComplete = *inst->vm->getFunction("ew_on_complete");
  return inst;
}

}  // namespace edgeward::wasm
