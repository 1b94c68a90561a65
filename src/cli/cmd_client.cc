// Commands that talk to a running agent through its gRPC API (docs/api.md):
// policy apply|patch|diff|get|rollback|versions, status, watch, program upgrade|set.
#include <signal.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>
#include <stop_token>
#include <thread>

#include <grpc/support/log.h>
#include <nlohmann/json.hpp>

#include "api/grpc_client.h"
#include "cli/client_common.h"
#include "cli/commands.h"
#include "policy/diff.h"

namespace edgeward::cli {
namespace {

using nlohmann::json;

Result<std::string> readText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return failErrno(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string utc(int64_t ms) {
  if (ms <= 0) return "-";
  std::time_t t = ms / 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return std::string(buf) + " UTC";
}

std::string isoUtc(int64_t ms) {
  std::time_t t = ms / 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03}Z", buf, ms % 1000);
}

// "sha256:0123456789ab" — enough to tell versions apart in a table.
std::string shortHash(const std::string& h) { return h.size() > 19 ? h.substr(0, 19) : h; }

json toJson(const api::VersionInfo& v) {
  json j{{"version", v.version}, {"hash", v.hash},     {"author", v.author},
         {"name", v.name},       {"origin", v.origin}, {"appliedAtMs", v.appliedAtMs}};
  if (v.appliedAtMs > 0) j["appliedAt"] = isoUtc(v.appliedAtMs);
  return j;
}

json toJson(const std::vector<policy::RuleChange>& rules) {
  json a = json::array();
  for (const auto& r : rules)
    a.push_back(
        {{"name", r.name}, {"direction", r.direction}, {"before", r.before}, {"after", r.after}});
  return a;
}

json prefixes(const std::vector<policy::Prefix>& v) {
  json a = json::array();
  for (const auto& p : v) a.push_back(p.str());
  return a;
}

json toJson(const policy::PolicyDiff& d) {
  json changes = json::array();
  for (const auto& c : d.identityChanges)
    changes.push_back(
        {{"name", c.name}, {"added", prefixes(c.added)}, {"removed", prefixes(c.removed)}});
  return {{"empty", d.empty()},
          {"identitiesAdded", d.identitiesAdded},
          {"identitiesRemoved", d.identitiesRemoved},
          {"identityChanges", changes},
          {"rulesAdded", toJson(d.rulesAdded)},
          {"rulesRemoved", toJson(d.rulesRemoved)},
          {"rulesChanged", toJson(d.rulesChanged)},
          {"defaultAction", {{"before", d.defaultActionBefore}, {"after", d.defaultActionAfter}}},
          {"synFlood", {{"before", d.synFloodBefore}, {"after", d.synFloodAfter}}}};
}

std::string_view kindName(api::WatchEvent::Kind k) {
  switch (k) {
    case api::WatchEvent::Kind::PolicyApplied:
      return "policy-applied";
    case api::WatchEvent::Kind::PolicyRolledBack:
      return "policy-rolled-back";
    case api::WatchEvent::Kind::ProgramReplaced:
      return "program-replaced";
    case api::WatchEvent::Kind::UpstreamChanged:
      return "upstream-changed";
    case api::WatchEvent::Kind::PluginDisabled:
      return "plugin-disabled";
  }
  return "unknown";
}

void printJson(const json& j) { fmt::print("{}\n", j.dump()); }

// --- policy ------------------------------------------------------------------------------------

// The answer to an apply or a patch: the diff, and what became of it.
void printChange(const api::ApplyResult& r, bool dryRun, std::string_view verb) {
  if (gOutput == "json") {
    printJson({{"dryRun", dryRun},
               {"changed", r.changed},
               {"version", toJson(r.version)},
               {"applyMs", r.applyMs},
               {"diff", toJson(r.diff)}});
    return;
  }
  if (dryRun) {
    fmt::print("{}", policy::renderDiff(r.diff));
    fmt::print("dry run against version {}; nothing applied\n", r.version.version);
    return;
  }
  if (!r.changed) {
    fmt::print("policy unchanged (version {})\n", r.version.version);
    return;
  }
  fmt::print("{}", policy::renderDiff(r.diff));
  fmt::print("{} policy \"{}\" as version {} ({}) in {:.1f} ms\n", verb, r.version.name,
             r.version.version, shortHash(r.version.hash), r.applyMs);
}

struct ApplyOptions {
  std::string file;
  std::optional<uint64_t> ifVersion;
  bool dryRun = false;
};

void apply(const ApplyOptions& o) {
  api::ApplyRequest req;
  req.yaml = orExit(readText(o.file));
  req.source = o.file;
  req.ifVersion = o.ifVersion;
  req.dryRun = o.dryRun;
  auto client = connect();
  printChange(orExitApi(client.applyPolicy(req)), o.dryRun, "applied");
}

struct PatchOptions {
  std::string identity;
  std::vector<std::string> add, remove;
  std::optional<uint64_t> ifVersion;
  bool dryRun = false;
};

void patch(const PatchOptions& o) {
  api::PatchRequest req;
  req.identities.push_back({o.identity, o.add, o.remove});
  req.ifVersion = o.ifVersion;
  req.dryRun = o.dryRun;
  auto client = connect();
  printChange(orExitApi(client.patchPolicy(req)), o.dryRun, "patched");
}

void diff(const std::string& file) {
  auto yaml = orExit(readText(file));
  auto client = connect();
  auto d = orExitApi(client.diffPolicy(yaml, file));
  if (gOutput == "json")
    printJson(toJson(d));
  else
    fmt::print("{}", policy::renderDiff(d));
}

void get(std::optional<uint64_t> version) {
  auto client = connect();
  auto [v, yaml] = orExitApi(client.getPolicy(version));
  if (gOutput == "json") {
    printJson({{"version", toJson(v)}, {"yaml", yaml}});
    return;
  }
  // The text as applied, so that `policy get > p.yaml` round-trips.
  fmt::print("{}", yaml);
  if (!yaml.empty() && yaml.back() != '\n') fmt::print("\n");
}

void rollback(std::optional<uint64_t> to) {
  auto client = connect();
  auto v = orExitApi(client.rollbackPolicy(to));
  fmt::print("rolled back: version {} is active ({}, policy \"{}\", {})\n", v.version, v.origin,
             v.name, shortHash(v.hash));
}

void versions() {
  auto client = connect();
  auto vs = orExitApi(client.listVersions());
  if (gOutput == "json") {
    json a = json::array();
    for (const auto& v : vs) a.push_back(toJson(v));
    printJson(a);
    return;
  }
  if (vs.empty()) {
    fmt::print("no policy applied yet\n");
    return;
  }
  fmt::print("  {:>7}  {:<23}  {:<19}  {:<20}  {:<16}  {}\n", "VERSION", "APPLIED", "HASH",
             "AUTHOR", "NAME", "ORIGIN");
  for (size_t i = 0; i < vs.size(); i++) {
    const auto& v = vs[i];
    fmt::print("{} {:>7}  {:<23}  {:<19}  {:<20}  {:<16}  {}\n", i + 1 == vs.size() ? '*' : ' ',
               v.version, utc(v.appliedAtMs), shortHash(v.hash), v.author, v.name, v.origin);
  }
}

// --- status, watch ------------------------------------------------------------------------------

void status() {
  auto client = connect();
  auto s = orExitApi(client.status());
  if (gOutput == "json") {
    json ifs = json::array();
    for (const auto& i : s.interfaces)
      ifs.push_back(
          {{"name", i.name}, {"netns", i.netns}, {"mode", i.mode}, {"attached", i.attached}});
    json j{{"policy", toJson(s.policy)},
           {"interfaces", ifs},
           {"program",
            {{"tag", s.programTag},
             {"loadedAt", s.programLoadedAtMs > 0 ? json(isoUtc(s.programLoadedAtMs)) : json()}}},
           {"packets", {{"passed", s.packetsPassed}, {"dropped", s.packetsDropped}}},
           {"conntrackEntries", s.conntrackEntries},
           {"upstream", s.upstream},
           {"startedAtMs", s.startedAtMs},
           {"switches", {{"synLimit", s.synLimit}}}};
    printJson(j);
    return;
  }
  const auto& p = s.policy;
  if (p.version == 0)
    fmt::print("policy      none\n");
  else
    fmt::print("policy      version {} \"{}\" {}, applied {} by {} ({})\n", p.version, p.name,
               shortHash(p.hash), utc(p.appliedAtMs), p.author, p.origin);
  fmt::print("program     tag {}, loaded {}\n", s.programTag.empty() ? "-" : s.programTag,
             utc(s.programLoadedAtMs));
  if (s.interfaces.empty()) fmt::print("interfaces  none\n");
  for (size_t i = 0; i < s.interfaces.size(); i++) {
    const auto& f = s.interfaces[i];
    fmt::print("{:<12}{}{} {} {}\n", i == 0 ? "interfaces" : "", f.name,
               f.netns.empty() ? "" : fmt::format(" (netns {})", f.netns), f.mode,
               f.attached ? "attached" : "detached");
  }
  fmt::print("packets     {} passed, {} dropped\n", s.packetsPassed, s.packetsDropped);
  fmt::print("conntrack   {} entries\n", s.conntrackEntries);
  fmt::print("syn limit   {}\n", s.synLimit ? "on" : "off");
  fmt::print("upstream    {}\n", s.upstream.empty() ? "none" : s.upstream);
  fmt::print("started     {}\n", utc(s.startedAtMs));
}

void watch() {
  SignalStop stop;  // before the client starts gRPC's threads
  auto client = connect();
  const bool asJson = gOutput == "json";
  auto r = client.watch(
      [&](const api::WatchEvent& e) {
        if (asJson)
          printJson({{"kind", kindName(e.kind)},
                     {"at", isoUtc(e.atMs)},
                     {"atMs", e.atMs},
                     {"version", toJson(e.version)},
                     {"message", e.message}});
        else
          fmt::print("{}  {:<18}  version {}  {}\n", utc(e.atMs), kindName(e.kind),
                     e.version.version, e.message);
        std::fflush(stdout);  // a watcher is usually piped
        return true;
      },
      stop.get_token(),
      [&] {
        if (!asJson) fmt::print(stderr, "watching {}; Ctrl-C to stop\n", client.server());
      });
  orExitApi(std::move(r));
}

// --- program ------------------------------------------------------------------------------------

void upgrade(const std::string& object) {
  auto client = connect();
  fmt::print("{}\n", orExitApi(client.upgradeProgram(object)));
}

void setSwitches(const std::string& synLimit) {
  std::optional<bool> syn;
  if (!synLimit.empty()) syn = synLimit == "on";
  if (!syn) orExit<void>(fail(ErrorCode::InvalidArgument, "nothing to set: give --syn-limit"));
  auto client = connect();
  orExitApi(client.setSwitches(syn));
  fmt::print("syn limit {}\n", *syn ? "on" : "off");
}

}  // namespace

void addClientCommands(CLI::App& app) {
  auto* pol = app.get_subcommand("policy");
  static ApplyOptions ao;
  auto* ap = withOutput(connected(pol->add_subcommand(
      "apply", "Apply a policy on the agent (or, with --dry-run, show what would change)")));
  ap->add_option("FILE", ao.file, "Policy file (YAML)")->required();
  ap->add_option("--if-version", ao.ifVersion,
                 "Refuse (exit 3) unless this is the agent's current version");
  ap->add_flag("--dry-run", ao.dryRun, "Show the diff against the active policy; change nothing");
  ap->callback([] { apply(ao); });

  static PatchOptions po;
  auto* pt = withOutput(connected(pol->add_subcommand(
      "patch",
      "Add prefixes to or remove prefixes from an identity of the agent's active policy")));
  pt->add_option("--identity", po.identity, "Identity to change (defined in the policy)")
      ->required();
  pt->add_option("--add", po.add, "Prefixes to add (\"10.0.0.0/24\", \"2001:db8::/48\")");
  pt->add_option("--remove", po.remove, "Prefixes to remove");
  pt->add_option("--if-version", po.ifVersion,
                 "Refuse (exit 3) unless this is the agent's current version");
  pt->add_flag("--dry-run", po.dryRun, "Show the diff against the active policy; change nothing");
  pt->callback([] { patch(po); });

  static std::string diffFile;
  auto* df = withOutput(
      connected(pol->add_subcommand("diff", "What applying FILE would change on the agent")));
  df->add_option("FILE", diffFile, "Policy file (YAML)")->required();
  df->callback([] { diff(diffFile); });

  static std::optional<uint64_t> getVersion;
  auto* gt = withOutput(connected(
      pol->add_subcommand("get", "Print the agent's active policy (or an earlier version)")));
  gt->add_option("--version", getVersion, "Version to print (default: the active one)");
  gt->callback([] { get(getVersion); });

  static std::optional<uint64_t> rollbackTo;
  auto* rb = connected(pol->add_subcommand(
      "rollback", "Re-activate an earlier policy version (default: the one before the active)"));
  rb->add_option("--to", rollbackTo, "Version to go back to");
  rb->callback([] { rollback(rollbackTo); });

  auto* vs = withOutput(
      connected(pol->add_subcommand("versions", "List the agent's policy versions, oldest first")));
  vs->callback(versions);

  auto* st = withOutput(connected(app.add_subcommand(
      "status", "Show the agent's policy, program, interfaces, counters and upstream")));
  st->callback(status);

  auto* wt = withOutput(connected(app.add_subcommand(
      "watch", "Print the agent's policy and program changes as they happen, until Ctrl-C")));
  wt->callback(watch);

  auto* prog = app.add_subcommand("program", "Manage the agent's firewall program");
  prog->require_subcommand(1);
  static std::string object;
  auto* up = connected(prog->add_subcommand(
      "upgrade", "Replace the firewall program, keeping its maps and attachments"));
  up->add_option("--object", object,
                 "BPF object on the agent's host (default: the installed program)");
  up->callback([] { upgrade(object); });

  static std::string synLimit;
  auto* set = connected(prog->add_subcommand("set", "Change run-time switches"));
  set->add_option("--syn-limit", synLimit, "Per-source SYN rate limit")
      ->check(CLI::IsMember({"on", "off"}))
      ->required();
  set->callback([] { setSwitches(synLimit); });
}

}  // namespace edgeward::cli
