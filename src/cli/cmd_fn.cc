// edgeward fn run FILE.wasm --manifest M < input      a function, locally, under its limits
// edgeward plugin run FILE.wasm --manifest M --events FILE | --generate N
//                                                     events through a plugin, locally
// Both run without an agent: the WebAssembly runtime in this process, the manifest's limits
// capped by the default operator caps, directories granted with --grant DIR[:rw].
#include <arpa/inet.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/yaml_reader.h"
#include "edgeward_event.h"
#include "wasm/function_runner.h"
#include "wasm/plugin_manager.h"

namespace edgeward::cli {
namespace {

using nlohmann::json;

struct RunOptions {
  std::string wasm, manifest, events, output = "table";
  std::vector<std::string> grants, env;
  uint32_t generate = 0;
};

constexpr size_t kMaxModule = 64 << 20;

Result<std::vector<uint8_t>> readModule(const std::string& path) {
  EW_TRY(text, yaml::readFile(path, kMaxModule));
  return std::vector<uint8_t>(text->begin(), text->end());
}

Result<wasm::OperatorCaps> capsFrom(const std::vector<std::string>& grants) {
  wasm::OperatorCaps caps;
  for (const auto& g : grants) {
    std::string dir = g;
    bool rw = false;
    if (dir.ends_with(":rw")) {
      dir.resize(dir.size() - 3);
      rw = true;
    } else if (dir.ends_with(":ro")) {
      dir.resize(dir.size() - 3);
    }
    if (dir.empty() || dir[0] != '/')
      return failf("--grant {}: expected an absolute directory, optionally with :rw", g);
    caps.grants.push_back({dir, rw});
  }
  return caps;
}

void runFunction(const RunOptions& o) {
  auto manifest = orExit(wasm::loadManifest(o.manifest));
  auto bytes = orExit(readModule(o.wasm));
  auto caps = orExit(capsFrom(o.grants));
  wasm::FunctionRunner fr(caps);
  orExit(fr.deploy(manifest, bytes));
  std::string input(std::istreambuf_iterator<char>(std::cin), {});
  auto r = orExit(fr.invoke(manifest.name, std::move(input), o.env));
  std::fwrite(r.out.data(), 1, r.out.size(), stdout);
  std::fwrite(r.err.data(), 1, r.err.size(), stderr);
  std::fflush(stdout);
  if (r.exitCode != 0) throw CLI::RuntimeError(r.exitCode & 0xff ? r.exitCode & 0xff : 1);
}

// Synthetic firewall drops: a few sources, a mix of noisy and interesting ports.
std::vector<ew_event> generate(uint32_t n) {
  static constexpr uint16_t kPorts[] = {22, 80, 137, 443, 5353, 8081};
  std::vector<ew_event> out;
  for (uint32_t i = 0; i < n; i++) {
    ew_event ev{};
    ev.kind = EW_EV_DROP;
    ev.version = EW_EVENT_VERSION;
    ev.size = sizeof ev;
    ev.family = 4;
    uint16_t port = kPorts[i % std::size(kPorts)];
    ev.proto = port == 137 || port == 5353 ? 17 : 6;
    ev.rule = 0xffffffff;
    ev.ts_ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                         std::chrono::system_clock::now().time_since_epoch())
                                         .count());
    uint8_t src[4] = {10, 0, 0, static_cast<uint8_t>(1 + i % 3)}, dst[4] = {10, 0, 0, 100};
    std::memcpy(ev.saddr, src, 4);
    std::memcpy(ev.daddr, dst, 4);
    ev.sport = static_cast<uint16_t>(40000 + i);
    ev.dport = port;
    ev.pkt_len = 60;
    out.push_back(ev);
  }
  return out;
}

std::string describeEvent(std::span<const uint8_t> b) {
  // Anything but an ew_event record (a plugin's JSON, say) is shown as text.
  if (b.size() < sizeof(ew_event) || b[2] != EW_EVENT_VERSION || b[3] < sizeof(ew_event))
    return std::string(b.begin(), b.end());
  ew_event ev;
  std::memcpy(&ev, b.data(), sizeof ev);
  char s[INET6_ADDRSTRLEN] = "?", d[INET6_ADDRSTRLEN] = "?";
  int af = ev.family == 6 ? AF_INET6 : AF_INET;
  inet_ntop(af, ev.saddr, s, sizeof s);
  inet_ntop(af, ev.daddr, d, sizeof d);
  return fmt::format("kind {} {} {}:{} -> {}:{} rule {} value {}", ev.kind,
                     ev.proto == 6    ? "tcp"
                     : ev.proto == 17 ? "udp"
                                      : std::to_string(ev.proto),
                     s, ev.sport, d, ev.dport,
                     ev.rule == 0xffffffff ? std::string("-") : std::to_string(ev.rule), ev.value);
}

