// Malformed modules: valid guests mutated at random for a fixed time (EW_FUZZ_SECONDS, default
// 3). The loader never crashes; every refusal is one clear line; whatever loads still runs.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <random>

#include "edgeward_event.h"
#include "wasm/function_runner.h"
#include "wasm/module_info.h"
#include "wasm/plugin_manager.h"
#include "support/fuzz.h"
#include "wasm_test_support.h"

namespace edgeward::wasm {
namespace {

using testing::EngineTest;
using testing::functionManifest;
using testing::pluginManifest;
using testing::readGuest;

std::vector<uint8_t> mutate(std::vector<uint8_t> b, std::mt19937_64& rng) {
  auto pick = [&](size_t n) {
    return n ? std::uniform_int_distribution<size_t>(0, n - 1)(rng) : 0;
  };
  int rounds = 1 + static_cast<int>(pick(4));
  for (int i = 0; i < rounds && !b.empty(); i++) {
    switch (pick(6)) {
      case 0:  // flip bits
        b[pick(b.size())] ^= static_cast<uint8_t>(1u << pick(8));
        break;
      case 1:  // random byte, biased to the header and section headers
        b[pick(std::min<size_t>(b.size(), pick(2) ? 64 : b.size()))] = static_cast<uint8_t>(rng());
        break;
      case 2:  // truncate
        b.resize(pick(b.size()));
        break;
      case 3: {  // insert junk
        size_t at = pick(b.size());
        size_t n = 1 + pick(16);
        std::vector<uint8_t> junk(n);
        for (auto& c : junk) c = static_cast<uint8_t>(rng());
        b.insert(b.begin() + static_cast<long>(at), junk.begin(), junk.end());
        break;
      }
      case 4: {  // delete a range
        size_t at = pick(b.size());
        size_t n = std::min(b.size() - at, 1 + pick(64));
        b.erase(b.begin() + static_cast<long>(at), b.begin() + static_cast<long>(at + n));
        break;
      }
      case 5: {  // LEB128 extremes in a random place
        size_t at = pick(b.size());
        for (size_t k = at; k < std::min(b.size(), at + 5); k++)
          b[k] = k + 1 == at + 5 ? 0x0f : 0xff;
        break;
      }
    }
  }
  return b;
}

class MalformedModuleTest : public EngineTest {};

TEST_P(MalformedModuleTest, RandomMutationsNeverCrashTheLoader) {
  const auto run = edgeward::testing::fuzzRun(3);
  SCOPED_TRACE(run.trace());
  std::mt19937_64 rng(run.seed);
  const std::vector<std::vector<uint8_t>> seeds = {readGuest("test_plugin"), readGuest("math")};
  PluginManager pm(OperatorCaps{}, {}, engine());
  FunctionRunner fr(OperatorCaps{}, engine());
  const std::vector<uint8_t> evBytes = testing::event(0);

  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(run.seconds);
  uint64_t tries = 0, parsedOk = 0, loaded = 0;
  while (std::chrono::steady_clock::now() < end) {
    auto bytes = mutate(seeds[tries % seeds.size()], rng);
    tries++;
    parsedOk += parseModule(bytes).has_value();
    (void)resettableInPlace(bytes);  // the code reader sees every mutation too
    auto r = pm.load(pluginManifest("fuzz"), bytes);
    if (r) {
      loaded++;
      pm.onEvent(evBytes);  // whatever loaded must run (or fail cleanly)
      ASSERT_TRUE(pm.unload("fuzz"));
    } else {
      const std::string& msg = r.error().message();
      ASSERT_FALSE(msg.empty());
      ASSERT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
      ASSERT_EQ(msg.rfind("plugin fuzz: ", 0), 0u) << msg;
    }
    if (tries % 8 == 0) {
      auto f = fr.deploy(functionManifest("fuzz"), bytes);
      if (f) (void)fr.invoke("fuzz", "");
    }
  }
  std::printf("%llu mutated modules in %.1f s: %llu parsed, %llu loaded as plugins\n",
              static_cast<unsigned long long>(tries), run.seconds,
              static_cast<unsigned long long>(parsedOk), static_cast<unsigned long long>(loaded));
  EXPECT_GT(tries, 10u);
  // The host still works after all that.
  ASSERT_TRUE(pm.load(pluginManifest("ok"), seeds[0]));
  EXPECT_EQ(pm.onEvent(evBytes).verdict, Verdict::Pass);
}

EW_INSTANTIATE_ENGINES(MalformedModuleTest);

}  // namespace
}  // namespace edgeward::wasm
