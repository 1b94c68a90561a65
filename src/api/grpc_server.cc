#include "api/grpc_server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <set>

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>

#include "api/pem.h"
#include "api/convert.h"
#include "common/unique_fd.h"
#include "edgeward/v1/agent.grpc.pb.h"

namespace edgeward::api {
namespace {

using namespace std::chrono_literals;

constexpr int kMaxMessageBytes = 64 << 20;  // policies with many prefixes are large
constexpr size_t kMaxWatchBacklog = 1024;   // events queued for one slow watcher
constexpr size_t kMaxWatchers = 64;
constexpr auto kWatchPoll = 100ms;  // how soon a watcher notices that its client went away
constexpr auto kShutdownGrace = 3s;

// A unix socket path that exists: refuse to take it over from a live agent (gRPC would unlink
// it), remove it when nobody answers.
Result<void> prepareUnixPath(const std::string& path) {
  sockaddr_un sa{};
  if (path.size() >= sizeof sa.sun_path)
    return fail(ErrorCode::InvalidArgument, fmt::format("api: socket path {} is too long", path));
  auto parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec) return failErrno(fmt::format("api: cannot create {}", parent.string()), ec.value());

  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return {};
    return failErrno(fmt::format("api: {}", path));
  }
  if (!S_ISSOCK(st.st_mode))
    return fail(ErrorCode::InvalidArgument,
                fmt::format("api: {} exists and is not a socket", path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return failErrno("api: socket");
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.data(), path.size());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0)
    return fail(ErrorCode::Unavailable, fmt::format("api: another agent is listening on {}", path));
  if (errno != ECONNREFUSED) return failErrno(fmt::format("api: {}", path));
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return failErrno(fmt::format("api: cannot remove stale socket {}", path));
  return {};
}

// The first value of an auth context property, "" when absent.
std::string property(const grpc::AuthContext& ac, const char* name) {
  auto v = ac.FindPropertyValues(name);
  return v.empty() ? std::string() : std::string(v.front().data(), v.front().size());
}

// The client's identity from its verified certificate: the first URI SAN, else the CN.
std::string certificateIdentity(const grpc::AuthContext& ac) {
  if (auto uri = property(ac, GRPC_PEER_URI_PROPERTY_NAME); !uri.empty()) return uri;
  return property(ac, GRPC_X509_CN_PROPERTY_NAME);
}

// One Watch stream's mailbox. The agent's thread fills it; the stream's handler drains it.
struct WatchBox {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<WatchEvent> events;
  bool closed = false;  // the server is shutting down
  bool overflow = false;
};

enum class Access { Read, Write };

// State shared by both listeners' services.
struct Shared {
  AgentControl& control;
  ApiServerConfig config;
  std::mutex mu;
  bool stopping = false;
  std::set<std::shared_ptr<WatchBox>> watchers;

  void log(const std::string& line) {
    if (config.log)
      config.log(line);
    else
      fmt::print(stderr, "edgeward: {}\n", line);
  }
};

class Service final : public v1::Agent::Service {
 public:
  enum class Listener { Unix, Tls };
  Service(Shared& shared, Listener l) : s_(shared), listener_(l) {}

  grpc::Status ApplyPolicy(grpc::ServerContext* ctx, const v1::ApplyPolicyRequest* req,
                           v1::ApplyPolicyResponse* resp) override {
    return call(ctx, "ApplyPolicy", Access::Write, [&](const Caller& who) {
      ApplyRequest r;
      r.yaml = req->yaml();
      if (!req->source().empty()) r.source = req->source();
      if (req->has_if_version()) r.ifVersion = req->if_version();
      r.dryRun = req->dry_run();
      return reply(s_.control.applyPolicy(who, r), [&](auto& v) { convert::toProto(v, resp); });
    });
  }

  grpc::Status PatchPolicy(grpc::ServerContext* ctx, const v1::PatchPolicyRequest* req,
                           v1::ApplyPolicyResponse* resp) override {
    return call(ctx, "PatchPolicy", Access::Write, [&](const Caller& who) {
      PatchRequest r;
      for (const auto& ip : req->identities())
        r.identities.push_back({ip.identity(),
                                {ip.add().begin(), ip.add().end()},
                                {ip.remove().begin(), ip.remove().end()}});
      if (req->has_if_version()) r.ifVersion = req->if_version();
      r.dryRun = req->dry_run();
      return reply(s_.control.patchPolicy(who, r), [&](auto& v) { convert::toProto(v, resp); });
    });
  }

