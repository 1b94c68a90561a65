#include "agent/policy_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include "common/durable_file.h"

namespace edgeward::agent {
namespace {

using files::listDir;
using files::makeDir;
using files::pathError;
using files::readFile;
using files::writeAtomically;

constexpr size_t kMaxPolicyBytes = size_t(80) << 20;  // above the parser's 64 MiB
constexpr size_t kMaxSmallFile = size_t(1) << 20;

std::unexpected<Error> damaged(const std::string& path, std::string_view problem) {
  return fail(ErrorCode::Internal, fmt::format("{}: {}", path, problem));
}

// "42" -> 42; no sign, no leading zero, not 0.
std::optional<uint64_t> parseVersion(std::string_view s) {
  if (s.empty() || s.size() > 20 || s[0] == '0') return std::nullopt;
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// A file holding "<N>\n"; nullopt when it does not exist.
Result<std::optional<uint64_t>> readNumberFile(const std::string& path) {
  auto text = readFile(path, 64);
  if (!text) {
    if (text.error().code() == ErrorCode::NotFound) return std::optional<uint64_t>();
    return std::unexpected(text.error());
  }
  std::string_view s = *text;
  if (s.ends_with('\n')) s.remove_suffix(1);
  auto v = parseVersion(s);
  if (!v) {
    std::string shown(s.substr(0, 20));
    for (char& c : shown)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    return damaged(path, fmt::format("expected a version number, found \"{}\"", shown));
  }
  return std::optional<uint64_t>(*v);
}

std::string versionText(uint64_t v) { return fmt::format("{}\n", v); }

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

nlohmann::json toJson(const StoredVersion& v) {
  return {{"version", v.version},         {"hash", v.hash}, {"author", v.author},
          {"appliedAtMs", v.appliedAtMs}, {"name", v.name}, {"origin", v.origin}};
}

// The metadata of version `expect` from its JSON text.
Result<StoredVersion> fromJson(const std::string& path, const std::string& text, uint64_t expect) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return damaged(path, fmt::format("not valid JSON ({})", e.what()));
  }
  if (!j.is_object()) return damaged(path, "expected a JSON object");
  StoredVersion v;
  auto str = [&](const char* field, std::string& out) -> Result<void> {
    auto it = j.find(field);
    if (it == j.end() || !it->is_string())
      return damaged(path, fmt::format("field \"{}\" is missing or not a string", field));
    out = it->get<std::string>();
    return {};
  };
  auto version = j.find("version");
  if (version == j.end() || !version->is_number_unsigned())
    return damaged(path, "field \"version\" is missing or not a positive number");
  v.version = version->get<uint64_t>();
  if (v.version != expect)
    return damaged(path, fmt::format("holds version {}, expected {}", v.version, expect));
  auto at = j.find("appliedAtMs");
  if (at == j.end() || !at->is_number_integer())
    return damaged(path, "field \"appliedAtMs\" is missing or not a number");
  v.appliedAtMs = at->get<int64_t>();
  for (auto [field, out] : {std::pair{"hash", &v.hash}, std::pair{"author", &v.author},
                            std::pair{"name", &v.name}, std::pair{"origin", &v.origin}}) {
    EW_TRY(r, str(field, *out));
  }
  if (!v.hash.starts_with("sha256:") || v.hash.size() != 7 + 64)
    return damaged(
        path, fmt::format("field \"hash\" is not a sha256 hash: \"{}\"", v.hash.substr(0, 80)));
  return v;
}

enum class Kind { Yaml, Json, Tmp, Other };

Kind kindOf(std::string_view name, uint64_t* version) {
  if (name.ends_with(".tmp")) return Kind::Tmp;
  for (auto [suffix, kind] : {std::pair{".yaml", Kind::Yaml}, std::pair{".json", Kind::Json}}) {
    if (!name.ends_with(suffix)) continue;
    auto v = parseVersion(name.substr(0, name.size() - std::string_view(suffix).size()));
    if (!v) return Kind::Other;
    *version = *v;
    return kind;
  }
  return Kind::Other;
}

}  // namespace

