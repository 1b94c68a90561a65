// Policy YAML -> Policy, validating everything the compiler relies on. The first problem found
// is returned as "<source>:<line>: <field path>: <problem>" (format documented in docs/policy.md).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <functional>
#include <map>
#include <new>
#include <optional>
#include <span>
#include <sstream>

#include "common/yaml_reader.h"
#include "policy/policy.h"

namespace edgeward::policy {

namespace {

using namespace edgeward::yaml;  // the shared strict-YAML helpers

constexpr std::string_view kApiVersion = "edgeward.io/v1";
constexpr std::string_view kKind = "Policy";
constexpr uint64_t kMaxSynFloodValue = 10'000'000;
constexpr size_t kMaxFileBytes = size_t(64) << 20;

constexpr std::string_view kTopFields[] = {"apiVersion", "kind", "metadata", "spec"};
constexpr std::string_view kMetadataFields[] = {"name"};
constexpr std::string_view kSpecFields[] = {"defaultAction", "identities", "ingress", "egress",
                                            "synFlood"};
constexpr std::string_view kIngressFields[] = {"name", "from", "ports", "action"};
constexpr std::string_view kEgressFields[] = {"name", "to", "ports", "action"};
constexpr std::string_view kPortFields[] = {"protocol", "port"};
constexpr std::string_view kSynFloodFields[] = {"perSourcePps", "burst"};

bool isValidName(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

// A port number as written; the error names the text so "-1" and "99999999999" read as typed.
Result<uint16_t> parsePortNumber(std::string_view text) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (!isDigits(text) || ec != std::errc() || v > 65535)
    return failf("port {} is out of range 0-65535", text);
  return uint16_t(v);
}

// "443", "8000-8080" (and the integer 443, which YAML hands over as the same text).
Result<PortRange> parsePortText(std::string_view text) {
  if (isDigits(text) || (text.size() > 1 && text[0] == '-' && isDigits(text.substr(1)))) {
    EW_TRY(port, parsePortNumber(text));
    return PortRange{*port, *port};
  }
  auto dash = text.find('-');
  if (dash != std::string_view::npos && isDigits(text.substr(0, dash)) &&
      isDigits(text.substr(dash + 1))) {
    EW_TRY(first, parsePortNumber(text.substr(0, dash)));
    EW_TRY(last, parsePortNumber(text.substr(dash + 1)));
    if (*first > *last) return failf("range {}: start is after end", text);
    return PortRange{*first, *last};
  }
  return failf("{} is not a port or a range", quoted(text));
}

class Parser : yaml::Reader {
 public:
  Parser(std::string_view text, const std::string& source)
      : yaml::Reader(text, source, "a policy file"), source_(source) {}

  Result<Policy> run() {
    EW_TRY(root, load());
    return parseDocument(*root);
  }

 private:
  Result<Action> action(const Node& n, const std::string& path) {
    EW_TRY(s, text(n, path));
    if (*s == "allow") return Action::Allow;
    if (*s == "deny") return Action::Deny;
    if (s->empty()) return error(n, path, "no value (expected allow or deny)");
    return error(n, path, fmt::format("unknown action {} (expected allow or deny)", quoted(*s)));
  }

  Result<Policy> parseDocument(const Node& root) {
    if (root.IsNull())
      return failf("{}:1: {}: the document is empty (expected apiVersion, kind, metadata and spec)",
                   source_, kDocumentPath);
    policy_.source = source_;

    EW_TRY(top, fields(root, "", kTopFields));
    EW_TRY(api, required(*top, root, "", "apiVersion"));
    EW_TRY(apiText, text(api->value, "apiVersion"));
    if (*apiText != kApiVersion)
      return error(
          api->value, "apiVersion",
          fmt::format("unsupported value {} (expected {})", quoted(*apiText), kApiVersion));
    EW_TRY(kind, required(*top, root, "", "kind"));
    EW_TRY(kindText, text(kind->value, "kind"));
    if (*kindText != kKind)
      return error(kind->value, "kind",
                   fmt::format("unsupported value {} (expected {})", quoted(*kindText), kKind));

    EW_TRY(metadata, required(*top, root, "", "metadata"));
    EW_CHECK(parseMetadata(metadata->value));
    EW_TRY(spec, required(*top, root, "", "spec"));
    EW_CHECK(parseSpec(spec->value));
    return std::move(policy_);
  }

