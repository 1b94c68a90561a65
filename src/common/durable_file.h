// Files that must survive a crash: whole writes that reach the disk before they become visible,
// and reads whose errors name the file. Used by the agent's stores in its state directory.
//
// The pattern: write to a temporary name, fsync the file, rename it over the final name, fsync
// the directory (the rename is only durable once the directory is). A reader, or the next start
// after a crash, sees the old content or the new, never a mix.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace edgeward::files {

// An error naming `path` with strerror(err).
std::unexpected<Error> pathError(ErrorCode code, const std::string& path, int err);

// The whole file; ErrorCode::NotFound when it does not exist, ErrorCode::Internal (naming the
// file) when it cannot be read or holds more than `max` bytes.
Result<std::string> readFile(const std::string& path, size_t max);

// Creates (or truncates) `path` with `mode`, writes `data` and fsyncs it. Not atomic by itself:
// for files inside a directory that is renamed into place afterwards. On failure the file is
// removed.
Result<void> writeSynced(const std::string& path, std::string_view data, mode_t mode);

// Replaces `path` with `data` atomically and durably (path + ".tmp", fsync, rename, fsync of the
// directory).
Result<void> writeAtomically(const std::string& path, std::string_view data, mode_t mode = 0640);

// fsync of a directory: makes the renames and unlinks in it durable.
Result<void> fsyncDir(const std::string& dir);

// The directory holding `path` ("." for a bare name).
std::string parentOf(const std::string& path);

// Creates `path` with `mode` unless a directory is there already; fails on anything else there.
Result<void> makeDir(const std::string& path, mode_t mode);

// The names in `dir`, without "." and "..", in no particular order.
Result<std::vector<std::string>> listDir(const std::string& dir);

}  // namespace edgeward::files
