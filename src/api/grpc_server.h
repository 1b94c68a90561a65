// The agent's gRPC front end: the edgeward.v1.Agent service on a unix socket (mode 0600; callers
// are admins) and, optionally, a TCP listener that requires mutual TLS (callers are identified by
// their client certificate and authorised by a role table). Adapts requests onto AgentControl.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "api/control.h"
#include "common/result.h"

namespace edgeward::api {

struct ApiServerConfig {
  std::string unixPath = "/run/edgeward/agent.sock";  // "" = no unix listener
  // "0.0.0.0:7443", "[::]:7443", "127.0.0.1:0" (any free port; see ApiServer::tcpPort()).
  // Needs caFile, certFile and keyFile.
  std::optional<std::string> tcpAddress;
  std::string caFile;    // PEM: the CA(s) that client certificates must chain to
  std::string certFile;  // PEM: the server's certificate (chain)
  std::string keyFile;   // PEM: its private key
  // Client identity -> role. The identity is the certificate's first URI SAN
  // ("spiffe://example.org/ops/alice") or, when it has none, its subject CN. An identity not in
  // the table is refused every call.
  std::map<std::string, Role> roles;
  // Receives one line per refused call (identity, method, why). Empty: stderr.
  std::function<void(const std::string&)> log;
};

class ApiServer {
 public:
  ApiServer(AgentControl& control, ApiServerConfig config);
  ~ApiServer();  // shutdown()
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Binds the listeners and starts serving on gRPC's threads. Fails (and binds nothing) when a
  // file cannot be read, the address is taken, or another agent is listening on unixPath.
  Result<void> start();
  // Ends open Watch streams, lets in-flight calls finish (cancelling them after a few seconds),
  // closes the listeners and removes the socket file. Idempotent.
  void shutdown();

  // The TCP port bound by start(); 0 without a TCP listener.
  int tcpPort() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "viewer", "admin".
std::optional<Role> parseRole(std::string_view name);
std::string_view roleName(Role r);

}  // namespace edgeward::api
