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

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "common/unique_fd.h"
#include "policy/policy.h"

// Returns the error of a Result<void> expression.
#define EW_CHECK(expr)                                                                  \
  do {                                                                                  \
    if (auto ew_check_ = (expr); !ew_check_) return std::unexpected(ew_check_.error()); \
  } while (0)

namespace edgeward::policy {

namespace {

constexpr std::string_view kApiVersion = "edgeward.io/v1";
constexpr std::string_view kKind = "Policy";
constexpr std::string_view kDocumentPath = "(document)";
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

// Optimal string alignment distance: Levenshtein plus adjacent transpositions ("form"/"from").
size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

// A candidate the word abbreviates, else the closest one within edit distance 2 if that is close
// relative to the word's length (so "id" does not suggest "to"). Ties go to the earlier one.
template <typename Range>
std::optional<std::string> suggest(std::string_view word, const Range& candidates) {
  // An abbreviation ("proto") is a better hint than a field a few edits away ("port").
  if (word.size() >= 3) {
    for (std::string_view c : candidates)
      if (c.size() > word.size() && c.starts_with(word)) return std::string(c);
  }
  std::optional<std::string> best;
  size_t bestDistance = 3;
  for (std::string_view c : candidates) {
    size_t longer = std::max(word.size(), c.size());
    size_t shorter = std::min(word.size(), c.size());
    if (longer - shorter > 2 || longer > 128) continue;
    size_t dist = editDistance(word, c);
    if (dist < bestDistance && dist * 2 <= word.size()) {
      best = std::string(c);
      bestDistance = dist;
    }
  }
  return best;
}

std::string didYouMean(const std::optional<std::string>& s) {
  return s ? fmt::format(" (did you mean \"{}\"?)", *s) : std::string();
}

std::string quoted(std::string_view s) {
  constexpr size_t kMax = 40;
  if (s.size() > kMax) {
    size_t cut = kMax;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // UTF-8
    return fmt::format("\"{}...\"", s.substr(0, cut));
  }
  return fmt::format("\"{}\"", s);
}

// How a node looks to the user, for "expected X, got Y".
std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return "an empty value";
    case YAML::NodeType::Scalar:
      return quoted(n.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

// Errors are one line: control characters from quoted YAML strings are shown escaped.
std::string oneLine(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if ((unsigned char)c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", (unsigned char)c);
    } else {
      out += c;
    }
  }
  return out;
}

bool isValidName(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

bool isDigits(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
}

std::string join(const std::string& path, std::string_view field) {
  return path.empty() ? std::string(field) : fmt::format("{}.{}", path, field);
}

std::string index(const std::string& path, size_t i) { return fmt::format("{}[{}]", path, i); }

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

// Notes where a document starts and whether it holds anything but an empty value.
class DocumentProbe : public YAML::EventHandler {
 public:
  YAML::Mark start = YAML::Mark::null_mark();
  YAML::Mark first = YAML::Mark::null_mark();  // first node
  bool content = false;

  void OnDocumentStart(const YAML::Mark& m) override { start = m; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& m, YAML::anchor_t) override { node(m, false); }
  void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { node(m, true); }
  void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                const std::string&) override {
    node(m, true);
  }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    node(m, true);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    node(m, true);
  }
  void OnMapEnd() override {}

 private:
  void node(const YAML::Mark& m, bool isContent) {
    if (first.is_null()) first = m;
    content = content || isContent;
  }
};

struct Field {
  YAML::Node key;
  YAML::Node value;
};

// The fields of one YAML map, checked against the names it may have.
class Fields {
 public:
  void add(std::string name, Field f) { items_.emplace_back(std::move(name), std::move(f)); }
  const Field* find(std::string_view name) const {
    for (const auto& [n, f] : items_)
      if (n == name) return &f;
    return nullptr;
  }

 private:
  std::vector<std::pair<std::string, Field>> items_;
};

// Explains a field that is known elsewhere ("to" in an ingress rule); empty when it is not.
using MisplacedHint = std::function<std::string(std::string_view)>;

class Parser {
 public:
  Parser(std::string_view text, const std::string& source) : text_(text), source_(source) {}

  Result<Policy> run() {
    YAML::Node root;
    try {
      EW_CHECK(checkDocuments());
      root = YAML::Load(std::string(text_));
    } catch (const YAML::Exception& e) {
      return syntaxError(e.mark, e.msg);
    }
    try {
      return parseDocument(root);
    } catch (const YAML::Exception& e) {
      // Not expected: every node is type-checked before it is read.
      return failf("{}: unexpected YAML error: {}", source_, e.what());
    }
  }

