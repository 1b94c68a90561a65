#include "agent/config.h"

#include <charconv>

#include "common/yaml_reader.h"

namespace edgeward::agent {
namespace {

using namespace edgeward::yaml;

constexpr std::string_view kTop[] = {"apiVersion", "kind",    "interfaces", "policy",   "stateDir",
                                     "bpffs",      "api",     "upstream",   "capacity", "logging",
                                     "events",     "metrics", "plugins",    "publish"};
constexpr std::string_view kPlugins[] = {"modules", "grants", "functions"};
constexpr std::string_view kModule[] = {"module", "manifest"};
constexpr std::string_view kGrant[] = {"host", "writable"};
constexpr std::string_view kFunctions[] = {"address", "threads", "ca", "cert", "key"};
constexpr std::string_view kEvents[] = {"drops",        "connections", "dropSample",
                                        "dropsPerPeer", "dropBurst",   "ringBytes",
                                        "flowmon",      "recent",      "file"};
constexpr std::string_view kEventFile[] = {"path", "maxBytes", "keep"};
constexpr std::string_view kPublish[] = {"file"};
constexpr std::string_view kPublishFile[] = {"path", "maxBytes", "keep", "durable"};
constexpr std::string_view kMetrics[] = {"address"};
constexpr std::string_view kInterface[] = {"name", "netns", "mode"};
constexpr std::string_view kPolicy[] = {"file", "keepVersions"};
constexpr std::string_view kApi[] = {"unixSocket", "tcp"};
constexpr std::string_view kTcp[] = {"address", "ca", "cert", "key", "roles"};
constexpr std::string_view kUpstream[] = {"address", "group", "node", "ca", "cert", "key"};
constexpr std::string_view kCapacity[] = {"ipv4Intervals", "ipv6Intervals", "groups",
                                          "portEntries",   "rules",         "conntrack"};
constexpr std::string_view kLogging[] = {"level"};

class ConfigParser : Reader {
 public:
  ConfigParser(std::string_view text, const std::string& source)
      : Reader(text, source, "a config file") {}

  Result<AgentConfig> run() {
    EW_TRY(root, load());
    return parse(*root);
  }

 private:
  template <typename T>
  using R = Result<T>;

  R<std::string> nonEmpty(const Node& n, const std::string& path) {
    EW_TRY(s, text(n, path));
    if (s->empty()) return error(n, path, "must not be empty");
    return *s;
  }

  R<uint32_t> number(const Node& n, const std::string& path, uint32_t min, uint32_t max) {
    EW_TRY(s, text(n, path));
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
    if (!isDigits(*s) || ec != std::errc() || v < min || v > max)
      return error(n, path, fmt::format("{} is not a number in {}-{}", quoted(*s), min, max));
    return static_cast<uint32_t>(v);
  }

