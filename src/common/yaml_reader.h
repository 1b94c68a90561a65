// Strict YAML reading shared by every edgeward file format (policy, agent config, ...):
// one document, known fields only (with "did you mean"), and errors that read
// "<source>:<line>: <field path>: <problem>" on one line.
#pragma once

#include <algorithm>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/one_line.h"
#include "common/result.h"

namespace edgeward::yaml {

inline constexpr std::string_view kDocumentPath = "(document)";

// Where a node starts in the text (0-based), as yaml-cpp's YAML::Mark did.
struct Mark {
  int pos = -1;
  int line = -1;
  int column = -1;
  bool is_null() const { return pos == -1 && line == -1 && column == -1; }
};

struct NodeType {
  enum value { Undefined, Null, Scalar, Sequence, Map };
};

class Document;

// A read-only node of a Document (a plain handle: valid while the Document lives). The subset
// of Node's interface the readers use. A plain empty, "~" or "null" scalar is Null.
class Node {
 public:
  Node() = default;
  NodeType::value Type() const;
  bool IsNull() const { return Type() == NodeType::Null; }
  bool IsScalar() const { return Type() == NodeType::Scalar; }
  bool IsSequence() const { return Type() == NodeType::Sequence; }
  bool IsMap() const { return Type() == NodeType::Map; }
  const std::string& Scalar() const;
  yaml::Mark mark() const;
  // Byte offset just past the node in the text, and whether it is a flow collection ("[a, b]");
  // -1 / false when not known (a text read by yaml-cpp).
  int endPos() const;
  bool isFlow() const;
  // Items of a sequence, or entries of a map.
  size_t size() const;
  Node operator[](size_t i) const;  // item i of a sequence

  // Entries of a map, in file order (repeated keys included).
  class Iterator;
  Iterator begin() const;
  Iterator end() const;

 private:
  friend class Document;
  friend class Iterator;
  Node(const Document* d, uint32_t i) : doc_(d), idx_(i) {}
  const Document* doc_ = nullptr;
  uint32_t idx_ = 0;
};

class Node::Iterator {
 public:
  struct Entry {
    Node first, second;
  };
  struct Arrow {
    Entry e;
    const Entry* operator->() const { return &e; }
  };
  Iterator(const Node* map, size_t i) : map_(map), i_(i) {}
  Entry operator*() const;
  Arrow operator->() const { return {**this}; }
  Iterator& operator++() {
    ++i_;
    return *this;
  }
  bool operator!=(const Iterator& o) const { return i_ != o.i_; }
  bool operator==(const Iterator& o) const { return i_ == o.i_; }

 private:
  const Node* map_;
  size_t i_;
};

inline Node::Iterator Node::begin() const { return Iterator(this, 0); }
inline Node::Iterator Node::end() const { return Iterator(this, IsMap() ? size() : 0); }

// The node tree of one YAML document, built from libyaml's events (one pass, no intermediate
// tree). Where libyaml refuses the text, or the text uses something rare (aliases to undefined
// anchors, nesting deeper than yaml-cpp allows), the text is read by yaml-cpp as before, so that
// every syntax error keeps its message and line.
class Document {
 public:
  struct Data {
    NodeType::value type = NodeType::Null;
    yaml::Mark mark;
    int end = -1;  // byte offset past the node, when known
    bool flow = false;
    std::string scalar;
    std::vector<uint32_t> kids;  // sequence items; map keys and values alternating
  };
  Node root() const { return Node(this, root_); }
  const Data& at(uint32_t i) const { return nodes_[i]; }

  uint32_t add(Data d) {
    nodes_.push_back(std::move(d));
    return static_cast<uint32_t>(nodes_.size() - 1);
  }
  Data& mut(uint32_t i) { return nodes_[i]; }
  void setRoot(uint32_t r) { root_ = r; }
  void clear() {
    nodes_.clear();
    root_ = 0;
  }

 private:
  std::vector<Data> nodes_;
  uint32_t root_ = 0;
};

size_t editDistance(std::string_view a, std::string_view b);

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

std::string didYouMean(const std::optional<std::string>& s);
std::string quoted(std::string_view s);
// How a node looks to the user, for "expected X, got Y".
std::string describe(const Node& n);
// Errors are one line: control characters from quoted YAML strings are shown escaped.
using edgeward::oneLine;
bool isDigits(std::string_view s);
std::string join(const std::string& path, std::string_view field);
std::string index(const std::string& path, size_t i);

// Reads a whole file (pipes too), refusing files over maxBytes. Errors name the path.
Result<std::string> readFile(const std::string& path, size_t maxBytes);

struct Field {
  Node key;
  Node value;
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

// Reads one YAML document of `text`; `what` names the file kind in messages ("a policy file").
class Reader {
 public:
  Reader(std::string_view text, const std::string& source, std::string_view what)
      : text_(text), source_(source), what_(what) {}

  // The document's root node, or a syntax error with its line. Never throws.
  Result<Node> load();
  const std::string& source() const { return source_; }
  // Whether mark().pos and endPos() of every node locate it in the text, each node in one
  // place: read by libyaml, and no alias shares a node.
  bool spansKnown() const { return spansKnown_; }

  // 1-based line of a node (for empty values: the line of their "key:" or "-").
  int line(const Node& n);
  std::unexpected<Error> error(const Node& at, std::string_view path, std::string_view problem);
  Result<void> expect(const Node& n, NodeType::value type, const std::string& path,
                      std::string_view what);
  // A scalar as text; an empty value reads as "".
  Result<std::string> text(const Node& n, const std::string& path);
  // A scalar that must not be empty.
  Result<std::string> nonEmpty(const Node& n, const std::string& path);
  // Loads the document and returns parse(root).
  template <typename F>
  auto parseDocument(F&& parse) -> decltype(parse(std::declval<const Node&>())) {
    auto root = load();
    if (!root) return std::unexpected(root.error());
    return parse(*root);
  }
  // Checks that `node` is a map whose keys are all known and none repeats.
  Result<Fields> fields(const Node& node, const std::string& path,
                        std::span<const std::string_view> known,
                        const MisplacedHint& misplaced = {});
  Result<Field> required(const Fields& f, const Node& map, const std::string& path,
                         std::string_view name);
  std::unexpected<Error> syntaxError(const Mark& mark, std::string_view msg);

 private:
  Result<void> checkDocuments();
  // libyaml's events -> doc_; false when the text must go to yaml-cpp instead.
  bool loadFast();
  Result<Node> loadWithYamlCpp();

  std::string_view text_;
  const std::string& source_;
  std::string_view what_;
  std::vector<std::string_view> lines_;  // text_ split at '\n', built on first use
  Document doc_;
  bool spansKnown_ = false;
};

}  // namespace edgeward::yaml
