#include "pipeline/ring_source.h"

#include <unistd.h>

#include <chrono>
#include <thread>
#include <utility>

namespace edgeward::pipeline {

Result<std::unique_ptr<RingSource>> RingSource::start(EventBus& bus, const std::vector<Ring>& rings,
                                                      Options opts) {
  if (rings.empty()) return fail("an event source needs at least one ring buffer");
  std::unique_ptr<RingSource> s(new RingSource(bus, opts));
  for (const Ring& r : rings) {
    UniqueFd fd(::dup(r.mapFd));
    if (!fd.valid()) return failErrno("duplicating a ring buffer fd");
    RingSource* self = s.get();
    const Source src = r.source;
    auto decode = src == Source::Flowmon ? &decodeFlowmon : &decodeFirewall;
    EW_TRY(added, s->reader_.add(fd.get(), [self, src, decode](std::span<const uint8_t> rec) {
      self->pending_[static_cast<size_t>(src)]++;
      if (auto e = decode(rec, self->clock_))
        self->batch_.push_back(*e);
      else
        self->malformed_.fetch_add(1, std::memory_order_relaxed);
    }));
    s->fds_.push_back(std::move(fd));
  }
  s->batch_.reserve(opts.maxBatchPerRing * rings.size());
  s->thread_ = std::thread([p = s.get()] { p->run(); });
  return s;
}

RingSource::~RingSource() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void RingSource::run() {
  using Clock = std::chrono::steady_clock;
  auto lastRefresh = Clock::now();
  auto lastWake = Clock::time_point{};
  bool busy = false;
  while (!stop_.load(std::memory_order_relaxed)) {
    // Busy: records are expected, so look without a system call first; wait only if none.
    Result<int> n = busy ? reader_.consumeBatch() : Result<int>(0);
    if (n && *n == 0) n = reader_.poll(100);
    if (!n) {
      // A ring that cannot be read is a bug or a gone map: stop rather than spin.
      break;
    }
    for (size_t i = 0; i < pending_.size(); i++)
      if (pending_[i])
        received_[i].fetch_add(std::exchange(pending_[i], 0), std::memory_order_relaxed);
    if (!batch_.empty()) {
      bus_.publish(batch_);
      batch_.clear();
    }
    auto now = Clock::now();
    if (now - lastRefresh > std::chrono::seconds(1)) {
      clock_.refresh();
      lastRefresh = now;
    }
    if (*n == 0) {
      busy = false;
      continue;
    }
    // Behind (a full batch: more is waiting): read on at once. Busy (woken again soon after
    // the last wake-up): let records gather rather than wake for every few; the kernel sends
    // no wake-up while we lag behind.
    const bool behind = static_cast<size_t>(*n) >= opts_.maxBatchPerRing;
    const bool soon = opts_.coalesce.count() > 0 && now - lastWake < 2 * opts_.coalesce;
    busy = behind || soon;
    if (soon && !behind) std::this_thread::sleep_until(now + opts_.coalesce);
    lastWake = now;
  }
}

}  // namespace edgeward::pipeline
