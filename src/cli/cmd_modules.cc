// WebAssembly modules on a running agent, through its API (docs/plugins.md):
// plugin load|list|stats|unload, fn deploy|invoke|list|remove. (`plugin run` and `fn run` in
// cmd_fn.cc run modules locally, without an agent.)
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "cli/client_common.h"

namespace edgeward::cli {
namespace {

using nlohmann::json;

std::string readAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) orExit<void>(failErrno(path));
  return std::string(std::istreambuf_iterator<char>(in), {});
}

json toJson(const api::ModuleInfo& m) {
  json j{{"kind", m.kind},   {"name", m.name},         {"version", m.version},
         {"calls", m.calls}, {"failures", m.failures}, {"instancesLive", m.instancesLive}};
  if (m.kind == "plugin") {
    j.update({{"enabled", m.enabled},
              {"disabledReason", m.disabledReason},
              {"failurePolicy", m.failurePolicy},
              {"passed", m.passed},
              {"dropped", m.dropped},
              {"replaced", m.replaced},
              {"timeouts", m.timeouts},
              {"memoryErrors", m.memoryErrors},
              {"traps", m.traps},
              {"rateLimited", m.rateLimited},
              {"busy", m.busy},
              {"emitted", m.emitted},
              {"published", m.published},
              {"completions", m.completions},
              {"callNsTotal", m.callNsTotal},
              {"lastError", m.lastError}});
  } else {
    j.update({{"rateLimited", m.rateLimited}, {"callNsTotal", m.callNsTotal}, {"reset", m.reset}});
  }
  return j;
}

void load(const std::string& file, const std::string& manifest) {
  auto client = connect();
  auto [m, replaced] = orExitApi(client.loadModule(readAll(manifest), readAll(file), manifest));
  fmt::print("{} {} {} from {}\n", m.kind, m.name, replaced ? "replaced" : "loaded", file);
}

void list(const std::string& kind) {
  auto client = connect();
  auto all = orExitApi(client.listModules());
  std::erase_if(all, [&](const api::ModuleInfo& m) { return m.kind != kind; });
  if (gOutput == "json") {
    json a = json::array();
    for (const auto& m : all) a.push_back(toJson(m));
    fmt::print("{}\n", a.dump(2));
    return;
  }
  if (all.empty()) {
    fmt::print("no {}s loaded\n", kind);
    return;
  }
  if (kind == "plugin") {
    fmt::print("{:<24} {:<8} {:<8} {:>10} {:>10} {:>10} {:>9}\n", "NAME", "VERSION", "STATE",
               "CALLS", "DROPPED", "FAILURES", "US/CALL");
    for (const auto& m : all)
      fmt::print("{:<24} {:<8} {:<8} {:>10} {:>10} {:>10} {:>9.2f}\n", m.name, m.version,
                 m.enabled ? "enabled" : "disabled", m.calls, m.dropped, m.failures,
                 m.calls ? double(m.callNsTotal) / double(m.calls) / 1e3 : 0.0);
  } else {
    fmt::print("{:<24} {:<8} {:>12} {:>10} {:>9}  {}\n", "NAME", "VERSION", "INVOCATIONS",
               "FAILURES", "US/CALL", "RESET");
    for (const auto& m : all)
      fmt::print("{:<24} {:<8} {:>12} {:>10} {:>9.2f}  {}\n", m.name, m.version, m.calls,
                 m.failures, m.calls ? double(m.callNsTotal) / double(m.calls) / 1e3 : 0.0,
                 m.reset);
  }
}

void stats(const std::string& name) {
  auto client = connect();
  for (const auto& m : orExitApi(client.listModules())) {
    if (m.kind != "plugin" || m.name != name) continue;
    if (gOutput == "json") {
      fmt::print("{}\n", toJson(m).dump(2));
      return;
    }
    fmt::print("plugin      {} {}\n", m.name, m.version);
    fmt::print("state       {}{}\n", m.enabled ? "enabled" : "disabled",
               m.enabled ? "" : " (" + m.disabledReason + ")");
    fmt::print("on failure  {}\n", m.failurePolicy);
    fmt::print("calls       {} ({} passed, {} dropped, {} replaced)\n", m.calls, m.passed,
               m.dropped, m.replaced);
    fmt::print("failures    {} ({} timeouts, {} memory, {} traps)\n", m.failures, m.timeouts,
               m.memoryErrors, m.traps);
    fmt::print("skipped     {} over the call rate, {} with every instance busy\n", m.rateLimited,
               m.busy);
    fmt::print("sent        {} emitted, {} published and acknowledged, {} completions\n", m.emitted,
               m.published, m.completions);
    fmt::print("instances   {} live\n", m.instancesLive);
    if (!m.lastError.empty()) fmt::print("last error  {}\n", m.lastError);
    return;
  }
  orExit<void>(fail(ErrorCode::NotFound, fmt::format("no plugin {} is loaded", name)));
}

void unload(const std::string& kind, const std::string& name) {
  auto client = connect();
  orExitApi(client.unloadModule(kind, name));
  fmt::print("{} {} unloaded\n", kind, name);
}

void invoke(const std::string& name) {
  std::string input(std::istreambuf_iterator<char>(std::cin), {});
  auto client = connect();
  auto out = orExitApi(client.invokeFunction(name, input));
  std::fwrite(out.out.data(), 1, out.out.size(), stdout);
  std::fwrite(out.err.data(), 1, out.err.size(), stderr);
  std::fflush(stdout);
  if (out.exitCode != 0) throw CLI::RuntimeError(out.exitCode);
}

}  // namespace

void addModuleCommands(CLI::App& app) {
  static std::string file, manifest, name;
  auto* plugin = app.get_subcommand("plugin");
  auto* pl = connected(plugin->add_subcommand("load", "Load (or replace) a plugin on the agent"));
  pl->add_option("FILE", file, "the module (.wasm)")->required();
  pl->add_option("-m,--manifest", manifest, "its manifest (YAML)")->required();
  pl->callback([] { load(file, manifest); });
  auto* pls = withOutput(connected(plugin->add_subcommand("list", "The agent's plugins")));
  pls->callback([] { list("plugin"); });
  auto* pst =
      withOutput(connected(plugin->add_subcommand("stats", "One plugin's counters and state")));
  pst->add_option("NAME", name)->required();
  pst->callback([] { stats(name); });
  auto* pu = connected(plugin->add_subcommand("unload", "Remove a plugin from the agent"));
  pu->add_option("NAME", name)->required();
  pu->callback([] { unload("plugin", name); });

  auto* fn = app.get_subcommand("fn");
  auto* fd = connected(fn->add_subcommand("deploy", "Deploy (or replace) a function on the agent"));
  fd->add_option("FILE", file, "the module (.wasm)")->required();
  fd->add_option("-m,--manifest", manifest, "its manifest (YAML)")->required();
  fd->callback([] { load(file, manifest); });
  auto* fi = connected(fn->add_subcommand(
      "invoke",
      "Run a function on the agent: stdin -> its stdin, its stdout -> stdout, its exit "
      "code -> the exit code"));
  fi->add_option("NAME", name)->required();
  fi->callback([] { invoke(name); });
  auto* fl = withOutput(connected(fn->add_subcommand("list", "The agent's functions")));
  fl->callback([] { list("function"); });
  auto* fr = connected(fn->add_subcommand("remove", "Remove a function from the agent"));
  fr->add_option("NAME", name)->required();
  fr->callback([] { unload("function", name); });
}

}  // namespace edgeward::cli
