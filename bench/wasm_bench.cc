// ew_bench_wasm: the WebAssembly runtime (V8) against native C++ doing the same work, same run.
//
//   cold start     fresh VM + compile + instantiate of a ~220 KB wasi-libc module
//                  vs fork+exec of a native program (/bin/true)
//   warm start     a pre-warmed instance from the pool (acquire + release), and a fresh instance
//                  of a compiled module in an existing VM (what a function call pays)
//                  vs constructing a native handler object
//   guest->host    an empty host function called in a guest loop vs a native indirect call
//   host->guest    an empty export called from C++ vs a native indirect call
//   compute        FNV-1a over 64 KiB in the guest vs the same C code compiled natively
//   filter events  events/s through plugins/examples/event_filter.wasm (PluginManager::onEvent,
//                  one thread) vs the same filter in C++ behind std::function
//   function       FunctionRunner::invoke of plugins/examples/wordcount.wasm with 1 KiB input,
//                  p50/p99 at concurrency 1 and 16 vs the same word count in C++; then the same
//                  over HTTP (the agent's POST /v1/functions/NAME route, load from wrk),
//                  vs the native word count behind the same server
//
//   ew_bench_wasm [--quick] [--trap-handler] [--eager] [--out FILE]
//   (--eager: V8 compiles every function at load instead of on first call)
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <thread>

#include <fmt/format.h>

#include <httplib.h>

#include "api/function_http.h"
#include "edgeward_event.h"
#include "support/report.h"
#include "wasm/function_runner.h"
#include "wasm/instance_pool.h"
#include "wasm/plugin_manager.h"
#include "wasm/runtime/v8/v8_vm.h"

namespace ew = edgeward::wasm;
namespace eb = edgeward::bench;
using Clock = std::chrono::steady_clock;

namespace {

[[noreturn]] void die(const std::string& m) {
  std::fprintf(stderr, "ew_bench_wasm: %s\n", m.c_str());
  std::exit(1);
}
template <typename T>
T must(edgeward::Result<T> r, const std::string& what) {
  if (!r) die(what + ": " + r.error().str());
  if constexpr (!std::is_void_v<T>) return std::move(*r);
}

std::vector<uint8_t> readFile(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) die("cannot read " + p + " (build the project first)");
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

double nsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(v.size())));
  return v[i];
}

std::string us(double ns) { return fmt::format("{:.1f} µs", ns / 1e3); }
std::string nsFmt(double ns) { return ns < 1000 ? fmt::format("{:.1f} ns", ns) : us(ns); }

// --- native counterparts -------------------------------------------------------------------
__attribute__((noinline)) void nativeNop() { asm volatile(""); }
void (*volatile g_nop)() = nativeNop;

uint8_t g_buf[65536];
__attribute__((noinline)) uint32_t nativeFnv(uint32_t rounds) {
  uint32_t h = 2166136261u;
  for (uint32_t r = 0; r < rounds; r++)
    for (uint32_t i = 0; i < sizeof g_buf; i++) {
      g_buf[i] = static_cast<uint8_t>(g_buf[i] + i + r);
      h = (h ^ g_buf[i]) * 16777619u;
    }
  return h;
}

int nativeFilter(std::span<const uint8_t> b) {  // plugins/examples/event_filter.c in C++
  if (b.size() < sizeof(ew_event)) return 0;
  ew_event ev;
  std::memcpy(&ev, b.data(), sizeof ev);
  auto noisy = [](uint16_t p) { return p == 137 || p == 138 || p == 1900 || p == 5353; };
  if (ev.kind == EW_EV_DROP && ev.proto == 17 && noisy(ev.dport)) return 1;
  if (ev.kind == EW_EV_TCP_RETRANSMIT && ev.value < 2) return 1;
  return 0;
}

std::string nativeWordcount(const std::string& in) {  // plugins/examples/wordcount.c in C++
  unsigned long lines = 0, words = 0;
  bool inWord = false;
  for (char c : in) {
    if (c == '\n') lines++;
    if (std::isspace(static_cast<unsigned char>(c))) {
      inWord = false;
    } else if (!inWord) {
      inWord = true;
      words++;
    }
  }
  return fmt::format("{{\"lines\":{},\"words\":{},\"bytes\":{},\"caller\":\"anonymous\"}}\n", lines,
                     words, in.size());
}