  Result<void> parseMetadata(const Node& node) {
    EW_TRY(f, fields(node, "metadata", kMetadataFields));
    EW_TRY(name, required(*f, node, "metadata", "name"));
    EW_TRY(s, text(name->value, "metadata.name"));
    if (s->empty()) return error(name->value, "metadata.name", "must not be empty");
    policy_.name = std::move(*s);
    return {};
  }

  Result<void> parseSpec(const Node& node) {
    EW_TRY(f, fields(node, "spec", kSpecFields));
    if (const Field* d = f->find("defaultAction")) {
      EW_TRY(a, action(d->value, "spec.defaultAction"));
      policy_.defaultAction = *a;
    }
    if (const Field* ids = f->find("identities")) EW_CHECK(parseIdentities(ids->value));
    if (const Field* in = f->find("ingress")) EW_CHECK(parseRules(in->value, true));
    if (const Field* out = f->find("egress")) EW_CHECK(parseRules(out->value, false));
    if (const Field* syn = f->find("synFlood")) EW_CHECK(parseSynFlood(syn->value));
    return {};
  }

  Result<void> parseIdentities(const Node& node) {
    const std::string path = "spec.identities";
    EW_CHECK(expect(node, NodeType::Map, path, "a map of identity name to addresses"));
    for (auto it = node.begin(); it != node.end(); ++it) {
      const Node key = it->first;
      const Node value = it->second;
      if (!key.IsScalar())
        return error(key, path, fmt::format("expected an identity name, got {}", describe(key)));
      Identity id;
      id.name = key.Scalar();
      id.line = line(key);
      std::string idPath = join(path, id.name);
      if (id.name.empty()) return error(key, path, "an identity name must not be empty");
      if (id.name == kAnyIdentity)
        return error(key, idPath, "\"any\" is reserved: it is built in and matches every address");
      if (!isValidName(id.name))
        return error(key, idPath,
                     fmt::format("invalid name {}: use only letters, digits, '_', '.' and '-'",
                                 quoted(id.name)));
      for (const Identity& other : policy_.identities) {
        if (other.name == id.name)
          return error(key, idPath,
                       fmt::format("identity \"{}\" is defined twice (first on line {})", id.name,
                                   other.line));
      }
      EW_CHECK(expect(value, NodeType::Sequence, idPath, "a list of addresses or prefixes"));
      if (value.size() == 0)
        return error(value, idPath, "must list at least one address or prefix");
      std::map<Prefix, size_t> seen;  // prefix -> first index, for "listed twice"
      if (spansKnown()) {
        ListSource src;
        src.begin = uint32_t(value.mark().pos);
        src.column = uint32_t(value.mark().column);
        src.flow = value.isFlow();
        src.items.reserve(value.size());
        id.source = std::move(src);
      }
      for (size_t i = 0; i < value.size(); ++i) {
        const Node item = value[i];
        if (id.source)
          id.source->items.push_back({uint32_t(item.mark().pos), uint32_t(item.endPos())});
        std::string itemPath = index(idPath, i);
        if (!item.IsScalar())
          return error(item, itemPath,
                       fmt::format("expected an address or prefix, got {}", describe(item)));
        auto prefix = parsePrefix(item.Scalar());
        if (!prefix) return error(item, itemPath, prefix.error().message());
        auto [dup, fresh] = seen.try_emplace(*prefix, id.prefixes.size());
        if (!fresh)
          return error(item, itemPath,
                       fmt::format("{} is listed twice (first at {})", prefix->str(),
                                   index(idPath, dup->second)));
        id.prefixes.push_back(*prefix);
      }
      if (id.source)
        id.source->end =
            id.source->flow ? uint32_t(value.endPos()) : id.source->items.back().second;
      policy_.identities.push_back(std::move(id));
    }
    return {};
  }

