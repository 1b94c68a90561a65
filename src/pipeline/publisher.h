// Messages leave the agent through a Publisher: what plugins publish (ew_publish, acknowledged to
// the guest through ew_on_complete) and emit on a topic (ew_emit with a payload that is not an
// event record). The agent has one; the edge pipeline puts MQTT, with a disk-backed queue, behind
// the same interface.
//
//   auto pub = pipeline::FilePublisher::start({.file = {"/var/log/edgeward/messages.jsonl"}});
//   (*pub)->publish({"plugin-a", "alerts/cpu", payload, nowNs}, [](Result<void> r) { ... });
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/result.h"
#include "pipeline/rotating_file.h"

namespace edgeward::pipeline {

struct Message {
  std::string source;  // who published it (a plugin's name)
  std::string topic;
  std::string payload;  // bytes
  uint64_t timeNs = 0;  // CLOCK_REALTIME
};

struct PublisherStats {
  uint64_t accepted = 0;   // taken into the queue
  uint64_t delivered = 0;  // safe at the destination (done with success)
  uint64_t failed = 0;     // refused (queue full) or lost (write failed)
  uint64_t queued = 0;     // waiting now
};

class Publisher {
 public:
  // Called once, from any thread, when the message is safe or cannot be.
  using Done = std::function<void(Result<void>)>;
  virtual ~Publisher() = default;
  virtual void publish(Message m, Done done) = 0;
  virtual PublisherStats stats() const = 0;
  virtual std::string describe() const = 0;  // for startup notes: where messages go
};

struct FilePublisherOptions {
  RotatingFileOptions file;
  bool durable = true;        // fsync each batch before acknowledging it
  size_t queueLimit = 65536;  // messages waiting; more are refused
};

// JSON lines, one per message: {"timeNs", "source", "topic", "payload"} with the payload as a
// string when it is UTF-8, else as "payloadBase64". A writer thread takes the queue in batches;
// a batch is acknowledged once written (and fsynced when durable).
class FilePublisher final : public Publisher {
 public:
  static Result<std::unique_ptr<FilePublisher>> start(FilePublisherOptions opts);
  ~FilePublisher() override;  // writes what is queued, then stops

  void publish(Message m, Done done) override;
  PublisherStats stats() const override;
  std::string describe() const override;

 private:
  explicit FilePublisher(FilePublisherOptions opts) : opts_(std::move(opts)) {}
  void run();

  FilePublisherOptions opts_;
  std::optional<RotatingFile> file_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<Message, Done>> queue_;
  bool stop_ = false;
  std::atomic<uint64_t> accepted_{0}, delivered_{0}, failed_{0};
  std::thread thread_;
};

// A message as its JSON line (without the newline).
std::string messageJson(const Message& m);

}  // namespace edgeward::pipeline
