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

#include <yaml-cpp/yaml.h>

#include "common/result.h"

namespace edgeward::yaml {

inline constexpr std::string_view kDocumentPath = "(document)";

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
std::string describe(const YAML::Node& n);
// Errors are one line: control characters from quoted YAML strings are shown escaped.
std::string oneLine(std::string_view s);
bool isDigits(std::string_view s);
std::string join(const std::string& path, std::string_view field);
std::string index(const std::string& path, size_t i);

// Reads a whole file (pipes too), refusing files over maxBytes. Errors name the path.
Result<std::string> readFile(const std::string& path, size_t maxBytes);

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

// Reads one YAML document of `text`; `what` names the file kind in messages ("a policy file").
class Reader {
 public:
  Reader(std::string_view text, const std::string& source, std::string_view what)
      : text_(text), source_(source), what_(what) {}

  // The document's root node, or a syntax error with its line. Never throws.
  Result<YAML::Node> load();
  const std::string& source() const { return source_; }

  // 1-based line of a node (for empty values: the line of their "key:" or "-").
  int line(const YAML::Node& n);
  std::unexpected<Error> error(const YAML::Node& at, std::string_view path,
                               std::string_view problem);
  Result<void> expect(const YAML::Node& n, YAML::NodeType::value type, const std::string& path,
                      std::string_view what);
  // A scalar as text; an empty value reads as "".
  Result<std::string> text(const YAML::Node& n, const std::string& path);
  // A scalar that must not be empty.
  Result<std::string> nonEmpty(const YAML::Node& n, const std::string& path);
  // Loads the document and returns parse(root); a stray yaml-cpp exception becomes an error.
  template <typename F>
  auto parseDocument(F&& parse) -> decltype(parse(std::declval<const YAML::Node&>())) {
    auto root = load();
    if (!root) return std::unexpected(root.error());
    try {
      return parse(*root);
    } catch (const YAML::Exception& e) {
      return std::unexpected(Error(source_ + ": unexpected YAML error: " + e.what()));
    }
  }
  // Checks that `node` is a map whose keys are all known and none repeats.
  Result<Fields> fields(const YAML::Node& node, const std::string& path,
                        std::span<const std::string_view> known,
                        const MisplacedHint& misplaced = {});
  Result<Field> required(const Fields& f, const YAML::Node& map, const std::string& path,
                         std::string_view name);
  std::unexpected<Error> syntaxError(const YAML::Mark& mark, std::string_view msg);

 private:
  Result<void> checkDocuments();

  std::string_view text_;
  const std::string& source_;
  std::string_view what_;
  std::vector<std::string_view> lines_;  // text_ split at '\n', built on first use
};

}  // namespace edgeward::yaml
