// edgeward events: the agent's event stream (table or JSON lines, filters, --follow).
// edgeward top: the busiest rules and sources with per-second rates, refreshed in place.
#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <map>
#include <mutex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/client_common.h"
#include "pipeline/event.h"

namespace edgeward::cli {
namespace {

using nlohmann::json;

std::string clock(uint64_t ns) {
  std::time_t t = static_cast<std::time_t>(ns / 1'000'000'000ull);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  return fmt::format("{}.{:06}", buf, (ns / 1000) % 1'000'000);
}

std::string protoName(uint32_t p) {
  auto n = pipeline::protoName(static_cast<uint8_t>(p));
  return n.empty() ? std::to_string(p) : std::string(n);
}

std::string endpoint(const std::string& addr, uint32_t port, uint32_t family) {
  if (family == 6) return fmt::format("[{}]:{}", addr, port);
  return fmt::format("{}:{}", addr, port);
}

json toJson(const api::EventRecord& e) {
  json j{{"time_ns", e.timeNs}, {"kind", e.kind},   {"family", e.family},
         {"src", e.src},        {"dst", e.dst},     {"proto", protoName(e.proto)},
         {"sport", e.sport},    {"dport", e.dport}, {"direction", e.direction},
         {"reason", e.reason}};
  if (!e.verdict.empty()) j["verdict"] = e.verdict;
  if (e.ruleId >= 0) j["rule_id"] = e.ruleId;
  if (!e.rule.empty()) j["rule"] = e.rule;
  if (!e.identity.empty()) j["identity"] = e.identity;
  if (e.ifindex) j["ifindex"] = e.ifindex;
  if (!e.interface.empty()) j["interface"] = e.interface;
  if (e.kind == "drop" || e.kind == "conn_new") j["len"] = e.pktLen;
  if (e.kind == "drop") j["sampled_out"] = e.sampledOut;
  if (e.kind == "tcp_close") j["duration_ns"] = e.durationNs;
  if (e.netns) j["netns"] = e.netns;
  return j;
}

void printRow(const api::EventRecord& e) {
  std::string what = e.rule.empty() ? e.reason : e.rule + " (" + e.reason + ")";
  if (e.kind == "tcp_close") what += fmt::format(" {:.3f} s", double(e.durationNs) / 1e9);
  if (e.kind == "drop" && e.sampledOut) what += fmt::format(" +{} suppressed", e.sampledOut);
  fmt::print("{}  {:<14} {:<7} {:<6} {:>4}  {:>22} -> {:<22}  {}{}{}\n", clock(e.timeNs), e.kind,
             e.direction, e.verdict.empty() ? "-" : e.verdict, protoName(e.proto),
             endpoint(e.src, e.sport, e.family), endpoint(e.dst, e.dport, e.family), what,
             e.identity.empty() ? "" : "  peer " + e.identity,
             e.interface.empty() ? "" : "  on " + e.interface);
}

void events(const api::EventsRequest& req) {
  SignalStop stop;
  auto client = connect();
  const bool asJson = gOutput == "json";
  auto r = client.events(
      req,
      [&](const std::vector<api::EventRecord>& batch, uint64_t lost) {
        if (lost) {
          if (asJson)
            fmt::print("{}\n", json{{"lost", lost}}.dump());
          else
            fmt::print(stderr, "edgeward: {} events lost (this stream fell behind)\n", lost);
        }
        for (const auto& e : batch) {
          if (asJson)
            fmt::print("{}\n", toJson(e).dump());
          else
            printRow(e);
        }
        std::fflush(stdout);
        return true;
      },
      stop.get_token());
  orExitApi(std::move(r));
}

// --- top -----------------------------------------------------------------------------------------

std::string rate(double v) {
  if (v >= 1e9) return fmt::format("{:.1f}G", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.1f}M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f}k", v / 1e3);
  return fmt::format("{:.0f}", v);
}

// Puts the terminal in non-canonical, no-echo mode while alive (when stdin is a terminal).
class RawTerminal {
 public:
  RawTerminal() {
    if (!::isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios raw = saved_;
    raw.c_lflag &= ~(ICANON | ECHO);
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    active_ = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
    if (active_) fmt::print("\x1b[?25l");  // hide the cursor
  }
  ~RawTerminal() {
    if (!active_) return;
    tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
    fmt::print("\x1b[?25h\n");
    std::fflush(stdout);
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  termios saved_{};
  bool active_ = false;
};

// Waits up to `ms` for a key; true when it was 'q' (or stdin closed).
bool quitKey(int ms) {
  pollfd p{STDIN_FILENO, POLLIN, 0};
  if (::poll(&p, 1, ms) <= 0) return false;
  char c = 0;
  ssize_t n = ::read(STDIN_FILENO, &c, 1);
  return n == 0 || c == 'q' || c == 'Q';
}

struct SourceCounts {
  uint64_t drops = 0, conns = 0;
  std::map<std::string, uint64_t> why;  // rule or reason -> events
};

void top(int intervalMs, size_t limit, int iterations) {
  SignalStop stop;
  auto client = connect();
  auto feed = connect();  // a second channel for the event stream

  std::mutex mu;
  std::map<std::string, SourceCounts> sources;
  uint64_t lostEvents = 0;
  std::jthread reader([&](std::stop_token st) {
    api::EventsRequest req;
    req.kinds = {"drop", "conn_new"};
    req.follow = true;
    auto r = feed.events(
        req,
        [&](const std::vector<api::EventRecord>& batch, uint64_t lost) {
          std::lock_guard lock(mu);
          lostEvents += lost;
          for (const auto& e : batch) {
            // The peer: the sender of ingress traffic, the receiver of egress.
            auto& s = sources[e.direction == "egress" ? e.dst : e.src];
            (e.kind == "drop" ? s.drops : s.conns)++;
            s.why[e.rule.empty() ? e.reason : e.rule]++;
          }
          return true;
        },
        st);
    (void)r;  // the status calls below report an unreachable agent
  });

  RawTerminal term;
  std::map<uint32_t, std::pair<uint64_t, uint64_t>> before;  // rule id -> packets, bytes
  uint64_t passedBefore = 0, droppedBefore = 0;
  bool first = true;
  auto last = std::chrono::steady_clock::now();
  for (int it = 0; iterations <= 0 || it < iterations; it++) {
    auto s = orExitApi(client.status());
    const auto now = std::chrono::steady_clock::now();
    const double secs = std::max(1e-3, std::chrono::duration<double>(now - last).count());
    last = now;
    std::map<std::string, SourceCounts> srcs;
    uint64_t lost = 0;
    {
      std::lock_guard lock(mu);
      srcs.swap(sources);
      lost = std::exchange(lostEvents, 0);
    }
    struct Row {
      const api::RuleCounter* r;
      double pps, bps;
    };
    std::vector<Row> rows;
    for (const auto& r : s.rules) {
      auto [p0, b0] = before.count(r.id) ? before[r.id] : std::pair{r.packets, r.bytes};
      rows.push_back(
          {&r, first ? 0 : double(r.packets - p0) / secs, first ? 0 : double(r.bytes - b0) / secs});
      before[r.id] = {r.packets, r.bytes};
    }
    std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
      return a.pps != b.pps ? a.pps > b.pps : a.r->packets > b.r->packets;
    });
    const double passRate = first ? 0 : double(s.packetsPassed - passedBefore) / secs;
    const double dropRate = first ? 0 : double(s.packetsDropped - droppedBefore) / secs;
    passedBefore = s.packetsPassed;
    droppedBefore = s.packetsDropped;

    std::ostringstream out;
    out << fmt::format("edgeward top - {} - policy {} - {}   (q quits)\n", client.server(),
                       s.policy.version ? fmt::format("v{} \"{}\"", s.policy.version, s.policy.name)
                                        : std::string("none"),
                       clock(uint64_t(std::chrono::system_clock::now().time_since_epoch() /
                                      std::chrono::nanoseconds(1)))
                           .substr(0, 8));
    out << fmt::format(
        "packets {}/s passed, {}/s dropped   conntrack {}   events lost {} (kernel {} + "
        "stream {})\n\n",
        rate(passRate), rate(dropRate), s.conntrackEntries,
        s.events.firewallLost + s.events.flowmonLost + s.events.subscriberLost + lost,
        s.events.firewallLost + s.events.flowmonLost, s.events.subscriberLost + lost);
    out << fmt::format("{:<24} {:<8} {:<6} {:>10} {:>10} {:>14}\n", "RULE", "DIR", "ACTION",
                       "PKTS/S", "BYTES/S", "PACKETS");
    for (size_t i = 0; i < rows.size() && i < limit; i++)
      out << fmt::format("{:<24} {:<8} {:<6} {:>10} {:>10} {:>14}\n", rows[i].r->name,
                         rows[i].r->direction, rows[i].r->action, rate(rows[i].pps),
                         rate(rows[i].bps), rows[i].r->packets);
    std::vector<std::pair<std::string, const SourceCounts*>> sorted;
    for (const auto& [addr, c] : srcs) sorted.push_back({addr, &c});
    std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
      return a.second->drops + a.second->conns > b.second->drops + b.second->conns;
    });
    out << fmt::format("\n{:<40} {:>10} {:>12}  {}\n", "SOURCE (peer)", "DROPS/S", "NEW CONN/S",
                       "MOSTLY");
    for (size_t i = 0; i < sorted.size() && i < limit; i++) {
      const auto& c = *sorted[i].second;
      auto mostly = std::max_element(c.why.begin(), c.why.end(), [](const auto& a, const auto& b) {
        return a.second < b.second;
      });
      out << fmt::format("{:<40} {:>10} {:>12}  {}\n", sorted[i].first,
                         rate(double(c.drops) / secs), rate(double(c.conns) / secs),
                         mostly == c.why.end() ? "" : mostly->first);
    }
    if (sorted.empty()) out << "(no drops or new connections in this interval)\n";
    // Home, draw, clear what the previous frame left below.
    fmt::print("\x1b[H{}\x1b[J", out.str());
    std::fflush(stdout);
    first = false;
    if (iterations > 0 && it + 1 >= iterations) break;
    bool quit = false;
    for (int waited = 0; waited < intervalMs && !quit && !stop.stopped(); waited += 50)
      quit = quitKey(std::min(50, intervalMs - waited));
    if (quit || stop.stopped()) break;
  }
  reader.request_stop();
}

}  // namespace

