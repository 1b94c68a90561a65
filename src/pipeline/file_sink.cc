#include "pipeline/file_sink.h"

#include <filesystem>

#include <fmt/format.h>

namespace edgeward::pipeline {
namespace fs = std::filesystem;

Result<std::unique_ptr<JsonFileSink>> JsonFileSink::start(EventBus& bus,
                                                          const FileSinkOptions& opts,
                                                          EventNames names) {
  if (opts.path.empty()) return fail("event file sink: no path");
  if (opts.maxBytes < 4096) return failf("event file sink: maxBytes {} < 4096", opts.maxBytes);
  std::unique_ptr<JsonFileSink> s(new JsonFileSink(bus, opts, std::move(names)));
  EW_TRY(opened, s->open());
  s->sub_ = bus.subscribe("file:" + opts.path, opts.queue);
  s->thread_ = std::thread([p = s.get()] { p->run(); });
  return s;
}

JsonFileSink::~JsonFileSink() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (sub_) bus_.unsubscribe(sub_);
  if (file_) std::fclose(file_);
}

Result<void> JsonFileSink::open() {
  std::error_code ec;
  if (auto parent = fs::path(opts_.path).parent_path(); !parent.empty())
    fs::create_directories(parent, ec);  // a failure shows as fopen's error below
  file_ = std::fopen(opts_.path.c_str(), "a");
  if (!file_) return failErrno(fmt::format("opening event file {}", opts_.path));
  size_ = fs::file_size(opts_.path, ec);
  if (ec) size_ = 0;
  return {};
}

Result<void> JsonFileSink::rotate() {
  std::fclose(file_);
  file_ = nullptr;
  std::error_code ec;
  for (uint32_t k = opts_.keep; k >= 1; k--) {
    const std::string from = k == 1 ? opts_.path : fmt::format("{}.{}", opts_.path, k - 1);
    const std::string to = fmt::format("{}.{}", opts_.path, k);
    if (fs::exists(from, ec)) fs::rename(from, to, ec);
    if (ec) return failf("rotating {} to {}: {}", from, to, ec.message());
  }
  if (opts_.keep == 0) fs::remove(opts_.path, ec);
  rotations_.fetch_add(1, std::memory_order_relaxed);
  return open();
}

void JsonFileSink::run() {
  std::string line;
  bool draining = false;
  for (;;) {
    auto b = sub_->next(4096, std::chrono::milliseconds(100));
    for (const Event& e : b.events) {
      line.clear();
      appendJson(line, e, &names_);
      line += '\n';
      if (size_ + line.size() > opts_.maxBytes && size_ > 0) {
        if (auto r = rotate(); !r) {
          fmt::print(stderr, "edgeward: event file sink: {}\n", r.error().str());
          return;
        }
      }
      if (std::fwrite(line.data(), 1, line.size(), file_) != line.size()) {
        fmt::print(stderr, "edgeward: event file sink: writing {} failed\n", opts_.path);
        return;
      }
      size_ += line.size();
      written_.fetch_add(1, std::memory_order_relaxed);
    }
    if (b.lost)
      fmt::print(stderr, "edgeward: event file sink: {} events lost (sink fell behind)\n", b.lost);
    std::fflush(file_);
    if (b.closed) return;
    if (draining && b.events.empty()) return;
    if (stop_.load(std::memory_order_relaxed)) draining = true;
  }
}

}  // namespace edgeward::pipeline
