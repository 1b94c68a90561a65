#include "wasm/manifest.h"

#include <charconv>

#include "wasm/module_name.h"
#include "common/yaml_reader.h"
#include "edgeward_event.h"

namespace edgeward::wasm {
namespace {

using namespace edgeward::yaml;

constexpr std::string_view kTop[] = {"apiVersion", "kind",   "name",    "version",
                                     "events",     "limits", "failure", "wasi"};
constexpr std::string_view kLimits[] = {"memory", "cpuPerCall", "instances", "callsPerSecond",
                                        "output"};
constexpr std::string_view kFailure[] = {"policy", "disableAfter"};
constexpr std::string_view kWasi[] = {"args", "env", "dirs"};
constexpr std::string_view kDir[] = {"host", "guest", "writable"};

constexpr std::pair<std::string_view, uint16_t> kEventKinds[] = {
    {"drop", EW_EV_DROP},
    {"conn_new", EW_EV_CONN_NEW},
    {"tcp_open", EW_EV_TCP_OPEN},
    {"tcp_close", EW_EV_TCP_CLOSE},
    {"tcp_retransmit", EW_EV_TCP_RETRANSMIT},
    {"custom", EW_EV_CUSTOM}};

Result<uint64_t> parseUnit(std::string_view s,
                           std::span<const std::pair<std::string_view, uint64_t>> units,
                           std::string_view what) {
  size_t digits = 0;
  while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') digits++;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + digits, v);
  std::string_view unit = s.substr(digits);
  if (digits == 0 || ec != std::errc()) return failf("{} is not a {}", quoted(s), what);
  for (auto [name, mult] : units) {
    if (unit == name) {
      if (mult && v > UINT64_MAX / mult) return failf("{} is too large", quoted(s));
      return v * mult;
    }
  }
  std::string names;
  for (auto [name, mult] : units)
    names += fmt::format("{}{}", names.empty() ? "" : ", ", name.empty() ? "(none)" : name);
  return failf("{} has an unknown unit (expected one of {})", quoted(s), names);
}

class ManifestParser : Reader {
 public:
  ManifestParser(std::string_view text, const std::string& source)
      : Reader(text, source, "a manifest") {}

  Result<Manifest> run() {
    return parseDocument([this](const Node& root) { return parse(root); });
  }

 private:
  Result<bool> boolean(const Node& n, const std::string& path) {
    EW_TRY(s, text(n, path));
    if (*s == "true") return true;
    if (*s == "false") return false;
    return error(n, path, fmt::format("{} is not true or false", quoted(*s)));
  }

  Result<uint64_t> value(const Node& n, const std::string& path,
                         Result<uint64_t> (*conv)(std::string_view)) {
    EW_TRY(s, nonEmpty(n, path));
    auto v = conv(*s);
    if (!v) return error(n, path, v.error().message());
    return *v;
  }

  Result<uint32_t> count(const Node& n, const std::string& path, uint32_t max) {
    EW_TRY(s, nonEmpty(n, path));
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
    if (!isDigits(*s) || ec != std::errc() || v > max)
      return error(n, path, fmt::format("{} is not a number in 0-{}", quoted(*s), max));
    return static_cast<uint32_t>(v);
  }