std::string PolicyStore::hashOf(std::string_view text) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(text.data(), text.size(), md, &len, EVP_sha256(), nullptr) != 1) return {};
  std::string out = "sha256:";
  out.reserve(7 + 2 * len);
  for (unsigned int i = 0; i < len; i++) fmt::format_to(std::back_inserter(out), "{:02x}", md[i]);
  return out;
}

std::string PolicyStore::policiesDir() const { return dir_ + "/policies"; }
std::string PolicyStore::yamlPath(uint64_t v) const {
  return fmt::format("{}/policies/{}.yaml", dir_, v);
}
std::string PolicyStore::jsonPath(uint64_t v) const {
  return fmt::format("{}/policies/{}.json", dir_, v);
}

Result<StoredVersion> PolicyStore::readMeta(uint64_t v) const {
  const std::string path = jsonPath(v);
  EW_TRY(text, readFile(path, kMaxSmallFile));
  return fromJson(path, *text, v);
}

Result<PolicyStore> PolicyStore::open(const std::string& dir, uint32_t keep) {
  PolicyStore s;
  s.dir_ = dir;
  while (s.dir_.size() > 1 && s.dir_.ends_with('/')) s.dir_.pop_back();
  s.keep_ = keep;
  EW_TRY(loaded, s.load());
  return s;
}

