#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>

namespace edgeward::testing {

// How long a fuzz test runs and from which seed: EW_FUZZ_SECONDS and EW_FUZZ_SEED when set,
// otherwise the test's default time and a fresh seed. Put trace() in a SCOPED_TRACE so a failure
// prints what repeats it.
struct FuzzRun {
  double seconds;
  uint64_t seed;
  std::string trace() const {
    return fmt::format("seed {} (EW_FUZZ_SEED={} repeats it)", seed, seed);
  }
};

inline FuzzRun fuzzRun(double defaultSeconds) {
  FuzzRun r{defaultSeconds, std::random_device{}()};
  if (const char* s = std::getenv("EW_FUZZ_SECONDS")) r.seconds = std::atof(s);
  if (const char* s = std::getenv("EW_FUZZ_SEED")) r.seed = std::strtoull(s, nullptr, 10);
  return r;
}

}  // namespace edgeward::testing
