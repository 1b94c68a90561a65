#include "agent/module_store.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <tuple>

#include <fmt/format.h>

#include "common/durable_file.h"
#include "wasm/module_name.h"

namespace edgeward::agent {
namespace {

constexpr std::string_view kKinds[] = {"plugin", "function"};
constexpr const char* kModuleFile = "module.wasm";
constexpr const char* kOrderFile = "order";
constexpr std::string_view kTmpPrefix = ".tmp-", kRemovedPrefix = ".rm-";

// Names become directory names: only what a manifest name may hold, so never "." or a '/'.
Result<void> checkKey(std::string_view kind, std::string_view name) {
  if (std::find(std::begin(kKinds), std::end(kKinds), kind) == std::end(kKinds))
    return fail(ErrorCode::InvalidArgument,
                fmt::format("unknown module kind \"{}\" (expected plugin or function)", kind));
  if (!wasm::validModuleName(name))
    return fail(ErrorCode::InvalidArgument,
                fmt::format("\"{}\" is not a module name (lower-case letters, digits and '-', at "
                            "most 63)",
                            name.substr(0, 80)));
  return {};
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// Deletes a directory tree; "" when it is gone (or was never there), else why not.
std::string removeTree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  return ec ? fmt::format("{}: cannot delete: {}", path, ec.message()) : std::string();
}

Result<uint64_t> readOrder(const std::string& path) {
  EW_TRY(text, files::readFile(path, 64));
  std::string_view s = *text;
  if (s.ends_with('\n')) s.remove_suffix(1);
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size())
    return fail(ErrorCode::Internal, fmt::format("{}: expected a number", path));
  return v;
}

}  // namespace

Result<ModuleStore> ModuleStore::open(const std::string& stateDir) {
  ModuleStore s;
  s.dir_ = stateDir;
  while (s.dir_.size() > 1 && s.dir_.ends_with('/')) s.dir_.pop_back();
  s.dir_ += "/modules";
  EW_TRY(made, files::makeDir(s.dir_, 0750));
  for (std::string_view kind : kKinds) {
    const std::string kindDir = fmt::format("{}/{}", s.dir_, kind);
    EW_TRY(madeKind, files::makeDir(kindDir, 0750));
    EW_TRY(names, files::listDir(kindDir));
    for (const std::string& n : *names) {
      if (!n.starts_with(kTmpPrefix) && !n.starts_with(kRemovedPrefix)) continue;
      // An interrupted write or removal: the entry itself is whole, this is the other copy.
      if (std::string why = removeTree(kindDir + "/" + n); !why.empty())
        s.problems_.push_back(std::move(why));
    }
  }
  return s;
}

std::string ModuleStore::entryPath(std::string_view kind, std::string_view name) const {
  return fmt::format("{}/{}/{}", dir_, kind, name);
}

bool ModuleStore::contains(std::string_view kind, std::string_view name) const {
  return checkKey(kind, name) && exists(entryPath(kind, name));
}

uint64_t ModuleStore::nextOrder() const {
  uint64_t last = 0;
  for (std::string_view kind : kKinds) {
    const std::string kindDir = fmt::format("{}/{}", dir_, kind);
    auto names = files::listDir(kindDir);
    if (!names) continue;
    for (const std::string& n : *names)
      if (auto o = readOrder(fmt::format("{}/{}/{}", kindDir, n, kOrderFile)))
        last = std::max(last, *o);
  }
  return last + 1;
}

Result<ModuleStore::Pending> ModuleStore::stage(std::string_view kind, std::string_view name,
                                                std::string_view manifest, std::string_view wasm) {
  EW_TRY(valid, checkKey(kind, name));
  const std::string entry = entryPath(kind, name);
  const std::string tmp = fmt::format("{}/{}/{}{}", dir_, kind, kTmpPrefix, name);
  auto order = readOrder(entry + "/" + kOrderFile);
  const uint64_t n = order ? *order : nextOrder();

  if (std::string why = removeTree(tmp); !why.empty()) return fail(ErrorCode::Internal, why);
  if (::mkdir(tmp.c_str(), 0750) != 0) return files::pathError(ErrorCode::Internal, tmp, errno);
  Pending p(tmp, entry);  // from here on, a failure deletes tmp
  EW_TRY(m, files::writeSynced(tmp + "/" + kManifestFile, manifest, 0640));
  EW_TRY(w, files::writeSynced(tmp + "/" + kModuleFile, wasm, 0640));
  EW_TRY(o, files::writeSynced(tmp + "/" + kOrderFile, fmt::format("{}\n", n), 0640));
  EW_TRY(synced, files::fsyncDir(tmp));
  return p;
}

