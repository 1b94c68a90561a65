// Reads BPF ring buffers: one epoll set over any number of them (one libbpf ring_buffer each).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

struct ring_buffer;

namespace edgeward::bpf {

class RingReader {
 public:
  // Called for every record, in order per ring, on the thread that polls.
  using Handler = std::function<void(std::span<const uint8_t>)>;

  // poll() takes at most maxPerRing records from each ring per call, so that a caller that
  // acts between polls (publishes a batch) still does when a producer keeps a ring busy:
  // libbpf alone reads until the ring is empty, which it never is under sustained load.
  static constexpr size_t kDefaultMaxPerRing = 1024;
  explicit RingReader(size_t maxPerRing = kDefaultMaxPerRing);
  ~RingReader();
  RingReader(const RingReader&) = delete;
  RingReader& operator=(const RingReader&) = delete;

  // Adds a BPF_MAP_TYPE_RINGBUF map (by fd; the reader does not own it).
  Result<void> add(int mapFd, Handler handler);
  // Waits up to timeoutMs (-1: forever) for data, then consumes up to maxPerRing records of
  // every ring that has some. Returns how many it consumed (0 on timeout or EINTR).
  Result<int> poll(int timeoutMs);
  // Consumes everything available without waiting.
  Result<int> consume();
  // Consumes up to maxPerRing records of every ring without waiting, and without a system
  // call (poll() makes one, epoll_wait, even with a zero timeout): for a reader that expects
  // records to be waiting.
  Result<int> consumeBatch();
  // The epoll fd, readable when a ring has data (for an outer event loop).
  int epollFd() const;

 private:
  struct Ring;
  static int onRecord(void* ctx, void* data, size_t size);
  static Result<int> take(Ring& r);
  size_t maxPerRing_;
  UniqueFd epoll_;
  std::vector<std::unique_ptr<Ring>> rings_;
};

}  // namespace edgeward::bpf
