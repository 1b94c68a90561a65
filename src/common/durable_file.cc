#include "common/durable_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/unique_fd.h"

namespace edgeward::files {

std::unexpected<Error> pathError(ErrorCode code, const std::string& path, int err) {
  return fail(code, fmt::format("{}: {}", path, std::strerror(err)));
}

Result<std::string> readFile(const std::string& path, size_t max) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid())
    return pathError(errno == ENOENT ? ErrorCode::NotFound : ErrorCode::Internal, path, errno);
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return pathError(ErrorCode::Internal, path, errno);
    if (n == 0) break;
    if (text.size() + size_t(n) > max)
      return fail(ErrorCode::Internal, fmt::format("{}: larger than {} bytes", path, max));
    text.append(buf, size_t(n));
  }
  return text;
}

Result<void> writeSynced(const std::string& path, std::string_view data, mode_t mode) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd.valid()) return pathError(ErrorCode::Internal, path, errno);
  auto abandon = [&] {
    int err = errno;
    ::unlink(path.c_str());
    return pathError(ErrorCode::Internal, path, err);
  };
  for (size_t done = 0; done < data.size();) {
    ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return abandon();
    done += size_t(n);
  }
  if (::fsync(fd.get()) != 0) return abandon();
  if (::close(fd.release()) != 0) return abandon();
  return {};
}

Result<void> writeAtomically(const std::string& path, std::string_view data, mode_t mode) {
  const std::string tmp = path + ".tmp";
  // The error names the file the caller asked for, then the temporary one that failed.
  if (auto w = writeSynced(tmp, data, mode); !w)
    return std::unexpected(w.error().context("writing " + path));
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return pathError(ErrorCode::Internal, path, err);
  }
  return fsyncDir(parentOf(path));
}

Result<void> fsyncDir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid() || ::fsync(fd.get()) != 0) return pathError(ErrorCode::Internal, dir, errno);
  return {};
}

std::string parentOf(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

Result<void> makeDir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) == 0 || errno == EEXIST) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return pathError(ErrorCode::Internal, path, errno);
    if (!S_ISDIR(st.st_mode)) return pathError(ErrorCode::Internal, path, ENOTDIR);
    return {};
  }
  return pathError(ErrorCode::Internal, path, errno);
}

Result<std::vector<std::string>> listDir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return pathError(ErrorCode::Internal, dir, errno);
  std::vector<std::string> out;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(std::move(n));
  }
  ::closedir(d);
  return out;
}

}  // namespace edgeward::files
