// Each limit ends the call with a clear error; the host survives; the next call works.
#include <gtest/gtest.h>

#include <chrono>

#include "edgeward_event.h"
#include "wasm/function_runner.h"
#include "wasm/plugin_manager.h"
#include "wasm_test_support.h"

namespace edgeward::wasm {
namespace {

using testing::EngineTest;
using testing::event;
using testing::functionManifest;
using testing::pluginManifest;
using testing::readGuest;
using Clock = std::chrono::steady_clock;

class LimitsTest : public EngineTest {
 protected:
  void SetUp() override {
    pm_ = std::make_unique<PluginManager>(caps_, PluginManager::Callbacks{}, engine());
    Manifest m = pluginManifest("limited");
    m.limits.cpuPerCallNs = 50'000'000;  // 50 ms
    m.limits.memoryBytes = 4 << 20;
    m.disableAfter = 0;
    auto r = pm_->load(m, readGuest("test_plugin"));
    ASSERT_TRUE(r) << r.error().message();
  }
  PluginStats stats() { return *pm_->stats("limited"); }
  void expectNextCallWorks() {
    EXPECT_EQ(pm_->onEvent(event(1)).verdict, Verdict::Drop) << stats().lastError;
  }

  OperatorCaps caps_;
  std::unique_ptr<PluginManager> pm_;
};

TEST_P(LimitsTest, InfiniteLoopIsStoppedAtTheCpuLimit) {
  auto t0 = Clock::now();
  EXPECT_EQ(pm_->onEvent(event(3)).verdict, Verdict::Pass) << "fail-open";
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  EXPECT_GE(ms, 45);
  EXPECT_LT(ms, 1000);
  PluginStats s = stats();
  EXPECT_EQ(s.timeouts, 1u);
  EXPECT_EQ(s.lastError, "ew_on_event: stopped after its CPU time limit of 50 ms");
  expectNextCallWorks();
}

TEST_P(LimitsTest, MemoryBombHitsTheMemoryLimit) {
  EXPECT_EQ(pm_->onEvent(event(4)).verdict, Verdict::Pass);
  PluginStats s = stats();
  EXPECT_EQ(s.memoryErrors, 1u) << s.lastError;
  EXPECT_NE(s.lastError.find("of its 4096 KiB limit in use"), std::string::npos) << s.lastError;
  expectNextCallWorks();
}

TEST_P(LimitsTest, DeepRecursionExhaustsTheStack) {
  EXPECT_EQ(pm_->onEvent(event(5)).verdict, Verdict::Pass);
  PluginStats s = stats();
  EXPECT_EQ(s.stackOverflows, 1u) << s.lastError;
  EXPECT_NE(s.lastError.find("call stack exhausted"), std::string::npos) << s.lastError;
  expectNextCallWorks();
}

TEST_P(LimitsTest, TrappedInstanceIsDiscardedNotReused) {
  // Instance-local state (a C global) counts the calls one instance has seen.
  std::vector<std::string> seen;
  PluginManager pm(
      caps_,
      {.emit = [&](const std::string&, std::string_view,
                   std::span<const uint8_t> b) { seen.emplace_back(b.begin(), b.end()); }},
      engine());
  Manifest m = pluginManifest("single");
  m.limits.instances = 1;
  ASSERT_TRUE(pm.load(m, readGuest("test_plugin")));
  pm.onEvent(event(11));
  pm.onEvent(event(11));
  pm.onEvent(event(9));  // a bad verdict is a failure: the instance goes
  pm.onEvent(event(11));
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0], "calls=1");
  EXPECT_EQ(seen[1], "calls=2");
  EXPECT_EQ(seen[2], "calls=1") << "a fresh instance after the failure";
  EXPECT_EQ(pm.stats("single")->lastError,
            "ew_on_event returned 7, not EW_PASS, EW_DROP or EW_REPLACE");
}

TEST_P(LimitsTest, CallsPerSecondLimit) {
  Manifest m = pluginManifest("rated");
  m.limits.callsPerSecond = 5;
  ASSERT_TRUE(pm_->load(m, readGuest("test_plugin")));
  ASSERT_TRUE(pm_->unload("limited"));
  int dropped = 0;
  for (int i = 0; i < 20; i++) dropped += pm_->onEvent(event(1)).verdict == Verdict::Drop;
  // The burst is one second's worth; the rest pass (fail-open). One more token may have
  // trickled in (5 per second) if the machine stalled the loop for 200 ms.
  EXPECT_GE(dropped, 5);
  EXPECT_LE(dropped, 6);
  EXPECT_EQ(pm_->stats("rated")->rateLimited, static_cast<uint64_t>(20 - dropped));
  EXPECT_EQ(pm_->stats("rated")->failures, 0u) << "rate limiting is not a plugin failure";
}

