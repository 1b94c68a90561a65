// The plugin ABI and PluginManager: verdicts, chaining, host functions, kv, async completion
// ordering, failure policies, and hot replacement under load.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <semaphore>
#include <thread>

#include "edgeward_event.h"
#include "wasm/instance_pool.h"
#include "wasm/module_cache.h"
#include "wasm/plugin_manager.h"
#include "wasm_test_support.h"

namespace edgeward::wasm {
namespace {

using testing::EngineTest;
using testing::event;
using testing::pluginManifest;
using testing::readGuest;

enum Action : uint64_t {
  kPass = 0,
  kDrop = 1,
  kReplace = 2,
  kSpin = 3,
  kCount = 6,
  kAsync = 7,
  kBadPointer = 8,
  kBadVerdict = 9,
  kReplaceMissing = 10,
  kPrint = 12
};

class PluginManagerTest : public EngineTest {
 protected:
  PluginManager::Callbacks callbacks() {
    PluginManager::Callbacks cb;
    cb.emit = [this](const std::string& plugin, std::string_view topic,
                     std::span<const uint8_t> b) {
      std::lock_guard l(mu_);
      emitted_.push_back(fmt::format("{}/{}: {}", plugin, topic, std::string(b.begin(), b.end())));
    };
    cb.publish = [this](const std::string& plugin, std::string_view topic,
                        std::span<const uint8_t> b, PluginManager::Callbacks::PublishDone done) {
      std::lock_guard l(mu_);
      published_.push_back(
          fmt::format("{}/{}: {}", plugin, topic, std::string(b.begin(), b.end())));
      if (answerLater_)
        later_.push_back(std::move(done));  // the test answers, as a broker's ack would
      else
        done(publishOk_.load());
    };
    cb.log = [this](const std::string& plugin, int level, std::string_view msg) {
      std::lock_guard l(mu_);
      logs_.push_back(fmt::format("{} {}: {}", plugin, level, msg));
    };
    cb.disabled = [this](const std::string& plugin, const std::string& why) {
      std::lock_guard l(mu_);
      disabled_.push_back(plugin + ": " + why);
    };
    return cb;
  }
  void SetUp() override {
    pm_ = std::make_unique<PluginManager>(OperatorCaps{}, callbacks(), engine());
  }
  void load(const Manifest& m, const std::string& guest = "test_plugin") {
    auto r = pm_->load(m, readGuest(guest));
    ASSERT_TRUE(r) << r.error().message();
  }
  std::vector<std::string> emitted() {
    std::lock_guard l(mu_);
    return emitted_;
  }

  std::mutex mu_;
  std::vector<std::string> emitted_, published_, logs_, disabled_;
  std::atomic<bool> publishOk_{true};
  bool answerLater_ = false;
  std::vector<PluginManager::Callbacks::PublishDone> later_;
  std::unique_ptr<PluginManager> pm_;
};

TEST_P(PluginManagerTest, VerdictsPassDropReplace) {
  load(pluginManifest("p"));
  EXPECT_EQ(pm_->onEvent(event(kPass)).verdict, Verdict::Pass);
  EXPECT_EQ(pm_->onEvent(event(kDrop)).verdict, Verdict::Drop);
  auto r = pm_->onEvent(event(kReplace));
  ASSERT_EQ(r.verdict, Verdict::Replace);
  ASSERT_EQ(r.bytes.size(), sizeof(ew_event));
  ew_event out;
  std::memcpy(&out, r.bytes.data(), sizeof out);
  EXPECT_EQ(out.rule, 42u);
  EXPECT_EQ(out.value, kReplace);
  auto s = *pm_->stats("p");
  EXPECT_EQ(s.calls, 3u);
  EXPECT_EQ(s.passed, 1u);
  EXPECT_EQ(s.dropped, 1u);
  EXPECT_EQ(s.replaced, 1u);
  EXPECT_EQ(s.failures, 0u);
}

TEST_P(PluginManagerTest, PluginsChainInLoadOrderAndSubscriptionsFilter) {
  Manifest a = pluginManifest("a");
  Manifest b = pluginManifest("b");
  b.events = {EW_EV_TCP_OPEN};
  load(a);
  load(b);
  pm_->onEvent(event(kCount));
  pm_->onEvent(event(kCount, EW_EV_TCP_OPEN));
  EXPECT_EQ(emitted(), (std::vector<std::string>{"a/counted: count=1", "a/counted: count=2",
                                                 "b/counted: count=1"}));
  // A drop stops the chain: b does not see it.
  EXPECT_EQ(pm_->onEvent(event(kDrop, EW_EV_TCP_OPEN)).verdict, Verdict::Drop);
  EXPECT_EQ(pm_->stats("b")->calls, 1u);
  auto names = pm_->list();
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0].name, "a");
  EXPECT_EQ(names[1].name, "b");
}

