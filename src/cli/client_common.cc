#include "cli/client_common.h"

#include <cstdlib>

#include <grpc/support/log.h>

namespace edgeward::cli {

api::ClientOptions gConn;
std::string gOutput = "table";

api::AgentClient connect() {
  // gRPC also logs a failed TLS handshake on stderr; the command's one error line says it
  // already. GRPC_VERBOSITY=debug brings the logs back.
  if (!std::getenv("GRPC_VERBOSITY")) gpr_set_log_function([](gpr_log_func_args*) {});
  return orExitApi(api::AgentClient::connect(gConn));
}

CLI::App* connected(CLI::App* cmd) {
  cmd->add_option("--server", gConn.server,
                  "Agent address: unix:///path/to/agent.sock or host:port (mutual TLS)")
      ->envname("EDGEWARD_SERVER")
      ->capture_default_str();
  cmd->add_option("--ca", gConn.caFile, "CA that signed the agent's certificate (PEM; TCP only)")
      ->envname("EDGEWARD_CA");
  cmd->add_option("--cert", gConn.certFile, "Client certificate (PEM; TCP only)")
      ->envname("EDGEWARD_CERT");
  cmd->add_option("--key", gConn.keyFile, "Client private key (PEM; TCP only)")
      ->envname("EDGEWARD_KEY");
  cmd->add_option("--server-name", gConn.serverName,
                  "Name to expect in the agent's certificate (default: the host in --server)");
  return cmd;
}

CLI::App* withOutput(CLI::App* cmd) {
  cmd->add_option("-o,--output", gOutput, "Output format")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  return cmd;
}

SignalStop::SignalStop() {
  sigemptyset(&sigs_);
  sigaddset(&sigs_, SIGINT);
  sigaddset(&sigs_, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs_, nullptr);
  waiter_ = std::jthread([this](std::stop_token done) {
    while (!done.stop_requested()) {
      timespec ts{0, 200 * 1000 * 1000};
      if (sigtimedwait(&sigs_, nullptr, &ts) > 0) {
        stop_.request_stop();
        return;
      }
    }
  });
}

SignalStop::~SignalStop() {
  waiter_.request_stop();
  if (waiter_.joinable()) waiter_.join();
}

}  // namespace edgeward::cli
