// The agent's versioned policy store: every applied policy text, numbered, in a state directory
// that survives restarts and crashes.
//
//   <dir>/policies/<N>.yaml   the exact policy text of version N
//   <dir>/policies/<N>.json   its metadata: {"version", "hash", "author", "appliedAtMs", "name",
//                             "origin"}
//   <dir>/current             "<N>\n": the active version (absent: none yet)
//   <dir>/last-version        "<N>\n": the highest version number ever handed out
//   <dir>/lock                flock()ed while a PolicyStore has the directory open
//
// Every file is written whole (temporary file, fsync, rename, fsync of the directory), in the
// order last-version, yaml, json, current. A version exists once both its files do; a crash at
// any point leaves a state open() reads: temporary files and a yaml without its json are
// leftovers and removed, and a version whose files were written but that `current` does not name
// yet stays in the history, inactive. Numbers are never reused, also not after pruning or an
// interrupted commit.
//
// Rollback is not a pointer move: the agent commits the old text again, as a new version with
// origin "rollback to N" (so the history says what happened, and the version the data plane runs
// only ever grows). setCurrent() exists for the agent's own bookkeeping, e.g. to re-point at the
// version it still runs when activating a new one failed after the commit.
//
// Not thread-safe: the agent serialises its calls. Pure file I/O; no dependency on api/.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace edgeward::agent {

// One stored version: the fields of api::VersionInfo.
struct StoredVersion {
  uint64_t version = 0;
  std::string hash;         // "sha256:<64 hex digits>" of the exact policy text
  std::string author;       // who applied it
  int64_t appliedAtMs = 0;  // unix time in milliseconds, when it was committed
  std::string name;         // metadata.name of the policy
  std::string origin;       // "apply", "rollback to N", "upstream <addr>", "startup: <file>", ...
  bool operator==(const StoredVersion&) const = default;
};

class PolicyStore {
 public:
  static constexpr uint32_t kDefaultKeep = 20;

  // Opens (creating it if needed) the store in `dir`, locks it against other processes
  // (ErrorCode::Unavailable when another holds it), removes leftovers of interrupted writes and,
  // when more than `keep` versions are stored, prunes the oldest (`keep` 0: keep all). Fails,
  // naming the file, when `current` or `last-version` is unreadable or `current` names a version
  // whose files are missing, corrupt or do not match their hash. Other damaged versions do not
  // stop it: they are left out of list() and reported by problems().
  static Result<PolicyStore> open(const std::string& dir, uint32_t keep = kDefaultKeep);

  // Stores `yaml` as version nextVersion(), makes it current and prunes to `keep` versions. On
  // failure the version number is used up, the current version is unchanged, and what was
  // written is ignored (and cleaned up by the next open()).
  Result<StoredVersion> commit(std::string_view yaml, const std::string& name,
                               const std::string& author, const std::string& origin);

  // The current version; nullopt before the first commit.
  std::optional<StoredVersion> current() const { return current_; }

  // A stored version and its exact text. ErrorCode::NotFound for a version that never existed or
  // was pruned; ErrorCode::Internal, naming the file, for a damaged one.
  Result<std::pair<StoredVersion, std::string>> get(uint64_t version) const;

  // Every stored, readable version, newest first.
  Result<std::vector<StoredVersion>> list() const;

  // Makes an existing version current without creating a new one (see the header comment).
  Result<StoredVersion> setCurrent(uint64_t version);

  // The number the next commit() will use.
  uint64_t nextVersion() const { return last_ + 1; }

  // Damaged files found by open() and failures of pruning, one message each naming the file.
  const std::vector<std::string>& problems() const { return problems_; }

  const std::string& dir() const { return dir_; }

  // "sha256:<hex>" of `text`, as stored in StoredVersion::hash.
  static std::string hashOf(std::string_view text);

  PolicyStore(PolicyStore&&) = default;
  PolicyStore& operator=(PolicyStore&&) = default;

 private:
  PolicyStore() = default;
  std::string policiesDir() const;
  std::string yamlPath(uint64_t v) const;
  std::string jsonPath(uint64_t v) const;
  Result<StoredVersion> readMeta(uint64_t v) const;
  Result<void> load();
  void prune();

  std::string dir_;
  uint32_t keep_ = kDefaultKeep;
  UniqueFd lock_;
  uint64_t last_ = 0;
  std::optional<StoredVersion> current_;
  std::vector<StoredVersion> versions_;  // readable versions, oldest first
  std::vector<std::string> problems_;
};

}  // namespace edgeward::agent
