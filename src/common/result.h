// Result<T>: the return type of every fallible function (see DESIGN.md, "Error policy").
#pragma once

#include <cerrno>
#include <cstring>
#include <expected>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace edgeward {

// The kind of failure, for callers that map errors onto protocols (gRPC status, exit codes).
enum class ErrorCode {
  Unknown,
  InvalidArgument,   // bad input: policy, config, request
  NotFound,          // a version, file or interface that does not exist
  Conflict,          // optimistic concurrency: the state changed (apply --if-version)
  PermissionDenied,  // the caller's role does not allow it
  Unavailable,       // a peer or resource is not reachable right now
  Internal,
};

// What went wrong, where, and the errno when the OS said so. Printed as one line.
class Error {
 public:
  Error() = default;
  explicit Error(std::string message, int err = 0) : message_(std::move(message)), errno_(err) {}
  Error(ErrorCode code, std::string message) : message_(std::move(message)), code_(code) {}

  const std::string& message() const { return message_; }
  int errnoValue() const { return errno_; }
  ErrorCode code() const { return code_; }

  // Prefixes context: Error("no such file").context("policy.yaml") -> "policy.yaml: no such file".
  Error context(const std::string& where) const& {
    Error e = *this;
    e.message_ = where + ": " + message_;
    return e;
  }

  std::string str() const {
    if (errno_ == 0) return message_;
    return fmt::format("{}: {}", message_, std::strerror(errno_));
  }

 private:
  std::string message_;
  int errno_ = 0;
  ErrorCode code_ = ErrorCode::Unknown;
};

template <typename T = void>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(std::string message, int err = 0) {
  return std::unexpected(Error(std::move(message), err));
}

inline std::unexpected<Error> fail(ErrorCode code, std::string message) {
  return std::unexpected(Error(code, std::move(message)));
}

template <typename... Args>
std::unexpected<Error> failf(fmt::format_string<Args...> f, Args&&... args) {
  return std::unexpected(Error(fmt::format(f, std::forward<Args>(args)...)));
}

// Error from the current errno (or a negative return value of libbpf).
inline std::unexpected<Error> failErrno(std::string message, int err = errno) {
  return std::unexpected(Error(std::move(message), err < 0 ? -err : err));
}

}  // namespace edgeward

// Propagates an error: EW_TRY(r, expr) declares `auto r = expr` and returns its error if it failed.
#define EW_TRY(var, expr) \
  auto var = (expr);      \
  if (!var) return std::unexpected(std::move(var).error())

// Returns the error of an expression whose value is not needed (a Result<void>, say).
#define EW_CHECK(expr)                                                                  \
  do {                                                                                  \
    if (auto ew_check_ = (expr); !ew_check_) return std::unexpected(ew_check_.error()); \
  } while (0)