TEST_P(PluginManagerTest, KvSurvivesInstanceRecyclingAndReplacement) {
  Manifest m = pluginManifest("kv");
  m.limits.instances = 1;
  m.disableAfter = 0;
  load(m);
  pm_->onEvent(event(kCount));
  pm_->onEvent(event(kBadVerdict));  // discards the only instance
  pm_->onEvent(event(kCount));
  ASSERT_TRUE(pm_->replace(m, readGuest("test_plugin_v2")));
  pm_->onEvent(event(kCount));
  EXPECT_EQ(emitted(), (std::vector<std::string>{"kv/counted: count=1", "kv/counted: count=2",
                                                 "kv/counted: count=3"}));
}

TEST_P(PluginManagerTest, AsyncCompletionsArriveInDueOrder) {
  load(pluginManifest("async"));
  pm_->onEvent(event(kAsync));  // timer(60), timer(20), publish: tokens 1, 2, 3
  ASSERT_TRUE(pm_->waitIdle(std::chrono::seconds(5)));
  EXPECT_EQ(emitted(),
            (std::vector<std::string>{"async/issued: issued 1 2 3", "async/done: done 3 0",
                                      "async/done: done 2 0", "async/done: done 1 0"}));
  EXPECT_EQ(published_, (std::vector<std::string>{"async/out/topic: hello"}));
  EXPECT_EQ(pm_->stats("async")->completions, 3u);
}

// A sink answers when its message is safe (a broker's acknowledgement), maybe much later and
// from its own thread: the guest's ew_on_complete waits for that answer, and waitIdle with it.
TEST_P(PluginManagerTest, APublishCompletesWhenTheSinkAnswersLater) {
  answerLater_ = true;
  load(pluginManifest("async"));
  pm_->onEvent(event(kAsync));  // timer(60), timer(20), publish: tokens 1, 2, 3
  EXPECT_FALSE(pm_->waitIdle(std::chrono::milliseconds(300))) << "the publish is unanswered";
  EXPECT_EQ(emitted(), (std::vector<std::string>{"async/issued: issued 1 2 3",
                                                 "async/done: done 2 0", "async/done: done 1 0"}));
  PluginManager::Callbacks::PublishDone done;
  {
    std::lock_guard l(mu_);
    ASSERT_EQ(later_.size(), 1u);
    done = later_[0];
  }
  std::thread([done] { done(true); }).join();
  done(false);  // a second answer is ignored
  ASSERT_TRUE(pm_->waitIdle(std::chrono::seconds(5)));
  auto e = emitted();
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[3], "async/done: done 3 0");
  EXPECT_EQ(pm_->stats("async")->published, 1u);
  EXPECT_EQ(pm_->stats("async")->completions, 3u);
}

TEST_P(PluginManagerTest, FailedPublishCompletesWithFailedStatus) {
  load(pluginManifest("async"));
  publishOk_ = false;
  pm_->onEvent(event(kAsync));
  ASSERT_TRUE(pm_->waitIdle(std::chrono::seconds(5)));
  auto e = emitted();
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[1], "async/done: done 3 1");
}

TEST_P(PluginManagerTest, LogAndStdoutReachTheLogCallback) {
  load(pluginManifest("chatty"));
  pm_->onEvent(event(kPrint));
  EXPECT_EQ(logs_, (std::vector<std::string>{"chatty 1: hello from stdout\n",
                                             "chatty 2: hello from ew_log"}));
}

TEST_P(PluginManagerTest, FailOpenPassesFailClosedDrops) {
  Manifest open = pluginManifest("open");
  load(open);
  EXPECT_EQ(pm_->onEvent(event(kBadPointer)).verdict, Verdict::Pass);
  EXPECT_EQ(pm_->stats("open")->lastError,
            "ew_on_event: edgeward.ew_log: message outside guest memory");
  ASSERT_TRUE(pm_->unload("open"));
  Manifest closed = pluginManifest("closed");
  closed.failure = FailurePolicy::FailClosed;
  load(closed);
  EXPECT_EQ(pm_->onEvent(event(kReplaceMissing)).verdict, Verdict::Drop);
  EXPECT_EQ(pm_->stats("closed")->lastError,
            "ew_on_event returned EW_REPLACE without calling ew_replace");
  EXPECT_EQ(pm_->onEvent(event(kPass)).verdict, Verdict::Pass) << "one failure does not disable";
}

TEST_P(PluginManagerTest, ReloadPolicyRecreatesInstances) {
  Manifest m = pluginManifest("reloader");
  m.failure = FailurePolicy::Reload;
  m.limits.instances = 2;
  load(m);
  EXPECT_EQ(pm_->onEvent(event(kBadVerdict)).verdict, Verdict::Pass);
  auto s = *pm_->stats("reloader");
  EXPECT_EQ(s.reloads, 1u);
  EXPECT_EQ(pm_->onEvent(event(kDrop)).verdict, Verdict::Drop);
}

