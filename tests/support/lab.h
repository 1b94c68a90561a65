// The lab of the kernel tests: two network namespaces (client, server) joined by a veth pair,
// echo servers on either side. Everything is named <prefix>...: RAII removes it when the Lab is
// destroyed, and netns::cleanupDead removes what killed runs left. Header-only; link ew_netns.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "common/netns.h"
#include "policy/compiler.h"
#include "policy/policy.h"

namespace edgeward::testing {

// "ewt-<pid>-": the prefix of everything this process creates.
inline std::string pidPrefix() { return fmt::format("ewt-{}-", ::getpid()); }

// A policy parsed and compiled; a failure is a test failure.
inline policy::CompiledPolicy compiledPolicy(const char* yaml) {
  auto p = policy::parsePolicy(yaml, "test.yaml");
  EXPECT_TRUE(p) << p.error().str();
  auto c = policy::compile(*p);
  EXPECT_TRUE(c) << c.error().str();
  return *c;
}

struct LabSpec {
  std::string clientNs = "client", serverNs = "server";           // after the pid prefix
  std::vector<std::string> clientAddresses, serverAddresses;      // "10.0.0.1/24", "fd00::1/64"
  std::vector<netns::EchoServer::Listen> serverEcho, clientEcho;  // none: no server there
};

// Two namespaces joined by a veth pair (<prefix>c in the client, <prefix>s in the server), echo
// servers as the spec says. Removed on destruction.
struct Lab {
  netns::NetNs client, server;
  netns::VethPair veth;
  std::unique_ptr<netns::EchoServer> serverEcho, clientEcho;
  std::string clientIf, serverIf;

  static Result<std::unique_ptr<Lab>> create(const LabSpec& spec) {
    auto lab = std::make_unique<Lab>();
    EW_TRY(c, netns::NetNs::create(pidPrefix() + spec.clientNs));
    lab->client = std::move(*c);
    EW_TRY(s, netns::NetNs::create(pidPrefix() + spec.serverNs));
    lab->server = std::move(*s);
    lab->clientIf = pidPrefix() + "c";
    lab->serverIf = pidPrefix() + "s";
    EW_TRY(v, netns::VethPair::create({lab->clientIf, lab->client.name(), spec.clientAddresses},
                                      {lab->serverIf, lab->server.name(), spec.serverAddresses}));
    lab->veth = std::move(*v);
    if (!spec.serverEcho.empty()) {
      EW_TRY(e, netns::EchoServer::start(lab->server.name(), spec.serverEcho));
      lab->serverEcho = std::move(*e);
    }
    if (!spec.clientEcho.empty()) {
      EW_TRY(e, netns::EchoServer::start(lab->client.name(), spec.clientEcho));
      lab->clientEcho = std::move(*e);
    }
    return lab;
  }
};

}  // namespace edgeward::testing
