// WASI preview1 for guests, capability-based: a guest sees only what its WasiConfig grants.
//
// Implemented: args, environ, clocks, random, fd_read/fd_write/fd_close/fd_seek/fd_tell/
// fd_fdstat_get/fd_filestat_get on stdin/stdout/stderr and on files under the preopened
// directories, path_open/path_filestat_get/path_create_directory/path_unlink_file/
// path_remove_directory (beneath a preopen only: `..`, absolute paths and symlinks that leave it
// are refused with ENOTCAPABLE; writes only where the directory is writable), proc_exit,
// sched_yield. Sockets answer ENOTCAPABLE; every other preview1 function answers ENOSYS, so
// ordinary wasi-libc programs load.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "wasm/wasm_vm.h"

namespace edgeward::wasm::wasi {

// WASI errno values (wasi_snapshot_preview1, as in wasi-libc's wasi/api.h).
enum Errno : uint16_t {
  kSuccess = 0,
  k2Big = 1,
  kAcces = 2,
  kBadf = 8,
  kExist = 20,
  kFault = 21,
  kInval = 28,
  kIo = 29,
  kIsdir = 31,
  kLoop = 32,
  kNametoolong = 37,
  kNoent = 44,
  kNospc = 51,
  kNosys = 52,
  kNotdir = 54,
  kNotempty = 55,
  kNotsup = 58,
  kPerm = 63,
  kSpipe = 70,
  kNotcapable = 76,
};

inline constexpr const char* kModule = "wasi_snapshot_preview1";

struct Preopen {
  std::string hostPath;   // a directory on the host
  std::string guestPath;  // the name the guest sees ("/data")
  bool writable = false;
};

struct WasiConfig {
  std::vector<std::string> args;  // args[0] is the program name
  std::vector<std::string> env;   // "NAME=value"
  std::vector<Preopen> dirs;
  size_t maxOutputBytes = 1 << 20;  // stdout and stderr each; more traps the call
  // When set, stdout/stderr bytes go here instead of being kept (plugins: the log).
  std::function<void(int fd, std::string_view bytes)> sink;
};

// The WASI state of one guest instance: its file descriptors, stdin and captured output.
class WasiContext {
 public:
  // Fails when a preopened directory cannot be opened.
  static Result<std::unique_ptr<WasiContext>> create(WasiConfig config);
  ~WasiContext();

  // The preview1 functions, bound to this context, to register with a VM.
  std::vector<HostFunction> functions();

  struct Fd;  // one open file descriptor (wasi_internal.h)

  // Back to the state create() made: every file the guest opened is closed, the preopened
  // directories are opened again (for a fresh instance that reuses this context).
  Result<void> reset();

  // Resets the per-call streams: stdin to read, output cleared, extra environment appended.
  void beginCall(std::string stdinData, std::vector<std::string> extraEnv = {});
  const std::string& stdoutText() const { return stdout_; }
  const std::string& stderrText() const { return stderr_; }
  std::string takeOut() { return std::exchange(stdout_, {}); }
  std::string takeErr() { return std::exchange(stderr_, {}); }

 private:
  explicit WasiContext(WasiConfig config);
  Fd* fd(uint32_t n);
  HostReturn write(HostCall& c, Fd& f, uint32_t iovs, uint32_t n, uint32_t nwrittenPtr);

  // Each preview1 function (wasi.cc, wasi_fs.cc).
  HostReturn argsSizesGet(HostCall& c);
  HostReturn argsGet(HostCall& c);
  HostReturn environSizesGet(HostCall& c);
  HostReturn environGet(HostCall& c);
  HostReturn clockResGet(HostCall& c);
  HostReturn clockTimeGet(HostCall& c);
  HostReturn randomGet(HostCall& c);
  HostReturn procExit(HostCall& c);
  HostReturn fdRead(HostCall& c);
  HostReturn fdWrite(HostCall& c);
  HostReturn fdClose(HostCall& c);
  HostReturn fdSeek(HostCall& c);
  HostReturn fdTell(HostCall& c);
  HostReturn fdFdstatGet(HostCall& c);
  HostReturn fdFilestatGet(HostCall& c);
  HostReturn fdPrestatGet(HostCall& c);
  HostReturn fdPrestatDirName(HostCall& c);
  HostReturn pathOpen(HostCall& c);
  HostReturn pathFilestatGet(HostCall& c);
  HostReturn pathCreateDirectory(HostCall& c);
  HostReturn pathUnlinkFile(HostCall& c);
  HostReturn pathRemoveDirectory(HostCall& c);

  WasiConfig config_;
  std::vector<std::string> env_;
  std::vector<std::unique_ptr<Fd>> fds_;
  std::string stdin_;
  size_t stdinPos_ = 0;
  std::string stdout_;
  std::string stderr_;
  size_t outBytes_[3] = {0, 0, 0};
};

// errno of the host -> WASI errno (EXDEV from a RESOLVE_BENEATH escape -> ENOTCAPABLE).
uint16_t fromErrno(int e);

}  // namespace edgeward::wasm::wasi
