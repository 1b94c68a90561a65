// The agent's configuration file (docs/config.md documents every field).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/control.h"
#include "common/result.h"
#include "pipeline/rotating_file.h"

namespace edgeward::agent {

enum class AttachMode { Xdp, Tcx };

struct InterfaceConfig {
  std::string name;
  std::string netns;  // a named network namespace (/var/run/netns/NAME); empty = the agent's own
  AttachMode mode = AttachMode::Xdp;
};

struct TlsFiles {
  std::string ca, cert, key;
};

struct TcpApiConfig {
  std::string address;  // host:port
  TlsFiles tls;
  std::map<std::string, api::Role> roles;  // client identity (CN or URI SAN) -> role
};

struct UpstreamConfig {
  std::string address;  // host:port of `edgeward controller`
  std::string group;    // node group whose policy to follow
  std::string node;     // this node's name (default: the host name)
  TlsFiles tls;         // empty: insecure (loopback only)
};

// Map capacities per policy generation; fixed for the life of the pinned maps.
struct Capacity {
  uint32_t ipv4Intervals = 1u << 20;
  uint32_t ipv6Intervals = 1u << 18;
  uint32_t groups = 1u << 16;
  uint32_t portEntries = 1u << 18;
  uint32_t rules = 1u << 16;
  uint32_t conntrack = 1u << 18;
};

// The event pipeline (docs/observability.md).
struct EventsConfig {
  bool drops = true;              // firewall drop events
  bool connections = true;        // firewall new-connection events
  uint32_t dropSample = 1;        // consider 1 drop in N
  uint32_t dropsPerPeer = 100;    // drop events per second per peer address; 0: no limit
  uint32_t dropBurst = 100;       // burst allowed per peer
  uint32_t ringBytes = 1u << 22;  // firewall ring buffer (fixed for the life of the pins)
  bool flowmon = true;            // TCP lifecycle from tracepoints
  uint32_t recent = 1024;         // events kept for `edgeward events` without --follow
  std::optional<pipeline::RotatingFileOptions> file;
};

// Where messages from plugins go (ew_publish, ew_emit on a topic): docs/plugins.md.
struct PublishConfig {
  std::optional<pipeline::RotatingFileOptions> file;  // JSON lines, rotated
  bool durable = true;                                // fsync before acknowledging
};

// A WebAssembly module the agent loads at start (docs/plugins.md).
struct ModuleConfig {
  std::string module;    // .wasm file
  std::string manifest;  // its manifest (kind Plugin or Function)
};

struct PluginsConfig {
  std::vector<ModuleConfig> modules;                 // plugins and functions, loaded in order
  std::vector<std::pair<std::string, bool>> grants;  // host directory, writable
  std::string functionsAddress;   // HTTP listener for POST /v1/functions/NAME; "" = none
  TlsFiles functionsTls;          // cert+key: TLS; +ca: mutual TLS (caller identity)
  uint32_t functionsThreads = 0;  // event loops serving the listener; 0 = one per CPU
};

struct AgentConfig {
  std::vector<InterfaceConfig> interfaces;
  std::string policyFile;  // applied at start when the state directory holds no policy
  uint32_t keepVersions = 20;
  std::string stateDir = "/var/lib/edgeward";
  std::string bpffs = "/sys/fs/bpf/edgeward";
  std::string unixSocket = "/run/edgeward/agent.sock";
  std::optional<TcpApiConfig> tcp;
  std::optional<UpstreamConfig> upstream;
  Capacity capacity;
  EventsConfig events;
  PluginsConfig plugins;
  PublishConfig publish;
  std::string metricsAddress = "127.0.0.1:9479";  // Prometheus endpoint; "" = off
  std::string logLevel = "info";                  // debug, info, warn, error
  std::string source;                             // the file it came from
};

Result<AgentConfig> parseAgentConfig(std::string_view yaml, const std::string& source);
Result<AgentConfig> loadAgentConfig(const std::string& path);

}  // namespace edgeward::agent
