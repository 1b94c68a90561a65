// A token bucket for calls per second, with a burst of one second's worth.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <mutex>

namespace edgeward::wasm {

class RateLimiter {
 public:
  // True when one more call fits under perSecond (0 = unlimited). The rate may change between
  // calls (a plugin replaced by a version with another limit).
  bool take(uint32_t perSecond) {
    if (perSecond == 0) return true;
    std::lock_guard l(mu_);
    auto now = std::chrono::steady_clock::now();
    if (!started_) {
      started_ = true;
      tokens_ = perSecond;
    } else {
      double dt = std::chrono::duration<double>(now - stamp_).count();
      tokens_ = std::min<double>(perSecond, tokens_ + dt * perSecond);
    }
    stamp_ = now;
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }

 private:
  std::mutex mu_;
  bool started_ = false;
  double tokens_ = 0;
  std::chrono::steady_clock::time_point stamp_;
};

}  // namespace edgeward::wasm
