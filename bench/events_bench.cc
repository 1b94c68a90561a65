// ew_bench_events: drop events from the kernel to a subscriber, end to end, and what the agent
// spends on them.
//
// A producer thread runs an XDP program with BPF_PROG_TEST_RUN (the program runs in the kernel
// on the producer's CPU) on a frame it drops; every run writes one drop record. The consumer is
// the agent's pipeline: pipeline::RingSource (epoll over the ring buffer, decode, publish in
// batches) -> pipeline::EventBus -> one Subscription drained by a subscriber thread. Paths, side
// by side in the same run, rounds interleaved:
//   firewall   the firewall's XDP program (loaded unpinned; default deny, drop events on,
//              sampling 1, no per-peer limit) -> ew_events ring buffer -> RingSource -> bus
//   firewall-eager  the same with RingSource's wake-up coalescing off (Options::coalesce 0)
//   ringbuf    bench/bpf/events_probe.bpf.c: the same record, bpf_ringbuf_output, no parsing
//              or policy -> RingSource -> bus
//   perf       the same probe record through bpf_perf_event_output on a perf event array ->
//              libbpf perf_buffer__poll on one thread that decodes and publishes like
//              RingSource -> bus
//   reader     the ringbuf probe read by bpf::RingReader alone (decode, no bus): the floor of
//              the kernel-to-user transport
//   user       no kernel: the producer thread decodes records and publishes them to the bus
//              itself (its decode + publish time counts as agent CPU): the bus alone
// Each path is measured at the maximum rate (the producer runs the program back to back) and
// paced (--rate events/s in bursts of --burst). Reported: offered/s (records the program tried
// to write), delivered/s (events the subscriber received), records lost in the kernel (ring
// full: EW_EVS_DROP_LOST / the probe's counter) and in the bus (subscriber queue full), latency
// from the kernel's timestamp (ts_ns, converted to CLOCK_REALTIME by the pipeline) to the
// subscriber's CLOCK_REALTIME when it receives the batch, and the agent's CPU: the consumer
// threads' run time (/proc/self/task/<tid>/schedstat) over wall time, producer excluded.
//
//   sudo ew_bench_events [--seconds 3] [--rounds 5] [--rate 100000] [--burst 10]
//                        [--rates 100000x1,1000000x20000] [--ring-bytes 4194304] [--queue 65536]
//                        [--coalesce-us 500] [--max-batch 1024]
//                        [--paths firewall,firewall-eager,ringbuf,perf,reader,user] [--out FILE]
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bpf/firewall_program.h"
#include "bpf/ring_reader.h"
#include "pipeline/event.h"
#include "pipeline/event_bus.h"
#include "pipeline/ring_source.h"
#include "support/common.h"
#include "support/packet.h"
#include "support/report.h"
#include "events_probe.skel.h"

namespace eb = edgeward::bench;
namespace et = edgeward::testing;
namespace pl = edgeward::pipeline;
using eb::die;
using eb::must;
using edgeward::bpf::FirewallMap;
using edgeward::bpf::FirewallProgram;
using edgeward::bpf::Hook;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  double seconds = 3;
  int rounds = 5;
  double rate = 100'000;  // the paced rate of every path, events/s
  uint32_t burst = 10;    // events per pacing tick
  // More paced runs of the firewall path (rate, burst): evenly spaced single events, and 1M/s
  // (bursts of 20000: one BPF_PROG_TEST_RUN call each, ~5 ms, every 20 ms).
  std::vector<std::pair<double, uint32_t>> extraRates = {{100'000, 1}, {1'000'000, 20'000}};
  uint32_t ringBytes = 1u << 22;   // the firewall's default ring size
  size_t queue = 1u << 16;         // the subscriber's queue
  pl::RingSource::Options source;  // --coalesce-us, --max-batch
  std::vector<std::string> paths = {"firewall", "firewall-eager", "ringbuf",
                                    "perf",     "reader",         "user"};
  std::string out = "bench/results/events.md";
  std::string command;
  bool pacedOnly = false;  // --paced-only: skip the max-rate runs (to profile the paced ones)
};

constexpr double kTargetRate = 1e6;       // events/s, kernel to subscriber
constexpr double kTargetCpuPct = 10;      // % of one core ...
constexpr double kTargetCpuAtRate = 1e5;  // ... at 100k events/s
constexpr size_t kSubscriberBatch = 4096;
constexpr uint32_t kMaxRunChunk = 1u << 18;
constexpr uint32_t kOneCallBurst = 1000;  // runs per BPF_PROG_TEST_RUN call at the max rate