Result<void> PolicyStore::load() {
  EW_TRY(d1, makeDir(dir_, 0700));
  const std::string lockPath = dir_ + "/lock";
  lock_ = UniqueFd(::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock_.valid()) return pathError(ErrorCode::Internal, lockPath, errno);
  if (::flock(lock_.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      return fail(ErrorCode::Unavailable,
                  fmt::format("{}: the policy store is in use by another process (it holds {})",
                              dir_, lockPath));
    return pathError(ErrorCode::Internal, lockPath, errno);
  }
  EW_TRY(d2, makeDir(policiesDir(), 0750));

  // Leftovers of writes that did not finish.
  for (const std::string& d : {dir_, policiesDir()}) {
    EW_TRY(names, listDir(d));
    for (const std::string& n : *names) {
      uint64_t v = 0;
      if (kindOf(n, &v) == Kind::Tmp && ::unlink((d + "/" + n).c_str()) != 0)
        problems_.push_back(fmt::format("{}/{}: cannot remove: {}", d, n, std::strerror(errno)));
    }
  }

  EW_TRY(last, readNumberFile(dir_ + "/last-version"));
  EW_TRY(current, readNumberFile(dir_ + "/current"));
  last_ = last->value_or(0);
  if (*current) last_ = std::max(last_, **current);

  EW_TRY(names, listDir(policiesDir()));
  std::set<uint64_t> yamls, jsons;
  for (const std::string& n : *names) {
    uint64_t v = 0;
    Kind k = kindOf(n, &v);
    if (k == Kind::Yaml) yamls.insert(v);
    if (k == Kind::Json) jsons.insert(v);
    if (k == Kind::Yaml || k == Kind::Json) last_ = std::max(last_, v);
  }
  for (uint64_t v : yamls) {
    if (jsons.contains(v) || (*current && **current == v)) continue;
    // Written before its metadata: a commit that did not finish.
    if (::unlink(yamlPath(v).c_str()) != 0)
      problems_.push_back(fmt::format("{}: cannot remove: {}", yamlPath(v), std::strerror(errno)));
  }
  for (uint64_t v : jsons) {
    if (!yamls.contains(v)) {
      problems_.push_back(fmt::format("{}: missing; version {} is ignored", yamlPath(v), v));
      continue;
    }
    auto meta = readMeta(v);
    if (!meta) {
      problems_.push_back(meta.error().message() + fmt::format("; version {} is ignored", v));
      continue;
    }
    versions_.push_back(std::move(*meta));  // ascending: std::set order
  }

  if (*current) {
    // The version to enforce must be whole: its metadata, its text, and the text's hash.
    auto got = get(**current);
    if (!got)
      return std::unexpected(
          got.error().context(fmt::format("{}/current names version {}", dir_, **current)));
    current_ = std::move(got->first);
  }
  prune();
  return {};
}

Result<std::pair<StoredVersion, std::string>> PolicyStore::get(uint64_t version) const {
  auto it = std::lower_bound(versions_.begin(), versions_.end(), version,
                             [](const StoredVersion& s, uint64_t v) { return s.version < v; });
  StoredVersion meta;
  if (it != versions_.end() && it->version == version) {
    meta = *it;
  } else {
    // Not among the readable versions: say why, naming the file.
    struct stat st {};
    if (::stat(jsonPath(version).c_str(), &st) != 0 && ::stat(yamlPath(version).c_str(), &st) != 0)
      return fail(ErrorCode::NotFound,
                  fmt::format("version {} is not stored in {}", version, policiesDir()));
    EW_TRY(m, readMeta(version));
    meta = std::move(*m);
  }
  const std::string path = yamlPath(version);
  auto text = readFile(path, kMaxPolicyBytes);
  if (!text) return fail(ErrorCode::Internal, text.error().message());
  if (std::string h = hashOf(*text); h != meta.hash)
    return damaged(path, fmt::format("content does not match the hash in {} ({} != {})",
                                     jsonPath(version), h, meta.hash));
  return std::pair{std::move(meta), std::move(*text)};
}

Result<std::vector<StoredVersion>> PolicyStore::list() const {
  return std::vector<StoredVersion>(versions_.rbegin(), versions_.rend());
}

Result<StoredVersion> PolicyStore::commit(std::string_view yaml, const std::string& name,
                                          const std::string& author, const std::string& origin) {
  const uint64_t v = last_ + 1;
  // Reserve the number first, so that no crash or failure below can ever hand it out twice.
  EW_TRY(reserved, writeAtomically(dir_ + "/last-version", versionText(v)));
  last_ = v;

  StoredVersion meta{v, hashOf(yaml), author, nowMs(), name, origin};
  // Names and authors come from outside: invalid UTF-8 is stored replaced, and the returned
  // metadata is what a later open() reads back.
  const std::string json =
      toJson(meta).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  auto parsed = fromJson(jsonPath(v), json, v);
  if (!parsed) return std::unexpected(parsed.error());
  meta = std::move(*parsed);

  auto undo = [&](const Error& e) -> std::unexpected<Error> {
    ::unlink(jsonPath(v).c_str());
    ::unlink(yamlPath(v).c_str());
    return std::unexpected(e.context(fmt::format("storing version {}", v)));
  };
  if (auto r = writeAtomically(yamlPath(v), yaml); !r) return undo(r.error());
  if (auto r = writeAtomically(jsonPath(v), json); !r) return undo(r.error());
  if (auto r = writeAtomically(dir_ + "/current", versionText(v)); !r) return undo(r.error());

  versions_.push_back(meta);
  current_ = meta;
  prune();
  return meta;
}

Result<StoredVersion> PolicyStore::setCurrent(uint64_t version) {
  EW_TRY(got, get(version));
  EW_TRY(written, writeAtomically(dir_ + "/current", versionText(version)));
  current_ = got->first;
  return got->first;
}

void PolicyStore::prune() {
  // The newest keep_ versions stay, and the current one whatever its age.
  if (keep_ == 0 || versions_.size() <= keep_) return;
  const size_t firstKept = versions_.size() - keep_;
  std::vector<StoredVersion> kept;
  for (size_t i = 0; i < versions_.size(); i++) {
    const StoredVersion& s = versions_[i];
    if (i >= firstKept || (current_ && current_->version == s.version)) {
      kept.push_back(s);
      continue;
    }
    // Metadata first: a crash in between leaves a yaml without json, which open() removes.
    if (::unlink(jsonPath(s.version).c_str()) != 0 && errno != ENOENT) {
      problems_.push_back(
          fmt::format("{}: cannot remove: {}", jsonPath(s.version), std::strerror(errno)));
      kept.push_back(s);
      continue;
    }
    if (::unlink(yamlPath(s.version).c_str()) != 0 && errno != ENOENT)
      problems_.push_back(
          fmt::format("{}: cannot remove: {}", yamlPath(s.version), std::strerror(errno)));
  }
  versions_ = std::move(kept);
}

}  // namespace edgeward::agent
