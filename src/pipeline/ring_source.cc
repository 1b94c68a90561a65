#include "pipeline/ring_source.h"

#include <unistd.h>

#include <chrono>

namespace edgeward::pipeline {

Result<std::unique_ptr<RingSource>> RingSource::start(EventBus& bus,
                                                      const std::vector<Ring>& rings) {
  if (rings.empty()) return fail("an event source needs at least one ring buffer");
  std::unique_ptr<RingSource> s(new RingSource(bus));
  for (const Ring& r : rings) {
    UniqueFd fd(::dup(r.mapFd));
    if (!fd.valid()) return failErrno("duplicating a ring buffer fd");
    RingSource* self = s.get();
    const Source src = r.source;
    auto decode = src == Source::Flowmon ? &decodeFlowmon : &decodeFirewall;
    EW_TRY(added, s->reader_.add(fd.get(), [self, src, decode](std::span<const uint8_t> rec) {
      self->received_[static_cast<size_t>(src)].fetch_add(1, std::memory_order_relaxed);
      if (auto e = decode(rec, self->clock_))
        self->batch_.push_back(*e);
      else
        self->malformed_.fetch_add(1, std::memory_order_relaxed);
    }));
    s->fds_.push_back(std::move(fd));
  }
  s->batch_.reserve(4096);
  s->thread_ = std::thread([p = s.get()] { p->run(); });
  return s;
}

RingSource::~RingSource() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void RingSource::run() {
  auto lastRefresh = std::chrono::steady_clock::now();
  while (!stop_.load(std::memory_order_relaxed)) {
    auto n = reader_.poll(100);
    if (!n) {
      // A ring that cannot be read is a bug or a gone map: stop rather than spin.
      break;
    }
    if (!batch_.empty()) {
      bus_.publish(batch_);
      batch_.clear();
    }
    auto now = std::chrono::steady_clock::now();
    if (now - lastRefresh > std::chrono::seconds(1)) {
      clock_.refresh();
      lastRefresh = now;
    }
  }
}

}  // namespace edgeward::pipeline