  R<std::string> address(const Node& n, const std::string& path) {
    EW_TRY(s, nonEmpty(n, path));
    auto colon = s->rfind(':');
    uint64_t port = 0;
    std::string_view p = colon == std::string::npos ? "" : std::string_view(*s).substr(colon + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
    if (colon == std::string::npos || colon == 0 || !isDigits(p) || ec != std::errc() ||
        port == 0 || port > 65535)
      return error(n, path, fmt::format("{} is not host:port", quoted(*s)));
    return *s;
  }

  R<TlsFiles> tls(const Fields& f, const Node& map, const std::string& path, bool required) {
    TlsFiles t;
    for (auto [name, out] : {std::pair{"ca", &t.ca}, {"cert", &t.cert}, {"key", &t.key}}) {
      const Field* field = f.find(name);
      if (!field) {
        if (required) return error(map, join(path, name), "required field is missing");
        continue;
      }
      EW_TRY(s, nonEmpty(field->value, join(path, name)));
      *out = *s;
    }
    bool some = !t.ca.empty() || !t.cert.empty() || !t.key.empty();
    bool all = !t.ca.empty() && !t.cert.empty() && !t.key.empty();
    if (some && !all)
      return error(map, path, "ca, cert and key go together: give all three or none");
    return t;
  }

  R<AgentConfig> parse(const Node& root) {
    if (root.IsNull())
      return failf(
          "{}:1: {}: the document is empty (expected apiVersion: edgeward.io/v1, kind: "
          "AgentConfig)",
          source(), kDocumentPath);
    cfg_.source = source();
    EW_TRY(top, fields(root, "", kTop));
    for (auto [field, want] :
         {std::pair{"apiVersion", "edgeward.io/v1"}, {"kind", "AgentConfig"}}) {
      EW_TRY(f, required(*top, root, "", field));
      EW_TRY(s, text(f->value, field));
      if (*s != want)
        return error(f->value, field,
                     fmt::format("unsupported value {} (expected {})", quoted(*s), want));
    }
    if (const Field* f = top->find("interfaces")) {
      EW_TRY(r, interfaces(f->value));
    }
    if (const Field* f = top->find("policy")) {
      EW_TRY(r, policy(f->value));
    }
    for (auto [name, out] : {std::pair{"stateDir", &cfg_.stateDir}, {"bpffs", &cfg_.bpffs}}) {
      if (const Field* f = top->find(name)) {
        EW_TRY(s, nonEmpty(f->value, name));
        if ((*s)[0] != '/') return error(f->value, name, "must be an absolute path");
        *out = *s;
      }
    }
    if (cfg_.bpffs.rfind("/sys/fs/bpf/", 0) != 0 && top->find("bpffs"))
      return error(top->find("bpffs")->value, "bpffs", "must be a directory under /sys/fs/bpf/");
    if (const Field* f = top->find("api")) {
      EW_TRY(r, apiSection(f->value));
    }
    if (const Field* f = top->find("upstream")) {
      EW_TRY(r, upstream(f->value));
    }
    if (const Field* f = top->find("capacity")) {
      EW_TRY(r, capacity(f->value));
    }
    if (const Field* f = top->find("plugins")) {
      EW_TRY(r, plugins(f->value));
    }
    if (const Field* f = top->find("events")) {
      EW_TRY(r, events(f->value));
    }
    if (const Field* f = top->find("publish")) {
      EW_TRY(r, publish(f->value));
    }
    if (const Field* f = top->find("metrics")) {
      EW_TRY(mf, fields(f->value, "metrics", kMetrics));
      if (const Field* a = mf->find("address")) {
        EW_TRY(s, text(a->value, "metrics.address"));
        if (*s == "off" || s->empty()) {
          cfg_.metricsAddress.clear();
        } else {
          EW_TRY(addr, address(a->value, "metrics.address"));
          cfg_.metricsAddress = *addr;
        }
      }
    }
    if (const Field* f = top->find("logging")) {
      EW_TRY(lf, fields(f->value, "logging", kLogging));
      if (const Field* l = lf->find("level")) {
        EW_TRY(s, text(l->value, "logging.level"));
        if (*s != "debug" && *s != "info" && *s != "warn" && *s != "error")
          return error(
              l->value, "logging.level",
              fmt::format("unknown level {} (expected debug, info, warn or error)", quoted(*s)));
        cfg_.logLevel = *s;
      }
    }
    return std::move(cfg_);
  }

  R<void> interfaces(const Node& n) {
    EW_TRY(ok, expect(n, NodeType::Sequence, "interfaces", "a list"));
    for (size_t i = 0; i < n.size(); i++) {
      const Node item = n[i];
      std::string path = index("interfaces", i);
      EW_TRY(f, fields(item, path, kInterface));
      InterfaceConfig ic;
      EW_TRY(name, required(*f, item, path, "name"));
      EW_TRY(nameText, nonEmpty(name->value, join(path, "name")));
      if (nameText->size() > 15)
        return error(name->value, join(path, "name"), "interface names have at most 15 characters");
      ic.name = *nameText;
      if (const Field* ns = f->find("netns")) {
        EW_TRY(s, nonEmpty(ns->value, join(path, "netns")));
        ic.netns = *s;
      }
      if (const Field* m = f->find("mode")) {
        EW_TRY(s, text(m->value, join(path, "mode")));
        if (*s == "xdp")
          ic.mode = AttachMode::Xdp;
        else if (*s == "tcx")
          ic.mode = AttachMode::Tcx;
        else
          return error(m->value, join(path, "mode"),
                       fmt::format("unknown mode {} (expected xdp or tcx)", quoted(*s)));
      }
      for (const auto& other : cfg_.interfaces)
        if (other.name == ic.name && other.netns == ic.netns)
          return error(name->value, join(path, "name"),
                       fmt::format("interface {} is listed twice", quoted(ic.name)));
      cfg_.interfaces.push_back(ic);
    }
    return {};
  }

  R<void> policy(const Node& n) {
    EW_TRY(f, fields(n, "policy", kPolicy));
    if (const Field* file = f->find("file")) {
      EW_TRY(s, nonEmpty(file->value, "policy.file"));
      cfg_.policyFile = *s;
    }
    if (const Field* k = f->find("keepVersions")) {
      EW_TRY(v, number(k->value, "policy.keepVersions", 1, 10000));
      cfg_.keepVersions = *v;
    }
    return {};
  }

  R<void> apiSection(const Node& n) {
    EW_TRY(f, fields(n, "api", kApi));
    if (const Field* u = f->find("unixSocket")) {
      EW_TRY(s, nonEmpty(u->value, "api.unixSocket"));
      if ((*s)[0] != '/') return error(u->value, "api.unixSocket", "must be an absolute path");
      cfg_.unixSocket = *s;
    }
    if (const Field* t = f->find("tcp")) {
      const Node node = t->value;
      EW_TRY(tf, fields(node, "api.tcp", kTcp));
      TcpApiConfig tcp;
      EW_TRY(a, required(*tf, node, "api.tcp", "address"));
      EW_TRY(addr, address(a->value, "api.tcp.address"));
      tcp.address = *addr;
      EW_TRY(files, tls(*tf, node, "api.tcp", true));
      tcp.tls = *files;
      EW_TRY(r, required(*tf, node, "api.tcp", "roles"));
      EW_TRY(ok, expect(r->value, NodeType::Map, "api.tcp.roles", "a map"));
      for (auto it = r->value.begin(); it != r->value.end(); ++it) {
        const Node key = it->first, value = it->second;
        EW_TRY(who, nonEmpty(key, "api.tcp.roles"));
        std::string path = join("api.tcp.roles", *who);
        EW_TRY(role, text(value, path));
        if (*role == "admin")
          tcp.roles[*who] = api::Role::Admin;
        else if (*role == "viewer")
          tcp.roles[*who] = api::Role::Viewer;
        else
          return error(value, path,
                       fmt::format("unknown role {} (expected viewer or admin)", quoted(*role)));
      }
      cfg_.tcp = tcp;
    }
    return {};
  }

  R<void> upstream(const Node& n) {
    EW_TRY(f, fields(n, "upstream", kUpstream));
    UpstreamConfig up;
    EW_TRY(a, required(*f, n, "upstream", "address"));
    EW_TRY(addr, address(a->value, "upstream.address"));
    up.address = *addr;
    EW_TRY(g, required(*f, n, "upstream", "group"));
    EW_TRY(group, nonEmpty(g->value, "upstream.group"));
    up.group = *group;
    if (const Field* node = f->find("node")) {
      EW_TRY(s, nonEmpty(node->value, "upstream.node"));
      up.node = *s;
    }
    EW_TRY(files, tls(*f, n, "upstream", false));
    up.tls = *files;
    cfg_.upstream = up;
    return {};
  }

  R<void> plugins(const Node& n) {
    EW_TRY(f, fields(n, "plugins", kPlugins));
    auto& pc = cfg_.plugins;
    if (const Field* m = f->find("modules")) {
      EW_TRY(ok, expect(m->value, NodeType::Sequence, "plugins.modules", "a list"));
      for (size_t i = 0; i < m->value.size(); i++) {
        const Node item = m->value[i];
        const std::string path = index("plugins.modules", i);
        EW_TRY(mf, fields(item, path, kModule));
        ModuleConfig mc;
        for (auto [name, out] : {std::pair{"module", &mc.module}, {"manifest", &mc.manifest}}) {
          EW_TRY(field, required(*mf, item, path, name));
          EW_TRY(v, nonEmpty(field->value, join(path, name)));
          *out = *v;
        }
        pc.modules.push_back(mc);
      }
    }
    if (const Field* g = f->find("grants")) {
      EW_TRY(ok, expect(g->value, NodeType::Sequence, "plugins.grants", "a list"));
      for (size_t i = 0; i < g->value.size(); i++) {
        const Node item = g->value[i];
        const std::string path = index("plugins.grants", i);
        EW_TRY(gf, fields(item, path, kGrant));
        EW_TRY(h, required(*gf, item, path, "host"));
        EW_TRY(host, nonEmpty(h->value, join(path, "host")));
        if ((*host)[0] != '/')
          return error(h->value, join(path, "host"), "must be an absolute path");
        bool writable = false;
        if (const Field* w = gf->find("writable")) {
          EW_TRY(b, boolean(w->value, join(path, "writable")));
          writable = *b;
        }
        pc.grants.emplace_back(*host, writable);
      }
    }
    if (const Field* fn = f->find("functions")) {
      const Node node = fn->value;
      EW_TRY(ff, fields(node, "plugins.functions", kFunctions));
      EW_TRY(a, required(*ff, node, "plugins.functions", "address"));
      EW_TRY(addr, address(a->value, "plugins.functions.address"));
      pc.functionsAddress = *addr;
      if (const Field* t = ff->find("threads")) {
        EW_TRY(n, number(t->value, "plugins.functions.threads", 1, 256));
        pc.functionsThreads = *n;
      }
      EW_TRY(files, tls(*ff, node, "plugins.functions", false));
      pc.functionsTls = *files;
    }
    return {};
  }

  R<bool> boolean(const Node& n, const std::string& path) {
    EW_TRY(s, text(n, path));
    if (*s == "true") return true;
    if (*s == "false") return false;
    return error(n, path, fmt::format("{} is not true or false", quoted(*s)));
  }

  R<void> events(const Node& n) {
    EW_TRY(f, fields(n, "events", kEvents));
    auto& e = cfg_.events;
    for (auto [name, out] :
         {std::pair{"drops", &e.drops}, {"connections", &e.connections}, {"flowmon", &e.flowmon}}) {
      if (const Field* v = f->find(name)) {
        EW_TRY(b, boolean(v->value, join("events", name)));
        *out = *b;
      }
    }
    struct Num {
      const char* name;
      uint32_t* out;
      uint32_t min, max;
    };
    for (const Num& x :
         {Num{"dropSample", &e.dropSample, 1, 1u << 20},
          Num{"dropsPerPeer", &e.dropsPerPeer, 0, 1'000'000},
          Num{"dropBurst", &e.dropBurst, 1, 1'000'000},
          Num{"ringBytes", &e.ringBytes, 4096, 1u << 30}, Num{"recent", &e.recent, 0, 1'000'000}}) {
      if (const Field* v = f->find(x.name)) {
        EW_TRY(num, number(v->value, join("events", x.name), x.min, x.max));
        *x.out = *num;
      }
    }
    if (const Field* r = f->find("ringBytes"); r && (e.ringBytes & (e.ringBytes - 1)))
      return error(r->value, "events.ringBytes", "must be a power of two");
    if (const Field* file = f->find("file")) {
      EW_TRY(ff, fields(file->value, "events.file", kEventFile));
      EW_TRY(fc, outputFile(*ff, file->value, "events.file"));
      e.file = *fc;
    }
    return {};
  }

  // A rotated output file: path (absolute), maxBytes, keep.
  R<pipeline::RotatingFileOptions> outputFile(const Fields& ff, const Node& node,
                                              const std::string& at) {
    pipeline::RotatingFileOptions fc;
    EW_TRY(p, required(ff, node, at, "path"));
    EW_TRY(path, nonEmpty(p->value, join(at, "path")));
    if ((*path)[0] != '/') return error(p->value, join(at, "path"), "must be an absolute path");
    fc.path = *path;
    if (const Field* m = ff.find("maxBytes")) {
      EW_TRY(v, number(m->value, join(at, "maxBytes"), 4096, 4'000'000'000u));
      fc.maxBytes = *v;
    }
    if (const Field* k = ff.find("keep")) {
      EW_TRY(v, number(k->value, join(at, "keep"), 0, 1000));
      fc.keep = *v;
    }
    return fc;
  }

  R<void> publish(const Node& n) {
    EW_TRY(f, fields(n, "publish", kPublish));
    if (const Field* file = f->find("file")) {
      EW_TRY(ff, fields(file->value, "publish.file", kPublishFile));
      EW_TRY(fc, outputFile(*ff, file->value, "publish.file"));
      cfg_.publish.file = *fc;
      if (const Field* d = ff->find("durable")) {
        EW_TRY(b, boolean(d->value, "publish.file.durable"));
        cfg_.publish.durable = *b;
      }
    }
    return {};
  }

  R<void> capacity(const Node& n) {
    EW_TRY(f, fields(n, "capacity", kCapacity));
    auto& c = cfg_.capacity;
    const std::pair<std::string_view, uint32_t*> items[] = {{"ipv4Intervals", &c.ipv4Intervals},
                                                            {"ipv6Intervals", &c.ipv6Intervals},
                                                            {"groups", &c.groups},
                                                            {"portEntries", &c.portEntries},
                                                            {"rules", &c.rules},
                                                            {"conntrack", &c.conntrack}};
    for (auto [name, out] : items) {
      if (const Field* v = f->find(name)) {
        EW_TRY(x, number(v->value, join("capacity", name), 16, 1u << 26));
        *out = *x;
      }
    }
    return {};
  }

  AgentConfig cfg_;
};

}  // namespace

Result<AgentConfig> parseAgentConfig(std::string_view yaml, const std::string& source) {
  return ConfigParser(yaml, source).run();
}

Result<AgentConfig> loadAgentConfig(const std::string& path) {
  EW_TRY(text, yaml::readFile(path, 1u << 20));
  return parseAgentConfig(*text, path);
}

}  // namespace edgeward::agent
