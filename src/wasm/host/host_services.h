// What the edgeward host functions (one per file in this folder) need from the plugin they
// serve. The plugin manager implements it once per instance; tests may implement it directly.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "wasm/wasm_vm.h"

namespace edgeward::wasm::host {

inline constexpr const char* kModule = "edgeward";

// Results the guest sees (plugins/sdk/edgeward_plugin.h).
inline constexpr int32_t kErrInvalid = -1;
inline constexpr int32_t kErrNotFound = -2;
inline constexpr int32_t kErrTooBig = -3;
inline constexpr int32_t kErrLimit = -4;

inline constexpr uint32_t kMaxTopic = 255;
inline constexpr uint32_t kMaxData = 64 * 1024;

class HostServices {
 public:
  virtual ~HostServices() = default;
  virtual void log(int level, std::string_view message) = 0;
  virtual int32_t emit(std::string_view topic, std::span<const uint8_t> data) = 0;
  virtual std::optional<std::string> kvGet(std::string_view key) = 0;
  virtual int32_t kvSet(std::string_view key, std::span<const uint8_t> value) = 0;
  virtual int32_t publish(std::string_view topic, std::span<const uint8_t> data) = 0;
  virtual int32_t timer(uint32_t ms) = 0;
  virtual int32_t replace(std::span<const uint8_t> data) = 0;
};

// Each host function, bound to the services of one instance.
HostFunction ewEmit(HostServices& s);
HostFunction ewLog(HostServices& s);
HostFunction ewKvGet(HostServices& s);
HostFunction ewKvSet(HostServices& s);
HostFunction ewNow(HostServices& s);
HostFunction ewPublish(HostServices& s);
HostFunction ewTimer(HostServices& s);
HostFunction ewReplace(HostServices& s);

// All of them: the "edgeward" import module.
std::vector<HostFunction> hostFunctions(HostServices& s);

// Reads a (topic, data) pair of guest buffers for ew_emit / ew_publish; nullopt-free result
// codes for the guest when they are invalid or too big.
struct TopicData {
  std::string_view topic;
  std::span<const uint8_t> data;
  int32_t error = 0;
};
TopicData readTopicData(const HostCall& c);

}  // namespace edgeward::wasm::host
