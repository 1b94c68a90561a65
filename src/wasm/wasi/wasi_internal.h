// Shared by the WASI implementation files only.
#pragma once

#include <sys/stat.h>

#include "wasm/wasi/wasi.h"

namespace edgeward::wasm::wasi {

enum class FdKind { Stdin, Stdout, Stderr, Dir, File };

struct WasiContext::Fd {
  FdKind kind = FdKind::File;
  UniqueFd host;
  bool writable = false;    // files: opened for writing; dirs: writes allowed beneath
  std::string preopenName;  // non-empty for a preopened directory
};

// WASI rights bits (wasi/api.h order).
inline constexpr uint64_t kRightFdWrite = 1ull << 6;
inline constexpr uint64_t kRightFdAllocate = 1ull << 8;
inline constexpr uint64_t kRightFdFilestatSetSize = 1ull << 22;
inline constexpr uint64_t kRightsAll = (1ull << 30) - 1;

inline constexpr uint8_t kFiletypeUnknown = 0;
inline constexpr uint8_t kFiletypeDirectory = 3;
inline constexpr uint8_t kFiletypeRegular = 4;

uint8_t filetypeOf(mode_t m);
// Writes a WASI filestat (64 bytes) for st at ptr.
bool storeFilestat(const Memory& m, uint32_t ptr, const struct stat& st);

// A host function answering a WASI errno.
inline HostReturn err(uint16_t e) { return HostReturn::ok(e); }
inline HostReturn fault() { return err(kFault); }

}  // namespace edgeward::wasm::wasi
