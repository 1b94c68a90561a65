// Shared by the WASM tests: guest modules from the build, engines to run over, manifests.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "edgeward_event.h"
#include "wasm/engines.h"
#include "wasm/manifest.h"

namespace edgeward::wasm::testing {

inline std::vector<uint8_t> readGuest(const std::string& name) {
  std::string path = std::string(EW_GUEST_DIR) + "/" + name + ".wasm";
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("missing guest " + path + " (built by the project build)");
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

inline std::vector<uint8_t> readExample(const std::string& name) {
  std::string path = std::string(EW_EXAMPLES_DIR) + "/" + name + ".wasm";
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("missing example " + path + " (built by the project build)");
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// Every test suite that takes an engine runs once per engine this build has.
class EngineTest : public ::testing::TestWithParam<Engine> {
 protected:
  const VmFactory& engine() const { return GetParam().create; }
};

inline std::string engineName(const ::testing::TestParamInfo<Engine>& info) {
  return info.param.name;
}

#define EW_INSTANTIATE_ENGINES(suite)                                                 \
  INSTANTIATE_TEST_SUITE_P(WasmEngines, suite,                                        \
                           ::testing::ValuesIn(::edgeward::wasm::availableEngines()), \
                           ::edgeward::wasm::testing::engineName)

// An ew_event record; test_plugin.c reads the action it should take from `value`.
inline std::vector<uint8_t> event(uint64_t action, uint16_t kind = EW_EV_DROP) {
  ew_event ev{};
  ev.kind = kind;
  ev.version = EW_EVENT_VERSION;
  ev.size = sizeof ev;
  ev.rule = 7;
  ev.value = action;
  auto* p = reinterpret_cast<const uint8_t*>(&ev);
  return {p, p + sizeof ev};
}

inline Manifest functionManifest(const std::string& name, std::vector<std::string> args = {}) {
  Manifest m;
  m.kind = ModuleKind::Function;
  m.name = name;
  m.args = std::move(args);
  return m;
}

inline Manifest pluginManifest(const std::string& name) {
  Manifest m;
  m.kind = ModuleKind::Plugin;
  m.name = name;
  return m;
}

}  // namespace edgeward::wasm::testing