TEST_P(LimitsTest, LiveInstanceLimitMakesCallsWait) {
  PluginManager pm(caps_, {}, engine());
  Manifest m = pluginManifest("single");
  m.limits.instances = 1;
  m.limits.cpuPerCallNs = 100'000'000;
  m.disableAfter = 0;
  ASSERT_TRUE(pm.load(m, readGuest("test_plugin")));
  std::thread spin([&] { pm.onEvent(event(3)); });
  while (pm.stats("single")->instancesIdle != 0) std::this_thread::yield();
  // The only instance spins: a second call may not get another one. It waits (up to the CPU
  // limit) until the spinning call is stopped and its instance replaced, or gives up (busy).
  auto t0 = Clock::now();
  Verdict v = pm.onEvent(event(1)).verdict;
  auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  spin.join();
  PluginStats s = *pm.stats("single");
  EXPECT_GE(waited, 50) << "it ran at once: a second instance was made";
  EXPECT_EQ(s.timeouts, 1u);
  if (v == Verdict::Pass) {
    EXPECT_EQ(s.busy, 1u);
  } else {
    EXPECT_EQ(v, Verdict::Drop);
    EXPECT_EQ(s.dropped, 1u);
  }
  EXPECT_LE(s.instancesLive, 1u);
  EXPECT_EQ(pm.onEvent(event(1)).verdict, Verdict::Drop) << "the next call works";
}

TEST_P(LimitsTest, OtherPluginsCarryOnWhileOneIsStopped) {
  Manifest m = pluginManifest("healthy");
  m.events = {EW_EV_TCP_OPEN};
  ASSERT_TRUE(pm_->load(m, readGuest("test_plugin")));
  std::thread spin([&] { pm_->onEvent(event(3)); });  // a drop event: "limited" only
  // While "limited" spins on another thread, events still flow through both plugins.
  for (int i = 0; i < 20; i++)
    EXPECT_EQ(pm_->onEvent(event(0, EW_EV_TCP_OPEN)).verdict, Verdict::Pass);
  spin.join();
  EXPECT_EQ(pm_->stats("healthy")->failures, 0u) << pm_->stats("healthy")->lastError;
  EXPECT_EQ(pm_->stats("healthy")->calls, 20u);
  EXPECT_EQ(pm_->stats("limited")->timeouts, 1u);
}

// The same limits for functions: the call returns an error, the next invoke works.
class FunctionLimitsTest : public EngineTest {
 protected:
  void deploy(const std::string& name, std::vector<std::string> args, Limits limits = {}) {
    Manifest m = functionManifest(name, std::move(args));
    m.limits = limits;
    auto r = fr_.deploy(m, readGuest("wasi_probe"));
    ASSERT_TRUE(r) << r.error().message();
  }
  void expectNextCallWorks(const std::string& fn) {
    ASSERT_TRUE(fr_.deploy(functionManifest("ok", {"args"}), readGuest("wasi_probe")));
    auto r = fr_.invoke("ok", "");
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->out, "argc=2 [ok] [args]\n");
    // And the limited function itself still answers with the same error, not a crash.
    EXPECT_FALSE(fr_.invoke(fn, ""));
  }
  FunctionRunner fr_{OperatorCaps{}, engine()};
};

TEST_P(FunctionLimitsTest, HugeOutputStopsAtTheOutputLimit) {
  deploy("flood", {"flood"}, {.outputBytes = 64 * 1024});
  auto r = fr_.invoke("flood", "");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(),
            "function flood: _start: wasi_snapshot_preview1.fd_write: stdout exceeded its limit of "
            "65536 bytes");
  expectNextCallWorks("flood");
}

TEST_P(FunctionLimitsTest, InfiniteLoopStopsAtTheCpuLimit) {
  deploy("spin", {"spin"}, {.cpuPerCallNs = 20'000'000});
  auto r = fr_.invoke("spin", "");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(),
            "function spin: _start: stopped after its CPU time limit of 20 ms");
  expectNextCallWorks("spin");
}

TEST_P(FunctionLimitsTest, MemoryThatDoesNotFitIsRefusedAtDeploy) {
  Manifest m = functionManifest("tiny", {"args"});
  m.limits.memoryBytes = 64 * 1024;  // wasi-libc programs start with 2 pages
  auto r = fr_.deploy(m, readGuest("wasi_probe"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(),
            "function tiny: the module needs 128 KiB of memory to start, over its limit of 64 KiB");
  EXPECT_TRUE(fr_.list().empty());
}

TEST_P(FunctionLimitsTest, OperatorCapsBoundTheManifest) {
  OperatorCaps caps;
  caps.max.cpuPerCallNs = 10'000'000;
  FunctionRunner fr(caps, engine());
  Manifest m = functionManifest("greedy", {"spin"});
  m.limits.cpuPerCallNs = 60'000'000'000;  // asks for a minute
  ASSERT_TRUE(fr.deploy(m, readGuest("wasi_probe")));
  EXPECT_EQ(fr.list()[0].limits.cpuPerCallNs, 10'000'000u);
  auto r = fr.invoke("greedy", "");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(),
            "function greedy: _start: stopped after its CPU time limit of 10 ms");
}

EW_INSTANTIATE_ENGINES(LimitsTest);
EW_INSTANTIATE_ENGINES(FunctionLimitsTest);

}  // namespace
}  // namespace edgeward::wasm