uint64_t clockNs(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

// Run time of one thread of this process, ns (the scheduler's sum_exec_runtime).
double taskCpuNs(pid_t tid) {
  std::ifstream f("/proc/self/task/" + std::to_string(tid) + "/schedstat");
  double ns = -1;
  if (!(f >> ns)) die("cannot read the run time of thread " + std::to_string(tid));
  return ns;
}

std::set<pid_t> taskIds() {
  std::set<pid_t> ids;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task"))
    ids.insert(static_cast<pid_t>(std::stol(e.path().filename().string())));
  return ids;
}

// Latencies in ns, log-bucketed: 64 buckets per power of two (<1.6% error), no allocation.
class LatencyHistogram {
 public:
  void add(uint64_t ns) {
    counts_[bucket(ns)]++;
    n_++;
  }
  uint64_t count() const { return n_; }
  // The q-quantile (0..1), ns: the middle of its bucket.
  double quantile(double q) const {
    if (!n_) return 0;
    const uint64_t want = std::max<uint64_t>(1, static_cast<uint64_t>(q * double(n_) + 0.5));
    uint64_t seen = 0;
    for (size_t b = 0; b < counts_.size(); b++) {
      seen += counts_[b];
      if (seen >= want) return mid(b);
    }
    return mid(counts_.size() - 1);
  }

 private:
  static constexpr uint64_t kSub = 64;
  static size_t bucket(uint64_t v) {
    if (v < kSub) return v;
    const int e = 63 - __builtin_clzll(v) - 6;  // v >> e in [64, 128)
    return (e + 1) * kSub + ((v >> e) - kSub);
  }
  static double mid(size_t b) {
    if (b < kSub) return double(b);
    const size_t e = b / kSub - 1;
    return double((b % kSub + kSub) << e) + double(uint64_t{1} << e) / 2;
  }
  std::array<uint64_t, 58 * kSub> counts_{};
  uint64_t n_ = 0;
};

// The end of a path: counts events and their latency. Written by one delivering thread.
class Delivery {
 public:
  void deliver(std::span<const pl::Event> events) {
    if (events.empty()) return;
    const uint64_t now = clockNs(CLOCK_REALTIME);
    for (const pl::Event& e : events) latency_.add(now > e.ts_ns ? now - e.ts_ns : 0);
    lastNs_.store(clockNs(CLOCK_MONOTONIC), std::memory_order_relaxed);
    events_.fetch_add(events.size(), std::memory_order_relaxed);
    batches_.fetch_add(1, std::memory_order_relaxed);
  }
  uint64_t batches() const { return batches_.load(std::memory_order_relaxed); }
  void lose(uint64_t n) { lost_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t events() const { return events_.load(std::memory_order_relaxed); }
  uint64_t lost() const { return lost_.load(std::memory_order_relaxed); }
  uint64_t lastNs() const { return lastNs_.load(std::memory_order_relaxed); }
  const LatencyHistogram& latency() const { return latency_; }  // after the deliverer stopped

 private:
  LatencyHistogram latency_;
  std::atomic<uint64_t> events_{0}, lost_{0}, lastNs_{0}, batches_{0};
};

// Drains one subscription on its own thread until stopped and empty.
class Subscriber {
 public:
  Subscriber(std::shared_ptr<pl::Subscription> sub, Delivery& d) : sub_(std::move(sub)), d_(d) {
    thread_ = std::thread([this] { run(); });
    while (!tid_.load()) std::this_thread::yield();
  }
  ~Subscriber() { finish(); }
  void finish() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  pid_t tid() const { return tid_.load(); }

 private:
  void run() {
    tid_ = gettid();
    for (;;) {
      auto b = sub_->next(kSubscriberBatch, std::chrono::milliseconds(20));
      d_.lose(b.lost);
      d_.deliver(b.events);
      if (b.events.empty() && (stop_ || b.closed)) break;
    }
  }
  std::shared_ptr<pl::Subscription> sub_;
  Delivery& d_;
  std::atomic<bool> stop_{false};
  std::atomic<pid_t> tid_{0};
  std::thread thread_;
};

// Records the producer offered: written, and lost in the kernel (buffer full). Cumulative.
struct Offered {
  uint64_t sent = 0;
  uint64_t lost = 0;
};

// One way from a producer to the subscriber.
class Path {
 public:
  virtual ~Path() = default;
  virtual std::string name() const = 0;
  // Whether events go through the bus to a Subscriber, or straight into the Delivery.
  virtual bool viaBus() const { return true; }
  // Starts the agent side; events end in `bus` (viaBus) or `d`.
  virtual void start(pl::EventBus& bus, Delivery& d) = 0;
  virtual void stop() = 0;
  // The agent's threads while started (the Subscriber's is added by the runner).
  virtual std::vector<pid_t> agentThreads() const = 0;
  // Produces n events on the calling thread: one BPF_PROG_TEST_RUN with repeat n.
  virtual void produce(uint32_t n) = 0;
  // A burst of n events when paced: n runs with repeat 1 (a run with repeat > 1 costs ~2 ms
  // of set-up here: the kernel switches the XDP dispatcher to the program and back), or one
  // run with repeat n for bursts above kOneCallBurst (the only way to offer > ~150k/s).
  virtual void produceBurst(uint32_t n) {
    if (n > kOneCallBurst) return produce(n);
    for (uint32_t i = 0; i < n; i++) produce(1);
  }
  virtual Offered offered() = 0;
  // Agent work done on the producer's thread (the user path's decode + publish), ns.
  virtual double agentCpuOnProducerNs() const { return 0; }
  // Lost records as the consumer saw them (perf buffer lost-sample notifications).
  virtual uint64_t consumerSeenLost() const { return 0; }
};

// The thread RingSource::start() creates: the one task that appears across the call.
std::unique_ptr<pl::RingSource> startRingSource(pl::EventBus& bus, int ringFd,
                                                const pl::RingSource::Options& o, pid_t& tid) {
  auto before = taskIds();
  auto src = must(pl::RingSource::start(bus, {{pl::Source::Firewall, ringFd}}, o), "ring source");
  std::vector<pid_t> fresh;
  for (pid_t t : taskIds())
    if (!before.count(t)) fresh.push_back(t);
  if (fresh.size() != 1) die("cannot tell the ring source's thread");
  tid = fresh[0];
  return src;
}

void testRun(int progFd, const std::vector<uint8_t>& frame, uint32_t repeat) {
  bpf_test_run_opts o{};
  o.sz = sizeof(o);
  o.data_in = frame.data();
  o.data_size_in = static_cast<uint32_t>(frame.size());
  o.repeat = static_cast<int>(repeat);
  if (bpf_prog_test_run_opts(progFd, &o) != 0)
    die(fmt::format("BPF_PROG_TEST_RUN: {}", std::strerror(errno)));
  if (o.retval != XDP_DROP) die(fmt::format("the producer program returned {}", o.retval));
}

std::vector<uint8_t> deniedFrame() {
  et::PacketSpec s;
  s.src = "192.0.2.7";
  s.dst = "198.51.100.9";
  s.sport = 41000;
  s.dport = 2222;
  return et::buildPacket(s);
}

class FirewallPath : public Path {
 public:
  FirewallPath(std::string name, uint32_t ringBytes, const pl::RingSource::Options& src)
      : name_(std::move(name)), opts_(src) {
    edgeward::bpf::FirewallOptions o;
    o.eventRingBytes = ringBytes;
    fw_ = must(FirewallProgram::load(o), "loading the firewall");
    ew_config c = must(fw_->readConfig(), "reading the config");
    c.flags |= EW_F_EV_DROP;
    c.drop_sample = 1;
    c.drop_interval_ns = 0;
    must(fw_->writeConfig(c), "writing the config");
    // The empty policy of a fresh load denies everything by default.
    if (eb::classify(*fw_, frame_) != EW_R_DEFAULT_DENY)
      die("the benchmark frame is not dropped by default deny");
    edgeward::bpf::RingReader r;  // the event of that check
    must(r.add(fw_->mapFd(FirewallMap::Events), [](auto) {}), "ring reader");
    must(r.consume(), "draining the ring");
  }
  std::string name() const override { return name_; }
  void start(pl::EventBus& bus, Delivery&) override {
    src_ = startRingSource(bus, fw_->mapFd(FirewallMap::Events), opts_, tid_);
  }
  void stop() override { src_.reset(); }
  std::vector<pid_t> agentThreads() const override { return {tid_}; }
  void produce(uint32_t n) override {
    auto r = must(fw_->testRun(Hook::XdpIngress, frame_, n), "test run");
    if (r.pass) die("the firewall passed the benchmark frame");
  }
  Offered offered() override {
    auto s = must(fw_->readEventStats(), "reading event counters");
    if (s[EW_EVS_DROP_SAMPLED_OUT] || s[EW_EVS_DROP_RATE_LIMITED])
      die("drop events were sampled or rate limited");
    return {s[EW_EVS_DROP_SENT], s[EW_EVS_DROP_LOST]};
  }

 private:
  std::string name_;
  pl::RingSource::Options opts_;
  std::unique_ptr<FirewallProgram> fw_;
  std::vector<uint8_t> frame_ = deniedFrame();
  std::unique_ptr<pl::RingSource> src_;
  pid_t tid_ = 0;
};

struct ProbeDeleter {
  void operator()(events_probe* p) const { events_probe__destroy(p); }
};
using Probe = std::unique_ptr<events_probe, ProbeDeleter>;

Probe loadProbe(uint32_t ringBytes) {
  Probe p(events_probe__open());
  if (!p) die("opening events_probe");
  if (bpf_map__set_max_entries(p->maps.probe_ring, ringBytes)) die("sizing probe_ring");
  if (events_probe__load(p.get())) die(fmt::format("loading events_probe: {}", strerror(errno)));
  return p;
}

// Common to the probe paths: runs one of the probe's programs, reads its counters.
class ProbePath : public Path {
 public:
  ProbePath(events_probe& p, bpf_program* prog) : p_(p), progFd_(bpf_program__fd(prog)) {}
  void produce(uint32_t n) override { testRun(progFd_, frame_, n); }
  Offered offered() override {
    const int ncpu = libbpf_num_possible_cpus();
    std::vector<uint64_t> v(static_cast<size_t>(ncpu));
    Offered o;
    for (uint32_t k = 0; k < 2; k++) {
      if (bpf_map_lookup_elem(bpf_map__fd(p_.maps.probe_stats), &k, v.data()))
        die("reading probe_stats");
      for (uint64_t x : v) (k == 0 ? o.sent : o.lost) += x;
    }
    return o;
  }

 protected:
  events_probe& p_;

 private:
  int progFd_;
  std::vector<uint8_t> frame_ = deniedFrame();
};

class RingbufPath : public ProbePath {
 public:
  RingbufPath(events_probe& p, const pl::RingSource::Options& o)
      : ProbePath(p, p.progs.probe_ev_ringbuf), opts_(o) {}
  std::string name() const override { return "ringbuf"; }
  void start(pl::EventBus& bus, Delivery&) override {
    src_ = startRingSource(bus, bpf_map__fd(p_.maps.probe_ring), opts_, tid_);
  }
  void stop() override { src_.reset(); }
  std::vector<pid_t> agentThreads() const override { return {tid_}; }

 private:
  pl::RingSource::Options opts_;
  std::unique_ptr<pl::RingSource> src_;
  pid_t tid_ = 0;
};

// The probe's ring buffer read by a bare RingReader on one thread: decode, deliver, no bus.
class ReaderPath : public ProbePath {
 public:
  explicit ReaderPath(events_probe& p) : ProbePath(p, p.progs.probe_ev_ringbuf) {}
  std::string name() const override { return "reader"; }
  bool viaBus() const override { return false; }
  void start(pl::EventBus&, Delivery& d) override {
    stop_ = false;
    reader_ = std::make_unique<edgeward::bpf::RingReader>();
    must(reader_->add(bpf_map__fd(p_.maps.probe_ring),
                      [this](std::span<const uint8_t> rec) {
                        if (auto e = pl::decodeFirewall(rec, clock_)) batch_.push_back(*e);
                      }),
         "ring reader");
    batch_.reserve(4096);
    tid_ = 0;
    thread_ = std::thread([this, &d] {
      tid_ = gettid();
      while (!stop_.load(std::memory_order_relaxed)) {
        auto n = reader_->poll(100);
        if (!n) {
          error_ = n.error().str();
          break;
        }
        d.deliver(batch_);
        batch_.clear();
      }
    });
    while (!tid_.load()) std::this_thread::yield();
  }
  ~ReaderPath() override { stop(); }
  void stop() override {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    reader_.reset();
    if (!error_.empty()) die("polling the ring: " + std::exchange(error_, {}));
  }
  std::vector<pid_t> agentThreads() const override { return {tid_.load()}; }

 private:
  std::unique_ptr<edgeward::bpf::RingReader> reader_;
  pl::ClockOffset clock_;
  std::vector<pl::Event> batch_;
  std::string error_;
  std::atomic<bool> stop_{false};
  std::atomic<pid_t> tid_{0};
  std::thread thread_;
};

// The perf event array, read the way RingSource reads a ring buffer: one thread polls every
// CPU's buffer, decodes, publishes one batch per wake-up.
class PerfPath : public ProbePath {
 public:
  PerfPath(events_probe& p, uint32_t ringBytes, std::chrono::microseconds coalesce)
      : ProbePath(p, p.progs.probe_ev_perf), coalesce_(coalesce) {
    // The same memory as the ring buffer, split over the CPUs (a power of two pages each).
    const size_t perCpu = ringBytes / static_cast<size_t>(libbpf_num_possible_cpus()) / 4096;
    pages_ = 1;
    while (pages_ * 2 <= perCpu) pages_ *= 2;
  }
  std::string name() const override { return "perf"; }
  size_t pagesPerCpu() const { return pages_; }
  void start(pl::EventBus& bus, Delivery&) override {
    stop_ = false;
    bus_ = &bus;
    pb_ = perf_buffer__new(bpf_map__fd(p_.maps.probe_perf), pages_, &PerfPath::onSample,
                           &PerfPath::onLost, this, nullptr);
    if (!pb_) die(fmt::format("perf_buffer__new: {}", strerror(errno)));
    batch_.reserve(4096);
    tid_ = 0;
    thread_ = std::thread([this] { run(); });
    while (!tid_.load()) std::this_thread::yield();
  }
  ~PerfPath() override { stop(); }
  void stop() override {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (pb_) perf_buffer__free(pb_);
    pb_ = nullptr;
    if (err_) die(fmt::format("perf_buffer__poll: {}", strerror(std::exchange(err_, 0))));
  }
  std::vector<pid_t> agentThreads() const override { return {tid_.load()}; }
  uint64_t consumerSeenLost() const override { return lost_.load(); }

 private:
  static void onSample(void* ctx, int, void* data, __u32 size) {
    auto* self = static_cast<PerfPath*>(ctx);
    // Perf pads raw samples to 8 bytes with their u32 size field: 72 bytes arrive as 76.
    if (size >= sizeof(ew_fw_event)) size = sizeof(ew_fw_event);
    if (auto e = pl::decodeFirewall({static_cast<const uint8_t*>(data), size}, self->clock_))
      self->batch_.push_back(*e);
  }
  static void onLost(void* ctx, int, __u64 n) {
    static_cast<PerfPath*>(ctx)->lost_.fetch_add(n, std::memory_order_relaxed);
  }
  // RingSource::run()'s loop, coalescing wake-ups the same way (perf_buffer__poll reads each
  // CPU's buffer to the end: there is no batch limit to honour).
  void run() {
    tid_ = gettid();
    auto lastWake = Clock::time_point{};
    while (!stop_.load(std::memory_order_relaxed)) {
      int n = perf_buffer__poll(pb_, 100);
      if (n < 0 && n != -EINTR) {
        err_ = -n;
        break;
      }
      if (!batch_.empty()) bus_->publish(batch_);
      batch_.clear();
      if (n <= 0) continue;
      const auto now = Clock::now();
      if (coalesce_.count() > 0 && now - lastWake < 2 * coalesce_)
        std::this_thread::sleep_until(now + coalesce_);
      lastWake = now;
    }
  }
  std::chrono::microseconds coalesce_;
  size_t pages_ = 1;
  perf_buffer* pb_ = nullptr;
  pl::EventBus* bus_ = nullptr;
  pl::ClockOffset clock_;
  std::vector<pl::Event> batch_;
  std::atomic<uint64_t> lost_{0};
  int err_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<pid_t> tid_{0};
  std::thread thread_;
};

// No kernel: the producer decodes firewall records and publishes them to the bus itself.
class UserPath : public Path {
 public:
  std::string name() const override { return "user"; }
  void start(pl::EventBus& bus, Delivery&) override { bus_ = &bus; }
  void stop() override { bus_ = nullptr; }
  std::vector<pid_t> agentThreads() const override { return {}; }
  void produce(uint32_t n) override {
    const double t0 = eb::threadCpuNs();
    ew_fw_event r{};
    r.kind = EW_FW_EV_DROP;
    r.family = 4;
    r.proto = 6;
    r.reason = EW_R_DEFAULT_DENY;
    r.rule = EW_RULE_NONE;
    r.sport = 41000;
    r.dport = 2222;
    while (n) {
      const uint32_t k = std::min<uint32_t>(n, kBatch);
      r.ts_ns = clockNs(CLOCK_MONOTONIC);
      batch_.clear();
      for (uint32_t i = 0; i < k; i++)
        if (auto e = pl::decodeFirewall({reinterpret_cast<const uint8_t*>(&r), sizeof r}, clock_))
          batch_.push_back(*e);
      bus_->publish(batch_);
      sent_.fetch_add(k, std::memory_order_relaxed);
      n -= k;
    }
    cpuNs_.store(cpuNs_.load() + eb::threadCpuNs() - t0);
  }
  void produceBurst(uint32_t n) override { produce(n); }  // one batch, as RingSource would
  Offered offered() override { return {sent_.load(), 0}; }
  double agentCpuOnProducerNs() const override { return cpuNs_.load(); }

 private:
  static constexpr uint32_t kBatch = 256;
  pl::EventBus* bus_ = nullptr;
  pl::ClockOffset clock_;
  std::vector<pl::Event> batch_;
  std::atomic<uint64_t> sent_{0};
  std::atomic<double> cpuNs_{0};
};

// One measurement of one path in one mode.
struct Sample {
  double offeredPerS = 0, deliveredPerS = 0;
  uint64_t offered = 0, delivered = 0, lostKernel = 0, lostBus = 0, lostSeen = 0;
  double p50us = 0, p99us = 0, maxUs = 0;
  double cpuPct = 0;              // agent threads, % of one core
  std::vector<double> threadPct;  // per agent thread (source/reader, subscriber, producer side)
  double cpuNsPerEvent = 0;
  double producerPct = 0;
  double perBatch = 0;  // events per delivered batch (subscriber wake-up)
};

struct Mode {
  double rate = 0;  // 0: as fast as the producer can
  uint32_t burst = 1;
  std::string label() const {
    if (!rate) return "max";
    return rate >= 1e6 ? fmt::format("paced {:g}M/s", rate / 1e6)
                       : fmt::format("paced {:g}k/s", rate / 1e3);
  }
};

// Runs the producer on the calling thread for `seconds`.
void produceFor(Path& p, const Mode& m, double seconds) {
  const auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(seconds));
  if (!m.rate) {
    const uint32_t chunk = p.name() == "user" ? 4096 : kMaxRunChunk;
    while (Clock::now() < end && !eb::g_stop) p.produce(chunk);
    return;
  }
  prctl(PR_SET_TIMERSLACK, 1000UL);  // 1 µs: sleeps end on time
  const auto period =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(m.burst / m.rate));
  auto next = Clock::now();
  while (next < end && !eb::g_stop) {
    p.produceBurst(m.burst);
    next += period;
    std::this_thread::sleep_until(next);
  }
}

