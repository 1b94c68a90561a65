#include "pipeline/rotating_file.h"

#include <unistd.h>

#include <filesystem>
#include <utility>

#include <fmt/format.h>

namespace edgeward::pipeline {
namespace fs = std::filesystem;

Result<RotatingFile> RotatingFile::open(RotatingFileOptions opts, std::string what) {
  if (opts.path.empty()) return failf("{}: no path", what);
  if (opts.maxBytes < 4096) return failf("{}: maxBytes {} < 4096", what, opts.maxBytes);
  RotatingFile f(std::move(opts), std::move(what));
  EW_TRY(opened, f.reopen());
  return f;
}

RotatingFile::RotatingFile(RotatingFile&& o) noexcept
    : opts_(std::move(o.opts_)),
      what_(std::move(o.what_)),
      file_(std::exchange(o.file_, nullptr)),
      size_(o.size_),
      rotations_(o.rotations_) {}

RotatingFile::~RotatingFile() {
  if (file_) std::fclose(file_);
}

Result<void> RotatingFile::reopen() {
  std::error_code ec;
  if (auto parent = fs::path(opts_.path).parent_path(); !parent.empty())
    fs::create_directories(parent, ec);  // a failure shows as fopen's error below
  file_ = std::fopen(opts_.path.c_str(), "a");
  if (!file_) return failErrno(fmt::format("{}: opening {}", what_, opts_.path));
  size_ = fs::file_size(opts_.path, ec);
  if (ec) size_ = 0;
  return {};
}

Result<void> RotatingFile::rotate() {
  std::fclose(file_);
  file_ = nullptr;
  std::error_code ec;
  for (uint32_t k = opts_.keep; k >= 1; k--) {
    const std::string from = k == 1 ? opts_.path : fmt::format("{}.{}", opts_.path, k - 1);
    const std::string to = fmt::format("{}.{}", opts_.path, k);
    if (fs::exists(from, ec)) fs::rename(from, to, ec);
    if (ec) return failf("{}: rotating {} to {}: {}", what_, from, to, ec.message());
  }
  if (opts_.keep == 0) fs::remove(opts_.path, ec);
  rotations_++;
  return reopen();
}

Result<void> RotatingFile::write(std::string_view bytes) {
  if (!file_) return failf("{}: {} is not open", what_, opts_.path);
  if (size_ + bytes.size() > opts_.maxBytes && size_ > 0) {
    EW_TRY(r, rotate());
  }
  if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size())
    return failErrno(fmt::format("{}: writing {}", what_, opts_.path));
  size_ += bytes.size();
  return {};
}

Result<void> RotatingFile::flush(bool durable) {
  if (!file_) return failf("{}: {} is not open", what_, opts_.path);
  if (std::fflush(file_) != 0 || (durable && ::fsync(fileno(file_)) != 0))
    return failErrno(fmt::format("{}: flushing {}", what_, opts_.path));
  return {};
}

}  // namespace edgeward::pipeline
