#include "support/run.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>

namespace edgeward::testing {

Output runShell(const std::string& command) {
  Output o;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) {
    o.out = "popen failed";
    return o;
  }
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) o.out.append(buf, n);
  const int status = ::pclose(p);
  o.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return o;
}

TempDir::TempDir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp " + tmpl + " failed");
  path_ = tmpl;
}

TempDir::~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }

std::string TempDir::file(const std::string& name, const std::string& content) const {
  std::string p = path_ + "/" + name;
  if (!content.empty()) std::ofstream(p) << content;
  return p;
}

}  // namespace edgeward::testing
