// edgeward policy check FILE
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "policy/compiler.h"
#include "policy/policy.h"

namespace edgeward::cli {
namespace {

std::string humanBytes(size_t b) {
  if (b >= (1u << 20)) return fmt::format("{:.1f} MiB", b / 1048576.0);
  if (b >= 1024) return fmt::format("{:.1f} KiB", b / 1024.0);
  return fmt::format("{} B", b);
}

void check(const std::string& file, const std::string& output) {
  auto policy = orExit(policy::loadPolicyFile(file));
  auto compiled = orExit(policy::compile(policy));
  const auto& st = compiled.stats;
  size_t ingress = policy.ingress.size(), egress = policy.egress.size();
  if (output == "json") {
    nlohmann::json j;
    j["name"] = policy.name;
    j["valid"] = true;
    j["defaultAction"] = policy::actionName(policy.defaultAction);
    j["identities"] = st.identities;
    j["prefixes"] = {{"ipv4", st.prefixes4}, {"ipv6", st.prefixes6}};
    j["rules"] = {{"ingress", ingress}, {"egress", egress}};
    j["maps"] = {{"intervals4", compiled.iv4.size()},
                 {"intervals6", compiled.iv6.size()},
                 {"groups", compiled.groups()},
                 {"portEntries", compiled.piv.size()},
                 {"bytes", st.bytes}};
    fmt::print("{}\n", j.dump());
    return;
  }
  fmt::print("{}: policy \"{}\" is valid\n", file, policy.name);
  fmt::print("  default action   {}\n", policy::actionName(policy.defaultAction));
  fmt::print("  identities       {} (+ any)\n", st.identities);
  fmt::print("  prefixes         {} IPv4, {} IPv6\n", st.prefixes4, st.prefixes6);
  fmt::print("  rules            {} ingress, {} egress\n", ingress, egress);
  if (policy.synFlood)
    fmt::print("  SYN limit        {} per second per source, burst {}\n",
               policy.synFlood->perSourcePps, policy.synFlood->burst);
  fmt::print(
      "  compiled maps    {} IPv4 intervals, {} IPv6 intervals, {} rule groups, "
      "{} port entries\n",
      compiled.iv4.size(), compiled.iv6.size(), compiled.groups(), compiled.piv.size());
  fmt::print("  map memory       {} per generation (two generations are loaded)\n",
             humanBytes(st.bytes));
}

}  // namespace

void addPolicyCommands(CLI::App& app) {
  auto* policy = app.add_subcommand("policy", "Validate and inspect policies");
  policy->require_subcommand(1);
  auto* chk = policy->add_subcommand("check", "Validate and compile a policy; print its size");
  static std::string file, output = "table";
  chk->add_option("FILE", file, "Policy file (YAML)")->required();
  chk->add_option("-o,--output", output, "Output format")->check(CLI::IsMember({"table", "json"}));
  chk->callback([] { check(file, output); });
}

}  // namespace edgeward::cli
