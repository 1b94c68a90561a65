#include "common/yaml_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <unordered_map>
#include <sstream>

#include <yaml.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "common/unique_fd.h"

namespace edgeward::yaml {
namespace {

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

Mark markOf(const YAML::Mark& m) { return {m.pos, m.line, m.column}; }

// yaml-cpp's tree -> Document (the slow path: only for texts libyaml refused or that need
// yaml-cpp's exact behaviour).
uint32_t convert(Document& doc, const YAML::Node& n) {
  Document::Data d;
  d.mark = markOf(n.Mark());
  switch (n.Type()) {
    case YAML::NodeType::Scalar:
      d.type = NodeType::Scalar;
      d.scalar = n.Scalar();
      break;
    case YAML::NodeType::Sequence:
      d.type = NodeType::Sequence;
      break;
    case YAML::NodeType::Map:
      d.type = NodeType::Map;
      break;
    case YAML::NodeType::Null:
      d.type = NodeType::Null;
      break;
    case YAML::NodeType::Undefined:
      d.type = NodeType::Undefined;
      break;
  }
  uint32_t idx = doc.add(std::move(d));
  if (n.IsSequence()) {
    for (size_t i = 0; i < n.size(); ++i) {
      uint32_t kid = convert(doc, n[i]);
      doc.mut(idx).kids.push_back(kid);
    }
  } else if (n.IsMap()) {
    for (auto it = n.begin(); it != n.end(); ++it) {
      const YAML::Node key = it->first;
      const YAML::Node value = it->second;
      uint32_t k = convert(doc, key);
      uint32_t v = convert(doc, value);
      doc.mut(idx).kids.push_back(k);
      doc.mut(idx).kids.push_back(v);
    }
  }
  return idx;
}

bool isNullText(std::string_view s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

// Deeper documents go to yaml-cpp, which refuses nesting beyond 2000 levels with its own error.
constexpr size_t kMaxFastDepth = 1000;

}  // namespace

NodeType::value Node::Type() const { return doc_ ? doc_->at(idx_).type : NodeType::Undefined; }

const std::string& Node::Scalar() const {
  static const std::string kEmpty;
  return doc_ ? doc_->at(idx_).scalar : kEmpty;
}

Mark Node::mark() const { return doc_ ? doc_->at(idx_).mark : Mark{}; }
int Node::endPos() const { return doc_ ? doc_->at(idx_).end : -1; }
bool Node::isFlow() const { return doc_ && doc_->at(idx_).flow; }

size_t Node::size() const {
  if (!doc_) return 0;
  const auto& d = doc_->at(idx_);
  return d.type == NodeType::Map ? d.kids.size() / 2 : d.kids.size();
}

Node Node::operator[](size_t i) const {
  if (!IsSequence() || i >= size()) return {};
  return Node(doc_, doc_->at(idx_).kids[i]);
}

Node::Iterator::Entry Node::Iterator::operator*() const {
  const auto& kids = map_->doc_->at(map_->idx_).kids;
  return {Node(map_->doc_, kids[2 * i_]), Node(map_->doc_, kids[2 * i_ + 1])};
}

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
std::string describe(const Node& n) {
  switch (n.Type()) {
    case NodeType::Null:
      return "an empty value";
    case NodeType::Scalar:
      return quoted(n.Scalar());
    case NodeType::Sequence:
      return "a list";
    case NodeType::Map:
      return "a map";
    case NodeType::Undefined:
      break;
  }
  return "nothing";
}

bool isDigits(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
}

std::string join(const std::string& path, std::string_view field) {
  return path.empty() ? std::string(field) : fmt::format("{}.{}", path, field);
}

std::string index(const std::string& path, size_t i) { return fmt::format("{}[{}]", path, i); }

Result<std::string> readFile(const std::string& path, size_t maxBytes) {
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
    if (text.size() + size_t(n) > maxBytes)
      return failf("{}: file is larger than {} MiB", path, maxBytes >> 20);
    text.append(buf, size_t(n));
  }
  return text;
}

Result<Node> Reader::load() {
  spansKnown_ = true;
  if (loadFast()) return doc_.root();
  spansKnown_ = false;
  doc_.clear();
  return loadWithYamlCpp();
}

bool Reader::loadFast() {
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) return false;
  yaml_parser_set_input_string(&parser, reinterpret_cast<const unsigned char*>(text_.data()),
                               text_.size());
  std::vector<uint32_t> open;  // containers being filled
  std::unordered_map<std::string, uint32_t> anchors;
  std::optional<uint32_t> root;
  int documents = 0;
  bool ok = true;
  for (bool done = false; ok && !done;) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) {
      ok = false;
      break;
    }
    const Mark mark{int(ev.start_mark.index), int(ev.start_mark.line), int(ev.start_mark.column)};
    auto attach = [&](uint32_t idx) {
      if (open.empty())
        root = idx;
      else
        doc_.mut(open.back()).kids.push_back(idx);
    };
    auto anchor = [&](const yaml_char_t* name, uint32_t idx) {
      if (name) anchors[reinterpret_cast<const char*>(name)] = idx;
    };
    switch (ev.type) {
      case YAML_STREAM_END_EVENT:
        done = true;
        break;
      case YAML_DOCUMENT_START_EVENT:
        // A second document: yaml-cpp's document check says what is wrong with it.
        if (++documents > 1) ok = false;
        break;
      case YAML_ALIAS_EVENT: {
        auto it = anchors.find(reinterpret_cast<const char*>(ev.data.alias.anchor));
        if (it == anchors.end())
          ok = false;  // yaml-cpp names the undefined anchor
        else
          attach(it->second);  // the same node, as yaml-cpp shares it
        spansKnown_ = false;
        break;
      }
      case YAML_SCALAR_EVENT: {
        Document::Data d;
        d.mark = mark;
        d.end = int(ev.end_mark.index);
        d.scalar.assign(reinterpret_cast<const char*>(ev.data.scalar.value), ev.data.scalar.length);
        // yaml-cpp: an untagged plain "", "~", "null", "Null" or "NULL" is a null node.
        d.type = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !ev.data.scalar.tag &&
                         isNullText(d.scalar)
                     ? NodeType::Null
                     : NodeType::Scalar;
        if (d.type == NodeType::Null) d.scalar.clear();
        uint32_t idx = doc_.add(std::move(d));
        anchor(ev.data.scalar.anchor, idx);
        attach(idx);
        break;
      }
      case YAML_SEQUENCE_START_EVENT:
      case YAML_MAPPING_START_EVENT: {
        Document::Data d;
        d.mark = mark;
        const bool seq = ev.type == YAML_SEQUENCE_START_EVENT;
        d.type = seq ? NodeType::Sequence : NodeType::Map;
        d.flow = seq ? ev.data.sequence_start.style == YAML_FLOW_SEQUENCE_STYLE
                     : ev.data.mapping_start.style == YAML_FLOW_MAPPING_STYLE;
        uint32_t idx = doc_.add(std::move(d));
        anchor(seq ? ev.data.sequence_start.anchor : ev.data.mapping_start.anchor, idx);
        attach(idx);
        open.push_back(idx);
        if (open.size() > kMaxFastDepth) ok = false;
        break;
      }
      case YAML_SEQUENCE_END_EVENT:
      case YAML_MAPPING_END_EVENT:
        if (!open.empty()) {
          doc_.mut(open.back()).end = int(ev.end_mark.index);
          open.pop_back();
        }
        break;
      default:
        break;
    }
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  if (!ok) return false;
  if (!root) {
    Document::Data empty;  // no document at all, as yaml-cpp loads ""
    root = doc_.add(std::move(empty));
  }
  doc_.setRoot(*root);
  return true;
}

