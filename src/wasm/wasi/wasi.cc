// WASI preview1: registration, process state (args, environ, clocks, random, exit) and stdio.
#include <fcntl.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <array>

#include <fmt/format.h>

#include "wasm/wasi/wasi_internal.h"

namespace edgeward::wasm::wasi {
namespace {

constexpr ValType I32 = ValType::I32;
constexpr ValType I64 = ValType::I64;

// Every preview1 function edgeward does not implement: they answer ENOSYS (sockets ENOTCAPABLE).
constexpr std::array kUnimplemented = {"fd_advise",
                                       "fd_allocate",
                                       "fd_datasync",
                                       "fd_fdstat_set_flags",
                                       "fd_fdstat_set_rights",
                                       "fd_filestat_set_size",
                                       "fd_filestat_set_times",
                                       "fd_pread",
                                       "fd_pwrite",
                                       "fd_readdir",
                                       "fd_renumber",
                                       "fd_sync",
                                       "path_filestat_set_times",
                                       "path_link",
                                       "path_readlink",
                                       "path_rename",
                                       "path_symlink",
                                       "poll_oneoff",
                                       "proc_raise"};
constexpr std::array kSockets = {"sock_accept", "sock_recv", "sock_send", "sock_shutdown"};

// Writes a list of strings the way args_get/environ_get do: pointers, then NUL-terminated bytes.
HostReturn putStrings(HostCall& c, const std::vector<std::string>& v) {
  Memory m = c.memory();
  uint32_t ptrs = c.u32(0), buf = c.u32(1);
  for (const auto& s : v) {
    if (!m.store<uint32_t>(ptrs, buf)) return fault();
    if (!m.write(buf, std::span(reinterpret_cast<const uint8_t*>(s.c_str()), s.size() + 1)))
      return fault();
    ptrs += 4;
    buf += static_cast<uint32_t>(s.size() + 1);
  }
  return err(kSuccess);
}

HostReturn putSizes(HostCall& c, const std::vector<std::string>& v) {
  uint32_t bytes = 0;
  for (const auto& s : v) bytes += static_cast<uint32_t>(s.size() + 1);
  Memory m = c.memory();
  if (!m.store<uint32_t>(c.u32(0), static_cast<uint32_t>(v.size())) ||
      !m.store<uint32_t>(c.u32(1), bytes))
    return fault();
  return err(kSuccess);
}

std::optional<clockid_t> clockOf(uint32_t id) {
  switch (id) {
    case 0:
      return CLOCK_REALTIME;
    case 1:
      return CLOCK_MONOTONIC;
    case 2:
      return CLOCK_PROCESS_CPUTIME_ID;
    case 3:
      return CLOCK_THREAD_CPUTIME_ID;
    default:
      return std::nullopt;
  }
}

// clock_res_get / clock_time_get: clock id in argument 0, nanoseconds stored at argument `out`.
HostReturn clockQuery(HostCall& c, int (*query)(clockid_t, timespec*), size_t out) {
  auto id = clockOf(c.u32(0));
  if (!id) return err(kInval);
  timespec ts{};
  query(*id, &ts);
  if (!c.memory().store<uint64_t>(c.u32(out), uint64_t(ts.tv_sec) * 1'000'000'000u + ts.tv_nsec))
    return fault();
  return err(kSuccess);
}

}  // namespace

uint16_t fromErrno(int e) {
  switch (e) {
    case EXDEV:
      return kNotcapable;  // RESOLVE_BENEATH: the path would leave the directory
    case ENOENT:
      return kNoent;
    case EACCES:
      return kAcces;
    case EPERM:
      return kPerm;
    case EEXIST:
      return kExist;
    case ENOTDIR:
      return kNotdir;
    case EISDIR:
      return kIsdir;
    case ELOOP:
      return kLoop;
    case ENAMETOOLONG:
      return kNametoolong;
    case ENOTEMPTY:
      return kNotempty;
    case EINVAL:
      return kInval;
    case ENOSPC:
      return kNospc;
    case ESPIPE:
      return kSpipe;
    case EBADF:
      return kBadf;
    default:
      return kIo;
  }
}

WasiContext::WasiContext(WasiConfig config) : config_(std::move(config)), env_(config_.env) {}
WasiContext::~WasiContext() = default;

Result<std::unique_ptr<WasiContext>> WasiContext::create(WasiConfig config) {
  std::unique_ptr<WasiContext> ctx(new WasiContext(std::move(config)));
  EW_TRY(r, ctx->reset());
  return ctx;
}

Result<void> WasiContext::reset() {
  std::vector<std::unique_ptr<Fd>> fds;
  for (FdKind k : {FdKind::Stdin, FdKind::Stdout, FdKind::Stderr}) {
    auto f = std::make_unique<Fd>();
    f->kind = k;
    fds.push_back(std::move(f));
  }
  for (const Preopen& p : config_.dirs) {
    UniqueFd d(::open(p.hostPath.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!d.valid()) return failErrno(fmt::format("directory {} (for {})", p.hostPath, p.guestPath));
    auto f = std::make_unique<Fd>();
    f->kind = FdKind::Dir;
    f->host = std::move(d);
    f->writable = p.writable;
    f->preopenName = p.guestPath;
    fds.push_back(std::move(f));
  }
  fds_ = std::move(fds);
  return {};
}

WasiContext::Fd* WasiContext::fd(uint32_t n) { return n < fds_.size() ? fds_[n].get() : nullptr; }

void WasiContext::beginCall(std::string stdinData, std::vector<std::string> extraEnv) {
  stdin_ = std::move(stdinData);
  stdinPos_ = 0;
  stdout_.clear();
  stderr_.clear();
  outBytes_[1] = outBytes_[2] = 0;
  env_ = config_.env;
  for (auto& e : extraEnv) env_.push_back(std::move(e));
}

HostReturn WasiContext::argsSizesGet(HostCall& c) { return putSizes(c, config_.args); }
HostReturn WasiContext::argsGet(HostCall& c) { return putStrings(c, config_.args); }
HostReturn WasiContext::environSizesGet(HostCall& c) { return putSizes(c, env_); }
HostReturn WasiContext::environGet(HostCall& c) { return putStrings(c, env_); }

HostReturn WasiContext::clockResGet(HostCall& c) { return clockQuery(c, clock_getres, 1); }
HostReturn WasiContext::clockTimeGet(HostCall& c) { return clockQuery(c, clock_gettime, 2); }

HostReturn WasiContext::randomGet(HostCall& c) {
  auto v = c.memory().view(c.u32(0), c.u32(1));
  if (!v) return fault();
  size_t done = 0;
  while (done < v->size()) {
    ssize_t n = getrandom(v->data() + done, v->size() - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return err(kIo);
    }
    done += static_cast<size_t>(n);
  }
  return err(kSuccess);
}

HostReturn WasiContext::procExit(HostCall& c) { return HostReturn::exitWith(c.i32(0)); }

HostReturn WasiContext::fdRead(HostCall& c) {
  Fd* f = fd(c.u32(0));
  if (!f) return err(kBadf);
  Memory m = c.memory();
  uint32_t iovs = c.u32(1), n = c.u32(2);
  uint64_t total = 0;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t buf, len;
    if (!m.load(iovs + 8 * i, buf) || !m.load(iovs + 8 * i + 4, len)) return fault();
    auto dst = m.view(buf, len);
    if (!dst) return fault();
    size_t got = 0;
    if (f->kind == FdKind::Stdin) {
      got = std::min<size_t>(len, stdin_.size() - stdinPos_);
      std::memcpy(dst->data(), stdin_.data() + stdinPos_, got);
      stdinPos_ += got;
    } else if (f->kind == FdKind::File) {
      ssize_t r = ::read(f->host.get(), dst->data(), len);
      if (r < 0) return err(fromErrno(errno));
      got = static_cast<size_t>(r);
    } else {
      return err(f->kind == FdKind::Dir ? kIsdir : kBadf);
    }
    total += got;
    if (got < len) break;
  }
  if (!m.store<uint32_t>(c.u32(3), static_cast<uint32_t>(total))) return fault();
  return err(kSuccess);
}

HostReturn WasiContext::write(HostCall& c, Fd& f, uint32_t iovs, uint32_t n, uint32_t nwrittenPtr) {
  Memory m = c.memory();
  uint64_t total = 0;
  std::string gathered;  // one sink call per fd_write: wasi-libc splits a line over two iovecs
  for (uint32_t i = 0; i < n; i++) {
    uint32_t buf, len;
    if (!m.load(iovs + 8 * i, buf) || !m.load(iovs + 8 * i + 4, len)) return fault();
    auto src = m.string(buf, len);
    if (!src) return fault();
    if (f.kind == FdKind::Stdout || f.kind == FdKind::Stderr) {
      int which = f.kind == FdKind::Stdout ? 1 : 2;
      outBytes_[which] += len;
      if (outBytes_[which] > config_.maxOutputBytes)
        return HostReturn::fail(fmt::format("{} exceeded its limit of {} bytes",
                                            which == 1 ? "stdout" : "stderr",
                                            config_.maxOutputBytes));
      if (config_.sink) {
        gathered.append(*src);
      } else {
        (which == 1 ? stdout_ : stderr_).append(*src);
      }
      total += len;
    } else if (f.kind == FdKind::File) {
      if (!f.writable) return err(kBadf);
      ssize_t r = ::write(f.host.get(), src->data(), src->size());
      if (r < 0) return err(fromErrno(errno));
      total += static_cast<uint64_t>(r);
      if (static_cast<size_t>(r) < len) break;
    } else {
      return err(f.kind == FdKind::Dir ? kIsdir : kBadf);
    }
  }
  if (!gathered.empty()) config_.sink(f.kind == FdKind::Stdout ? 1 : 2, gathered);
  if (!m.store<uint32_t>(nwrittenPtr, static_cast<uint32_t>(total))) return fault();
  return err(kSuccess);
}

HostReturn WasiContext::fdWrite(HostCall& c) {
  Fd* f = fd(c.u32(0));
  if (!f) return err(kBadf);
  return write(c, *f, c.u32(1), c.u32(2), c.u32(3));
}

HostReturn WasiContext::fdClose(HostCall& c) {
  uint32_t n = c.u32(0);
  if (!fd(n)) return err(kBadf);
  fds_[n].reset();
  return err(kSuccess);
}

std::vector<HostFunction> WasiContext::functions() {
  std::vector<HostFunction> out;
  auto add = [&](const char* name, std::vector<ValType> params, bool result,
                 HostReturn (WasiContext::*fn)(HostCall&)) {
    FuncType t{std::move(params), result ? std::vector<ValType>{I32} : std::vector<ValType>{}};
    out.push_back(
        {kModule, name, std::move(t), [this, fn](HostCall& c) { return (this->*fn)(c); }});
  };
  add("args_sizes_get", {I32, I32}, true, &WasiContext::argsSizesGet);
  add("args_get", {I32, I32}, true, &WasiContext::argsGet);
  add("environ_sizes_get", {I32, I32}, true, &WasiContext::environSizesGet);
  add("environ_get", {I32, I32}, true, &WasiContext::environGet);
  add("clock_res_get", {I32, I32}, true, &WasiContext::clockResGet);
  add("clock_time_get", {I32, I64, I32}, true, &WasiContext::clockTimeGet);
  add("random_get", {I32, I32}, true, &WasiContext::randomGet);
  add("proc_exit", {I32}, false, &WasiContext::procExit);
  add("fd_read", {I32, I32, I32, I32}, true, &WasiContext::fdRead);
  add("fd_write", {I32, I32, I32, I32}, true, &WasiContext::fdWrite);
  add("fd_close", {I32}, true, &WasiContext::fdClose);
  add("fd_seek", {I32, I64, I32, I32}, true, &WasiContext::fdSeek);
  add("fd_tell", {I32, I32}, true, &WasiContext::fdTell);
  add("fd_fdstat_get", {I32, I32}, true, &WasiContext::fdFdstatGet);
  add("fd_filestat_get", {I32, I32}, true, &WasiContext::fdFilestatGet);
  add("fd_prestat_get", {I32, I32}, true, &WasiContext::fdPrestatGet);
  add("fd_prestat_dir_name", {I32, I32, I32}, true, &WasiContext::fdPrestatDirName);
  add("path_open", {I32, I32, I32, I32, I32, I64, I64, I32, I32}, true, &WasiContext::pathOpen);
  add("path_filestat_get", {I32, I32, I32, I32, I32}, true, &WasiContext::pathFilestatGet);
  add("path_create_directory", {I32, I32, I32}, true, &WasiContext::pathCreateDirectory);
  add("path_unlink_file", {I32, I32, I32}, true, &WasiContext::pathUnlinkFile);
  add("path_remove_directory", {I32, I32, I32}, true, &WasiContext::pathRemoveDirectory);
  out.push_back(
      {kModule, "sched_yield", FuncType{{}, {I32}}, [](HostCall&) { return err(kSuccess); }});
  for (const char* name : kUnimplemented)
    out.push_back({kModule, name, {}, [](HostCall&) { return err(kNosys); }, true});
  for (const char* name : kSockets)
    out.push_back({kModule, name, {}, [](HostCall&) { return err(kNotcapable); }, true});
  return out;
}

}  // namespace edgeward::wasm::wasi