struct Row {
  std::string what, wasm, native, ratio, target;
};

struct Latency {
  double p50 = 0, p99 = 0, rate = 0;
  std::string str() const { return fmt::format("{} / {} ({:.0f}/s)", us(p50), us(p99), rate); }
};

// `conc` threads, each making `perThread` calls of the function `makeCall(thread)` returns (made
// on that thread, before the clock starts); a call returning false is a wrong answer.
template <typename MakeCall>
Latency runCallers(int conc, int perThread, MakeCall makeCall, const std::string& what) {
  std::vector<std::vector<double>> lat(conc);
  std::atomic<bool> bad{false};
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> ts;
  for (int c = 0; c < conc; c++)
    ts.emplace_back([&, c] {
      auto call = makeCall(c);
      lat[c].reserve(perThread);
      ready++;
      while (!go) std::this_thread::yield();
      for (int i = 0; i < perThread; i++) {
        auto t1 = Clock::now();
        if (!call()) bad = true;
        lat[c].push_back(nsSince(t1));
      }
    });
  while (ready < conc) std::this_thread::yield();
  auto t = Clock::now();
  go = true;
  for (auto& th : ts) th.join();
  double total = nsSince(t);
  if (bad) die(what + ": a call failed or answered differently from native");
  std::vector<double> all;
  for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
  return {percentile(all, 50), percentile(all, 99), all.size() / (total / 1e9)};
}

