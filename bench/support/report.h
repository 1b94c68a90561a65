// Small helpers shared by the benchmarks: medians, markdown tables, machine description.
#pragma once

#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace edgeward::bench {

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

inline double minOf(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::min_element(v.begin(), v.end());
}
inline double maxOf(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::max_element(v.begin(), v.end());
}

inline double msSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

class MdTable {
 public:
  explicit MdTable(std::vector<std::string> header) : header_(std::move(header)) {}
  void row(std::vector<std::string> r) { rows_.push_back(std::move(r)); }
  std::string str() const {
    std::string s = "|";
    for (const auto& h : header_) s += " " + h + " |";
    s += "\n|";
    for (size_t i = 0; i < header_.size(); i++) s += i == 0 ? "---|" : "---:|";
    s += "\n";
    for (const auto& r : rows_) {
      s += "|";
      for (const auto& c : r) s += " " + c + " |";
      s += "\n";
    }
    return s;
  }

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

inline std::string readFirstLine(const std::string& path, const std::string& key = "") {
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line))
    if (key.empty() || line.rfind(key, 0) == 0) return line;
  return "";
}

// "2026-11-03 19:40 UTC, kernel 6.18.44, 2 x AMD EPYC, load 1.2 1.0 0.8"
inline std::string machineLine() {
  char date[64];
  std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  utsname u{};
  uname(&u);
  std::string model = readFirstLine("/proc/cpuinfo", "model name");
  if (auto c = model.find(':'); c != std::string::npos) model = model.substr(c + 2);
  std::string load = readFirstLine("/proc/loadavg");
  if (load.size() > 14) load = load.substr(0, 14);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  std::string stats = readFirstLine("/proc/sys/kernel/bpf_stats_enabled");
  return fmt::format(
      "{}, kernel {}, {} x {}, kernel.bpf_stats_enabled={}, load average at start {}", date,
      u.release, cpus, model, stats.empty() ? "?" : stats, load);
}

// "a1b2c3d" of the source tree the benchmark was built from, "+ local changes to bpf/firewall"
// when the firewall program differs from that commit.
inline std::string sourceRevision() {
#ifdef EW_SOURCE_DIR
  auto run = [](const std::string& cmd) {
    std::string out;
    if (FILE* f = ::popen(cmd.c_str(), "r")) {
      char buf[256];
      while (std::fgets(buf, sizeof buf, f)) out += buf;
      ::pclose(f);
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return out;
  };
  const std::string dir = EW_SOURCE_DIR;
  std::string rev = run("git -C '" + dir + "' rev-parse --short HEAD 2>/dev/null");
  if (rev.empty()) return "unknown";
  if (!run("git -C '" + dir + "' status --porcelain -- bpf/firewall 2>/dev/null").empty())
    rev += " + local changes to bpf/firewall";
  return rev;
#else
  return "unknown";
#endif
}

inline std::string loadNow() {
  std::string load = readFirstLine("/proc/loadavg");
  return load.size() > 14 ? load.substr(0, 14) : load;
}

}  // namespace edgeward::bench
