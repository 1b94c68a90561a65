#include "wasm/watchdog.h"

#include <chrono>
#include <condition_variable>
#include <thread>
#include <unordered_set>

namespace edgeward::wasm {
namespace {

constexpr auto kTick = std::chrono::milliseconds(1);

uint64_t cpuNs(clockid_t c) {
  timespec ts{};
  if (clock_gettime(c, &ts) != 0) return 0;
  return uint64_t(ts.tv_sec) * 1'000'000'000u + ts.tv_nsec;
}

clockid_t threadClock() {
  thread_local clockid_t c = [] {
    clockid_t id{};
    pthread_getcpuclockid(pthread_self(), &id);
    return id;
  }();
  return c;
}

}  // namespace

class Watchdog {
 public:
  // Never destroyed: VMs held by static objects may outlive main().
  static Watchdog& instance() {
    static Watchdog* w = new Watchdog;
    return *w;
  }
  void add(WatchedCall* c) {
    std::lock_guard l(mu_);
    calls_.insert(c);
    if (!started_) {
      started_ = true;
      std::thread([this] { run(); }).detach();
    }
    cv_.notify_one();
  }
  void remove(WatchedCall* c) {
    std::lock_guard l(mu_);
    calls_.erase(c);
  }

 private:
  void run() {
    std::unique_lock l(mu_);
    while (true) {
      if (calls_.empty()) {
        cv_.wait(l);
        continue;
      }
      cv_.wait_for(l, kTick);
      for (WatchedCall* c : calls_) check(*c);
    }
  }

  // Called with mu_ held, so `c` stays registered (alive) meanwhile.
  static void check(WatchedCall& c) {
    std::lock_guard cl(c.mu_);
    if (!c.inCall_ || c.limitNs_ == 0 || c.firedSeq_ == c.seq_) return;
    uint64_t now = cpuNs(c.clock_);
    if (c.seenSeq_ != c.seq_) {
      // First sight of this call: it started at most one tick ago. Counting from here never
      // stops a call early, and late by at most that tick.
      c.seenSeq_ = c.seq_;
      c.seenCpuNs_ = now;
      return;
    }
    if (now - c.seenCpuNs_ >= c.limitNs_) {
      c.firedSeq_ = c.seq_;
      c.terminate_();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_set<WatchedCall*> calls_;
  bool started_ = false;
};

WatchedCall::WatchedCall(uint64_t limitNs, std::function<void()> terminate)
    : terminate_(std::move(terminate)), limitNs_(limitNs) {
  Watchdog::instance().add(this);
}

WatchedCall::~WatchedCall() { Watchdog::instance().remove(this); }

void WatchedCall::setLimit(uint64_t limitNs) {
  std::lock_guard l(mu_);
  limitNs_ = limitNs;
}

uint64_t WatchedCall::enter() {
  clockid_t c = threadClock();
  std::lock_guard l(mu_);
  inCall_ = true;
  clock_ = c;
  return ++seq_;
}

bool WatchedCall::leave(uint64_t seq) {
  std::lock_guard l(mu_);
  inCall_ = false;
  return firedSeq_ == seq;
}

}  // namespace edgeward::wasm
