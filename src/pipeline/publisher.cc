#include "pipeline/publisher.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace edgeward::pipeline {
namespace {

std::string base64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (size_t rest = in.size() - i) {
    uint32_t v = uint8_t(in[i]) << 16 | (rest == 2 ? uint8_t(in[i + 1]) << 8 : 0);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

}  // namespace

std::string messageJson(const Message& m) {
  nlohmann::ordered_json j{{"timeNs", m.timeNs}, {"source", m.source}, {"topic", m.topic}};
  j["payload"] = m.payload;
  try {
    return j.dump();  // throws on bytes that are not UTF-8
  } catch (const nlohmann::json::type_error&) {
    j.erase("payload");
    j["payloadBase64"] = base64(m.payload);
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
}

Result<std::unique_ptr<FilePublisher>> FilePublisher::start(FilePublisherOptions opts) {
  std::unique_ptr<FilePublisher> p(new FilePublisher(std::move(opts)));
  EW_TRY(file, RotatingFile::open(p->opts_.file, "message file"));
  p->file_.emplace(std::move(*file));
  p->thread_ = std::thread([raw = p.get()] { raw->run(); });
  return p;
}

FilePublisher::~FilePublisher() {
  {
    std::lock_guard l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void FilePublisher::publish(Message m, Done done) {
  {
    std::lock_guard l(mu_);
    if (queue_.size() < opts_.queueLimit) {  // (no publish can race the destructor)
      queue_.emplace_back(std::move(m), std::move(done));
      accepted_.fetch_add(1, std::memory_order_relaxed);
      cv_.notify_one();
      return;
    }
  }
  failed_.fetch_add(1, std::memory_order_relaxed);
  if (done)
    done(fail(ErrorCode::Unavailable, fmt::format("message file {}: {} messages already waiting",
                                                  opts_.file.path, opts_.queueLimit)));
}

PublisherStats FilePublisher::stats() const {
  PublisherStats s;
  s.accepted = accepted_.load(std::memory_order_relaxed);
  s.delivered = delivered_.load(std::memory_order_relaxed);
  s.failed = failed_.load(std::memory_order_relaxed);
  std::lock_guard l(mu_);
  s.queued = queue_.size();
  return s;
}

std::string FilePublisher::describe() const {
  return fmt::format("messages from plugins go to {}{}", opts_.file.path,
                     opts_.durable ? " (fsynced before they are acknowledged)" : "");
}

void FilePublisher::run() {
  std::deque<std::pair<Message, Done>> batch;
  std::string lines;
  for (;;) {
    {
      std::unique_lock l(mu_);
      cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything is written
      batch.swap(queue_);
    }
    Result<void> r;
    for (auto& [m, done] : batch) {
      lines = messageJson(m);
      lines += '\n';
      if (r) r = file_->write(lines);
    }
    if (r) r = file_->flush(opts_.durable);
    if (!r) fmt::print(stderr, "edgeward: {}\n", r.error().str());
    (r ? delivered_ : failed_).fetch_add(batch.size(), std::memory_order_relaxed);
    for (auto& [m, done] : batch)
      if (done) done(r);
    batch.clear();
  }
}

}  // namespace edgeward::pipeline
