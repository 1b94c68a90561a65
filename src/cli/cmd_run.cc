// placeholder: replaced by the real command
#include "cli/commands.h"
namespace edgeward::cli {
void addRunCommand(CLI::App&) {}
}  // namespace edgeward::cli