 private:
  // 1-based line of a node. yaml-cpp marks an empty (null) value at the token after it, often on
  // a later line, so for those we take the line of the last thing written before it: the
  // "key:" or "-" the empty value belongs to.
  int line(const YAML::Node& n) {
    const YAML::Mark m = n.Mark();
    if (m.is_null()) return 1;
    if (!n.IsNull()) return m.line + 1;
    if (lines_.empty()) {
      size_t start = 0;
      while (true) {
        size_t nl = text_.find('\n', start);
        lines_.push_back(text_.substr(start, nl == std::string_view::npos ? nl : nl - start));
        if (nl == std::string_view::npos) break;
        start = nl + 1;
      }
    }
    auto blank = [](std::string_view s) {
      size_t i = s.find_first_not_of(" \t\r");
      return i == std::string_view::npos || s[i] == '#';
    };
    int l = m.line;
    if (l >= int(lines_.size())) l = int(lines_.size()) - 1;
    if (l == m.line && !blank(lines_[l].substr(0, size_t(m.column)))) return l + 1;
    for (--l; l >= 0; --l)
      if (!blank(lines_[l])) return l + 1;
    return m.line + 1;
  }

  std::unexpected<Error> error(const YAML::Node& at, std::string_view path,
                               std::string_view problem) {
    return fail(oneLine(fmt::format("{}:{}: {}: {}", source_, line(at), path, problem)));
  }

  Result<void> expect(const YAML::Node& n, YAML::NodeType::value type, const std::string& path,
                      std::string_view what) {
    if (n.Type() == type) return {};
    return error(n, path, fmt::format("expected {}, got {}", what, describe(n)));
  }

  // A scalar as text; an empty value reads as "".
  Result<std::string> text(const YAML::Node& n, const std::string& path) {
    if (n.IsNull()) return std::string();
    EW_CHECK(expect(n, YAML::NodeType::Scalar, path, "a string"));
    return n.Scalar();
  }

  // Checks that `node` is a map whose keys are all known and none repeats.
  Result<Fields> fields(const YAML::Node& node, const std::string& path,
                        std::span<const std::string_view> known,
                        const MisplacedHint& misplaced = {}) {
    EW_CHECK(expect(node, YAML::NodeType::Map, path.empty() ? std::string(kDocumentPath) : path,
                    "a map"));
    Fields out;
    std::map<std::string, int, std::less<>> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      // Copies: it-> points into a temporary that dies with the statement.
      const YAML::Node key = it->first;
      if (!key.IsScalar())
        return error(key, path.empty() ? kDocumentPath : path,
                     fmt::format("expected a field name, got {}", describe(key)));
      const std::string& name = key.Scalar();
      std::string fieldPath = join(path, name);
      if (std::find(known.begin(), known.end(), name) == known.end()) {
        if (misplaced) {
          if (std::string why = misplaced(name); !why.empty()) return error(key, fieldPath, why);
        }
        return error(
            key, fieldPath,
            fmt::format("unknown field {}{}", quoted(name), didYouMean(suggest(name, known))));
      }
      if (auto s = seen.find(name); s != seen.end())
        return error(key, fieldPath,
                     fmt::format("duplicate field \"{}\" (first on line {})", name, s->second));
      seen.emplace(name, line(key));
      out.add(name, Field{key, it->second});
    }
    return out;
  }

  Result<Field> required(const Fields& f, const YAML::Node& map, const std::string& path,
                         std::string_view name) {
    if (const Field* field = f.find(name)) return *field;
    return error(map, join(path, name), "required field is missing");
  }

  Result<Action> action(const YAML::Node& n, const std::string& path) {
    EW_TRY(s, text(n, path));
    if (*s == "allow") return Action::Allow;
    if (*s == "deny") return Action::Deny;
    if (s->empty()) return error(n, path, "no value (expected allow or deny)");
    return error(n, path, fmt::format("unknown action {} (expected allow or deny)", quoted(*s)));
  }

  std::unexpected<Error> syntaxError(const YAML::Mark& mark, std::string_view msg) {
    int line = mark.is_null() ? 1 : mark.line + 1;
    return fail(oneLine(fmt::format("{}:{}: YAML syntax error: {}", source_, line, msg)));
  }

  // One pass over the document events, before building nodes: a policy is one document. This
  // also guards against yaml-cpp 0.7, whose YAML::LoadAll() never returns on a stray "," at
  // document level (the parser reports the same empty document forever without moving on).
  Result<void> checkDocuments() {
    std::istringstream in{std::string(text_)};
    YAML::Parser parser(in);
    std::optional<YAML::Mark> previousStart;
    for (int i = 0;; ++i) {
      DocumentProbe probe;
      if (!parser.HandleNextDocument(probe)) break;
      if (previousStart && probe.start.pos == previousStart->pos) {
        const YAML::Mark& m = probe.start;
        if (m.pos >= 0 && size_t(m.pos) < text_.size() && text_[size_t(m.pos)] > ' ')
          return syntaxError(m, fmt::format("unexpected \"{}\"", text_[size_t(m.pos)]));
        return syntaxError(m, "the parser cannot continue here");
      }
      previousStart = probe.start;
      // A trailing "---" makes an empty second document; tolerate that, not a second policy.
      if (i > 0 && probe.content) {
        return fail(
            fmt::format("{}:{}: {}: a policy file holds one YAML document, found a "
                        "second one here",
                        source_, probe.first.line + 1, kDocumentPath));
      }
    }
    return {};
  }