void addObserveCommands(CLI::App& app) {
  static api::EventsRequest eo{.recent = 20};
  auto* ev = withOutput(connected(app.add_subcommand(
      "events", "Print the agent's firewall and TCP events (the last ones, or --follow)")));
  ev->add_option("--kind", eo.kinds,
                 "drop, conn_new, tcp_open, tcp_close, tcp_retransmit (repeat or comma-separate)")
      ->delimiter(',');
  ev->add_option("--rule", eo.rule, "Only events decided by this rule");
  ev->add_option("--identity", eo.identity, "Only events whose peer is in this identity");
  ev->add_option("--port", eo.port, "Only events with this source or destination port");
  ev->add_option("--verdict", eo.verdict, "Only drops or only allowed new connections")
      ->check(CLI::IsMember({"drop", "allow"}));
  ev->add_option("-n,--last", eo.recent, "Past events to print first")->capture_default_str();
  ev->add_flag("-f,--follow", eo.follow, "Keep printing new events until Ctrl-C");
  ev->callback([] { events(eo); });

  static int intervalMs = 1000;
  static size_t limit = 10;
  static int iterations = 0;
  auto* tp = connected(app.add_subcommand(
      "top", "Live view of the busiest rules and sources with per-second rates (q quits)"));
  tp->add_option("--interval-ms", intervalMs, "Refresh interval")
      ->check(CLI::Range(100, 60000))
      ->capture_default_str();
  tp->add_option("--limit", limit, "Rows per table")->capture_default_str();
  tp->add_option("--iterations", iterations, "Stop after N refreshes (0: until q or Ctrl-C)");
  tp->callback([] { top(intervalMs, limit, iterations); });
}

}  // namespace edgeward::cli