  Result<Manifest> parse(const Node& root) {
    if (root.IsNull())
      return failf(
          "{}:1: {}: the manifest is empty (expected apiVersion: edgeward.io/v1, kind: Plugin or "
          "Function)",
          source(), kDocumentPath);
    EW_TRY(top, fields(root, "", kTop));
    EW_TRY(api, required(*top, root, "", "apiVersion"));
    EW_TRY(apiText, text(api->value, "apiVersion"));
    if (*apiText != "edgeward.io/v1")
      return error(api->value, "apiVersion",
                   fmt::format("unsupported value {} (expected edgeward.io/v1)", quoted(*apiText)));
    EW_TRY(kind, required(*top, root, "", "kind"));
    EW_TRY(kindText, text(kind->value, "kind"));
    if (*kindText == "Plugin") {
      m_.kind = ModuleKind::Plugin;
    } else if (*kindText == "Function") {
      m_.kind = ModuleKind::Function;
    } else {
      return error(kind->value, "kind",
                   fmt::format("unknown kind {} (expected Plugin or Function)", quoted(*kindText)));
    }
    EW_TRY(name, required(*top, root, "", "name"));
    EW_TRY(nameText, nonEmpty(name->value, "name"));
    if (!validModuleName(*nameText))
      return error(
          name->value, "name",
          fmt::format("{} is not a valid name (lower-case letters, digits and '-', at most 63)",
                      quoted(*nameText)));
    m_.name = *nameText;
    if (const Field* f = top->find("version")) {
      EW_TRY(s, text(f->value, "version"));
      m_.version = *s;
    }
    if (const Field* f = top->find("events")) {
      if (m_.kind != ModuleKind::Plugin)
        return error(f->key, "events", "only plugins subscribe to events");
      EW_TRY(ok, expect(f->value, NodeType::Sequence, "events", "a list"));
      for (size_t i = 0; i < f->value.size(); i++) {
        EW_TRY(s, text(f->value[i], index("events", i)));
        bool found = false;
        for (auto [n, k] : kEventKinds)
          if (n == *s) {
            m_.events.push_back(k);
            found = true;
          }
        if (!found) {
          std::vector<std::string_view> names;
          for (auto [n, k] : kEventKinds) names.push_back(n);
          return error(
              f->value[i], index("events", i),
              fmt::format("unknown event kind {}{}", quoted(*s), didYouMean(suggest(*s, names))));
        }
      }
    }
    if (const Field* f = top->find("limits")) {
      EW_TRY(lf, fields(f->value, "limits", kLimits));
      if (const Field* l = lf->find("memory")) {
        EW_TRY(v, value(l->value, "limits.memory", parseSize));
        if (*v < kWasmPageBytes)
          return error(l->value, "limits.memory", "must be at least 64KiB (one WebAssembly page)");
        m_.limits.memoryBytes = *v;
      }
      if (const Field* l = lf->find("cpuPerCall")) {
        EW_TRY(v, value(l->value, "limits.cpuPerCall", parseDuration));
        if (*v == 0) return error(l->value, "limits.cpuPerCall", "must be more than 0");
        m_.limits.cpuPerCallNs = *v;
      }
      if (const Field* l = lf->find("instances")) {
        EW_TRY(v, count(l->value, "limits.instances", 1024));
        if (*v == 0) return error(l->value, "limits.instances", "must be at least 1");
        m_.limits.instances = *v;
      }
      if (const Field* l = lf->find("callsPerSecond")) {
        EW_TRY(v, count(l->value, "limits.callsPerSecond", 100'000'000));
        m_.limits.callsPerSecond = *v;
      }
      if (const Field* l = lf->find("output")) {
        EW_TRY(v, value(l->value, "limits.output", parseSize));
        m_.limits.outputBytes = *v;
      }
    }
    if (const Field* f = top->find("failure")) {
      if (m_.kind != ModuleKind::Plugin)
        return error(f->key, "failure",
                     "only plugins have a failure policy (a function's caller sees its errors)");
      EW_TRY(ff, fields(f->value, "failure", kFailure));
      if (const Field* p = ff->find("policy")) {
        EW_TRY(s, text(p->value, "failure.policy"));
        if (*s == "fail-open")
          m_.failure = FailurePolicy::FailOpen;
        else if (*s == "fail-closed")
          m_.failure = FailurePolicy::FailClosed;
        else if (*s == "reload")
          m_.failure = FailurePolicy::Reload;
        else
          return error(p->value, "failure.policy",
                       fmt::format("unknown policy {} (expected fail-open, fail-closed or reload)",
                                   quoted(*s)));
      }
      if (const Field* d = ff->find("disableAfter")) {
        EW_TRY(v, count(d->value, "failure.disableAfter", 1'000'000));
        m_.disableAfter = *v;
      }
    }
    if (const Field* f = top->find("wasi")) {
      EW_TRY(wf, fields(f->value, "wasi", kWasi));
      if (const Field* a = wf->find("args")) {
        EW_TRY(ok, expect(a->value, NodeType::Sequence, "wasi.args", "a list"));
        for (size_t i = 0; i < a->value.size(); i++) {
          EW_TRY(s, text(a->value[i], index("wasi.args", i)));
          m_.args.push_back(*s);
        }
      }
      if (const Field* e = wf->find("env")) {
        EW_TRY(ok, expect(e->value, NodeType::Map, "wasi.env", "a map of NAME: value"));
        for (auto it = e->value.begin(); it != e->value.end(); ++it) {
          EW_TRY(k, nonEmpty(it->first, "wasi.env"));
          std::string path = join("wasi.env", *k);
          if (k->find('=') != std::string::npos)
            return error(it->first, path, "environment names cannot contain '='");
          EW_TRY(v, text(it->second, path));
          m_.env.emplace_back(*k, *v);
        }
      }
      if (const Field* d = wf->find("dirs")) {
        EW_TRY(ok, expect(d->value, NodeType::Sequence, "wasi.dirs", "a list"));
        for (size_t i = 0; i < d->value.size(); i++) {
          std::string path = index("wasi.dirs", i);
          const Node item = d->value[i];
          EW_TRY(df, fields(item, path, kDir));
          DirRequest r;
          EW_TRY(h, required(*df, item, path, "host"));
          EW_TRY(hs, nonEmpty(h->value, join(path, "host")));
          if ((*hs)[0] != '/')
            return error(h->value, join(path, "host"), "must be an absolute path");
          r.host = *hs;
          EW_TRY(g, required(*df, item, path, "guest"));
          EW_TRY(gs, nonEmpty(g->value, join(path, "guest")));
          r.guest = *gs;
          if (const Field* w = df->find("writable")) {
            EW_TRY(b, boolean(w->value, join(path, "writable")));
            r.writable = *b;
          }
          m_.dirs.push_back(std::move(r));
        }
      }
    }
    return std::move(m_);
  }