  grpc::Status GetPolicy(grpc::ServerContext* ctx, const v1::GetPolicyRequest* req,
                         v1::GetPolicyResponse* resp) override {
    return call(ctx, "GetPolicy", Access::Read, [&](const Caller&) {
      std::optional<uint64_t> v;
      if (req->has_version()) v = req->version();
      return reply(s_.control.getPolicy(v), [&](auto& p) {
        convert::toProto(p.first, resp->mutable_version());
        resp->set_yaml(p.second);
      });
    });
  }

  grpc::Status DiffPolicy(grpc::ServerContext* ctx, const v1::DiffPolicyRequest* req,
                          v1::DiffPolicyResponse* resp) override {
    return call(ctx, "DiffPolicy", Access::Read, [&](const Caller&) {
      std::string source = req->source().empty() ? "policy.yaml" : req->source();
      return reply(s_.control.diffPolicy(req->yaml(), source),
                   [&](auto& d) { convert::toProto(d, resp->mutable_diff()); });
    });
  }

  grpc::Status RollbackPolicy(grpc::ServerContext* ctx, const v1::RollbackPolicyRequest* req,
                              v1::RollbackPolicyResponse* resp) override {
    return call(ctx, "RollbackPolicy", Access::Write, [&](const Caller& who) {
      std::optional<uint64_t> to;
      if (req->has_to()) to = req->to();
      return reply(s_.control.rollbackPolicy(who, to),
                   [&](auto& v) { convert::toProto(v, resp->mutable_version()); });
    });
  }

  grpc::Status ListVersions(grpc::ServerContext* ctx, const v1::ListVersionsRequest*,
                            v1::ListVersionsResponse* resp) override {
    return call(ctx, "ListVersions", Access::Read, [&](const Caller&) {
      return reply(s_.control.listVersions(), [&](auto& vs) {
        for (const auto& v : vs) convert::toProto(v, resp->add_versions());
      });
    });
  }

  grpc::Status GetStatus(grpc::ServerContext* ctx, const v1::GetStatusRequest*,
                         v1::GetStatusResponse* resp) override {
    return call(ctx, "GetStatus", Access::Read, [&](const Caller&) {
      return reply(s_.control.status(),
                   [&](auto& st) { convert::toProto(st, resp->mutable_status()); });
    });
  }

  grpc::Status UpgradeProgram(grpc::ServerContext* ctx, const v1::UpgradeProgramRequest* req,
                              v1::UpgradeProgramResponse* resp) override {
    return call(ctx, "UpgradeProgram", Access::Write, [&](const Caller& who) {
      return reply(s_.control.upgradeProgram(who, req->object_path()),
                   [&](auto& report) { resp->set_report(report); });
    });
  }

  grpc::Status SetSwitches(grpc::ServerContext* ctx, const v1::SetSwitchesRequest* req,
                           v1::SetSwitchesResponse*) override {
    return call(ctx, "SetSwitches", Access::Write, [&](const Caller& who) {
      std::optional<bool> syn;
      if (req->has_syn_limit()) syn = req->syn_limit();
      auto r = s_.control.setSwitches(who, syn);
      return r ? grpc::Status::OK : convert::toGrpcStatus(r.error());
    });
  }