ModuleStore::Pending::Pending(Pending&& o) noexcept
    : tmp_(std::move(o.tmp_)), entry_(std::move(o.entry_)), done_(std::exchange(o.done_, true)) {}

ModuleStore::Pending::~Pending() {
  if (!done_) removeTree(tmp_);
}

Result<void> ModuleStore::Pending::commit() {
  if (done_) return fail(ErrorCode::Internal, fmt::format("{}: committed already", entry_));
  const bool replacing = exists(entry_);
  const unsigned flags = replacing ? RENAME_EXCHANGE : RENAME_NOREPLACE;
  if (::renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, entry_.c_str(), flags) != 0)
    return files::pathError(ErrorCode::Internal, entry_, errno);
  if (auto synced = files::fsyncDir(files::parentOf(entry_)); !synced) {
    // Not durable: put the old state back rather than report a failure that a reboot undoes.
    if (replacing)
      ::renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, entry_.c_str(), RENAME_EXCHANGE);
    else
      ::rename(entry_.c_str(), tmp_.c_str());
    return synced;
  }
  done_ = true;
  // The old entry, now under the temporary name; open() deletes it if this does not.
  if (replacing) removeTree(tmp_);
  return {};
}

Result<bool> ModuleStore::remove(std::string_view kind, std::string_view name) {
  EW_TRY(valid, checkKey(kind, name));
  const std::string entry = entryPath(kind, name);
  if (!exists(entry)) return false;
  const std::string gone = fmt::format("{}/{}/{}{}", dir_, kind, kRemovedPrefix, name);
  if (std::string why = removeTree(gone); !why.empty()) return fail(ErrorCode::Internal, why);
  if (::rename(entry.c_str(), gone.c_str()) != 0)
    return files::pathError(ErrorCode::Internal, entry, errno);
  if (auto synced = files::fsyncDir(files::parentOf(entry)); !synced) {
    ::rename(gone.c_str(), entry.c_str());
    return std::unexpected(synced.error());
  }
  removeTree(gone);  // open() deletes it if this does not
  return true;
}

Result<StoredModule> ModuleStore::read(const std::string& kind, const std::string& name) const {
  StoredModule m;
  m.kind = kind;
  m.name = name;
  m.path = entryPath(kind, name);
  EW_TRY(valid, checkKey(kind, name));
  EW_TRY(manifest, files::readFile(m.path + "/" + kManifestFile, kMaxManifestBytes));
  EW_TRY(wasm, files::readFile(m.path + "/" + kModuleFile, kMaxModuleBytes));
  EW_TRY(order, readOrder(m.path + "/" + kOrderFile));
  m.manifest = std::move(*manifest);
  m.wasm = std::move(*wasm);
  m.order = *order;
  return m;
}

Result<ModuleStore::Listing> ModuleStore::list() const {
  Listing out;
  for (std::string_view kind : kKinds) {
    const std::string kindDir = fmt::format("{}/{}", dir_, kind);
    EW_TRY(names, files::listDir(kindDir));
    for (const std::string& n : *names) {
      if (n.starts_with(kTmpPrefix) || n.starts_with(kRemovedPrefix)) continue;
      auto m = read(std::string(kind), n);
      if (m)
        out.modules.push_back(std::move(*m));
      else
        out.problems.push_back(
            fmt::format("{}/{}: damaged entry: {}", kindDir, n, m.error().message()));
    }
  }
  std::sort(out.modules.begin(), out.modules.end(), [](const auto& a, const auto& b) {
    return std::tie(a.order, a.kind, a.name) < std::tie(b.order, b.kind, b.name);
  });
  std::sort(out.problems.begin(), out.problems.end());
  return out;
}

}  // namespace edgeward::agent
