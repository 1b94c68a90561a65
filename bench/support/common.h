// Helpers the benchmark programs share: failing with a message, unwrapping results, the
// thread's CPU clock, libbpf's log level and the firewall's reason for one frame.
#pragma once

#include <bpf/libbpf.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "bpf/firewall_program.h"
#include "common/result.h"

namespace edgeward::bench {

// Ends the benchmark with msg: main() catches it, prints it and exits 1.
[[noreturn]] inline void die(const std::string& msg) { throw std::runtime_error(msg); }

// The value of r, or die with "what: <error>".
template <typename T>
T must(Result<T> r, const std::string& what) {
  if (!r) die(what + ": " + r.error().str());
  if constexpr (!std::is_void_v<T>) return std::move(*r);
}

// Prints the markdown report md and writes it to path.
inline void writeReport(const std::string& md, const std::string& path) {
  std::fputs(md.c_str(), stdout);
  std::ofstream f(path);
  if (!f) die("cannot write " + path);
  f << md;
  std::fprintf(stderr, "wrote %s\n", path.c_str());
}

// The calling thread's CPU time in nanoseconds.
inline double threadCpuNs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

// libbpf prints warnings and errors only.
inline void quietLibbpf() {
  libbpf_set_print([](libbpf_print_level lvl, const char* f, va_list ap) {
    return lvl == LIBBPF_WARN ? std::vfprintf(stderr, f, ap) : 0;
  });
}

// Set by SIGINT, SIGTERM and SIGHUP once benchMain() has installed its handlers; the
// benchmarks poll it and throw Stop to unwind through their cleanup.
inline std::atomic<bool> g_stop{false};
struct Stop : std::runtime_error {
  Stop() : std::runtime_error("interrupted") {}
};

// main() of a benchmark: refuses to run without root, turns the stop signals into g_stop,
// quiets libbpf, and reports an error or an interruption in one line (exit 1 / 130).
template <typename F>
int benchMain(const char* name, const char* needs, const char* onInterrupt, F run) {
  if (geteuid() != 0) {
    std::fprintf(stderr, "%s: needs root (%s)\n", name, needs);
    return 1;
  }
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_stop = true; };
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
  quietLibbpf();
  try {
    return run();
  } catch (const Stop&) {
    std::fprintf(stderr, "%s: interrupted; %s\n", name, onInterrupt);
    return 130;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 1;
  }
}

// Which ingress reason counter one XDP run of the frame increments (-1: none).
inline int classify(bpf::FirewallProgram& fw, const std::vector<uint8_t>& frame) {
  constexpr uint32_t n = uint32_t{EW_DIRS} * EW_R_COUNT;
  must(fw.clearCounters(bpf::FirewallMap::ReasonStats, n), "clearing counters");
  must(fw.testRun(bpf::Hook::XdpIngress, frame, 1), "test run");
  auto c = must(fw.readCounters(bpf::FirewallMap::ReasonStats, n), "reading counters");
  for (uint32_t r = 0; r < EW_R_COUNT; r++)
    if (c[uint32_t{EW_INGRESS} * EW_R_COUNT + r].packets) return static_cast<int>(r);
  return -1;
}

}  // namespace edgeward::bench
