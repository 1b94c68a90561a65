#include "pipeline/file_sink.h"

#include <fmt/format.h>

namespace edgeward::pipeline {

Result<std::unique_ptr<JsonFileSink>> JsonFileSink::start(EventBus& bus,
                                                          const FileSinkOptions& opts,
                                                          EventNames names) {
  std::unique_ptr<JsonFileSink> s(new JsonFileSink(bus, opts, std::move(names)));
  EW_TRY(file, RotatingFile::open(opts.file, "event file sink"));
  s->file_.emplace(std::move(*file));
  s->sub_ = bus.subscribe("file:" + opts.file.path, opts.queue);
  s->thread_ = std::thread([p = s.get()] { p->run(); });
  return s;
}

JsonFileSink::~JsonFileSink() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (sub_) bus_.unsubscribe(sub_);
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
      if (auto r = file_->write(line); !r) {
        fmt::print(stderr, "edgeward: {}\n", r.error().str());
        return;
      }
      written_.fetch_add(1, std::memory_order_relaxed);
    }
    rotations_.store(file_->rotations(), std::memory_order_relaxed);
    if (b.lost)
      fmt::print(stderr, "edgeward: event file sink: {} events lost (sink fell behind)\n", b.lost);
    if (auto r = file_->flush(); !r) fmt::print(stderr, "edgeward: {}\n", r.error().str());
    if (b.closed) return;
    if (draining && b.events.empty()) return;
    if (stop_.load(std::memory_order_relaxed)) draining = true;
  }
}

}  // namespace edgeward::pipeline
