// WebAssembly modules loaded through the API (`plugin load`, `fn deploy`), kept in the agent's
// state directory so that every start loads them again, until they are unloaded.
//
//   <dir>/modules/<kind>/<name>/manifest.yaml   the manifest text as the client sent it
//   <dir>/modules/<kind>/<name>/module.wasm     the module's bytes
//   <dir>/modules/<kind>/<name>/order           "<N>\n": plugins run in load order, and a
//                                               replacement keeps its place
//
// <kind> is `plugin` or `function`. An entry is written whole into a temporary directory beside
// it (`<kind>/.tmp-<name>`: each file fsynced, then the directory) and put in place by one rename,
// or, replacing an entry, by one renameat2(RENAME_EXCHANGE) that swaps the two directories; then
// the kind directory is fsynced and the old entry, now under the temporary name, deleted. Removal
// renames the entry to `<kind>/.rm-<name>` (fsync) before deleting it. A crash at any point
// leaves the old entry or the new one, whole; open() deletes the temporary directories it leaves.
//
// Not thread-safe: the agent serialises its calls. Pure file I/O; no dependency on wasm/.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace edgeward::agent {

struct StoredModule {
  std::string kind;      // "plugin" or "function"
  std::string name;      // the manifest's name: [a-z0-9-], at most 63 characters
  std::string manifest;  // the manifest text
  std::string wasm;      // the module's bytes
  uint64_t order = 0;    // load order: earlier first
  std::string path;      // the entry's directory
};

class ModuleStore {
 public:
  static constexpr size_t kMaxManifestBytes = size_t(1) << 20;
  static constexpr size_t kMaxModuleBytes = size_t(64) << 20;    // the API's largest message
  static constexpr const char* kManifestFile = "manifest.yaml";  // in an entry's directory

  // Opens (creating them if needed) <stateDir>/modules and its kind directories, and deletes the
  // temporary directories of writes and removals a crash interrupted (one that cannot be deleted
  // is reported by problems()).
  static Result<ModuleStore> open(const std::string& stateDir);

  // A written entry not yet in place. commit() puts it there (replacing the stored entry of the
  // same kind and name, if any); destroying an uncommitted one deletes what was written. The
  // agent stages before it swaps a module in, so that what usually fails (a full disk, an
  // unwritable directory) fails before anything changed.
  class Pending {
   public:
    // On failure nothing changed on disk: the stored entry (if any) is still the old one.
    Result<void> commit();
    ~Pending();
    Pending(Pending&& o) noexcept;
    Pending& operator=(Pending&&) = delete;
    Pending(const Pending&) = delete;

   private:
    friend class ModuleStore;
    Pending(std::string tmp, std::string entry) : tmp_(std::move(tmp)), entry_(std::move(entry)) {}
    std::string tmp_, entry_;
    bool done_ = false;
  };

  // Writes the entry for (kind, name) to its temporary directory. A replacement keeps the order
  // of the entry it replaces; a new entry comes after every stored one. ErrorCode::InvalidArgument
  // for an unknown kind or a name that is not a module name.
  Result<Pending> stage(std::string_view kind, std::string_view name, std::string_view manifest,
                        std::string_view wasm);

  // Deletes the entry; false when none was stored.
  Result<bool> remove(std::string_view kind, std::string_view name);

  bool contains(std::string_view kind, std::string_view name) const;

  // Every entry, read back, in load order (by `order`, then kind and name). An entry that cannot
  // be read whole (a missing or unreadable file, a bad name or order) is left out and reported in
  // `problems`, one message each naming the entry; only an unreadable kind directory fails.
  struct Listing {
    std::vector<StoredModule> modules;
    std::vector<std::string> problems;
  };
  Result<Listing> list() const;

  // <stateDir>/modules/<kind>/<name>
  std::string entryPath(std::string_view kind, std::string_view name) const;
  const std::string& dir() const { return dir_; }
  // Temporary directories open() could not delete.
  const std::vector<std::string>& problems() const { return problems_; }

  ModuleStore(ModuleStore&&) = default;
  ModuleStore& operator=(ModuleStore&&) = default;

 private:
  ModuleStore() = default;
  Result<StoredModule> read(const std::string& kind, const std::string& name) const;
  uint64_t nextOrder() const;

  std::string dir_;  // <stateDir>/modules
  std::vector<std::string> problems_;
};

}  // namespace edgeward::agent