  grpc::Status Watch(grpc::ServerContext* ctx, const v1::WatchRequest*,
                     grpc::ServerWriter<v1::WatchEvent>* writer) override {
    return call(ctx, "Watch", Access::Read, [&](const Caller&) {
      auto box = std::make_shared<WatchBox>();
      {
        std::lock_guard lk(s_.mu);
        if (s_.stopping) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "agent shutting down");
        if (s_.watchers.size() >= kMaxWatchers)
          return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                              fmt::format("too many watchers (at most {})", kMaxWatchers));
        s_.watchers.insert(box);
      }
      auto status = stream(ctx, writer, box);
      std::lock_guard lk(s_.mu);
      s_.watchers.erase(box);
      return status;
    });
  }

  grpc::Status LoadModule(grpc::ServerContext* ctx, const v1::LoadModuleRequest* req,
                          v1::LoadModuleResponse* resp) override {
    return call(ctx, "LoadModule", Access::Write, [&](const Caller& who) {
      return reply(s_.control.loadModule(who, req->manifest(), req->wasm(), req->source()),
                   [&](auto& m) {
                     resp->set_kind(m.module.kind);
                     resp->set_name(m.module.name);
                     resp->set_replaced(m.replaced);
                   });
    });
  }

  grpc::Status UnloadModule(grpc::ServerContext* ctx, const v1::UnloadModuleRequest* req,
                            v1::UnloadModuleResponse*) override {
    return call(ctx, "UnloadModule", Access::Write, [&](const Caller& who) {
      auto r = s_.control.unloadModule(who, req->kind(), req->name());
      return r ? grpc::Status::OK : convert::toGrpcStatus(r.error());
    });
  }

  grpc::Status ListModules(grpc::ServerContext* ctx, const v1::ListModulesRequest*,
                           v1::ListModulesResponse* resp) override {
    return call(ctx, "ListModules", Access::Read, [&](const Caller&) {
      return reply(s_.control.listModules(), [&](auto& ms) {
        for (const auto& m : ms) convert::toProto(m, resp->add_modules());
      });
    });
  }

  grpc::Status InvokeFunction(grpc::ServerContext* ctx, const v1::InvokeFunctionRequest* req,
                              v1::InvokeFunctionResponse* resp) override {
    return call(ctx, "InvokeFunction", Access::Write, [&](const Caller& who) {
      return reply(s_.control.runFunction(who, req->name(), req->input()), [&](auto& o) {
        resp->set_stdout(o.out);
        resp->set_stderr(o.err);
        resp->set_exit_code(o.exitCode);
      });
    });
  }

  grpc::Status Events(grpc::ServerContext* ctx, const v1::EventsRequest* req,
                      grpc::ServerWriter<v1::EventsResponse>* writer) override {
    return call(ctx, "Events", Access::Read, [&](const Caller&) -> grpc::Status {
      EventFilter f;
      for (const auto& k : req->kinds()) {
        auto kind = pipeline::kindFromName(k);
        if (!kind)
          return {grpc::StatusCode::INVALID_ARGUMENT,
                  fmt::format("unknown event kind \"{}\" (expected drop, conn_new, tcp_open, "
                              "tcp_close, tcp_retransmit or custom)",
                              k)};
        f.kinds.push_back(*kind);
      }
      if (!req->verdict().empty() && req->verdict() != "drop" && req->verdict() != "allow")
        return {grpc::StatusCode::INVALID_ARGUMENT,
                fmt::format("unknown verdict \"{}\" (expected drop or allow)", req->verdict())};
      if (req->port() > 65535)
        return {grpc::StatusCode::INVALID_ARGUMENT,
                fmt::format("port {} is not in 0-65535", req->port())};
      f.rule = req->rule();
      f.identity = req->identity();
      f.verdict = req->verdict();
      if (req->port()) f.port = static_cast<uint16_t>(req->port());
      // Subscribe before reading the past, so nothing falls between the two.
      std::unique_ptr<EventStream> live;
      if (req->follow()) {
        auto sub = s_.control.subscribeEvents(f);
        if (!sub) return convert::toGrpcStatus(sub.error());
        live = std::move(*sub);
      }
      auto write = [&](const std::vector<NamedEvent>& events, uint64_t lost) {
        v1::EventsResponse resp;
        resp.set_lost(lost);
        for (const auto& e : events) convert::toProto(e, resp.add_events());
        return writer->Write(resp);
      };
      if (req->recent()) {
        auto past = s_.control.recentEvents(f, req->recent());
        if (!past) return convert::toGrpcStatus(past.error());
        if (!write(*past, 0)) return grpc::Status::CANCELLED;
      }
      if (!live) return grpc::Status::OK;
      writer->SendInitialMetadata();
      for (;;) {
        {
          std::lock_guard lk(s_.mu);
          if (s_.stopping) return {grpc::StatusCode::UNAVAILABLE, "agent shutting down"};
        }
        if (ctx->IsCancelled()) return grpc::Status::CANCELLED;
        auto b = live->next(kWatchPoll);
        if (b.closed) return {grpc::StatusCode::UNAVAILABLE, "agent shutting down"};
        if (b.events.empty() && !b.lost) continue;
        if (!write(b.events, b.lost)) return grpc::Status::CANCELLED;
      }
    });
  }

 private:
  grpc::Status stream(grpc::ServerContext* ctx, grpc::ServerWriter<v1::WatchEvent>* writer,
                      const std::shared_ptr<WatchBox>& box) {
    // The callback holds the box, not the handler: an event that races the unsubscribe lands
    // in a box nobody reads.
    auto sub = s_.control.watch([box](const WatchEvent& e) {
      std::lock_guard lk(box->mu);
      if (box->events.size() >= kMaxWatchBacklog)
        box->overflow = true;
      else
        box->events.push_back(e);
      box->cv.notify_all();
    });
    // Headers now, so that the client knows it is subscribed before the first event.
    writer->SendInitialMetadata();
    std::deque<WatchEvent> batch;
    for (;;) {
      {
        std::unique_lock lk(box->mu);
        box->cv.wait_for(lk, kWatchPoll,
                         [&] { return box->closed || box->overflow || !box->events.empty(); });
        if (box->closed) return {grpc::StatusCode::UNAVAILABLE, "agent shutting down"};
        if (box->overflow)
          return {grpc::StatusCode::RESOURCE_EXHAUSTED,
                  fmt::format("watcher fell more than {} events behind", kMaxWatchBacklog)};
        batch.swap(box->events);
      }
      if (ctx->IsCancelled()) return grpc::Status::CANCELLED;
      for (const auto& e : batch) {
        v1::WatchEvent pe;
        convert::toProto(e, &pe);
        if (!writer->Write(pe)) return grpc::Status::CANCELLED;
      }
      batch.clear();
    }
  }

  // Authenticates and authorises the caller, then runs body(caller). Refusals are logged.
  template <typename Body>
  grpc::Status call(grpc::ServerContext* ctx, const char* method, Access access, Body&& body) {
    Caller who{"local", Role::Admin};
    if (listener_ == Listener::Tls) {
      auto ac = ctx->auth_context();
      std::string id = ac ? certificateIdentity(*ac) : std::string();
      if (id.empty()) {
        s_.log(fmt::format("api: refused {} from {}: client certificate has no URI SAN or CN",
                           method, ctx->peer()));
        return {grpc::StatusCode::UNAUTHENTICATED,
                "client certificate has neither a URI SAN nor a CN"};
      }
      auto it = s_.config.roles.find(id);
      if (it == s_.config.roles.end()) {
        s_.log(fmt::format("api: refused {} to \"{}\" from {}: identity has no role", method, id,
                           ctx->peer()));
        return {grpc::StatusCode::PERMISSION_DENIED,
                fmt::format("\"{}\" has no role on this agent", id)};
      }
      who = {id, it->second};
    }
    if (access == Access::Write && who.role != Role::Admin) {
      s_.log(fmt::format("api: refused {} to \"{}\" ({}) from {}: needs admin", method,
                         who.identity, roleName(who.role), ctx->peer()));
      return {grpc::StatusCode::PERMISSION_DENIED,
              fmt::format("{} needs the admin role; \"{}\" is a {}", method, who.identity,
                          roleName(who.role))};
    }
    try {
      return body(who);
    } catch (const std::exception& e) {
      s_.log(fmt::format("api: {} from \"{}\" failed: {}", method, who.identity, e.what()));
      return {grpc::StatusCode::INTERNAL, fmt::format("{}: {}", method, e.what())};
    }
  }

  template <typename T, typename Fill>
  static grpc::Status reply(const Result<T>& r, Fill&& fill) {
    if (!r) return convert::toGrpcStatus(r.error());
    fill(*r);
    return grpc::Status::OK;
  }

  Shared& s_;
  Listener listener_;
};

