// Reads BPF ring buffers: one epoll set over any number of them (libbpf's ring_buffer).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "common/result.h"

struct ring_buffer;

namespace edgeward::bpf {

class RingReader {
 public:
  // Called for every record, in order per ring, on the thread that polls.
  using Handler = std::function<void(std::span<const uint8_t>)>;

  RingReader() = default;
  ~RingReader();
  RingReader(const RingReader&) = delete;
  RingReader& operator=(const RingReader&) = delete;

  // Adds a BPF_MAP_TYPE_RINGBUF map (by fd; the reader does not own it).
  Result<void> add(int mapFd, Handler handler);
  // Waits up to timeoutMs (-1: forever) for data, then consumes every record available.
  // Returns how many it consumed (0 on timeout or EINTR).
  Result<int> poll(int timeoutMs);
  // Consumes what is available without waiting.
  Result<int> consume();
  // The epoll fd, readable when a ring has data (for an outer event loop).
  int epollFd() const;

 private:
  static int onRecord(void* ctx, void* data, size_t size);
  ring_buffer* rb_ = nullptr;
  std::vector<std::unique_ptr<Handler>> handlers_;
};

}  // namespace edgeward::bpf
