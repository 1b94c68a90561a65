// edgeward: the command line. Thin: every command lives in its own file.
#include <CLI/CLI.hpp>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"edgeward: eBPF zero-trust firewall and node agent", "edgeward"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "edgeward 0.1.0");
  edgeward::cli::addPolicyCommands(app);
  edgeward::cli::addClientCommands(app);
  edgeward::cli::addVerdictCommand(app);
  edgeward::cli::addRunCommand(app);
  edgeward::cli::addDemoCommand(app);
  edgeward::cli::addResetCommand(app);
  edgeward::cli::addAgentCommand(app);
  edgeward::cli::addControllerCommand(app);
  edgeward::cli::addObserveCommands(app);
  edgeward::cli::addFnCommands(app);
  edgeward::cli::addModuleCommands(app);  // needs addFnCommands first
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return 0;
}
