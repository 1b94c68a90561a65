// WASI preview1: files and directories beneath the preopened directories only.
//
// Every path is resolved by the kernel with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS):
// `..`, absolute paths and symlinks that would leave the directory fail with EXDEV, which the
// guest sees as ENOTCAPABLE. Writes need a directory granted writable.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "wasm/wasi/wasi_internal.h"

namespace edgeward::wasm::wasi {
namespace {

constexpr uint16_t kOflagCreat = 1, kOflagDirectory = 2, kOflagExcl = 4, kOflagTrunc = 8;
constexpr uint16_t kFdflagAppend = 1;
constexpr uint32_t kLookupSymlinkFollow = 1;
constexpr uint64_t kRightFdRead = 1ull << 1;

int openBeneath(int dir, const std::string& path, uint64_t flags, bool follow) {
  open_how how{};
  how.flags = flags | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW);
  how.mode = (flags & O_CREAT) ? 0644 : 0;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, dir, path.c_str(), &how, sizeof how));
}

}  // namespace

uint8_t filetypeOf(mode_t m) {
  if (S_ISDIR(m)) return kFiletypeDirectory;
  if (S_ISREG(m)) return kFiletypeRegular;
  if (S_ISCHR(m)) return 2;
  if (S_ISBLK(m)) return 1;
  if (S_ISLNK(m)) return 7;
  return kFiletypeUnknown;
}