  Result<void> parseRules(const Node& node, bool ingress) {
    const std::string path = ingress ? "spec.ingress" : "spec.egress";
    EW_CHECK(expect(node, NodeType::Sequence, path, "a list of rules"));
    for (size_t i = 0; i < node.size(); ++i) {
      EW_TRY(rule, parseRule(node[i], index(path, i), ingress));
      (ingress ? policy_.ingress : policy_.egress).push_back(std::move(*rule));
    }
    return {};
  }

  Result<Rule> parseRule(const Node& node, const std::string& path, bool ingress) {
    const std::string_view peersField = ingress ? "from" : "to";
    auto misplaced = [ingress](std::string_view name) -> std::string {
      if (ingress && name == "to")
        return "\"to\" is only valid in egress rules (ingress rules use \"from\")";
      if (!ingress && name == "from")
        return "\"from\" is only valid in ingress rules (egress rules use \"to\")";
      return {};
    };
    EW_TRY(f, fields(node, path, ingress ? std::span(kIngressFields) : std::span(kEgressFields),
                     misplaced));
    Rule rule;
    rule.line = line(node);

    EW_TRY(nameField, required(*f, node, path, "name"));
    const std::string namePath = join(path, "name");
    EW_TRY(name, text(nameField->value, namePath));
    if (name->empty()) return error(nameField->value, namePath, "must not be empty");
    if (!isValidName(*name))
      return error(nameField->value, namePath,
                   fmt::format("invalid name {}: use only letters, digits, '_', '.' and '-'",
                               quoted(*name)));
    if (auto used = ruleNames_.find(*name); used != ruleNames_.end())
      return error(nameField->value, namePath,
                   fmt::format("rule name \"{}\" is already used by {} (line {})", *name,
                               used->second.first, used->second.second));
    ruleNames_.emplace(*name, std::make_pair(path, rule.line));
    rule.name = std::move(*name);

    EW_TRY(peers, required(*f, node, path, peersField));
    EW_CHECK(parsePeers(peers->value, join(path, peersField), rule.peers));

    if (const Field* ports = f->find("ports")) {
      const std::string portsPath = join(path, "ports");
      EW_CHECK(expect(ports->value, NodeType::Sequence, portsPath, "a list"));
      if (ports->value.size() == 0)
        return error(ports->value, portsPath,
                     "must not be empty (omit ports to match every protocol and port)");
      for (size_t i = 0; i < ports->value.size(); ++i) {
        EW_TRY(spec, parsePortSpec(ports->value[i], index(portsPath, i)));
        rule.ports.push_back(*spec);
      }
    }

    EW_TRY(act, required(*f, node, path, "action"));
    EW_TRY(a, action(act->value, join(path, "action")));
    rule.action = *a;
    return rule;
  }

  Result<void> parsePeers(const Node& node, const std::string& path,
                          std::vector<std::string>& out) {
    EW_CHECK(expect(node, NodeType::Sequence, path, "a list of identity names"));
    if (node.size() == 0)
      return error(node, path, "must list at least one identity (use any to match every address)");
    for (size_t i = 0; i < node.size(); ++i) {
      const Node item = node[i];
      std::string itemPath = index(path, i);
      if (!item.IsScalar())
        return error(item, itemPath,
                     fmt::format("expected an identity name, got {}", describe(item)));
      const std::string& name = item.Scalar();
      bool known =
          name == kAnyIdentity || std::any_of(policy_.identities.begin(), policy_.identities.end(),
                                              [&](const Identity& id) { return id.name == name; });
      if (!known) {
        std::vector<std::string_view> names{kAnyIdentity};
        for (const Identity& id : policy_.identities) names.push_back(id.name);
        auto s = suggest(name, names);
        return error(item, itemPath,
                     s ? fmt::format("unknown identity {}{}", quoted(name), didYouMean(s))
                       : fmt::format("unknown identity {} (define it in spec.identities, or use "
                                     "any)",
                                     quoted(name)));
      }
      if (std::find(out.begin(), out.end(), name) != out.end())
        return error(item, itemPath, fmt::format("identity {} is listed twice", quoted(name)));
      out.push_back(name);
    }
    return {};
  }

