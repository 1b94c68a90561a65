// The manifest that comes with every plugin and function (YAML, strict: unknown fields are
// errors naming the line), and the operator's caps that bound what a manifest may ask for.
//
//   apiVersion: edgeward.io/v1
//   kind: Plugin                  # or Function (a WASI command)
//   name: drop-ssh                # [a-z0-9-], at most 63 characters
//   version: "1.2"                # optional, free text
//   events: [drop, conn_new]      # plugins: the event kinds they see (default: all)
//   limits:                       # each optional; default and upper bound from OperatorCaps
//     memory: 16MiB               # linear memory
//     cpuPerCall: 10ms            # CPU time of one call
//     instances: 4                # live instances (concurrent calls)
//     callsPerSecond: 100000      # 0 = unlimited
//     output: 1MiB                # functions: stdout and stderr, each
//   failure:                      # plugins
//     policy: fail-open           # fail-open (pass the event) | fail-closed (drop) | reload
//     disableAfter: 10            # consecutive failures that disable the plugin (0 = never)
//   wasi:
//     args: [--verbose]           # after the program name
//     env: {MODE: strict}
//     dirs:                       # each must also be granted by the operator
//       - {host: /var/lib/edgeward/geo, guest: /geo, writable: false}
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"
#include "wasm/wasi/wasi.h"

namespace edgeward::wasm {

enum class ModuleKind { Plugin, Function };
enum class FailurePolicy { FailOpen, FailClosed, Reload };
std::string_view failurePolicyName(FailurePolicy p);

struct Limits {
  uint64_t memoryBytes = 0;
  uint64_t cpuPerCallNs = 0;
  uint32_t instances = 0;
  uint32_t callsPerSecond = 0;  // 0 = unlimited
  uint64_t outputBytes = 0;
};

struct DirRequest {
  std::string host;
  std::string guest;
  bool writable = false;
};

struct Manifest {
  ModuleKind kind = ModuleKind::Plugin;
  std::string name;
  std::string version;
  std::vector<uint16_t> events;  // ew_event kinds; empty = all
  Limits limits;                 // as asked; 0 = not asked
  FailurePolicy failure = FailurePolicy::FailOpen;
  uint32_t disableAfter = 10;
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<DirRequest> dirs;
};

Result<Manifest> parseManifest(std::string_view text, const std::string& source);
Result<Manifest> loadManifest(const std::string& path);

// What the operator (agent config) allows: defaults for what a manifest leaves out, upper bounds
// for what it asks, and the host directories plugins may be given.
struct DirGrant {
  std::string host;  // a directory; requests for it or anything beneath it are granted
  bool writable = false;
};
struct OperatorCaps {
  Limits defaults{16u << 20, 100'000'000, 4, 0, 1u << 20};
  Limits max{256u << 20, 10'000'000'000ull, 64, 0, 64u << 20};
  std::vector<DirGrant> grants;
};

// The limits and WASI configuration a module runs with.
struct Effective {
  Limits limits;
  std::vector<wasi::Preopen> dirs;
};

// Applies defaults and caps; fails when the manifest asks for a directory the operator has not
// granted (or writable access to one granted read-only).
Result<Effective> resolve(const Manifest& m, const OperatorCaps& caps);

// WASI for a module: argv (its name, then the manifest's args), environment, the resolved
// directories, the output limit.
wasi::WasiConfig wasiConfigFor(const Manifest& m, const Effective& e);

// "16MiB", "512KiB", "4096" -> bytes; "10ms", "250us", "2s" -> nanoseconds.
Result<uint64_t> parseSize(std::string_view s);
Result<uint64_t> parseDuration(std::string_view s);
std::string formatBytes(uint64_t b);
std::string formatNs(uint64_t ns);

}  // namespace edgeward::wasm