Result<Node> Reader::loadWithYamlCpp() {
  try {
    // The event pass that checks for a single document costs as much as the load itself, so it
    // runs only where it can find something: when the text has a document marker, or the root
    // is not a map (where yaml-cpp may stop early silently).
    auto marker = [&] {
      for (size_t at = 0; at < text_.size();) {
        std::string_view line = text_.substr(at, text_.find('\n', at) - at);
        if (line.starts_with("---") || line.starts_with("...")) return true;
        size_t nl = text_.find('\n', at);
        if (nl == std::string_view::npos) break;
        at = nl + 1;
      }
      return false;
    };
    const bool markers = marker();
    if (markers) EW_CHECK(checkDocuments());
    YAML::Node root = YAML::Load(std::string(text_));
    if (!markers && !root.IsMap()) EW_CHECK(checkDocuments());
    doc_.setRoot(convert(doc_, root));
    return doc_.root();
  } catch (const YAML::Exception& e) {
    return syntaxError(markOf(e.mark), e.msg);
  }
}

// 1-based line of a node. yaml-cpp marks an empty (null) value at the token after it, often on
// a later line, so for those we take the line of the last thing written before it: the
// "key:" or "-" the empty value belongs to.
int Reader::line(const Node& n) {
  const Mark m = n.mark();
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

std::unexpected<Error> Reader::error(const Node& at, std::string_view path,
                                     std::string_view problem) {
  return fail(oneLine(fmt::format("{}:{}: {}: {}", source_, line(at), path, problem)));
}

Result<void> Reader::expect(const Node& n, NodeType::value type, const std::string& path,
                            std::string_view what) {
  if (n.Type() == type) return {};
  return error(n, path, fmt::format("expected {}, got {}", what, describe(n)));
}

// A scalar as text; an empty value reads as "".
Result<std::string> Reader::text(const Node& n, const std::string& path) {
  if (n.IsNull()) return std::string();
  EW_CHECK(expect(n, NodeType::Scalar, path, "a string"));
  return n.Scalar();
}

Result<std::string> Reader::nonEmpty(const Node& n, const std::string& path) {
  EW_TRY(s, text(n, path));
  if (s->empty()) return error(n, path, "must not be empty");
  return *s;
}

// Checks that `node` is a map whose keys are all known and none repeats.
Result<Fields> Reader::fields(const Node& node, const std::string& path,
                              std::span<const std::string_view> known,
                              const MisplacedHint& misplaced) {
  EW_CHECK(expect(node, NodeType::Map, path.empty() ? std::string(kDocumentPath) : path, "a map"));
  Fields out;
  std::map<std::string, int, std::less<>> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    // Copies: it-> points into a temporary that dies with the statement.
    const Node key = it->first;
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

Result<Field> Reader::required(const Fields& f, const Node& map, const std::string& path,
                               std::string_view name) {
  if (const Field* field = f.find(name)) return *field;
  return error(map, join(path, name), "required field is missing");
}

std::unexpected<Error> Reader::syntaxError(const Mark& mark, std::string_view msg) {
  int line = mark.is_null() ? 1 : mark.line + 1;
  return fail(oneLine(fmt::format("{}:{}: YAML syntax error: {}", source_, line, msg)));
}

// One pass over the document events, before building nodes: a policy is one document. This
// also guards against yaml-cpp 0.7, whose YAML::LoadAll() never returns on a stray "," at
// document level (the parser reports the same empty document forever without moving on).
Result<void> Reader::checkDocuments() {
  std::istringstream in{std::string(text_)};
  YAML::Parser parser(in);
  std::optional<YAML::Mark> previousStart;
  for (int i = 0;; ++i) {
    DocumentProbe probe;
    if (!parser.HandleNextDocument(probe)) break;
    if (previousStart && probe.start.pos == previousStart->pos) {
      const YAML::Mark& m = probe.start;
      if (m.pos >= 0 && size_t(m.pos) < text_.size() && text_[size_t(m.pos)] > ' ')
        return syntaxError(markOf(m), fmt::format("unexpected \"{}\"", text_[size_t(m.pos)]));
      return syntaxError(markOf(m), "the parser cannot continue here");
    }
    previousStart = probe.start;
    // A trailing "---" makes an empty second document; tolerate that, not a second policy.
    if (i > 0 && probe.content) {
      return fail(
          fmt::format("{}:{}: {}: a policy file holds one YAML document, found a "
                      "second one here",
                      source_, probe.first.line + 1, kDocumentPath, what_));
    }
  }
  return {};
}

}  // namespace edgeward::yaml
