// What the commands that talk to a running agent share: connection options, output format,
// exit codes, and stopping a stream on Ctrl-C.
#pragma once

#include <signal.h>

#include <stop_token>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "api/grpc_client.h"
#include "cli/commands.h"

namespace edgeward::cli {

// Exit codes of the client commands, beyond 1 (the command failed), so that scripts can retry
// an apply that lost a race or tell a down agent from a refused call.
inline constexpr int kExitConflict = 3;
inline constexpr int kExitDenied = 4;
inline constexpr int kExitUnreachable = 5;

template <typename T>
T orExitApi(Result<T> r) {
  if (!r) {
    fmt::print(stderr, "edgeward: {}\n", r.error().str());
    switch (r.error().code()) {
      case ErrorCode::Conflict:
        throw CLI::RuntimeError(kExitConflict);
      case ErrorCode::PermissionDenied:
        throw CLI::RuntimeError(kExitDenied);
      case ErrorCode::Unavailable:
        throw CLI::RuntimeError(kExitUnreachable);
      default:
        throw CLI::RuntimeError(1);
    }
  }
  if constexpr (!std::is_void_v<T>) return std::move(*r);
}

extern api::ClientOptions gConn;
extern std::string gOutput;  // "table" or "json"

api::AgentClient connect();
// --server, --cert, --key, --ca on a command that talks to the agent.
CLI::App* connected(CLI::App* cmd);
// -o/--output table|json.
CLI::App* withOutput(CLI::App* cmd);

// Ctrl-C and SIGTERM request a stop instead of killing the process. Construct it before the
// client starts gRPC's threads (they must inherit the blocked mask).
class SignalStop {
 public:
  SignalStop();
  ~SignalStop();
  std::stop_token get_token() const { return stop_.get_token(); }
  bool stopped() const { return stop_.stop_requested(); }

 private:
  sigset_t sigs_{};
  std::stop_source stop_;
  std::jthread waiter_;
};

}  // namespace edgeward::cli
