// edgeward reset [--pin-dir DIR]: detach every link edgeward pinned and remove every pin (links,
// maps, programs) under DIR, so the node runs with no edgeward filtering and no leftover state.
#include <algorithm>

#include "bpf/firewall_program.h"
#include "cli/commands.h"

namespace edgeward::cli {
namespace {

struct Options {
  std::string pinDir = bpf::kDefaultPinDir;
};

void run(const Options& o) {
  auto removed = orExit(bpf::FirewallProgram::resetPins(o.pinDir));
  if (removed.empty()) {
    fmt::print("nothing pinned under {}\n", o.pinDir);
    return;
  }
  size_t links = 0;
  for (const auto& r : removed) {
    fmt::print("removed {}  ({})\n", r.path, r.what);
    if (r.what.starts_with("link")) links++;
  }
  fmt::print("{} pins removed, {} links detached\n",
             removed.size() - std::count_if(removed.begin(), removed.end(),
                                            [](const auto& r) { return r.what == "directory"; }),
             links);
}

}  // namespace

void addResetCommand(CLI::App& app) {
  static Options o;
  auto* cmd = app.add_subcommand(
      "reset",
      "Detach everything edgeward attached and remove its pinned maps, links and programs");
  cmd->add_option("--pin-dir", o.pinDir, "bpffs directory holding edgeward's pins")
      ->capture_default_str();
  cmd->callback([] { run(o); });
}

}  // namespace edgeward::cli
