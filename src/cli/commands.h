// Sub-command registration. Each command file adds its sub-commands to the app.
#pragma once

#include <CLI/CLI.hpp>

#include "common/result.h"

namespace edgeward::cli {

void addPolicyCommands(CLI::App& app);
void addClientCommands(CLI::App& app);  // needs addPolicyCommands first
void addVerdictCommand(CLI::App& app);
void addRunCommand(CLI::App& app);
void addDemoCommand(CLI::App& app);
void addResetCommand(CLI::App& app);
void addAgentCommand(CLI::App& app);
void addControllerCommand(CLI::App& app);
void addObserveCommands(CLI::App& app);  // events, top
void addFnCommands(CLI::App& app);       // fn run, plugin run (local, no agent)
void addModuleCommands(
    CLI::App& app);  // plugin load|list|stats|unload, fn deploy|invoke|list|remove

// Ends the command with the error as one line and exit code 1 when r failed.
template <typename T>
T orExit(Result<T> r) {
  if (!r) {
    fmt::print(stderr, "edgeward: {}\n", r.error().str());
    throw CLI::RuntimeError(1);
  }
  if constexpr (!std::is_void_v<T>) return std::move(*r);
}

}  // namespace edgeward::cli