  Result<PortSpec> parsePortSpec(const Node& node, const std::string& path) {
    EW_TRY(f, fields(node, path, kPortFields));
    PortSpec spec;
    EW_TRY(proto, required(*f, node, path, "protocol"));
    const std::string protoPath = join(path, "protocol");
    EW_TRY(p, text(proto->value, protoPath));
    if (*p == "tcp") {
      spec.protocol = Protocol::Tcp;
    } else if (*p == "udp") {
      spec.protocol = Protocol::Udp;
    } else if (*p == "icmp") {
      spec.protocol = Protocol::Icmp;
    } else if (*p == "icmpv6") {
      spec.protocol = Protocol::Icmpv6;
    } else if (*p == "any") {
      spec.protocol = Protocol::Any;
    } else {
      return error(proto->value, protoPath,
                   p->empty() ? std::string("no value (expected tcp, udp, icmp, icmpv6 or any)")
                              : fmt::format("unknown protocol {} (expected tcp, udp, icmp, icmpv6 "
                                            "or any)",
                                            quoted(*p)));
    }

    if (const Field* port = f->find("port")) {
      const std::string portPath = join(path, "port");
      if (spec.protocol != Protocol::Tcp && spec.protocol != Protocol::Udp)
        return error(port->value, portPath, "port is only valid with protocol tcp or udp");
      EW_CHECK(expect(port->value, NodeType::Scalar, portPath,
                      "a port number or range (443 or \"8000-8080\")"));
      auto range = parsePortText(port->value.Scalar());
      if (!range) return error(port->value, portPath, range.error().message());
      spec.range = *range;
    }
    return spec;
  }

  Result<uint32_t> synFloodValue(const Fields& f, const Node& map, std::string_view name) {
    EW_TRY(field, required(f, map, "spec.synFlood", name));
    const std::string path = join("spec.synFlood", name);
    EW_CHECK(expect(field->value, NodeType::Scalar, path, "a number"));
    const std::string& s = field->value.Scalar();
    if (!isDigits(s) && !(s.size() > 1 && s[0] == '-' && isDigits(s.substr(1))))
      return error(field->value, path, fmt::format("{} is not a whole number", quoted(s)));
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s[0] == '-' || ec != std::errc() || v < 1 || v > kMaxSynFloodValue)
      return error(field->value, path,
                   fmt::format("{} is out of range 1-{}", s, kMaxSynFloodValue));
    return uint32_t(v);
  }

  Result<void> parseSynFlood(const Node& node) {
    EW_TRY(f, fields(node, "spec.synFlood", kSynFloodFields));
    SynFlood syn;
    EW_TRY(pps, synFloodValue(*f, node, "perSourcePps"));
    EW_TRY(burst, synFloodValue(*f, node, "burst"));
    syn.perSourcePps = *pps;
    syn.burst = *burst;
    policy_.synFlood = syn;
    return {};
  }

  const std::string& source_;
  Policy policy_;
  std::map<std::string, std::pair<std::string, int>, std::less<>> ruleNames_;  // -> path, line
};

}  // namespace

Result<Policy> parsePolicy(std::string_view yaml, const std::string& source) {
  try {
    return Parser(yaml, source).run();
  } catch (const std::bad_alloc&) {
    return failf("{}: out of memory while parsing the policy", source);
  } catch (const std::exception& e) {
    return failf("{}: {}", source, e.what());
  }
}

Result<Policy> loadPolicyFile(const std::string& path) {
  EW_TRY(text, yaml::readFile(path, kMaxFileBytes));
  return parsePolicy(*text, path);
}

}  // namespace edgeward::policy
