#include "agent/follower.h"

#include <unistd.h>

#include <random>

#include <grpcpp/grpcpp.h>

#include "common/yaml_reader.h"
#include "edgeward/v1/agent.grpc.pb.h"

namespace edgeward::agent {
namespace {

Result<std::shared_ptr<grpc::ChannelCredentials>> credentials(const UpstreamConfig& cfg) {
  if (cfg.tls.ca.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions o;
  EW_TRY(ca, yaml::readFile(cfg.tls.ca, 1u << 20));
  EW_TRY(cert, yaml::readFile(cfg.tls.cert, 1u << 20));
  EW_TRY(key, yaml::readFile(cfg.tls.key, 1u << 20));
  o.pem_root_certs = *ca;
  o.pem_cert_chain = *cert;
  o.pem_private_key = *key;
  return grpc::SslCredentials(o);
}

}  // namespace

Follower::Follower(Agent& agent, UpstreamConfig cfg) : agent_(agent), cfg_(std::move(cfg)) {
  if (cfg_.node.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    cfg_.node = host;
  }
  thread_ = std::thread([this] { run(); });
}

Follower::~Follower() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    if (ctx_) ctx_->TryCancel();
  }
  cv_.notify_all();
  thread_.join();
}

bool Follower::sleepFor(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  return !cv_.wait_for(lock, d, [this] { return stopping_; });
}

void Follower::run() {
  using namespace std::chrono_literals;
  std::mt19937 rng(std::random_device{}());
  auto backoff = 500ms;
  uint64_t have = 0;  // the controller's version for our group already applied
  agent_.setUpstreamState("connecting " + cfg_.address);
  while (true) {
    auto creds = credentials(cfg_);
    if (!creds) {
      agent_.setUpstreamState(
          fmt::format("disconnected {}: {}", cfg_.address, creds.error().str()));
      if (!sleepFor(std::chrono::duration_cast<std::chrono::milliseconds>(backoff))) return;
      backoff = std::min<std::chrono::milliseconds>(backoff * 2, 30s);
      continue;
    }
    auto channel = grpc::CreateChannel(cfg_.address, *creds);
    auto stub = edgeward::v1::Controller::NewStub(channel);
    grpc::ClientContext ctx;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      ctx_ = &ctx;
    }
    edgeward::v1::FollowRequest req;
    req.set_node(cfg_.node);
    req.set_group(cfg_.group);
    req.set_have_version(have);
    auto stream = stub->Follow(&ctx, req);
    edgeward::v1::PolicyPush push;
    bool connected = false;
    stream->WaitForInitialMetadata();  // returns early when the call failed
    if (channel->GetState(false) == GRPC_CHANNEL_READY) {
      connected = true;
      backoff = 500ms;
      agent_.setUpstreamState(fmt::format("connected {} (group {})", cfg_.address, cfg_.group));
    }
    std::string lastError;
    while (stream->Read(&push)) {
      if (!connected) {
        connected = true;
        backoff = 500ms;
      }
      std::string origin =
          fmt::format("upstream {} group {} v{}", cfg_.address, push.group(), push.version());
      auto r = agent_.applyUpstream(push.yaml(), origin);
      if (r) {
        have = push.version();
        agent_.setUpstreamState(fmt::format("connected {} (group {}, controller version {})",
                                            cfg_.address, cfg_.group, have));
      } else {
        // A bad policy from upstream changes nothing here; the last good one stays.
        lastError = r.error().str();
        agent_.setUpstreamState(fmt::format("connected {}: refused controller version {}: {}",
                                            cfg_.address, push.version(), lastError));
      }
    }
    grpc::Status st = stream->Finish();
    {
      std::lock_guard lock(mu_);
      ctx_ = nullptr;
      if (stopping_) return;
    }
    agent_.setUpstreamState(fmt::format("disconnected {}: {}", cfg_.address,
                                        st.ok() ? "stream ended" : st.error_message()));
    // Exponential backoff with jitter, capped at 30 s.
    auto wait = backoff + std::chrono::milliseconds(rng() % (backoff.count() / 2 + 1));
    if (!sleepFor(std::chrono::duration_cast<std::chrono::milliseconds>(wait))) return;
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, 30s);
  }
}

}  // namespace edgeward::agent