Sample measure(Path& p, const Mode& m, const Args& a) {
  pl::EventBus bus;
  Delivery d;
  std::shared_ptr<pl::Subscription> sub;
  std::unique_ptr<Subscriber> subscriber;
  if (p.viaBus()) {
    sub = bus.subscribe("bench", a.queue);
    subscriber = std::make_unique<Subscriber>(sub, d);
  }
  p.start(bus, d);
  // Stops the path's threads (which write to d) on every way out, errors included.
  struct Stopper {
    Path& p;
    bool armed = true;
    ~Stopper() {
      if (!armed) return;
      try {
        p.stop();
      } catch (...) {
      }
    }
  } stopper{p};
  std::vector<pid_t> agent = p.agentThreads();
  if (subscriber) agent.push_back(subscriber->tid());
  auto cpu = [&] {
    std::vector<double> v;
    for (pid_t t : agent) v.push_back(taskCpuNs(t));
    return v;
  };

  const Offered o0 = p.offered();
  const uint64_t seen0 = p.consumerSeenLost();
  const double onProducer0 = p.agentCpuOnProducerNs();
  const std::vector<double> cpu0 = cpu();
  const uint64_t t0 = clockNs(CLOCK_MONOTONIC);
  double producerNs = 0;
  std::exception_ptr failed;
  std::thread producer([&] {
    try {
      const double c0 = eb::threadCpuNs();
      produceFor(p, m, a.seconds);
      producerNs = eb::threadCpuNs() - c0;
    } catch (...) {
      failed = std::current_exception();
    }
  });
  producer.join();
  const uint64_t t1 = clockNs(CLOCK_MONOTONIC);
  if (failed) std::rethrow_exception(failed);
  if (eb::g_stop) throw eb::Stop();
  const Offered o1 = p.offered();
  const uint64_t sent = o1.sent - o0.sent;
  // Drained: everything written was delivered or lost in the bus; or no progress for 1 s.
  uint64_t last = 0;
  auto lastChange = Clock::now();
  while (d.events() + bus.subscriberLost() < sent) {
    const uint64_t now = d.events() + bus.subscriberLost();
    if (now != last) {
      last = now;
      lastChange = Clock::now();
    } else if (Clock::now() - lastChange > std::chrono::seconds(1)) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const uint64_t t2 = clockNs(CLOCK_MONOTONIC);
  const std::vector<double> cpu1 = cpu();
  const double onProducer = p.agentCpuOnProducerNs() - onProducer0;
  const uint64_t seenLost = p.consumerSeenLost() - seen0;
  stopper.armed = false;
  p.stop();
  if (subscriber) subscriber->finish();

  Sample s;
  s.offered = sent + (o1.lost - o0.lost);
  s.lostKernel = o1.lost - o0.lost;
  s.lostBus = bus.subscriberLost();
  s.lostSeen = seenLost;
  s.delivered = d.events();
  s.offeredPerS = double(s.offered) / (double(t1 - t0) / 1e9);
  const uint64_t tEnd = std::max(d.lastNs(), t1);
  s.deliveredPerS = double(s.delivered) / (double(tEnd - t0) / 1e9);
  s.p50us = d.latency().quantile(0.5) / 1e3;
  s.p99us = d.latency().quantile(0.99) / 1e3;
  s.maxUs = d.latency().quantile(1.0) / 1e3;
  const double wall = double(t2 - t0);
  double total = onProducer;
  for (size_t i = 0; i < agent.size(); i++) {
    s.threadPct.push_back(100 * (cpu1[i] - cpu0[i]) / wall);
    total += cpu1[i] - cpu0[i];
  }
  if (onProducer > 0) s.threadPct.push_back(100 * onProducer / wall);
  s.cpuPct = 100 * total / wall;
  s.cpuNsPerEvent = s.delivered ? total / double(s.delivered) : 0;
  s.producerPct = 100 * producerNs / double(t1 - t0);
  s.perBatch = d.batches() ? double(s.delivered) / double(d.batches()) : 0;
  if (s.delivered + s.lostBus != sent)
    std::fprintf(stderr, "  %s %s: %lu written, %lu delivered + %lu lost in the bus\n",
                 p.name().c_str(), m.label().c_str(), static_cast<unsigned long>(sent),
                 static_cast<unsigned long>(s.delivered), static_cast<unsigned long>(s.lostBus));
  return s;
}

// "12.1 + 3.4": agent CPU per thread, % of one core.
std::string threadSplit(const Sample& s) {
  std::string out;
  for (double v : s.threadPct) out += (out.empty() ? "" : " + ") + fmt::format("{:.1f}", v);
  return out;
}

std::string what(const std::string& path, size_t perfPages) {
  if (path == "firewall")
    return "firewall XDP program → ring buffer → RingSource → EventBus → subscriber";
  if (path == "firewall-eager")
    return "the same, RingSource without wake-up coalescing (`coalesce` 0: reads on every "
           "wake-up, as before this benchmark)";
  if (path == "ringbuf") return "probe, bpf_ringbuf_output → RingSource → EventBus → subscriber";
  if (path == "perf")
    return fmt::format(
        "probe, bpf_perf_event_output ({} pages per CPU) → perf_buffer__poll thread (decode, "
        "publish) → EventBus → subscriber",
        perfPages);
  if (path == "reader") return "probe, bpf_ringbuf_output → RingReader thread (decode), no bus";
  return "user thread: decode + EventBus::publish → subscriber (no kernel)";
}

std::string fmtRate(double v) {
  if (v >= 1e6) return fmt::format("{:.2f} M", v / 1e6);
  return fmt::format("{:.0f} k", v / 1e3);
}

std::string fmtUs(double us) {
  if (us >= 1000) return fmt::format("{:.1f} ms", us / 1000);
  return fmt::format("{:.1f} µs", us);
}

// "median (min–max)" over rounds.
template <typename F>
std::string spread(const std::vector<Sample>& v, F f, std::string (*fm)(double)) {
  std::vector<double> x;
  for (const auto& s : v) x.push_back(f(s));
  if (x.size() == 1) return fm(x[0]);
  return fmt::format("{} ({}–{})", fm(eb::median(x)), fm(eb::minOf(x)), fm(eb::maxOf(x)));
}

std::string fmtPct(double v) { return fmt::format("{:.1f}%", v); }
std::string fmtNs(double v) { return fmt::format("{:.0f}", v); }

double med(const std::vector<Sample>& v, double Sample::*f) {
  std::vector<double> x;
  for (const auto& s : v) x.push_back(s.*f);
  return eb::median(x);
}

std::string table(const std::vector<std::pair<std::string, const std::vector<Sample>*>>& rows) {
  eb::MdTable t({"path", "mode", "offered/s", "delivered/s", "lost in kernel (sum)",
                 "lost in bus (sum)", "latency p50", "latency p99", "agent CPU, % of one core",
                 "agent CPU ns/event", "producer CPU"});
  for (const auto& [label, v] : rows) {
    uint64_t lk = 0, lb = 0, off = 0, seen = 0;
    for (const auto& s : *v) {
      lk += s.lostKernel;
      lb += s.lostBus;
      off += s.offered;
      seen += s.lostSeen;
    }
    auto pctOf = [&](uint64_t n) {
      return off ? fmt::format("{} ({:.2f}%)", n, 100.0 * double(n) / double(off)) : "0";
    };
    const auto sep = label.find('|');
    t.row({label.substr(0, sep), label.substr(sep + 1),
           spread(
               *v, [](const Sample& s) { return s.offeredPerS; }, fmtRate),
           spread(
               *v, [](const Sample& s) { return s.deliveredPerS; }, fmtRate),
           pctOf(lk), pctOf(lb),
           spread(
               *v, [](const Sample& s) { return s.p50us; }, fmtUs),
           spread(
               *v, [](const Sample& s) { return s.p99us; }, fmtUs),
           spread(
               *v, [](const Sample& s) { return s.cpuPct; }, fmtPct),
           spread(
               *v, [](const Sample& s) { return s.cpuNsPerEvent; }, fmtNs),
           spread(
               *v, [](const Sample& s) { return s.producerPct; }, fmtPct)});
  }
  return t.str();
}

std::vector<std::string> splitList(const std::string& v) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < v.size()) {
    size_t comma = v.find(',', pos);
    out.push_back(v.substr(pos, comma == std::string::npos ? comma : comma - pos));
    pos = comma == std::string::npos ? v.size() : comma + 1;
  }
  return out;
}

