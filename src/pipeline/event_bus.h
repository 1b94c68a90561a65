// The event pipeline's fan-out: sources publish batches, every subscriber gets them through
// its own bounded queue. A slow subscriber never stalls the sources (which would make the
// kernel ring buffers overflow): what does not fit its queue is dropped and counted, and the
// subscriber learns how many it lost with its next batch.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "pipeline/event.h"

namespace edgeward::pipeline {

class Subscription {
 public:
  using Filter = std::function<bool(const Event&)>;
  Subscription(std::string name, size_t capacity, Filter filter)
      : name_(std::move(name)), capacity_(capacity), filter_(std::move(filter)) {}

  struct Batch {
    std::vector<Event> events;
    uint64_t lost = 0;  // dropped for this subscriber since the previous batch
    bool closed = false;
  };
  // Waits up to `timeout` for events; returns at most maxEvents of them.
  Batch next(size_t maxEvents, std::chrono::milliseconds timeout);
  const std::string& name() const { return name_; }
  uint64_t lostTotal() const { return lostTotal_.load(std::memory_order_relaxed); }

 private:
  friend class EventBus;
  void push(std::span<const Event> events);
  void close();

  std::string name_;
  size_t capacity_;
  Filter filter_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> queue_;
  uint64_t lostSince_ = 0;
  std::atomic<uint64_t> lostTotal_{0};
  bool closed_ = false;
};

class EventBus {
 public:
  explicit EventBus(size_t recentCapacity = 1024) : recentCapacity_(recentCapacity) {}
  ~EventBus();

  // A subscriber with a queue of `capacity` events, seeing only events `filter` accepts.
  // It stays subscribed until unsubscribe() or the bus closes.
  std::shared_ptr<Subscription> subscribe(std::string name, size_t capacity,
                                          Subscription::Filter filter = {});
  void unsubscribe(const std::shared_ptr<Subscription>& s);
  // A stage runs on each batch before any subscriber sees it, on the publishing thread, and
  // may drop (erase), rewrite or add events: the plugin stage. Empty: none.
  using Stage = std::function<void(std::vector<Event>&)>;
  void setStage(Stage stage);
  // Hands a batch (through the stage) to every subscriber and to the recent-events ring.
  void publish(std::span<const Event> events);
  // The last events published (oldest first), at most n, that `filter` accepts.
  std::vector<Event> recent(size_t n, const Subscription::Filter& filter = {}) const;
  // Wakes every subscriber with closed = true.
  void close();

  uint64_t published() const { return published_.load(std::memory_order_relaxed); }
  // Events dropped for subscribers that fell behind (all subscribers, ever).
  uint64_t subscriberLost() const;
  size_t subscribers() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<Subscription>> subs_;
  uint64_t lostByGone_ = 0;  // lost counts of subscribers that left
  std::deque<Event> recent_;
  size_t recentCapacity_;
  std::atomic<uint64_t> published_{0};
  std::shared_ptr<const Stage> stage_;
};

}  // namespace edgeward::pipeline