  Result<Policy> parseDocument(const YAML::Node& root) {
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

  Result<void> parseMetadata(const YAML::Node& node) {
    EW_TRY(f, fields(node, "metadata", kMetadataFields));
    EW_TRY(name, required(*f, node, "metadata", "name"));
    EW_TRY(s, text(name->value, "metadata.name"));
    if (s->empty()) return error(name->value, "metadata.name", "must not be empty");
    policy_.name = std::move(*s);
    return {};
  }

  Result<void> parseSpec(const YAML::Node& node) {
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

  Result<void> parseIdentities(const YAML::Node& node) {
    const std::string path = "spec.identities";
    EW_CHECK(expect(node, YAML::NodeType::Map, path, "a map of identity name to addresses"));
    for (auto it = node.begin(); it != node.end(); ++it) {
      const YAML::Node key = it->first;
      const YAML::Node value = it->second;
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
      EW_CHECK(expect(value, YAML::NodeType::Sequence, idPath, "a list of addresses or prefixes"));
      if (value.size() == 0)
        return error(value, idPath, "must list at least one address or prefix");
      for (size_t i = 0; i < value.size(); ++i) {
        const YAML::Node item = value[i];
        std::string itemPath = index(idPath, i);
        if (!item.IsScalar())
          return error(item, itemPath,
                       fmt::format("expected an address or prefix, got {}", describe(item)));
        auto prefix = parsePrefix(item.Scalar());
        if (!prefix) return error(item, itemPath, prefix.error().message());
        auto dup = std::find(id.prefixes.begin(), id.prefixes.end(), *prefix);
        if (dup != id.prefixes.end())
          return error(item, itemPath,
                       fmt::format("{} is listed twice (first at {})", prefix->str(),
                                   index(idPath, size_t(dup - id.prefixes.begin()))));
        id.prefixes.push_back(*prefix);
      }
      policy_.identities.push_back(std::move(id));
    }
    return {};
  }

  Result<void> parseRules(const YAML::Node& node, bool ingress) {
    const std::string path = ingress ? "spec.ingress" : "spec.egress";
    EW_CHECK(expect(node, YAML::NodeType::Sequence, path, "a list of rules"));
    for (size_t i = 0; i < node.size(); ++i) {
      EW_TRY(rule, parseRule(node[i], index(path, i), ingress));
      (ingress ? policy_.ingress : policy_.egress).push_back(std::move(*rule));
    }
    return {};
  }

  Result<Rule> parseRule(const YAML::Node& node, const std::string& path, bool ingress) {
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
      EW_CHECK(expect(ports->value, YAML::NodeType::Sequence, portsPath, "a list"));
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

  Result<void> parsePeers(const YAML::Node& node, const std::string& path,
                          std::vector<std::string>& out) {
    EW_CHECK(expect(node, YAML::NodeType::Sequence, path, "a list of identity names"));
    if (node.size() == 0)
      return error(node, path, "must list at least one identity (use any to match every address)");
    for (size_t i = 0; i < node.size(); ++i) {
      const YAML::Node item = node[i];
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

  Result<PortSpec> parsePortSpec(const YAML::Node& node, const std::string& path) {
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
      EW_CHECK(expect(port->value, YAML::NodeType::Scalar, portPath,
                      "a port number or range (443 or \"8000-8080\")"));
      auto range = parsePortText(port->value.Scalar());
      if (!range) return error(port->value, portPath, range.error().message());
      spec.range = *range;
    }
    return spec;
  }

  Result<uint32_t> synFloodValue(const Fields& f, const YAML::Node& map, std::string_view name) {
    EW_TRY(field, required(f, map, "spec.synFlood", name));
    const std::string path = join("spec.synFlood", name);
    EW_CHECK(expect(field->value, YAML::NodeType::Scalar, path, "a number"));
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

  Result<void> parseSynFlood(const YAML::Node& node) {
    EW_TRY(f, fields(node, "spec.synFlood", kSynFloodFields));
    SynFlood syn;
    EW_TRY(pps, synFloodValue(*f, node, "perSourcePps"));
    EW_TRY(burst, synFloodValue(*f, node, "burst"));
    syn.perSourcePps = *pps;
    syn.burst = *burst;
    policy_.synFlood = syn;
    return {};
  }

  std::string_view text_;
  const std::string& source_;
  std::vector<std::string_view> lines_;  // text_ split at '\n', built on first use
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
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return failErrno(path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return failErrno(path);
  if (S_ISDIR(st.st_mode)) return failErrno(path, EISDIR);

  // Read to EOF rather than trusting st_size, so pipes and /proc-like files work too.
  std::string text;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return failErrno(path);
    }
    if (n == 0) break;
    if (text.size() + size_t(n) > kMaxFileBytes)
      return failf("{}: file is larger than {} MiB", path, kMaxFileBytes >> 20);
    text.append(buf, size_t(n));
  }
  return parsePolicy(text, path);
}

}  // namespace edgeward::policy
