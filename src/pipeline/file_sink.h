// A subscriber that writes events as JSON lines to a file, rotated by size (RotatingFile).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "common/result.h"
#include "pipeline/event_bus.h"
#include "pipeline/rotating_file.h"

namespace edgeward::pipeline {

struct FileSinkOptions {
  RotatingFileOptions file;
  size_t queue = 65536;  // subscriber queue (events)
};

class JsonFileSink {
 public:
  static Result<std::unique_ptr<JsonFileSink>> start(EventBus& bus, const FileSinkOptions& opts,
                                                     EventNames names = {});
  ~JsonFileSink();  // unsubscribes, writes what is queued, closes
  JsonFileSink(const JsonFileSink&) = delete;
  JsonFileSink& operator=(const JsonFileSink&) = delete;

  uint64_t written() const { return written_.load(std::memory_order_relaxed); }
  uint64_t rotations() const { return rotations_.load(std::memory_order_relaxed); }
  uint64_t lost() const { return sub_->lostTotal(); }

 private:
  JsonFileSink(EventBus& bus, FileSinkOptions opts, EventNames names)
      : bus_(bus), opts_(std::move(opts)), names_(std::move(names)) {}
  void run();

  EventBus& bus_;
  FileSinkOptions opts_;
  EventNames names_;
  std::shared_ptr<Subscription> sub_;
  std::optional<RotatingFile> file_;
  std::atomic<uint64_t> written_{0}, rotations_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace edgeward::pipeline
