// Running commands from tests: the shell's output (stdout and stderr together) and exit code,
// the edgeward binary under test, and throwaway directories.
#pragma once

#include <string>

namespace edgeward::testing {

struct Output {
  int code = -1;    // the exit code; -1 when the command did not exit normally
  std::string out;  // stdout and stderr together
};

// Runs command through /bin/sh with stderr folded into stdout.
Output runShell(const std::string& command);

#ifdef EW_EDGEWARD_BIN
// Runs the edgeward binary built with the tests (EW_EDGEWARD_BIN) with args.
inline Output runEdgeward(const std::string& args) {
  return runShell(std::string(EW_EDGEWARD_BIN) + " " + args);
}
#endif

// A fresh directory under /tmp, removed with everything in it on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "ew");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // The path of name inside the directory; with content, the file is written first.
  std::string file(const std::string& name, const std::string& content = {}) const;

 private:
  std::string path_;
};

}  // namespace edgeward::testing
