// FunctionRunner: WASI command modules run on request, each call under its function's limits.
//
//   wasm::FunctionRunner fr(caps);
//   fr.deploy(manifest, wasmBytes);                               // kind: Function
//   auto r = fr.invoke("hello", stdinBytes, {"EW_CALLER=spiffe://..."});
//   // r->out (stdout), r->err (stderr), r->exitCode; or an error naming the limit that ended it
//
// Thread-safe. Each call gets a fresh instance: the state saved after instantiation is put back
// after every call (or, when that cannot reset it, the instance is instantiated again off the
// caller's path), so no state leaks from one caller to the next.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "wasm/engines.h"
#include "wasm/instance_pool.h"
#include "wasm/manifest.h"
#include "wasm/module_cache.h"

namespace edgeward::wasm {

struct InvokeResult {
  std::string out;
  std::string err;
  int exitCode = 0;
};

// Upper bounds, in seconds, of the call duration histogram's buckets (then one for longer calls).
inline constexpr double kCallBuckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                          0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5};
inline constexpr size_t kCallBucketCount = std::size(kCallBuckets) + 1;

struct FunctionInfo {
  std::string name;
  std::string version;
  Limits limits;
  uint64_t invocations = 0;
  uint64_t failures = 0;
  uint64_t rateLimited = 0;
  uint32_t instancesLive = 0;
  // Between calls the saved state is put back (a memcpy); false: the code keeps state that
  // cannot be put back (resettableInPlace), and each call gets a new instantiation.
  bool resetsInPlace = true;
  // Every invocation's duration, waiting for an instance included: the calls in each bucket
  // (not cumulative; the last is over the last bound) and their sum.
  std::array<uint64_t, kCallBucketCount> callBuckets{};
  uint64_t callNsTotal = 0;
};

class FunctionRunner {
 public:
  explicit FunctionRunner(OperatorCaps caps, VmFactory engine = availableEngines()[0].create);
  ~FunctionRunner();

  // Adds or replaces a function; on error nothing changes. Calls running on an old version
  // finish there.
  Result<void> deploy(const Manifest& manifest, std::span<const uint8_t> wasm);
  Result<void> remove(const std::string& name);
  std::vector<FunctionInfo> list() const;
  Result<FunctionInfo> info(const std::string& name) const;

  // Runs the function with `input` as stdin; `extraEnv` ("NAME=value") is added to the
  // manifest's environment for this call only (e.g. the caller's identity).
  Result<InvokeResult> invoke(const std::string& name, std::string input,
                              std::vector<std::string> extraEnv = {});

  struct Function;

 private:
  OperatorCaps caps_;
  VmFactory engine_;
  ModuleCache cache_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Function>> functions_;
};

}  // namespace edgeward::wasm