// "RATE[xBURST],...": e.g. 100000x1,1000000x100.
std::vector<std::pair<double, uint32_t>> parseRates(const std::string& v, uint32_t burst) {
  std::vector<std::pair<double, uint32_t>> out;
  for (const std::string& one : splitList(v)) {
    size_t x = one.find('x');
    out.push_back(
        {std::stod(one.substr(0, x)),
         x == std::string::npos ? burst : static_cast<uint32_t>(std::stoul(one.substr(x + 1)))});
  }
  return out;
}

Args parse(int argc, char** argv) {
  Args a;
  std::string rates;
  a.command = "ew_bench_events";
  for (int i = 1; i < argc; i++) {
    std::string s = argv[i];
    a.command += " " + s;
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value after " + s);
      a.command += " " + std::string(argv[i + 1]);
      return argv[++i];
    };
    if (s == "--seconds")
      a.seconds = std::stod(next());
    else if (s == "--rounds")
      a.rounds = std::stoi(next());
    else if (s == "--rate")
      a.rate = std::stod(next());
    else if (s == "--burst")
      a.burst = static_cast<uint32_t>(std::stoul(next()));
    else if (s == "--rates")
      rates = next();
    else if (s == "--ring-bytes")
      a.ringBytes = static_cast<uint32_t>(std::stoul(next()));
    else if (s == "--queue")
      a.queue = std::stoul(next());
    else if (s == "--coalesce-us")
      a.source.coalesce = std::chrono::microseconds(std::stol(next()));
    else if (s == "--max-batch")
      a.source.maxBatchPerRing = std::stoul(next());
    else if (s == "--out")
      a.out = next();
    else if (s == "--paths")
      a.paths = splitList(next());
    else if (s == "--paced-only")
      a.pacedOnly = true;
    else if (s == "--help" || s == "-h") {
      std::puts(
          "ew_bench_events [--seconds S] [--rounds N] [--rate EVENTS_PER_S] [--burst N]\n"
          "                [--rates RATE[xBURST],... (more paced runs, firewall path)]\n"
          "                [--ring-bytes N] [--queue N] [--coalesce-us N] [--max-batch N]\n"
          "                [--paths firewall,firewall-eager,ringbuf,perf,reader,user]\n"
          "                [--paced-only] [--out FILE]");
      std::exit(0);
    } else {
      die("unknown argument " + s);
    }
  }
  if (a.seconds <= 0 || a.rounds < 1 || a.rate <= 0 || a.burst < 1) die("bad arguments");
  if (!rates.empty()) a.extraRates = parseRates(rates, a.burst);
  for (const auto& p : a.paths)
    if (p != "firewall" && p != "firewall-eager" && p != "ringbuf" && p != "perf" &&
        p != "reader" && p != "user")
      die("unknown path " + p);
  return a;
}