  Manifest m_;
};

// "/a/b/" -> "/a/b"; "." and ".." components are refused by the caller.
std::string trimSlash(std::string s) {
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

bool beneath(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

}  // namespace

std::string_view failurePolicyName(FailurePolicy p) {
  switch (p) {
    case FailurePolicy::FailOpen:
      return "fail-open";
    case FailurePolicy::FailClosed:
      return "fail-closed";
    case FailurePolicy::Reload:
      return "reload";
  }
  return "?";
}

Result<Manifest> parseManifest(std::string_view text, const std::string& source) {
  return ManifestParser(text, source).run();
}

Result<Manifest> loadManifest(const std::string& path) {
  EW_TRY(text, yaml::readFile(path, 1 << 20));
  return parseManifest(*text, path);
}

Result<uint64_t> parseSize(std::string_view s) {
  static constexpr std::pair<std::string_view, uint64_t> kUnits[] = {
      {"", 1}, {"B", 1}, {"KiB", 1024}, {"MiB", 1024 * 1024}, {"GiB", 1024ull * 1024 * 1024}};
  return parseUnit(s, kUnits, "size (like 16MiB)");
}

Result<uint64_t> parseDuration(std::string_view s) {
  static constexpr std::pair<std::string_view, uint64_t> kUnits[] = {
      {"us", 1000}, {"ms", 1'000'000}, {"s", 1'000'000'000}};
  return parseUnit(s, kUnits, "duration (like 10ms)");
}

std::string formatBytes(uint64_t b) {
  if (b >= (1u << 20) && b % (1u << 20) == 0) return fmt::format("{} MiB", b >> 20);
  if (b >= 1024 && b % 1024 == 0) return fmt::format("{} KiB", b >> 10);
  return fmt::format("{} bytes", b);
}

std::string formatNs(uint64_t ns) {
  if (ns >= 1'000'000 && ns % 1'000'000 == 0) return fmt::format("{} ms", ns / 1'000'000);
  if (ns >= 1000 && ns % 1000 == 0) return fmt::format("{} us", ns / 1000);
  return fmt::format("{} ns", ns);
}

wasi::WasiConfig wasiConfigFor(const Manifest& m, const Effective& e) {
  wasi::WasiConfig wc;
  wc.args.push_back(m.name);
  wc.args.insert(wc.args.end(), m.args.begin(), m.args.end());
  for (const auto& [k, v] : m.env) wc.env.push_back(k + "=" + v);
  wc.dirs = e.dirs;
  wc.maxOutputBytes = e.limits.outputBytes;
  return wc;
}

Result<Effective> resolve(const Manifest& m, const OperatorCaps& caps) {
  Effective e;
  auto pick = [](uint64_t asked, uint64_t def, uint64_t max) {
    uint64_t v = asked ? asked : def;
    return max ? std::min(v, max) : v;
  };
  e.limits.memoryBytes =
      pick(m.limits.memoryBytes, caps.defaults.memoryBytes, caps.max.memoryBytes);
  e.limits.cpuPerCallNs =
      pick(m.limits.cpuPerCallNs, caps.defaults.cpuPerCallNs, caps.max.cpuPerCallNs);
  e.limits.instances =
      static_cast<uint32_t>(pick(m.limits.instances, caps.defaults.instances, caps.max.instances));
  e.limits.outputBytes =
      pick(m.limits.outputBytes, caps.defaults.outputBytes, caps.max.outputBytes);
  // 0 means unlimited here: the operator's cap applies when the manifest asks for none or more.
  uint32_t cps = m.limits.callsPerSecond ? m.limits.callsPerSecond : caps.defaults.callsPerSecond;
  if (caps.max.callsPerSecond && (cps == 0 || cps > caps.max.callsPerSecond))
    cps = caps.max.callsPerSecond;
  e.limits.callsPerSecond = cps;

  for (size_t i = 0; i < m.dirs.size(); i++) {
    const DirRequest& r = m.dirs[i];
    std::string host = trimSlash(r.host);
    if (host.find("/..") != std::string::npos || host.find("/./") != std::string::npos)
      return failf("{}: wasi.dirs[{}].host: {} must not contain . or .. components", m.name, i,
                   r.host);
    const DirGrant* grant = nullptr;
    for (const auto& g : caps.grants)
      if (beneath(host, trimSlash(g.host)) && (!grant || (g.writable && !grant->writable)))
        grant = &g;
    if (!grant)
      return std::unexpected(Error(
          ErrorCode::PermissionDenied,
          fmt::format("{}: wasi.dirs[{}]: {} is not granted by the operator", m.name, i, r.host)));
    if (r.writable && !grant->writable)
      return std::unexpected(Error(
          ErrorCode::PermissionDenied,
          fmt::format("{}: wasi.dirs[{}]: {} is granted read-only, the manifest asks for writable",
                      m.name, i, r.host)));
    e.dirs.push_back({host, r.guest, r.writable});
  }
  return e;
}

}  // namespace edgeward::wasm
