#include "bpf/ring_reader.h"

#include <bpf/libbpf.h>
#include <sys/epoll.h>

#include <algorithm>
#include <cerrno>
#include <iterator>

namespace edgeward::bpf {
namespace {
// What onRecord returns to make libbpf stop reading a ring (after consuming the record):
// libbpf passes a negative return of the callback up unchanged, and nothing else in
// ring_buffer__consume() returns an error.
constexpr int kRingBatchFull = -EAGAIN;
}  // namespace

struct RingReader::Ring {
  ring_buffer* rb = nullptr;
  Handler handler;
  size_t limit = 0;
  size_t taken = 0;
  ~Ring() {
    if (rb) ring_buffer__free(rb);
  }
};

RingReader::RingReader(size_t maxPerRing) : maxPerRing_(maxPerRing ? maxPerRing : 1) {}

RingReader::~RingReader() = default;

int RingReader::onRecord(void* ctx, void* data, size_t size) {
  auto* r = static_cast<Ring*>(ctx);
  r->handler({static_cast<const uint8_t*>(data), size});
  return ++r->taken >= r->limit ? kRingBatchFull : 0;
}

Result<void> RingReader::add(int mapFd, Handler handler) {
  if (!epoll_.valid()) {
    epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_.valid()) return failErrno("creating an epoll set for BPF ring buffers");
  }
  auto r = std::make_unique<Ring>();
  r->handler = std::move(handler);
  r->limit = maxPerRing_;
  // One libbpf ring_buffer per ring: libbpf stops at the first ring whose callback says
  // "enough", so rings sharing one would starve the ones behind a busy ring.
  r->rb = ring_buffer__new(mapFd, &RingReader::onRecord, r.get(), nullptr);
  if (!r->rb) return failErrno("opening a BPF ring buffer");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = r.get();
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, ring_buffer__epoll_fd(r->rb), &ev))
    return failErrno("adding a BPF ring buffer to the epoll set");
  rings_.push_back(std::move(r));
  return {};
}

Result<int> RingReader::take(Ring& r) {
  r.taken = 0;
  int n = ring_buffer__consume(r.rb);
  if (n < 0 && n != kRingBatchFull) return failErrno("reading a BPF ring buffer", n);
  return static_cast<int>(r.taken);
}

Result<int> RingReader::poll(int timeoutMs) {
  if (rings_.empty()) return fail("polling a ring reader with no ring buffer");
  epoll_event ev[16];
  const int maxEv = static_cast<int>(std::min(rings_.size(), std::size(ev)));
  int ready = ::epoll_wait(epoll_.get(), ev, maxEv, timeoutMs);
  if (ready < 0) {
    if (errno == EINTR) return 0;
    return failErrno("waiting for BPF ring buffers");
  }
  int total = 0;
  for (int i = 0; i < ready; i++) {
    EW_TRY(n, take(*static_cast<Ring*>(ev[i].data.ptr)));
    total += *n;
  }
  return total;
}

Result<int> RingReader::consume() {
  if (rings_.empty()) return fail("consuming a ring reader with no ring buffer");
  int total = 0;
  for (auto& r : rings_) {
    for (;;) {
      EW_TRY(n, take(*r));
      total += *n;
      if (static_cast<size_t>(*n) < r->limit) break;
    }
  }
  return total;
}

Result<int> RingReader::consumeBatch() {
  if (rings_.empty()) return fail("consuming a ring reader with no ring buffer");
  int total = 0;
  for (auto& r : rings_) {
    EW_TRY(n, take(*r));
    total += *n;
  }
  return total;
}

int RingReader::epollFd() const { return epoll_.get(); }

}  // namespace edgeward::bpf