// Restores the umask on scope exit.
class UmaskGuard {
 public:
  explicit UmaskGuard(mode_t m) : old_(::umask(m)) {}
  ~UmaskGuard() { ::umask(old_); }

 private:
  mode_t old_;
};

}  // namespace

struct ApiServer::Impl {
  Shared shared;
  std::unique_ptr<Service> unixService, tlsService;
  std::unique_ptr<grpc::Server> unixServer, tlsServer;
  int tcpPort = 0;
  enum class State { New, Running, Stopped } state = State::New;

  Impl(AgentControl& c, ApiServerConfig cfg) : shared{c, std::move(cfg)} {}

  static void configure(grpc::ServerBuilder& b) {
    b.SetMaxReceiveMessageSize(kMaxMessageBytes);
    b.SetMaxSendMessageSize(kMaxMessageBytes);
    // Pings find watchers whose host vanished without closing the connection.
    b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60000);
    b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
  }

  Result<void> startTls(const std::string& address) {
    const auto& c = shared.config;
    EW_TRY(ca, readPem(c.caFile, "api: CA file"));
    EW_TRY(cert, readPem(c.certFile, "api: certificate file"));
    EW_TRY(key, readPem(c.keyFile, "api: key file"));
    grpc::SslServerCredentialsOptions o(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    o.pem_root_certs = *ca;
    o.pem_key_cert_pairs.push_back({*key, *cert});
    tlsService = std::make_unique<Service>(shared, Service::Listener::Tls);
    grpc::ServerBuilder b;
    configure(b);
    b.AddListeningPort(address, grpc::SslServerCredentials(o), &tcpPort);
    b.RegisterService(tlsService.get());
    tlsServer = b.BuildAndStart();
    if (!tlsServer || tcpPort == 0) {
      tlsServer.reset();
      return fail(ErrorCode::Unavailable,
                  fmt::format("api: cannot listen on {} (address taken or invalid, or the "
                              "certificate and key do not match)",
                              address));
    }
    return {};
  }

  Result<void> startUnix(const std::string& path) {
    EW_TRY(ok, prepareUnixPath(path));
    unixService = std::make_unique<Service>(shared, Service::Listener::Unix);
    grpc::ServerBuilder b;
    configure(b);
    int port = 0;
    b.AddListeningPort("unix://" + path, grpc::InsecureServerCredentials(), &port);
    b.RegisterService(unixService.get());
    {
      // gRPC binds inside BuildAndStart and offers no mode: create the socket file as 0600
      // rather than chmod it after others could have connected. The umask is process-wide,
      // so this only ever narrows what another thread creates in the meantime.
      UmaskGuard g(0177);
      unixServer = b.BuildAndStart();
    }
    if (!unixServer || port == 0) {
      unixServer.reset();
      return fail(ErrorCode::Unavailable, fmt::format("api: cannot listen on {}", path));
    }
    if (::chmod(path.c_str(), 0600) != 0) return failErrno(fmt::format("api: chmod {}", path));
    return {};
  }

  void stop() {
    {
      std::lock_guard lk(shared.mu);
      shared.stopping = true;
      for (const auto& w : shared.watchers) {
        std::lock_guard wl(w->mu);
        w->closed = true;
        w->cv.notify_all();
      }
    }
    auto deadline = std::chrono::system_clock::now() + kShutdownGrace;
    if (tlsServer) tlsServer->Shutdown(deadline);
    if (unixServer) unixServer->Shutdown(deadline);
    if (unixServer) {
      struct stat st {};
      const auto& path = shared.config.unixPath;
      if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
    }
    tlsServer.reset();
    unixServer.reset();
    tcpPort = 0;
  }
};