bool storeFilestat(const Memory& m, uint32_t p, const struct stat& st) {
  auto ns = [](const timespec& t) { return uint64_t(t.tv_sec) * 1'000'000'000u + t.tv_nsec; };
  uint8_t buf[64] = {};
  auto put = [&](size_t off, uint64_t v) { std::memcpy(buf + off, &v, 8); };
  put(0, st.st_dev);
  put(8, st.st_ino);
  buf[16] = filetypeOf(st.st_mode);
  put(24, st.st_nlink);
  put(32, static_cast<uint64_t>(st.st_size));
  put(40, ns(st.st_atim));
  put(48, ns(st.st_mtim));
  put(56, ns(st.st_ctim));
  return m.write(p, buf);
}

HostReturn WasiContext::fdSeek(HostCall& c) {
  Fd* f = fd(c.u32(0));
  if (!f) return err(kBadf);
  if (f->kind != FdKind::File) return err(f->kind == FdKind::Dir ? kBadf : kSpipe);
  int whence = c.u32(2) == 0 ? SEEK_SET : c.u32(2) == 1 ? SEEK_CUR : c.u32(2) == 2 ? SEEK_END : -1;
  if (whence < 0) return err(kInval);
  off_t r = ::lseek(f->host.get(), static_cast<off_t>(static_cast<int64_t>(c.u64(1))), whence);
  if (r < 0) return err(fromErrno(errno));
  if (!c.memory().store<uint64_t>(c.u32(3), static_cast<uint64_t>(r))) return fault();
  return err(kSuccess);
}

HostReturn WasiContext::fdTell(HostCall& c) {
  Fd* f = fd(c.u32(0));
  if (!f) return err(kBadf);
  if (f->kind != FdKind::File) return err(f->kind == FdKind::Dir ? kBadf : kSpipe);
  off_t r = ::lseek(f->host.get(), 0, SEEK_CUR);
  if (r < 0) return err(fromErrno(errno));
  if (!c.memory().store<uint64_t>(c.u32(1), static_cast<uint64_t>(r))) return fault();
  return err(kSuccess);
}

HostReturn WasiContext::fdFdstatGet(HostCall& c) {
  Fd* f = fd(c.u32(0));
  if (!f) return err(kBadf);
  uint8_t buf[24] = {};
  uint64_t base = kRightsAll, inheriting = 0;
  switch (f->kind) {
    case FdKind::Stdin:
    case FdKind::Stdout:
    case FdKind::Stderr:
      buf[0] = kFiletypeUnknown;  // not a tty: wasi-libc buffers fully, fewer host calls
      break;
    case FdKind::Dir:
      buf[0] = kFiletypeDirectory;
      inheriting = kRightsAll;  // path_open enforces what the grant allows
      break;
    case FdKind::File: {
      struct stat st {};
      if (::fstat(f->host.get(), &st) != 0) return err(fromErrno(errno));
      buf[0] = filetypeOf(st.st_mode);
      if (!f->writable) base &= ~(kRightFdWrite | kRightFdAllocate | kRightFdFilestatSetSize);
      int fl = ::fcntl(f->host.get(), F_GETFL);
      if (fl >= 0 && (fl & O_APPEND)) buf[2] = kFdflagAppend;
      break;
    }
  }
  std::memcpy(buf + 8, &base, 8);
  std::memcpy(buf + 16, &inheriting, 8);
  if (!c.memory().write(c.u32(1), buf)) return fault();
  return err(kSuccess);
}

HostReturn WasiContext::fdFilestatGet(HostCall& c) {
  Fd* f = fd(c.u32(0));
  if (!f) return err(kBadf);
  struct stat st {};
  if (f->kind == FdKind::File || f->kind == FdKind::Dir) {
    if (::fstat(f->host.get(), &st) != 0) return err(fromErrno(errno));
  } else {
    st.st_mode = S_IFCHR;
  }
  if (!storeFilestat(c.memory(), c.u32(1), st)) return fault();
  return err(kSuccess);
}

HostReturn WasiContext::fdPrestatGet(HostCall& c) {
  Fd* f = fd(c.u32(0));
  if (!f || f->preopenName.empty()) return err(kBadf);
  uint8_t buf[8] = {};  // tag 0 (directory), then the name length
  uint32_t len = static_cast<uint32_t>(f->preopenName.size());
  std::memcpy(buf + 4, &len, 4);
  if (!c.memory().write(c.u32(1), buf)) return fault();
  return err(kSuccess);
}

HostReturn WasiContext::fdPrestatDirName(HostCall& c) {
  Fd* f = fd(c.u32(0));
  if (!f || f->preopenName.empty()) return err(kBadf);
  if (c.u32(2) < f->preopenName.size()) return err(kInval);
  auto name =
      std::span(reinterpret_cast<const uint8_t*>(f->preopenName.data()), f->preopenName.size());
  if (!c.memory().write(c.u32(1), name)) return fault();
  return err(kSuccess);
}

HostReturn WasiContext::pathOpen(HostCall& c) {
  Fd* dir = fd(c.u32(0));
  if (!dir) return err(kBadf);
  if (dir->kind != FdKind::Dir) return err(kNotdir);
  auto path = c.memory().string(c.u32(2), c.u32(3));
  if (!path) return fault();
  if (path->find('\0') != std::string_view::npos) return err(kInval);
  uint16_t oflags = static_cast<uint16_t>(c.u32(4));
  uint64_t rights = c.u64(5);
  uint16_t fdflags = static_cast<uint16_t>(c.u32(7));
  bool write = (rights & (kRightFdWrite | kRightFdAllocate | kRightFdFilestatSetSize)) ||
               (oflags & (kOflagCreat | kOflagTrunc)) || (fdflags & kFdflagAppend);
  if (write && !dir->writable) return err(kNotcapable);
  bool read = rights & kRightFdRead;

  uint64_t flags = write ? (read ? O_RDWR : O_WRONLY) : O_RDONLY;
  if (oflags & kOflagCreat) flags |= O_CREAT;
  if (oflags & kOflagExcl) flags |= O_EXCL;
  if (oflags & kOflagTrunc) flags |= O_TRUNC;
  if (oflags & kOflagDirectory) flags |= O_DIRECTORY;
  if (fdflags & kFdflagAppend) flags |= O_APPEND;
  int h = openBeneath(dir->host.get(), std::string(*path), flags, c.u32(1) & kLookupSymlinkFollow);
  if (h < 0 && errno == EISDIR && !write)
    h = openBeneath(dir->host.get(), std::string(*path), O_RDONLY | O_DIRECTORY,
                    c.u32(1) & kLookupSymlinkFollow);
  if (h < 0) return err(fromErrno(errno));
  auto f = std::make_unique<Fd>();
  f->host.reset(h);
  struct stat st {};
  if (::fstat(h, &st) != 0) return err(fromErrno(errno));
  f->kind = S_ISDIR(st.st_mode) ? FdKind::Dir : FdKind::File;
  f->writable = f->kind == FdKind::Dir ? dir->writable : write;
  // Reuse the lowest free slot, as POSIX does.
  uint32_t n = 0;
  while (n < fds_.size() && fds_[n]) n++;
  if (!c.memory().store<uint32_t>(c.u32(8), n)) return fault();
  if (n == fds_.size()) {
    fds_.push_back(std::move(f));
  } else {
    fds_[n] = std::move(f);
  }
  return err(kSuccess);
}

HostReturn WasiContext::pathFilestatGet(HostCall& c) {
  Fd* dir = fd(c.u32(0));
  if (!dir) return err(kBadf);
  if (dir->kind != FdKind::Dir) return err(kNotdir);
  auto path = c.memory().string(c.u32(2), c.u32(3));
  if (!path) return fault();
  UniqueFd h(
      openBeneath(dir->host.get(), std::string(*path), O_PATH, c.u32(1) & kLookupSymlinkFollow));
  if (!h.valid()) return err(fromErrno(errno));
  struct stat st {};
  if (::fstat(h.get(), &st) != 0) return err(fromErrno(errno));
  if (!storeFilestat(c.memory(), c.u32(4), st)) return fault();
  return err(kSuccess);
}

namespace {

// The three path mutations: a directory fd, a readable path, a writable grant, then `op` on the
// parent directory (opened beneath the preopen) and the last name, which may not be . or ..
template <typename Op>
HostReturn mutatePath(WasiContext::Fd* dir, HostCall& c, Op op) {
  if (!dir) return err(kBadf);
  if (dir->kind != FdKind::Dir) return err(kNotdir);
  auto path = c.memory().string(c.u32(1), c.u32(2));
  if (!path) return fault();
  if (!dir->writable) return err(kNotcapable);
  std::string_view p = *path;
  while (p.size() > 1 && p.back() == '/') p.remove_suffix(1);
  size_t slash = p.rfind('/');
  std::string parent = slash == std::string_view::npos ? "." : std::string(p.substr(0, slash + 1));
  std::string last(slash == std::string_view::npos ? p : p.substr(slash + 1));
  if (last == "..") return err(kNotcapable);
  if (last.empty() || last == "." || p.find('\0') != std::string_view::npos) return err(kInval);
  UniqueFd pfd(openBeneath(dir->host.get(), parent, O_PATH | O_DIRECTORY, true));
  if (!pfd.valid()) return err(fromErrno(errno));
  return err(op(pfd.get(), last.c_str()) == 0 ? uint16_t{kSuccess} : fromErrno(errno));
}

}  // namespace

HostReturn WasiContext::pathCreateDirectory(HostCall& c) {
  return mutatePath(fd(c.u32(0)), c,
                    [](int parent, const char* name) { return ::mkdirat(parent, name, 0755); });
}

HostReturn WasiContext::pathUnlinkFile(HostCall& c) {
  return mutatePath(fd(c.u32(0)), c,
                    [](int parent, const char* name) { return ::unlinkat(parent, name, 0); });
}

HostReturn WasiContext::pathRemoveDirectory(HostCall& c) {
  return mutatePath(fd(c.u32(0)), c, [](int parent, const char* name) {
    return ::unlinkat(parent, name, AT_REMOVEDIR);
  });
}

}  // namespace edgeward::wasm::wasi
