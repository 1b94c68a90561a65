// edgeward controller: serves one policy per node group to following agents.
#include <signal.h>

#include "agent/controller.h"
#include "cli/commands.h"

namespace edgeward::cli {
namespace {

void runController(const agent::ControllerConfig& cfg) {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  agent::Controller c(cfg);
  orExit(c.start());
  fmt::print("edgeward controller: listening on {} ({}), policies from {}/<group>.yaml\n",
             cfg.listen, cfg.ca.empty() ? "plaintext" : "mTLS", cfg.policyDir);
  for (const auto& [group, g] : c.groups())
    fmt::print("  group {:<16} {}\n", group,
               g.error.empty() ? fmt::format("version {} ({})", g.version, g.hash.substr(0, 19))
                               : "not served: " + g.error);
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop, &sig);
  c.shutdown();
}

}  // namespace

void addControllerCommand(CLI::App& app) {
  static agent::ControllerConfig cfg;
  auto* cmd = app.add_subcommand(
      "controller", "Serve policies per node group to agents in follow mode (docs/operations.md)");
  cmd->add_option("--listen", cfg.listen, "host:port to listen on")->capture_default_str();
  cmd->add_option("--policies", cfg.policyDir, "Directory of <group>.yaml policy files")
      ->required();
  cmd->add_option("--ca", cfg.ca, "CA that agent certificates must chain to (mTLS)");
  cmd->add_option("--cert", cfg.cert, "Server certificate (mTLS)");
  cmd->add_option("--key", cfg.key, "Server key (mTLS)");
  cmd->callback([] {
    if (!cfg.ca.empty() && (cfg.cert.empty() || cfg.key.empty())) {
      fmt::print(stderr, "edgeward: --ca, --cert and --key go together\n");
      throw CLI::RuntimeError(1);
    }
    runController(cfg);
  });
}

}  // namespace edgeward::cli
