// An append-only file rotated by size: <path> is current, <path>.1 the one before, ... up to
// <path>.<keep>. Shared by the event file sink and the message publisher. Not thread-safe: one
// writer thread owns it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "common/result.h"

namespace edgeward::pipeline {

struct RotatingFileOptions {
  std::string path;
  uint64_t maxBytes = 64ull << 20;  // rotate when the next write would pass this size
  uint32_t keep = 4;                // rotated files kept besides the current one
};

class RotatingFile {
 public:
  // Opens (creating parent directories) for appending; `what` names the file in errors.
  static Result<RotatingFile> open(RotatingFileOptions opts, std::string what);
  RotatingFile(RotatingFile&& o) noexcept;
  RotatingFile& operator=(RotatingFile&&) = delete;
  ~RotatingFile();

  // Appends `bytes` (rotating first if they would pass maxBytes).
  Result<void> write(std::string_view bytes);
  // fflush, and fsync when `durable`.
  Result<void> flush(bool durable = false);
  uint64_t rotations() const { return rotations_; }

 private:
  RotatingFile(RotatingFileOptions opts, std::string what)
      : opts_(std::move(opts)), what_(std::move(what)) {}
  Result<void> reopen();
  Result<void> rotate();

  RotatingFileOptions opts_;
  std::string what_;
  std::FILE* file_ = nullptr;
  uint64_t size_ = 0;
  uint64_t rotations_ = 0;
};

}  // namespace edgeward::pipeline
