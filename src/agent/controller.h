// `edgeward controller`: holds one policy per node group (the files <dir>/<group>.yaml) and
// streams each group's policy to the agents that follow it. A file that changes is validated
// first; a bad file is reported and the group keeps its last good policy.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/result.h"

namespace edgeward::agent {

struct ControllerConfig {
  std::string listen = "127.0.0.1:7444";
  std::string policyDir;
  std::string ca, cert, key;  // all three: mutual TLS; none: plaintext (keep to loopback)
  int pollMs = 1000;          // how often the directory is checked for changes
};

struct GroupState {
  uint64_t version = 0;
  std::string hash;
  std::string yaml;
  std::string error;  // why the file on disk is not served (empty: it is)
  size_t followers = 0;
};

class Controller {
 public:
  explicit Controller(ControllerConfig cfg);
  ~Controller();
  Result<void> start();
  void shutdown();
  // Reads the directory now (also done every pollMs); returns groups whose version changed.
  std::vector<std::string> reload();
  std::map<std::string, GroupState> groups();
  int port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgeward::agent