TEST_P(PluginManagerTest, APluginThatKeepsFailingIsDisabledAndReported) {
  Manifest m = pluginManifest("flaky");
  m.failure = FailurePolicy::FailClosed;
  m.disableAfter = 3;
  load(m);
  for (int i = 0; i < 3; i++) pm_->onEvent(event(kBadVerdict));
  auto s = *pm_->stats("flaky");
  EXPECT_FALSE(s.enabled);
  EXPECT_EQ(s.disabledReason,
            "disabled after 3 consecutive failures; last: ew_on_event returned 7, not EW_PASS, "
            "EW_DROP or EW_REPLACE");
  ASSERT_EQ(disabled_.size(), 1u);
  EXPECT_EQ(disabled_[0], "flaky: " + s.disabledReason);
  // Disabled: not called; fail-closed keeps dropping.
  EXPECT_EQ(pm_->onEvent(event(kPass)).verdict, Verdict::Drop);
  EXPECT_EQ(pm_->stats("flaky")->calls, 3u);
  ASSERT_TRUE(pm_->enable("flaky"));
  EXPECT_EQ(pm_->onEvent(event(kPass)).verdict, Verdict::Pass);
}

TEST_P(PluginManagerTest, BadLoadsChangeNothing) {
  load(pluginManifest("good"));
  auto again = pm_->load(pluginManifest("good"), readGuest("test_plugin"));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().message(),
            "plugin good is already loaded (replace it, or unload it first)");
  auto cmd = pm_->load(pluginManifest("cmd"), readGuest("wasi_probe"));
  ASSERT_FALSE(cmd);
  EXPECT_EQ(cmd.error().message(),
            "plugin cmd: the module does not export ew_on_event (i32, i32) -> i32 (see "
            "plugins/sdk/edgeward_plugin.h)");
  std::vector<uint8_t> junk = {0, 'a', 's', 'm', 1, 0, 0, 0, 99};
  auto bad = pm_->replace(pluginManifest("good"), junk);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "plugin good: offset 8: unknown section id 99");
  ASSERT_EQ(pm_->list().size(), 1u);
  EXPECT_EQ(pm_->onEvent(event(kDrop)).verdict, Verdict::Drop) << "the good plugin still runs";
}

TEST_P(PluginManagerTest, ReplaceUnderLoadDropsNoCall) {
  Manifest m = pluginManifest("hot");
  m.limits.instances = 4;
  load(m);
  auto v1 = readGuest("test_plugin");
  auto v2 = readGuest("test_plugin_v2");
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> passes{0}, drops{0}, calls{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 3; t++)
    workers.emplace_back([&] {
      while (!stop) {
        Verdict v = pm_->onEvent(event(kPass)).verdict;  // v1 passes it, v2 drops it
        (v == Verdict::Pass ? passes : drops)++;
        calls++;
      }
    });
  for (int i = 0; i < 6; i++) {
    while (calls < uint64_t(200) * (i + 1)) std::this_thread::yield();
    auto r = pm_->replace(m, i % 2 == 0 ? v2 : v1);
    ASSERT_TRUE(r) << r.error().message();
  }
  stop = true;
  for (auto& w : workers) w.join();
  auto s = *pm_->stats("hot");
  EXPECT_EQ(s.failures, 0u) << s.lastError;
  EXPECT_EQ(s.busy, 0u);
  EXPECT_EQ(s.calls, calls.load()) << "every event reached a plugin version";
  EXPECT_EQ(s.passed + s.dropped, calls.load());
  EXPECT_GT(passes.load(), 0u);
  EXPECT_GT(drops.load(), 0u);
}

// Moving an isolate between threads costs more than a call: a thread gets back the idle instance
// it held last, and only takes another thread's when none of its own is idle.
TEST_P(PluginManagerTest, APoolHandsAThreadTheInstanceItHeldLast) {
  ModuleCache cache(engine(), 4);
  auto mod = cache.get(readGuest("wasi_probe"));
  ASSERT_TRUE(mod) << mod.error().str();
  auto pool = InstancePool::make(
      [&] { return makeInstance(engine(), *mod, 0, wasi::WasiConfig{}, nullptr, "_start"); },
      nullptr, 2);
  // A lease is released on the thread that took it (it holds the isolate's lock).
  auto mine = pool->acquire(std::chrono::seconds(1));
  ASSERT_TRUE(mine) << mine.error().str();
  const Instance* own = &**mine;
  std::binary_semaphore held{0}, released{0};
  const Instance* theirs = nullptr;
  std::thread other([&] {
    auto l = pool->acquire(std::chrono::seconds(1));
    if (l) theirs = &**l;
    held.release();
    released.acquire();
  });  // ...and gives its instance back after ours: the most recently idle one is theirs
  held.acquire();
  ASSERT_NE(theirs, nullptr);
  ASSERT_NE(theirs, own);
  mine->release();
  released.release();
  other.join();

  auto again = pool->acquire(std::chrono::seconds(1));
  ASSERT_TRUE(again);
  EXPECT_EQ(&**again, own) << "this thread got another thread's instance while its own was idle";
  again->release();
  std::thread([&] {  // a thread with no instance of its own takes any idle one
    auto l = pool->acquire(std::chrono::seconds(1));
    EXPECT_TRUE(l);
  })
      .join();
  EXPECT_EQ(pool->stats().created, 2u) << "no instance created while one was idle";
}

EW_INSTANTIATE_ENGINES(PluginManagerTest);

}  // namespace
}  // namespace edgeward::wasm