ApiServer::ApiServer(AgentControl& control, ApiServerConfig config)
    : impl_(std::make_unique<Impl>(control, std::move(config))) {}

ApiServer::~ApiServer() { shutdown(); }

Result<void> ApiServer::start() {
  if (impl_->state != Impl::State::New)
    return fail(ErrorCode::Internal, "api: a server starts once");
  const auto& c = impl_->shared.config;
  if (c.unixPath.empty() && !c.tcpAddress)
    return fail(ErrorCode::InvalidArgument, "api: neither a unix socket nor a TCP address");
  if (c.tcpAddress) {
    if (auto r = impl_->startTls(*c.tcpAddress); !r) {
      impl_->state = Impl::State::Stopped;
      return r;
    }
  }
  if (!c.unixPath.empty()) {
    if (auto r = impl_->startUnix(c.unixPath); !r) {
      impl_->stop();
      impl_->state = Impl::State::Stopped;
      return r;
    }
  }
  impl_->state = Impl::State::Running;
  return {};
}

void ApiServer::shutdown() {
  if (!impl_ || impl_->state != Impl::State::Running) return;
  impl_->stop();
  impl_->state = Impl::State::Stopped;
}

int ApiServer::tcpPort() const { return impl_->tcpPort; }

std::optional<Role> parseRole(std::string_view name) {
  if (name == "viewer") return Role::Viewer;
  if (name == "admin") return Role::Admin;
  return std::nullopt;
}

std::string_view roleName(Role r) { return r == Role::Admin ? "admin" : "viewer"; }

}  // namespace edgeward::api
