#include "bpf/ring_reader.h"

#include <bpf/libbpf.h>

#include <cerrno>

namespace edgeward::bpf {

RingReader::~RingReader() {
  if (rb_) ring_buffer__free(rb_);
}

int RingReader::onRecord(void* ctx, void* data, size_t size) {
  (*static_cast<Handler*>(ctx))({static_cast<const uint8_t*>(data), size});
  return 0;
}

Result<void> RingReader::add(int mapFd, Handler handler) {
  auto h = std::make_unique<Handler>(std::move(handler));
  if (!rb_) {
    rb_ = ring_buffer__new(mapFd, &RingReader::onRecord, h.get(), nullptr);
    if (!rb_) return failErrno("opening a BPF ring buffer");
  } else if (int err = ring_buffer__add(rb_, mapFd, &RingReader::onRecord, h.get())) {
    return failErrno("adding a BPF ring buffer", err);
  }
  handlers_.push_back(std::move(h));
  return {};
}

Result<int> RingReader::poll(int timeoutMs) {
  if (!rb_) return fail("polling a ring reader with no ring buffer");
  int n = ring_buffer__poll(rb_, timeoutMs);
  if (n == -EINTR) return 0;
  if (n < 0) return failErrno("reading BPF ring buffers", n);
  return n;
}

Result<int> RingReader::consume() {
  if (!rb_) return fail("consuming a ring reader with no ring buffer");
  int n = ring_buffer__consume(rb_);
  if (n < 0) return failErrno("reading BPF ring buffers", n);
  return n;
}

int RingReader::epollFd() const { return rb_ ? ring_buffer__epoll_fd(rb_) : -1; }

}  // namespace edgeward::bpf
