// Captures what libbpf says while a load runs, so errors can say why (the verifier's
// complaint, a map it could not reuse).
#pragma once

#include <bpf/libbpf.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <expected>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "common/result.h"

namespace edgeward::bpf {

// libbpf reports why a load failed (the verifier log, a map it could not reuse) only through
// its print callback. While loads run, their messages are captured per thread (loads may run
// in parallel) and still passed on to the callback installed before, so errors can say why.
class LibbpfLog {
 public:
  LibbpfLog() {
    std::lock_guard lock(mutex());
    if (users()++ == 0) previous().store(libbpf_set_print(&LibbpfLog::print));
    current() = &text_;
  }
  ~LibbpfLog() {
    current() = nullptr;
    std::lock_guard lock(mutex());
    if (--users() == 0) libbpf_set_print(previous().load());
  }
  LibbpfLog(const LibbpfLog&) = delete;
  LibbpfLog& operator=(const LibbpfLog&) = delete;

  // The most useful line: the verifier's complaint, else libbpf's first warning.
  std::string summary() const {
    auto lines = [](std::string_view s) {
      std::vector<std::string_view> out;
      size_t at = 0;
      while (at < s.size()) {
        size_t nl = s.find('\n', at);
        if (nl == std::string_view::npos) nl = s.size();
        auto l = s.substr(at, nl - at);
        while (!l.empty() && (l.back() == ' ' || l.back() == '\r')) l.remove_suffix(1);
        if (!l.empty()) out.push_back(l);
        at = nl + 1;
      }
      return out;
    };
    std::string_view t = text_;
    constexpr std::string_view kBegin = "-- BEGIN PROG LOAD LOG --",
                               kEnd = "-- END PROG LOAD LOG --";
    if (auto b = t.find(kBegin); b != std::string_view::npos) {
      auto e = t.find(kEnd, b);
      auto log =
          t.substr(b + kBegin.size(), e == std::string_view::npos ? e : e - b - kBegin.size());
      std::string prog;
      if (auto q = t.rfind("prog '", b); q != std::string_view::npos) {
        auto q2 = t.find('\'', q + 6);
        if (q2 != std::string_view::npos) prog = std::string(t.substr(q + 6, q2 - q - 6));
      }
      auto ls = lines(log);
      for (auto it = ls.rbegin(); it != ls.rend(); ++it) {
        if (it->starts_with("processed ") || it->starts_with("verification time") ||
            it->starts_with("stack depth"))
          continue;
        return fmt::format("verifier rejected program '{}': {}", prog, *it);
      }
      return fmt::format("verifier rejected program '{}'", prog);
    }
    for (auto l : lines(t)) {
      if (l.starts_with("libbpf: ")) l.remove_prefix(8);
      return std::string(l);
    }
    return {};
  }

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static int& users() {
    static int n = 0;
    return n;
  }
  static std::string*& current() {
    thread_local std::string* s = nullptr;
    return s;
  }
  static std::atomic<libbpf_print_fn_t>& previous() {
    static std::atomic<libbpf_print_fn_t> p{nullptr};
    return p;
  }
  static int print(enum libbpf_print_level level, const char* format, va_list args) {
    int n = 0;
    if (auto* prev = previous().load()) {
      va_list copy;
      va_copy(copy, args);
      n = prev(level, format, copy);
      va_end(copy);
    }
    if (level != LIBBPF_DEBUG && current()) {
      char buf[4096];
      std::string& out = *current();
      va_list copy;
      va_copy(copy, args);
      int len = std::vsnprintf(buf, sizeof buf, format, copy);
      va_end(copy);
      if (len >= static_cast<int>(sizeof buf)) {
        // The verifier log arrives in one message: format it whole.
        std::string big(static_cast<size_t>(len) + 1, '\0');
        va_copy(copy, args);
        std::vsnprintf(big.data(), big.size(), format, copy);
        va_end(copy);
        big.pop_back();
        out += big;
      } else if (len > 0) {
        out.append(buf, static_cast<size_t>(len));
      }
    }
    return n;
  }

  std::string text_;
};

// Error for a failed libbpf call during open/load: libbpf's reason when it gave one.
std::unexpected<Error> loadError(const std::string& what, const LibbpfLog& log, int err);

}  // namespace edgeward::bpf
