#include "api/grpc_client.h"

#include <grpcpp/grpcpp.h>

#include "api/pem.h"
#include "api/convert.h"
#include "edgeward/v1/agent.grpc.pb.h"

namespace edgeward::api {
namespace {

constexpr int kMaxMessageBytes = 64 << 20;

Error toError(const grpc::Status& s, const std::string& server) {
  std::string msg = s.error_message();
  for (auto& c : msg)
    if (c == '\n' || c == '\r') c = ' ';
  if (msg.empty()) msg = fmt::format("gRPC status {}", static_cast<int>(s.error_code()));
  // gRPC's own words for "no connection" (socket missing, TLS handshake refused) do not say
  // which agent; the agent's own UNAVAILABLE messages pass unchanged.
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE &&
      msg.starts_with("failed to connect to all addresses"))
    msg = fmt::format("cannot reach the agent at {}: {}", server, msg);
  return Error(convert::fromGrpcCode(s.error_code()), std::move(msg));
}

}  // namespace

struct AgentClient::Impl {
  ClientOptions options;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Agent::Stub> stub;

  void prepare(grpc::ClientContext& ctx) const {
    ctx.set_deadline(std::chrono::system_clock::now() + options.timeout);
  }

  // Runs one unary RPC; fill turns the response into the result.
  template <typename Req, typename Resp, typename Fill>
  auto unary(grpc::Status (v1::Agent::Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
             const Req& req, Fill&& fill) -> decltype(fill(std::declval<Resp&>())) {
    grpc::ClientContext ctx;
    prepare(ctx);
    Resp resp;
    auto s = (stub.get()->*method)(&ctx, req, &resp);
    if (!s.ok()) return std::unexpected(toError(s, options.server));
    return fill(resp);
  }
};

AgentClient::AgentClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AgentClient::AgentClient(AgentClient&&) noexcept = default;
AgentClient& AgentClient::operator=(AgentClient&&) noexcept = default;
AgentClient::~AgentClient() = default;

Result<AgentClient> AgentClient::connect(const ClientOptions& o) {
  if (o.server.empty()) return fail(ErrorCode::InvalidArgument, "no server address");
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (o.server.starts_with("unix:")) {
    // The socket's mode is the access control; certificates play no part.
    creds = grpc::InsecureChannelCredentials();
  } else {
    if (o.caFile.empty() || o.certFile.empty() || o.keyFile.empty())
      return fail(ErrorCode::InvalidArgument,
                  fmt::format("{}: the agent's TCP listener needs mutual TLS: give --ca, --cert "
                              "and --key",
                              o.server));
    EW_TRY(ca, readPem(o.caFile, "CA file"));
    EW_TRY(cert, readPem(o.certFile, "certificate file"));
    EW_TRY(key, readPem(o.keyFile, "key file"));
    grpc::SslCredentialsOptions so;
    so.pem_root_certs = *ca;
    so.pem_cert_chain = *cert;
    so.pem_private_key = *key;
    creds = grpc::SslCredentials(so);
    if (!o.serverName.empty()) args.SetSslTargetNameOverride(o.serverName);
  }
  auto impl = std::make_unique<Impl>();
  impl->options = o;
  impl->channel = grpc::CreateCustomChannel(o.server, creds, args);
  if (!impl->channel)
    return fail(ErrorCode::InvalidArgument, fmt::format("bad server {}", o.server));
  impl->stub = v1::Agent::NewStub(impl->channel);
  return AgentClient(std::move(impl));
}

const std::string& AgentClient::server() const { return impl_->options.server; }

Result<ApplyResult> AgentClient::applyPolicy(const ApplyRequest& r) {
  v1::ApplyPolicyRequest req;
  req.set_yaml(r.yaml);
  req.set_source(r.source);
  if (r.ifVersion) req.set_if_version(*r.ifVersion);
  req.set_dry_run(r.dryRun);
  return impl_->unary(&v1::Agent::Stub::ApplyPolicy, req,
                      [](v1::ApplyPolicyResponse& resp) { return convert::fromProto(resp); });
}

Result<ApplyResult> AgentClient::patchPolicy(const PatchRequest& r) {
  v1::PatchPolicyRequest req;
  for (const auto& ip : r.identities) {
    auto* p = req.add_identities();
    p->set_identity(ip.identity);
    for (const auto& a : ip.add) p->add_add(a);
    for (const auto& d : ip.remove) p->add_remove(d);
  }
  if (r.ifVersion) req.set_if_version(*r.ifVersion);
  req.set_dry_run(r.dryRun);
  return impl_->unary(&v1::Agent::Stub::PatchPolicy, req,
                      [](v1::ApplyPolicyResponse& resp) { return convert::fromProto(resp); });
}

Result<std::pair<VersionInfo, std::string>> AgentClient::getPolicy(std::optional<uint64_t> v) {
  v1::GetPolicyRequest req;
  if (v) req.set_version(*v);
  return impl_->unary(&v1::Agent::Stub::GetPolicy, req, [](v1::GetPolicyResponse& resp) {
    return Result<std::pair<VersionInfo, std::string>>(
        std::pair{convert::fromProto(resp.version()), std::move(*resp.mutable_yaml())});
  });
}

Result<policy::PolicyDiff> AgentClient::diffPolicy(const std::string& yaml,
                                                   const std::string& source) {
  v1::DiffPolicyRequest req;
  req.set_yaml(yaml);
  req.set_source(source);
  return impl_->unary(&v1::Agent::Stub::DiffPolicy, req,
                      [](v1::DiffPolicyResponse& resp) { return convert::fromProto(resp.diff()); });
}

Result<VersionInfo> AgentClient::rollbackPolicy(std::optional<uint64_t> to) {
  v1::RollbackPolicyRequest req;
  if (to) req.set_to(*to);
  return impl_->unary(&v1::Agent::Stub::RollbackPolicy, req, [](v1::RollbackPolicyResponse& resp) {
    return Result<VersionInfo>(convert::fromProto(resp.version()));
  });
}

Result<std::vector<VersionInfo>> AgentClient::listVersions() {
  return impl_->unary(&v1::Agent::Stub::ListVersions, v1::ListVersionsRequest{},
                      [](v1::ListVersionsResponse& resp) {
                        std::vector<VersionInfo> out;
                        for (const auto& v : resp.versions()) out.push_back(convert::fromProto(v));
                        return Result<std::vector<VersionInfo>>(std::move(out));
                      });
}

Result<Status> AgentClient::status() {
  return impl_->unary(&v1::Agent::Stub::GetStatus, v1::GetStatusRequest{},
                      [](v1::GetStatusResponse& resp) {
                        return Result<Status>(convert::fromProto(resp.status()));
                      });
}

Result<std::string> AgentClient::upgradeProgram(const std::string& objectPath) {
  v1::UpgradeProgramRequest req;
  req.set_object_path(objectPath);
  return impl_->unary(&v1::Agent::Stub::UpgradeProgram, req, [](v1::UpgradeProgramResponse& resp) {
    return Result<std::string>(std::move(*resp.mutable_report()));
  });
}

Result<void> AgentClient::setSwitches(std::optional<bool> synLimit) {
  v1::SetSwitchesRequest req;
  if (synLimit) req.set_syn_limit(*synLimit);
  return impl_->unary(&v1::Agent::Stub::SetSwitches, req,
                      [](v1::SetSwitchesResponse&) { return Result<void>(); });
}

Result<std::pair<ModuleInfo, bool>> AgentClient::loadModule(const std::string& manifest,
                                                            const std::string& wasm,
                                                            const std::string& source) {
  v1::LoadModuleRequest req;
  req.set_manifest(manifest);
  req.set_wasm(wasm);
  req.set_source(source);
  return impl_->unary(&v1::Agent::Stub::LoadModule, req, [](v1::LoadModuleResponse& resp) {
    ModuleInfo m;
    m.kind = resp.kind();
    m.name = resp.name();
    return Result<std::pair<ModuleInfo, bool>>(std::pair{m, resp.replaced()});
  });
}

Result<void> AgentClient::unloadModule(const std::string& kind, const std::string& name) {
  v1::UnloadModuleRequest req;
  req.set_kind(kind);
  req.set_name(name);
  return impl_->unary(&v1::Agent::Stub::UnloadModule, req,
                      [](v1::UnloadModuleResponse&) { return Result<void>(); });
}

Result<std::vector<ModuleInfo>> AgentClient::listModules() {
  return impl_->unary(&v1::Agent::Stub::ListModules, v1::ListModulesRequest{},
                      [](v1::ListModulesResponse& resp) {
                        std::vector<ModuleInfo> out;
                        for (const auto& m : resp.modules()) out.push_back(convert::fromProto(m));
                        return Result<std::vector<ModuleInfo>>(std::move(out));
                      });
}

Result<FunctionOutput> AgentClient::invokeFunction(const std::string& name,
                                                   const std::string& input) {
  v1::InvokeFunctionRequest req;
  req.set_name(name);
  req.set_input(input);
  return impl_->unary(&v1::Agent::Stub::InvokeFunction, req, [](v1::InvokeFunctionResponse& r) {
    return Result<FunctionOutput>(FunctionOutput{r.stdout(), r.stderr(), r.exit_code()});
  });
}

namespace {

// Reads a server stream until onMessage returns false, `stop` is requested or the server ends
// it; success unless the server ended it with an error. onOpen, if set, runs once the server
// has sent its headers (it has registered the stream).
template <typename Msg, typename Open, typename OnMessage>
Result<void> readStream(const std::string& server, std::stop_token stop, Open open,
                        OnMessage onMessage, const std::function<void()>& onOpen = {}) {
  grpc::ClientContext ctx;
  bool stopped = false;  // by us: onMessage or stop
  std::stop_callback onStop(stop, [&] { ctx.TryCancel(); });
  auto reader = open(&ctx);
  if (onOpen) {
    reader->WaitForInitialMetadata();
    onOpen();
  }
  Msg m;
  while (reader->Read(&m)) {
    if (!onMessage(m)) {
      stopped = true;
      ctx.TryCancel();
      break;
    }
  }
  auto s = reader->Finish();
  if (s.ok() || stopped || (stop.stop_requested() && s.error_code() == grpc::StatusCode::CANCELLED))
    return {};
  return std::unexpected(toError(s, server));
}

}  // namespace

Result<void> AgentClient::watch(const std::function<bool(const WatchEvent&)>& onEvent,
                                std::stop_token stop, const std::function<void()>& onSubscribed) {
  return readStream<v1::WatchEvent>(
      impl_->options.server, stop,
      [&](grpc::ClientContext* ctx) { return impl_->stub->Watch(ctx, v1::WatchRequest{}); },
      [&](const v1::WatchEvent& pe) { return onEvent(convert::fromProto(pe)); },
      [&] {
        if (onSubscribed) onSubscribed();
      });
}

Result<void> AgentClient::events(
    const EventsRequest& req,
    const std::function<bool(const std::vector<EventRecord>&, uint64_t)>& onBatch,
    std::stop_token stop) {
  v1::EventsRequest pr;
  for (const auto& k : req.kinds) pr.add_kinds(k);
  pr.set_rule(req.rule);
  pr.set_identity(req.identity);
  pr.set_verdict(req.verdict);
  pr.set_port(req.port);
  pr.set_recent(req.recent);
  pr.set_follow(req.follow);
  std::vector<EventRecord> batch;
  return readStream<v1::EventsResponse>(
      impl_->options.server, stop,
      [&](grpc::ClientContext* ctx) { return impl_->stub->Events(ctx, pr); },
      [&](const v1::EventsResponse& resp) {
        batch.clear();
        for (const auto& e : resp.events())
          batch.push_back({e.kind(),      e.time_ns(),     e.verdict(),     e.family(),
                           e.src(),       e.dst(),         e.proto(),       e.sport(),
                           e.dport(),     e.direction(),   e.reason(),      e.ifindex(),
                           e.interface(), e.rule_id(),     e.rule(),        e.identity(),
                           e.pkt_len(),   e.sampled_out(), e.duration_ns(), e.netns()});
        return onBatch(batch, resp.lost());
      });
}

}  // namespace edgeward::api
