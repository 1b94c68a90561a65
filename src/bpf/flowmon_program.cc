#include "bpf/flowmon_program.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <string_view>

#include "bpf/libbpf_log.h"
#include "flowmon.skel.h"

namespace edgeward::bpf {
namespace {

int mapFdOf(bpf_object* obj, const char* name) {
  return bpf_map__fd(bpf_object__find_map_by_name(obj, name));
}

// Sums a per-CPU __u64 array map.
template <size_t N>
Result<std::array<uint64_t, N>> sumPerCpu(int fd, int ncpus, std::string_view what) {
  std::array<uint64_t, N> out{};
  std::vector<uint64_t> percpu(static_cast<size_t>(ncpus));
  for (uint32_t i = 0; i < N; i++) {
    if (bpf_map_lookup_elem(fd, &i, percpu.data()))
      return failErrno(fmt::format("reading {} [{}]", what, i));
    for (uint64_t v : percpu) out[i] += v;
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<FlowmonProgram>> FlowmonProgram::load(const FlowmonOptions& opts) {
  if (opts.eventRingBytes < 4096 || (opts.eventRingBytes & (opts.eventRingBytes - 1)))
    return failf("flowmon ring buffer size {} B: must be a power of two of at least 4096",
                 opts.eventRingBytes);
  std::unique_ptr<FlowmonProgram> fm(new FlowmonProgram());
  fm->ncpus_ = libbpf_num_possible_cpus();
  if (fm->ncpus_ <= 0) return failErrno("counting possible CPUs", fm->ncpus_);
  LibbpfLog log;
  bpf_object_open_opts o{};
  o.sz = sizeof(o);
  o.object_name = "flowmon";
  size_t size = 0;
  const void* bytes = flowmon__elf_bytes(&size);
  fm->obj_ = bpf_object__open_mem(bytes, size, &o);
  if (!fm->obj_) return loadError("opening the flowmon object", log, errno);
  bpf_map* ring = bpf_object__find_map_by_name(fm->obj_, "fm_events");
  if (int err = bpf_map__set_max_entries(ring, opts.eventRingBytes))
    return failErrno("sizing fm_events", err);
  if (int err = bpf_object__load(fm->obj_))
    return loadError("loading flowmon (run as root)", log, err);
  bpf_program* p = nullptr;
  bpf_object__for_each_program(p, fm->obj_) {
    bpf_link* l = bpf_program__attach(p);
    if (!l) return loadError(fmt::format("attaching {}", bpf_program__name(p)), log, errno);
    fm->links_.push_back(l);
  }
  return fm;
}

FlowmonProgram::~FlowmonProgram() {
  for (bpf_link* l : links_) bpf_link__destroy(l);
  if (obj_) bpf_object__close(obj_);
}

int FlowmonProgram::eventsFd() const { return mapFdOf(obj_, "fm_events"); }

Result<std::array<uint64_t, FM_S_COUNT>> FlowmonProgram::readStats() const {
  return sumPerCpu<FM_S_COUNT>(mapFdOf(obj_, "fm_stats"), ncpus_, "fm_stats");
}

Result<std::array<uint64_t, FM_TCP_STATES>> FlowmonProgram::readStates() const {
  return sumPerCpu<FM_TCP_STATES>(mapFdOf(obj_, "fm_states"), ncpus_, "fm_states");
}

Result<std::map<uint16_t, DurationHistogram>> FlowmonProgram::readHistogram() const {
  const int fd = mapFdOf(obj_, "fm_hist");
  std::map<uint16_t, DurationHistogram> out;
  std::vector<fm_hist_val> percpu(static_cast<size_t>(ncpus_));
  fm_hist_key key{}, next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    if (bpf_map_lookup_elem(fd, &next, percpu.data()) == 0 && next.bucket < FM_HIST_BUCKETS) {
      auto& h = out[next.port];
      for (const auto& v : percpu) {
        h.buckets[next.bucket] += v.count;
        h.count += v.count;
        h.sumNs += v.sum_ns;
      }
    }
    key = next;
    prev = &key;
  }
  return out;
}

uint64_t FlowmonProgram::bucketBoundNs(uint32_t b) {
  uint64_t bound = FM_HIST_FIRST_NS;
  for (uint32_t i = 0; i < b; i++) bound *= 4;
  return bound;
}

const char* FlowmonProgram::stateName(uint32_t state) {
  static constexpr const char* kNames[] = {"UNKNOWN",      "ESTABLISHED",   "SYN_SENT",  "SYN_RECV",
                                           "FIN_WAIT1",    "FIN_WAIT2",     "TIME_WAIT", "CLOSE",
                                           "CLOSE_WAIT",   "LAST_ACK",      "LISTEN",    "CLOSING",
                                           "NEW_SYN_RECV", "BOUND_INACTIVE"};
  return state < std::size(kNames) ? kNames[state] : "UNKNOWN";
}

}  // namespace edgeward::bpf
