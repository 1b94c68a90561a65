#include "bpf/libbpf_log.h"

namespace edgeward::bpf {

std::unexpected<Error> loadError(const std::string& what, const LibbpfLog& log, int err) {
  auto why = log.summary();
  if (why.empty()) return failErrno(what, err);
  return failErrno(fmt::format("{}: {}", what, why), err);
}

}  // namespace edgeward::bpf
