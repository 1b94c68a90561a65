#include "pipeline/event_bus.h"

#include <algorithm>
#include <utility>

namespace edgeward::pipeline {

void Subscription::push(std::span<const Event> events) {
  size_t added = 0;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    for (const Event& e : events) {
      if (filter_ && !filter_(e)) continue;
      if (queue_.size() >= capacity_) {
        lostSince_++;
        lostTotal_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      queue_.push_back(e);
      added++;
    }
  }
  if (added) cv_.notify_one();
}

void Subscription::close() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

Subscription::Batch Subscription::next(size_t maxEvents, std::chrono::milliseconds timeout) {
  Batch b;
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return !queue_.empty() || closed_ || lostSince_; });
  const size_t n = std::min(maxEvents, queue_.size());
  b.events.assign(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(n));
  queue_.erase(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(n));
  b.lost = std::exchange(lostSince_, 0);
  b.closed = closed_ && queue_.empty();
  return b;
}

EventBus::~EventBus() { close(); }

std::shared_ptr<Subscription> EventBus::subscribe(std::string name, size_t capacity,
                                                  Subscription::Filter filter) {
  auto s = std::make_shared<Subscription>(std::move(name), capacity, std::move(filter));
  std::lock_guard lock(mu_);
  subs_.push_back(s);
  return s;
}

void EventBus::unsubscribe(const std::shared_ptr<Subscription>& s) {
  std::lock_guard lock(mu_);
  auto it = std::find(subs_.begin(), subs_.end(), s);
  if (it == subs_.end()) return;
  lostByGone_ += s->lostTotal();
  subs_.erase(it);
  s->close();
}

void EventBus::setStage(Stage stage) {
  std::lock_guard lock(mu_);
  stage_ = stage ? std::make_shared<const Stage>(std::move(stage)) : nullptr;
}

void EventBus::publish(std::span<const Event> input) {
  if (input.empty()) return;
  std::shared_ptr<const Stage> stage;
  {
    std::lock_guard lock(mu_);
    stage = stage_;
  }
  std::vector<Event> staged;
  std::span<const Event> events = input;
  if (stage) {
    staged.assign(input.begin(), input.end());
    (*stage)(staged);
    events = staged;
    if (events.empty()) return;
  }
  std::vector<std::shared_ptr<Subscription>> subs;
  {
    std::lock_guard lock(mu_);
    subs = subs_;
    const size_t keep = std::min(events.size(), recentCapacity_);
    while (!recent_.empty() && recent_.size() + keep > recentCapacity_) recent_.pop_front();
    recent_.insert(recent_.end(), events.end() - static_cast<ptrdiff_t>(keep), events.end());
  }
  published_.fetch_add(events.size(), std::memory_order_relaxed);
  for (auto& s : subs) s->push(events);
}

std::vector<Event> EventBus::recent(size_t n, const Subscription::Filter& filter) const {
  std::lock_guard lock(mu_);
  std::vector<Event> out;
  for (auto it = recent_.rbegin(); it != recent_.rend() && out.size() < n; ++it)
    if (!filter || filter(*it)) out.push_back(*it);
  std::reverse(out.begin(), out.end());
  return out;
}

void EventBus::close() {
  std::vector<std::shared_ptr<Subscription>> subs;
  {
    std::lock_guard lock(mu_);
    subs.swap(subs_);
    for (auto& s : subs) lostByGone_ += s->lostTotal();
  }
  for (auto& s : subs) s->close();
}

uint64_t EventBus::subscriberLost() const {
  std::lock_guard lock(mu_);
  uint64_t n = lostByGone_;
  for (auto& s : subs_) n += s->lostTotal();
  return n;
}

size_t EventBus::subscribers() const {
  std::lock_guard lock(mu_);
  return subs_.size();
}

}  // namespace edgeward::pipeline