void runPlugin(const RunOptions& o) {
  if (o.events.empty() == (o.generate == 0)) {
    fmt::print(stderr, "edgeward: give either --events FILE or --generate N\n");
    throw CLI::RuntimeError(2);
  }
  auto manifest = orExit(wasm::loadManifest(o.manifest));
  auto bytes = orExit(readModule(o.wasm));
  auto caps = orExit(capsFrom(o.grants));
  std::vector<std::vector<uint8_t>> events;
  if (o.generate) {
    for (const auto& ev : generate(o.generate)) {
      auto* p = reinterpret_cast<const uint8_t*>(&ev);
      events.emplace_back(p, p + sizeof ev);
    }
  } else {
    auto raw = orExit(yaml::readFile(o.events, 256 << 20));
    if (raw.size() % sizeof(ew_event))
      orExit(Result<void>(failf("{}: {} bytes is not a whole number of {}-byte ew_event records",
                                o.events, raw.size(), sizeof(ew_event))));
    for (size_t i = 0; i < raw.size(); i += sizeof(ew_event))
      events.emplace_back(raw.begin() + static_cast<long>(i),
                          raw.begin() + static_cast<long>(i + sizeof(ew_event)));
  }
  const bool asJson = o.output == "json";
  wasm::PluginManager::Callbacks cb;
  cb.emit = [&](const std::string& plugin, std::string_view topic, std::span<const uint8_t> b) {
    if (asJson) {
      fmt::print("{}\n", json{{"emit", std::string(topic)},
                              {"plugin", plugin},
                              {"data", std::string(b.begin(), b.end())}}
                             .dump());
    } else {
      fmt::print("  emit {}: {}\n", topic, std::string(b.begin(), b.end()));
    }
  };
  // `plugin run` prints what a plugin publishes and acknowledges it at once.
  cb.publish = [&](const std::string&, std::string_view topic, std::span<const uint8_t> b,
                   wasm::PluginManager::Callbacks::PublishDone done) {
    fmt::print("  publish {}: {}\n", topic, std::string(b.begin(), b.end()));
    done(true);
  };
  cb.log = [](const std::string& plugin, int level, std::string_view msg) {
    static constexpr const char* kLevels[] = {"debug", "info", "warn", "error"};
    fmt::print(stderr, "{} [{}] {}\n", plugin, kLevels[level & 3], msg);
  };
  wasm::PluginManager pm(caps, cb);
  orExit(pm.load(manifest, bytes));
  auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < events.size(); i++) {
    auto r = pm.onEvent(events[i]);
    const char* verdict = r.verdict == wasm::Verdict::Pass   ? "pass"
                          : r.verdict == wasm::Verdict::Drop ? "drop"
                                                             : "replace";
    if (asJson) {
      json j{{"event", i + 1}, {"verdict", verdict}};
      if (r.verdict == wasm::Verdict::Replace) j["replacement"] = describeEvent(r.bytes);
      fmt::print("{}\n", j.dump());
    } else if (events.size() <= 1000) {
      fmt::print(
          "{:>5}  {:<7}  {}\n", i + 1, verdict,
          describeEvent(r.verdict == wasm::Verdict::Replace ? std::span<const uint8_t>(r.bytes)
                                                            : std::span<const uint8_t>(events[i])));
    }
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  pm.waitIdle(std::chrono::seconds(5));
  auto s = orExit(pm.stats(manifest.name));
  if (asJson) return;
  fmt::print("{} events in {:.1f} ms: {} passed, {} dropped, {} replaced, {} failed{}\n",
             events.size(), secs * 1e3, s.passed, s.dropped, s.replaced, s.failures,
             s.enabled ? "" : " (plugin disabled: " + s.disabledReason + ")");
  if (!s.lastError.empty()) fmt::print("last error: {}\n", s.lastError);
}

}  // namespace

void addFnCommands(CLI::App& app) {
  auto opts = std::make_shared<RunOptions>();
  auto* fn = app.add_subcommand("fn", "WebAssembly functions (WASI commands)");
  fn->require_subcommand(1);
  auto* run =
      fn->add_subcommand("run", "run a function locally: stdin -> stdout, exit code passed on");
  run->add_option("wasm", opts->wasm, "the module (.wasm)")->required();
  run->add_option("--manifest,-m", opts->manifest, "its manifest (YAML)")->required();
  run->add_option("--grant", opts->grants, "let the manifest have DIR (DIR:rw for writes)");
  run->add_option("--env", opts->env, "extra NAME=value for this call");
  run->callback([opts] { runFunction(*opts); });

  auto* plugin = app.add_subcommand("plugin", "WebAssembly event plugins");
  plugin->require_subcommand(1);
  auto* prun =
      plugin->add_subcommand("run", "run events through a plugin locally and print the verdicts");
  prun->add_option("wasm", opts->wasm, "the module (.wasm)")->required();
  prun->add_option("--manifest,-m", opts->manifest, "its manifest (YAML)")->required();
  prun->add_option("--events", opts->events, "a file of 80-byte ew_event records");
  prun->add_option("--generate", opts->generate, "N synthetic firewall drop events instead");
  prun->add_option("--grant", opts->grants, "let the manifest have DIR (DIR:rw for writes)");
  prun->add_option("-o,--output", opts->output, "table or json")
      ->check(CLI::IsMember({"table", "json"}));
  prun->callback([opts] { runPlugin(*opts); });
}

}  // namespace edgeward::cli