int run(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const std::string machine = eb::machineLine();
  Probe probe = loadProbe(a.ringBytes);
  std::vector<std::unique_ptr<Path>> paths;
  size_t perfPages = 0;
  for (const auto& name : a.paths) {
    if (name == "firewall")
      paths.push_back(std::make_unique<FirewallPath>(name, a.ringBytes, a.source));
    if (name == "firewall-eager") {
      pl::RingSource::Options eager = a.source;
      eager.coalesce = std::chrono::microseconds(0);
      paths.push_back(std::make_unique<FirewallPath>(name, a.ringBytes, eager));
    }
    if (name == "ringbuf") paths.push_back(std::make_unique<RingbufPath>(*probe, a.source));
    if (name == "reader") paths.push_back(std::make_unique<ReaderPath>(*probe));
    if (name == "user") paths.push_back(std::make_unique<UserPath>());
    if (name == "perf") {
      auto p = std::make_unique<PerfPath>(*probe, a.ringBytes, a.source.coalesce);
      perfPages = p->pagesPerCpu();
      paths.push_back(std::move(p));
    }
  }
  const Mode maxMode{0, 1};
  const Mode paced{a.rate, a.burst};
  std::vector<Mode> extra;
  for (auto [r, b] : a.extraRates) extra.push_back({r, b});

  std::map<std::string, std::vector<Sample>> results;  // "path|mode"
  std::vector<std::string> order;
  auto record = [&](const Path& p, const Mode& m, Sample s) {
    const std::string key = p.name() + "|" + m.label() +
                            (m.rate ? fmt::format(", bursts of {}", m.burst) : std::string());
    if (!results.count(key)) order.push_back(key);
    results[key].push_back(std::move(s));
    const auto& x = results[key].back();
    std::fprintf(stderr,
                 "  %-8s %-26s offered %9.0f/s delivered %9.0f/s lost kernel %lu bus %lu  "
                 "p50 %.1f µs p99 %.1f µs  agent CPU %.1f%% (%s) %.0f/batch\n",
                 p.name().c_str(), key.substr(key.find('|') + 1).c_str(), x.offeredPerS,
                 x.deliveredPerS, static_cast<unsigned long>(x.lostKernel),
                 static_cast<unsigned long>(x.lostBus), x.p50us, x.p99us, x.cpuPct,
                 threadSplit(x).c_str(), x.perBatch);
  };
  for (int r = 0; r < a.rounds; r++) {
    std::fprintf(stderr, "== round %d/%d (load %s)\n", r + 1, a.rounds, eb::loadNow().c_str());
    for (auto& p : paths) {
      if (!a.pacedOnly) record(*p, maxMode, measure(*p, maxMode, a));
      record(*p, paced, measure(*p, paced, a));
      if (p->name() == "firewall")
        for (const Mode& m : extra) record(*p, m, measure(*p, m, a));
    }
  }

  std::vector<std::pair<std::string, const std::vector<Sample>*>> rows;
  for (const auto& k : order) rows.push_back({k, &results[k]});
  std::string md = "# Events from the kernel to a subscriber\n\n";
  md += fmt::format("Measured {}. Load average at the end: {}. Source: commit {}.\n\n", machine,
                    eb::loadNow(), eb::sourceRevision());
  md += fmt::format(
      "Command: `{}`. {} rounds of {:.0f} s per path and mode, interleaved; each "
      "figure is the median of the rounds (min–max in brackets), lost counts are "
      "sums over the rounds. Ring buffer {} bytes, subscriber queue {} events.\n\n",
      a.command, a.rounds, a.seconds, a.ringBytes, a.queue);
  md += "## Paths\n\n";
  for (const auto& p : paths)
    md += fmt::format("- `{}`: {}\n", p->name(), what(p->name(), perfPages));
  md += fmt::format(
      "\nThe record is `struct ew_fw_event` ({} bytes; the ring buffer adds an 8-byte header, a "
      "perf sample a 4-byte size, 4 bytes of padding and an 8-byte perf header). Kernel producers "
      "run BPF_PROG_TEST_RUN on a {}-byte TCP SYN the program drops: at the maximum rate with "
      "repeat {} per call; paced, one call with repeat 1 per event (a call with repeat > 1 costs "
      "~2 ms of set-up here), or one call per burst for bursts above {}. RingSource options: "
      "coalesce {} µs, at most {} records per ring per wake-up.\n",
      sizeof(ew_fw_event), deniedFrame().size(), kMaxRunChunk, kOneCallBurst,
      a.source.coalesce.count(), a.source.maxBatchPerRing);
  md += "\n## Results\n\n" + table(rows);
  md +=
      "\n`offered/s`: records the producer program tried to write per second of producing "
      "(written + lost in the kernel). `delivered/s`: events the subscriber received, over the "
      "time from the start to the last delivery. Latency: kernel `ts_ns` (CLOCK_MONOTONIC, "
      "converted to CLOCK_REALTIME by the pipeline's ClockOffset) to the subscriber's "
      "CLOCK_REALTIME when it gets the batch. Agent CPU: run time of the agent's threads "
      "(RingSource or the path's reader thread, and the subscriber; for `user` also the "
      "decode + publish time on the producer thread) over wall time, from "
      "/proc/self/task/<tid>/schedstat; the producer (BPF_PROG_TEST_RUN) is not included. "
      "`producer CPU`: the producer thread's CPU time over its producing time.\n\n";

  md += "## Targets\n\n";
  auto fwMax = results.find("firewall|max");
  const std::string pacedKey = fmt::format("firewall|{}, bursts of {}", paced.label(), paced.burst);
  auto fwPaced = results.find(pacedKey);
  if (fwMax != results.end()) {
    const double d = med(fwMax->second, &Sample::deliveredPerS);
    md += fmt::format(
        "- ≥ {:.0f}M events/s from the kernel to a subscriber: firewall path at the maximum "
        "rate delivered {} events/s (median): **{}**.\n",
        kTargetRate / 1e6, fmtRate(d), d >= kTargetRate ? "met" : "missed");
  }
  for (auto [r, b] : a.extraRates) {
    if (r < kTargetRate) continue;
    auto it = results.find(fmt::format("firewall|{}, bursts of {}", Mode{r, b}.label(), b));
    if (it == results.end()) continue;
    uint64_t lost = 0;
    for (const auto& x : it->second) lost += x.lostKernel + x.lostBus;
    md += fmt::format(
        "- paced at {}/s (bursts of {}): delivered {} events/s (median), {} lost in all rounds.\n",
        fmtRate(r), b, fmtRate(med(it->second, &Sample::deliveredPerS)), lost);
  }
  if (fwPaced != results.end() && a.rate == kTargetCpuAtRate) {
    const double c = med(fwPaced->second, &Sample::cpuPct);
    md += fmt::format(
        "- agent CPU < {:.0f}% of one core at {:.0f}k events/s: firewall path, paced, {:.1f}% "
        "(median): **{}**.\n",
        kTargetCpuPct, kTargetCpuAtRate / 1e3, c, c < kTargetCpuPct ? "met" : "missed");
  }
  eb::writeReport(md, a.out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return eb::benchMain("ew_bench_events", "BPF programs and BPF_PROG_TEST_RUN",
                       "nothing to clean up (no pins, no interfaces)",
                       [&] { return run(argc, argv); });
}