// One wrk run (1 thread, `conc` connections, `seconds` long) against `url` with the request
// `script` builds: its p50 and p99 and requests per second. Any non-2xx answer or socket error
// fails the benchmark.
Latency runWrk(const std::string& url, const std::string& script, int conc, int seconds,
               const std::string& prefix = "") {
  std::string cmd = fmt::format("{}wrk -t1 -c{} -d{}s --latency -s {} {} 2>&1", prefix, conc,
                                seconds, script, url);
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) die("cannot run wrk (scripts/setup-deps.sh installs it)");
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  if (pclose(p) != 0) die("wrk failed:\n" + out);
  if (out.find("Non-2xx") != std::string::npos || out.find("Socket errors") != std::string::npos)
    die("wrk saw failed requests:\n" + out);
  auto value = [&](const std::string& label) -> double {  // "  99%  1.23ms" -> ns
    auto at = out.find(label);
    if (at == std::string::npos) die("no " + label + " in wrk's output:\n" + out);
    double v = 0;
    char unit[8] = "";
    if (std::sscanf(out.c_str() + at + label.size(), "%lf%7s", &v, unit) != 2)
      die("cannot read " + label + " in wrk's output:\n" + out);
    std::string u = unit;
    return u == "us" ? v * 1e3 : u == "ms" ? v * 1e6 : u == "s" ? v * 1e9 : v;
  };
  return {value(" 50%"), value(" 99%"), value("Requests/sec:")};
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, trap = false, eager = false;
  std::string out = "bench/results/wasm.md";
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--quick")
      quick = true;
    else if (a == "--trap-handler")
      trap = true;
    else if (a == "--eager")
      eager = true;
    else if (a == "--out" && i + 1 < argc)
      out = argv[++i];
    else
      die("usage: ew_bench_wasm [--quick] [--trap-handler] [--eager] [--out FILE]");
  }
  ew::configureV8({.trapHandler = trap, .lazyCompilation = !eager});
  std::string machine = eb::machineLine();
  std::vector<Row> rows;
  const int coldRounds = quick ? 5 : 20;

  // Cold start.
  auto cold = readFile(EW_COLD_MODULE);
  std::vector<double> coldNs, vmNs, compileNs, instNs;
  for (int i = 0; i < coldRounds; i++) {
    auto t0 = Clock::now();
    auto vm = ew::createV8Vm({});
    double a = nsSince(t0);
    auto info = must(ew::parseModule(cold), "parse");
    auto mod = must(vm->compile(cold, info), "compile");
    double b = nsSince(t0);
    auto wasi = must(ew::wasi::WasiContext::create({}), "wasi");
    must(vm->load(mod), "load");
    for (auto& f : wasi->functions()) vm->registerCallback(std::move(f));
    must(vm->link(), "link");
    double c = nsSince(t0);
    vmNs.push_back(a);
    compileNs.push_back(b - a);
    instNs.push_back(c - b);
    coldNs.push_back(c);
  }
  std::vector<double> forkNs;
  for (int i = 0; i < coldRounds; i++) {
    auto t0 = Clock::now();
    pid_t p = fork();
    if (p == 0) {
      execl("/bin/true", "true", nullptr);
      _exit(127);
    }
    int st;
    waitpid(p, &st, 0);
    forkNs.push_back(nsSince(t0));
  }
  double coldMed = eb::median(coldNs);
  double loadMed = eb::median(compileNs) + eb::median(instNs);
  rows.push_back(
      {fmt::format("cold start, {} KB module: compile {} + instantiate {} (in an existing VM)",
                   cold.size() / 1000, us(eb::median(compileNs)), us(eb::median(instNs))),
       us(loadMed), us(eb::median(forkNs)) + " (fork+exec /bin/true)",
       fmt::format("{:.1f}x", loadMed / eb::median(forkNs)),
       loadMed <= 10e6 ? "≤ 10 ms: met" : "≤ 10 ms: MISSED"});
  rows.push_back({fmt::format("cold start with a new VM (isolate {} + compile + instantiate)",
                              us(eb::median(vmNs))),
                  us(coldMed), us(eb::median(forkNs)) + " (fork+exec /bin/true)",
                  fmt::format("{:.1f}x", coldMed / eb::median(forkNs)),
                  coldMed <= 10e6 ? "≤ 10 ms: met" : "≤ 10 ms: MISSED"});

  // Warm start: pool acquire/release, and re-instantiation in an existing VM.
  auto guest = readFile(EW_BENCH_GUEST);
  auto vm0 = ew::createV8Vm({});
  auto guestMod = must(vm0->compile(guest, must(ew::parseModule(guest), "parse")), "compile");
  auto makeBench = [&]() -> edgeward::Result<std::unique_ptr<ew::Instance>> {
    auto inst = std::make_unique<ew::Instance>();
    inst->vm = ew::createV8Vm({});
    EW_TRY(l, inst->vm->load(guestMod));
    inst->vm->registerCallback(
        {"bench", "nop", {}, [](ew::HostCall&) { return ew::HostReturn::ok(); }});
    EW_TRY(k, inst->vm->link());
    EW_TRY(e, inst->vm->getFunction("nop"));
    inst->entry = *e;
    return inst;
  };
  auto pool = ew::InstancePool::make(makeBench, nullptr, 2);
  must(pool->prewarm(2), "prewarm");
  const int warmN = quick ? 20000 : 200000;
  auto t0 = Clock::now();
  for (int i = 0; i < warmN; i++) {
    auto lease = must(pool->acquire(std::chrono::seconds(1)), "acquire");
  }
  double acquireNs = nsSince(t0) / warmN;
  auto relinkVm = must(makeBench(), "instance");
  std::vector<double> relinkNs;
  for (int i = 0; i < (quick ? 200 : 2000); i++) {
    auto t1 = Clock::now();
    must(relinkVm->vm->link(), "relink");
    relinkNs.push_back(nsSince(t1));
  }
  t0 = Clock::now();
  for (int i = 0; i < warmN; i++) {
    auto h = std::make_unique<std::function<int(std::span<const uint8_t>)>>(nativeFilter);
    asm volatile("" ::"r"(h.get()));
  }
  double nativeWarm = nsSince(t0) / warmN;
  rows.push_back({"warm start: pre-warmed instance from the pool (acquire + release)",
                  nsFmt(acquireNs), nsFmt(nativeWarm) + " (new handler object)",
                  fmt::format("{:.0f}x", acquireNs / nativeWarm),
                  acquireNs <= 100e3 ? "≤ 100 µs: met" : "≤ 100 µs: MISSED"});
  double relinkMed = eb::median(relinkNs);
  rows.push_back({"warm start: fresh instance of a compiled module in an existing VM",
                  us(relinkMed), "-", "-",
                  relinkMed <= 100e3 ? "≤ 100 µs: met" : "≤ 100 µs: MISSED"});

  // Call costs.
  ew::Instance& bi = *relinkVm;
  bi.vm->bind();  // as during a pool lease
  int nopFn = must(bi.vm->getFunction("nop"), "nop");
  int callHost = must(bi.vm->getFunction("call_host"), "call_host");
  int fnv = must(bi.vm->getFunction("fnv"), "fnv");
  const uint32_t loopN = quick ? 1'000'000 : 10'000'000;
  uint64_t arg = loopN;
  t0 = Clock::now();
  must(bi.vm->call(callHost, std::span<const uint64_t>(&arg, 1)), "call_host");
  double g2h = nsSince(t0) / loopN;
  t0 = Clock::now();
  for (uint32_t i = 0; i < loopN; i++) g_nop();
  double nativeCall = nsSince(t0) / loopN;
  rows.push_back({"guest -> host call (empty host function)", nsFmt(g2h),
                  nsFmt(nativeCall) + " (indirect call)", fmt::format("{:.0f}x", g2h / nativeCall),
                  "-"});
  const int h2gN = quick ? 100'000 : 1'000'000;
  t0 = Clock::now();
  for (int i = 0; i < h2gN; i++) must(bi.vm->call(nopFn, {}), "nop");
  double h2g = nsSince(t0) / h2gN;
  rows.push_back({"host -> guest call (empty export)", nsFmt(h2g),
                  nsFmt(nativeCall) + " (indirect call)", fmt::format("{:.0f}x", h2g / nativeCall),
                  "-"});
  uint64_t rounds = quick ? 20 : 200;
  t0 = Clock::now();
  auto hw = must(bi.vm->call(fnv, std::span<const uint64_t>(&rounds, 1)), "fnv");
  double fnvWasm = nsSince(t0);
  t0 = Clock::now();
  uint32_t hn = nativeFnv(static_cast<uint32_t>(rounds));
  double fnvNative = nsSince(t0);
  if (static_cast<uint32_t>(*hw.value) != hn) die("fnv: the guest and native results differ");
  bi.vm->unbind();
  rows.push_back({fmt::format("compute: FNV-1a over {} x 64 KiB", rounds), us(fnvWasm),
                  us(fnvNative), fmt::format("{:.2f}x", fnvWasm / fnvNative), "-"});

  // Events/s through the filter plugin.
  {
    ew::PluginManager pm(ew::OperatorCaps{}, {});
    ew::Manifest m;
    m.name = "event-filter";
    m.limits.instances = 1;
    must(pm.load(m, readFile(std::string(EW_EXAMPLES_DIR) + "/event_filter.wasm")),
         "load event_filter");
    std::vector<std::vector<uint8_t>> evs;
    for (int i = 0; i < 64; i++) {
      ew_event ev{};
      ev.kind = EW_EV_DROP;
      ev.version = EW_EVENT_VERSION;
      ev.size = sizeof ev;
      ev.proto = i % 2 ? 17 : 6;
      ev.dport = static_cast<uint16_t>(i % 4 == 1 ? 137 : 443);
      auto* p = reinterpret_cast<const uint8_t*>(&ev);
      evs.emplace_back(p, p + sizeof ev);
    }
    const int n = quick ? 200'000 : 2'000'000;
    uint64_t drops = 0;
    t0 = Clock::now();
    for (int i = 0; i < n; i++) drops += pm.onEvent(evs[i & 63]).verdict == ew::Verdict::Drop;
    double perEvent = nsSince(t0) / n;
    std::function<int(std::span<const uint8_t>)> native = nativeFilter;
    uint64_t ndrops = 0;
    t0 = Clock::now();
    for (int i = 0; i < n; i++) ndrops += native(evs[i & 63]);
    double perNative = nsSince(t0) / n;
    if (drops != ndrops) die("filter: plugin and native verdicts differ");
    std::vector<std::span<const uint8_t>> batch(evs.begin(), evs.end());
    uint64_t bdrops = 0;
    t0 = Clock::now();
    for (int i = 0; i < n / 64; i++)
      for (auto& r : pm.onEvents(batch)) bdrops += r.verdict == ew::Verdict::Drop;
    double perBatched = nsSince(t0) / (n / 64 * 64);
    uint64_t perBatch = 0;
    for (auto& e : evs) perBatch += nativeFilter(e);
    if (bdrops != perBatch * static_cast<uint64_t>(n / 64))
      die("filter: batched and native verdicts differ");
    auto eventsRow = [&](const std::string& what, double ns) {
      double eps = 1e9 / ns;
      rows.push_back({what, fmt::format("{:.2f} M/s ({:.0f} ns/event)", eps / 1e6, ns),
                      fmt::format("{:.1f} M/s ({:.1f} ns/event)", 1e3 / perNative, perNative),
                      fmt::format("{:.0f}x", ns / perNative),
                      eps >= 1e6 ? "≥ 1M/s: met" : "≥ 1M/s: MISSED"});
    };
    eventsRow("events/s through a trivial filter plugin (1 thread)", perEvent);
    eventsRow("events/s through the same plugin, onEvents batches of 64 (1 thread)", perBatched);
  }

  // Function invoke latency: in process (FunctionRunner::invoke), then over HTTP through the
  // agent's route (api::serveFunctions) with one keep-alive client per caller, the native word
  // count mounted on the same server as the baseline.
  {
    ew::FunctionRunner fr(ew::OperatorCaps{});
    ew::Manifest m;
    m.kind = ew::ModuleKind::Function;
    m.name = "wordcount";
    m.limits.instances = 16;
    m.limits.callsPerSecond = 0;
    must(fr.deploy(m, readFile(std::string(EW_EXAMPLES_DIR) + "/wordcount.wasm")),
         "deploy wordcount");
    std::string input;
    for (int i = 0; input.size() < 1024; i++)
      input += fmt::format("word{} ", i) + (i % 8 == 7 ? "\n" : "");
    const std::string expected = nativeWordcount(input);
    auto wasmCall = [&]() -> bool {
      auto r = fr.invoke("wordcount", input);
      return r && r->out == expected;
    };
    auto nativeCall = [&]() -> bool {
      auto s = nativeWordcount(input);
      asm volatile("" ::"r"(s.data()));
      return true;
    };
    auto target = [](int conc, double p99) -> std::string {
      return conc == 16 ? (p99 <= 1e6 ? "p99 ≤ 1 ms: met" : "p99 ≤ 1 ms: MISSED") : "-";
    };
    for (int conc : {1, 16}) {
      const int perThread = (quick ? 200 : 2000) / (conc == 1 ? 1 : 4);
      runCallers(
          conc, perThread, [&](int) { return wasmCall; }, "wordcount");  // warm up
      auto w = runCallers(
          conc, perThread, [&](int) { return wasmCall; }, "wordcount");
      auto n = runCallers(
          conc, perThread, [&](int) { return nativeCall; }, "native");
      rows.push_back({fmt::format("function invoke in process, concurrency {} (1 KiB stdin, p50 / "
                                  "p99)",
                                  conc),
                      w.str(), n.str(), fmt::format("{:.0f}x", w.p99 / n.p99),
                      target(conc, w.p99)});
    }

    // The load comes from wrk (one thread, `conc` kept-alive connections, each sending its next
    // request when the answer arrives): a light client, so the figures are the server's. Two
    // layouts on this machine: "separate CPUs" gives the server one event loop on CPU 0 and wrk
    // CPU 1 (the nearest a 2-CPU machine gets to a client on another host: neither preempts the
    // other); "shared CPUs" runs the agent's default (one loop per CPU) with wrk unpinned.
    char dir[] = "/tmp/ew-bench-wrk-XXXXXX";
    if (!mkdtemp(dir)) die("mkdtemp");
    const std::string bodyFile = std::string(dir) + "/body",
                      script = std::string(dir) + "/post.lua";
    std::ofstream(bodyFile, std::ios::binary) << input;
    std::ofstream(script) << fmt::format(
        "local f = io.open(\"{}\", \"rb\")\nwrk.method = \"POST\"\nwrk.body = f:read(\"*a\")\n"
        "f:close()\nwrk.headers[\"Content-Type\"] = \"application/octet-stream\"\n",
        bodyFile);
    const int seconds = quick ? 2 : 8;
    const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
    struct Layout {
      const char* name;
      unsigned loops;
      bool pinned;
      std::vector<int> concurrency;
    };
    std::vector<Layout> layouts = {{"shared CPUs", cpus, false, {16}}};
    if (cpus >= 2) layouts.insert(layouts.begin(), {"separate CPUs", 1, true, {1, 16}});
    for (const Layout& lay : layouts) {
      cpu_set_t all, first;
      sched_getaffinity(0, sizeof all, &all);
      if (lay.pinned) {  // the event loop threads inherit this thread's CPU set
        CPU_ZERO(&first);
        CPU_SET(0, &first);
        sched_setaffinity(0, sizeof first, &first);
      }
      edgeward::api::HttpServer http(std::nullopt, lay.loops);
      edgeward::api::serveFunctions(
          http,
          [&](const std::string& name, std::string body,
              const std::string&) -> edgeward::Result<edgeward::api::FunctionOutput> {
            if (name == "native-wordcount")
              return edgeward::api::FunctionOutput{nativeWordcount(body), "", 0};
            EW_TRY(r, fr.invoke(name, std::move(body)));
            return edgeward::api::FunctionOutput{std::move(r->out), std::move(r->err), r->exitCode};
          });
      must(http.start("127.0.0.1:0"), "http listener");
      sched_setaffinity(0, sizeof all, &all);
      {
        httplib::Client cli("127.0.0.1", http.port());
        for (const char* path : {"/v1/functions/wordcount", "/v1/functions/native-wordcount"}) {
          auto res = cli.Post(path, input, "application/octet-stream");
          if (!res || res->status != 200 || res->body != expected)
            die(fmt::format("POST {} did not answer the word count", path));
        }
      }
      for (int conc : lay.concurrency) {
        auto wrk = [&](const std::string& fn) {
          return runWrk(fmt::format("http://127.0.0.1:{}/v1/functions/{}", http.port(), fn), script,
                        conc, seconds, lay.pinned ? "taskset -c 1 " : "");
        };
        wrk("wordcount");  // warm up
        auto w = wrk("wordcount");
        auto n = wrk("native-wordcount");
        rows.push_back(
            {fmt::format("HTTP function invoke, concurrency {}, {} (server {} event loop{}{}; wrk: "
                         "POST 1 KiB, keep-alive; p50 / p99)",
                         conc, lay.name, lay.loops, lay.loops == 1 ? "" : "s",
                         lay.pinned ? " on CPU 0, wrk on CPU 1" : ""),
             w.str(), n.str(), fmt::format("{:.1f}x", w.p99 / n.p99), target(conc, w.p99)});
      }
    }
    std::filesystem::remove_all(dir);
  }

  eb::MdTable t({"benchmark", "WebAssembly (V8)", "native C++", "ratio", "target"});
  for (auto& r : rows) t.row({r.what, r.wasm, r.native, r.ratio, r.target});
  std::string args;
  for (int i = 1; i < argc; i++) args += std::string(" ") + argv[i];
  std::string md = fmt::format(
      "# WebAssembly runtime vs native\n\n{}, source {}\n\nV8 trap handler: {}; wasm compilation: "
      "{}. "
      "Command: `build/bench/ew_bench_wasm{}`\n\n{}",
      machine, eb::sourceRevision(), trap ? "on (guard pages)" : "off (explicit bounds checks)",
      eager ? "eager (--eager)" : "lazy (on first call)", args, t.str());
  std::fputs(md.c_str(), stdout);
  std::ofstream f(out);
  if (!f) die("cannot write " + out);
  f << md;
  std::fprintf(stderr, "wrote %s\n", out.c_str());
  return 0;
}
