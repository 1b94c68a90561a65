#include "agent/controller.h"

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "agent/policy_store.h"
#include "common/yaml_reader.h"
#include "edgeward/v1/agent.grpc.pb.h"
#include "policy/policy.h"

namespace edgeward::agent {

struct Controller::Impl final : public edgeward::v1::Controller::Service {
  ControllerConfig cfg;
  std::mutex mu;
  std::condition_variable changed;
  std::map<std::string, GroupState> groups;
  bool stopping = false;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::thread poller;

  grpc::Status Follow(grpc::ServerContext* ctx, const edgeward::v1::FollowRequest* req,
                      grpc::ServerWriter<edgeward::v1::PolicyPush>* out) override {
    if (req->group().empty())
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "group is required");
    uint64_t have = req->have_version();
    out->SendInitialMetadata();  // tells the follower it is connected before any push
    std::unique_lock lock(mu);
    groups[req->group()].followers++;
    while (!stopping && !ctx->IsCancelled()) {
      const GroupState& g = groups[req->group()];
      if (g.version > have && !g.yaml.empty()) {
        edgeward::v1::PolicyPush push;
        push.set_group(req->group());
        push.set_version(g.version);
        push.set_yaml(g.yaml);
        push.set_hash(g.hash);
        have = g.version;
        lock.unlock();
        bool ok = out->Write(push);
        lock.lock();
        if (!ok) break;
        continue;
      }
      changed.wait_for(lock, std::chrono::milliseconds(200));
    }
    groups[req->group()].followers--;
    return stopping ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "controller shutting down")
                    : grpc::Status::OK;
  }

  std::vector<std::string> reload() {
    std::vector<std::string> updated;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(cfg.policyDir, ec)) {
      if (entry.path().extension() != ".yaml") continue;
      std::string group = entry.path().stem().string();
      auto text = yaml::readFile(entry.path().string(), 64u << 20);
      if (!text) {
        fmt::print(stderr, "edgeward controller: {}\n", text.error().str());
        continue;
      }
      const std::string& yaml = *text;
      std::string hash = PolicyStore::hashOf(yaml);
      std::lock_guard lock(mu);
      GroupState& g = groups[group];
      if (hash == g.hash) continue;
      auto parsed = policy::parsePolicy(yaml, entry.path().string());
      if (!parsed) {
        if (g.error != parsed.error().str()) {
          g.error = parsed.error().str();
          fmt::print(stderr, "edgeward controller: group {}: not served: {}\n", group, g.error);
        }
        continue;
      }
      g.error.clear();
      g.yaml = yaml;
      g.hash = hash;
      // Versions stay increasing across controller restarts (followers remember theirs).
      auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
      g.version = std::max<uint64_t>(g.version + 1, static_cast<uint64_t>(now));
      updated.push_back(group);
    }
    if (!updated.empty()) changed.notify_all();
    return updated;
  }
};

Controller::Controller(ControllerConfig cfg) : impl_(std::make_unique<Impl>()) {
  impl_->cfg = std::move(cfg);
}

Controller::~Controller() { shutdown(); }

Result<void> Controller::start() {
  auto& I = *impl_;
  if (!std::filesystem::is_directory(I.cfg.policyDir))
    return fail(ErrorCode::InvalidArgument,
                fmt::format("{}: not a directory of <group>.yaml policies", I.cfg.policyDir));
  I.reload();
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!I.cfg.ca.empty()) {
    grpc::SslServerCredentialsOptions o(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    EW_TRY(ca, yaml::readFile(I.cfg.ca, 1u << 20));
    EW_TRY(cert, yaml::readFile(I.cfg.cert, 1u << 20));
    EW_TRY(key, yaml::readFile(I.cfg.key, 1u << 20));
    o.pem_root_certs = *ca;
    o.pem_key_cert_pairs.push_back({*key, *cert});
    creds = grpc::SslServerCredentials(o);
  }
  grpc::ServerBuilder b;
  b.AddListeningPort(I.cfg.listen, creds, &I.port);
  b.RegisterService(&I);
  I.server = b.BuildAndStart();
  if (!I.server || I.port == 0)
    return fail(ErrorCode::Unavailable, fmt::format("cannot listen on {}", I.cfg.listen));
  I.poller = std::thread([this] {
    std::unique_lock lock(impl_->mu);
    while (!impl_->stopping) {
      lock.unlock();
      impl_->reload();
      lock.lock();
      impl_->changed.wait_for(lock, std::chrono::milliseconds(impl_->cfg.pollMs),
                              [this] { return impl_->stopping; });
    }
  });
  return {};
}

void Controller::shutdown() {
  auto& I = *impl_;
  {
    std::lock_guard lock(I.mu);
    if (I.stopping) return;
    I.stopping = true;
  }
  I.changed.notify_all();
  if (I.server) I.server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (I.poller.joinable()) I.poller.join();
}

std::vector<std::string> Controller::reload() { return impl_->reload(); }

std::map<std::string, GroupState> Controller::groups() {
  std::lock_guard lock(impl_->mu);
  return impl_->groups;
}

int Controller::port() const { return impl_->port; }

}  // namespace edgeward::agent
