// The gRPC API adapter: listeners, mutual TLS, roles, status codes and Watch, against an
// in-memory AgentControl. Certificates are made with the openssl CLI in a temporary directory.
// Needs no root: nothing here touches the kernel.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <list>
#include <mutex>
#include <sstream>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "api/grpc_client.h"
#include "api/http_server.h"
#include "api/grpc_server.h"
#include "common/unique_fd.h"
#include "edgeward/v1/agent.grpc.pb.h"
#include "support/pki.h"
#include "support/run.h"

namespace {

using namespace edgeward;
using namespace edgeward::api;
using edgeward::testing::Pki;
using namespace std::chrono_literals;

constexpr const char* kViewerUri = "spiffe://edgeward.test/ops/viewer";

// A policy history in memory that records every call it gets.
class FakeControl : public AgentControl {
 public:
  struct Call {
    std::string method;
    Caller who;  // empty identity for methods that take no caller
  };

  Result<ApplyResult> applyPolicy(const Caller& who, const ApplyRequest& req) override {
    std::lock_guard lk(mu_);
    calls_.push_back({"applyPolicy", who});
    lastApply_ = req;
    if (req.yaml.find("defaultAction: maybe") != std::string::npos)
      return fail(ErrorCode::InvalidArgument,
                  req.source + ":6: spec.defaultAction: \"maybe\" is not allow or deny");
    if (req.ifVersion && *req.ifVersion != current())
      return fail(ErrorCode::Conflict,
                  fmt::format("policy is at version {}, not {}", current(), *req.ifVersion));
    ApplyResult r;
    r.diff = sampleDiff();
    if (req.dryRun) {
      r.version = currentInfo();
      return r;
    }
    VersionInfo v{current() + 1, "sha256:" + std::to_string(req.yaml.size()),
                  who.identity,  1000,
                  "p",           "apply"};
    history_.push_back({v, req.yaml});
    r.version = v;
    r.changed = true;
    notify({WatchEvent::Kind::PolicyApplied, v, "applied by " + who.identity, 1000});
    return r;
  }

  Result<ApplyResult> patchPolicy(const Caller& who, const PatchRequest& req) override {
    std::lock_guard lk(mu_);
    calls_.push_back({"patchPolicy", who});
    if (req.ifVersion && *req.ifVersion != current())
      return fail(ErrorCode::Conflict,
                  fmt::format("policy is at version {}, not {}", current(), *req.ifVersion));
    ApplyResult r;
    r.version = currentInfo();
    return r;
  }

  Result<std::pair<VersionInfo, std::string>> getPolicy(std::optional<uint64_t> v) override {
    std::lock_guard lk(mu_);
    calls_.push_back({"getPolicy", {}});
    uint64_t want = v.value_or(current());
    if (want == 0 || want > history_.size())
      return fail(ErrorCode::NotFound, fmt::format("no policy version {}", want));
    return history_[want - 1];
  }

  Result<policy::PolicyDiff> diffPolicy(const std::string&, const std::string&) override {
    std::lock_guard lk(mu_);
    calls_.push_back({"diffPolicy", {}});
    return sampleDiff();
  }

  Result<VersionInfo> rollbackPolicy(const Caller& who, std::optional<uint64_t> to) override {
    std::lock_guard lk(mu_);
    calls_.push_back({"rollbackPolicy", who});
    uint64_t target = to.value_or(current() - 1);
    if (target == 0 || target > history_.size())
      return fail(ErrorCode::NotFound, fmt::format("no policy version {}", target));
    VersionInfo v = history_[target - 1].first;
    v.version = current() + 1;
    v.author = who.identity;
    v.origin = fmt::format("rollback from {}", current());
    history_.push_back({v, history_[target - 1].second});
    notify({WatchEvent::Kind::PolicyRolledBack, v, v.origin, 2000});
    return v;
  }

  Result<std::vector<VersionInfo>> listVersions() override {
    std::lock_guard lk(mu_);
    calls_.push_back({"listVersions", {}});
    std::vector<VersionInfo> out;
    for (const auto& h : history_) out.push_back(h.first);
    return out;
  }

  Result<Status> status() override {
    std::lock_guard lk(mu_);
    calls_.push_back({"status", {}});
    Status s;
    s.policy = currentInfo();
    s.interfaces = {{"eth0", "", "xdp-native", true}};
    s.programTag = "a1b2c3d4e5f60718";
    s.programLoadedAtMs = 1764633600123;
    s.packetsPassed = 10;
    s.packetsDropped = 3;
    s.synLimit = synLimit_;
    return s;
  }

  std::unique_ptr<Subscription> watch(std::function<void(const WatchEvent&)> fn) override {
    std::lock_guard lk(mu_);
    calls_.push_back({"watch", {}});
    auto it = watchers_.insert(watchers_.end(), std::move(fn));
    return std::make_unique<Sub>(this, it);
  }

  Result<std::string> upgradeProgram(const Caller& who, const std::string& path) override {
    std::lock_guard lk(mu_);
    calls_.push_back({"upgradeProgram", who});
    if (path == "/missing.o") return fail(ErrorCode::NotFound, "/missing.o: No such file");
    return std::string("program tag a1b2c3d4e5f60718 -> 0f0e0d0c0b0a0908");
  }

  Result<void> setSwitches(const Caller& who, std::optional<bool> synLimit) override {
    std::lock_guard lk(mu_);
    calls_.push_back({"setSwitches", who});
    if (synLimit) synLimit_ = *synLimit;
    return {};
  }

  std::vector<Call> calls() {
    std::lock_guard lk(mu_);
    return calls_;
  }
  size_t watchers() {
    std::lock_guard lk(mu_);
    return watchers_.size();
  }
  ApplyRequest lastApply() {
    std::lock_guard lk(mu_);
    return lastApply_;
  }
  // An event from "the agent", outside any call.
  void emit(const WatchEvent& e) {
    std::lock_guard lk(mu_);
    notify(e);
  }

 private:
  using Watchers = std::list<std::function<void(const WatchEvent&)>>;
  class Sub : public Subscription {
   public:
    Sub(FakeControl* c, Watchers::iterator it) : c_(c), it_(it) {}
    ~Sub() override {
      std::lock_guard lk(c_->mu_);
      c_->watchers_.erase(it_);
    }

   private:
    FakeControl* c_;
    Watchers::iterator it_;
  };

  uint64_t current() const { return history_.size(); }
  VersionInfo currentInfo() const {
    return history_.empty() ? VersionInfo{} : history_.back().first;
  }
  void notify(const WatchEvent& e) {
    for (auto& w : watchers_) w(e);
  }
  static policy::PolicyDiff sampleDiff() {
    policy::PolicyDiff d;
    d.identitiesAdded = {"db"};
    d.identityChanges = {
        {"db", {*policy::parsePrefix("10.1.0.0/16"), *policy::parsePrefix("fd00::/8")}, {}}};
    d.rulesAdded = {{"db-in", "ingress", "", "allow from [db] tcp/5432"}};
    d.defaultActionBefore = d.defaultActionAfter = "deny";
    d.synFloodBefore = d.synFloodAfter = "off";
    return d;
  }

  std::mutex mu_;
  std::vector<Call> calls_;
  std::vector<std::pair<VersionInfo, std::string>> history_;
  Watchers watchers_;
  ApplyRequest lastApply_;
  bool synLimit_ = true;
};

Pki* gPki = nullptr;

class ApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!gPki) gPki = new Pki();
  }
  static void TearDownTestSuite() {
    delete gPki;
    gPki = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(gPki->ok()) << gPki->log();
    ApiServerConfig c;
    c.unixPath = gPki->file("run/" + std::to_string(::getpid()) + "/agent.sock");
    c.tcpAddress = "127.0.0.1:0";
    c.caFile = gPki->file("ca.crt");
    c.certFile = gPki->file("server.crt");
    c.keyFile = gPki->file("server.key");
    // viewer-bob is the viewer certificate's CN: its URI SAN must win, or it would be an admin.
    c.roles = {
        {"admin-alice", Role::Admin}, {kViewerUri, Role::Viewer}, {"viewer-bob", Role::Admin}};
    c.log = [this](const std::string& line) {
      std::lock_guard lk(logMu_);
      log_.push_back(line);
    };
    unixPath_ = c.unixPath;
    server_ = std::make_unique<ApiServer>(control_, c);
    auto r = server_->start();
    ASSERT_TRUE(r) << r.error().str();
    port_ = server_->tcpPort();
    ASSERT_GT(port_, 0);
  }

  void TearDown() override { server_.reset(); }

  std::string tcp() const { return "127.0.0.1:" + std::to_string(port_); }

  AgentClient client(const std::string& who, const std::string& ca = "ca") {
    ClientOptions o;
    o.server = tcp();
    o.caFile = gPki->file(ca + ".crt");
    o.certFile = gPki->file(who + ".crt");
    o.keyFile = gPki->file(who + ".key");
    o.timeout = 10s;
    auto c = AgentClient::connect(o);
    EXPECT_TRUE(c) << c.error().str();
    return std::move(*c);
  }

  AgentClient local() {
    ClientOptions o;
    o.server = "unix://" + unixPath_;
    auto c = AgentClient::connect(o);
    EXPECT_TRUE(c) << c.error().str();
    return std::move(*c);
  }

  // A raw stub, to see gRPC status codes as they are on the wire. who = "" sends no certificate.
  std::unique_ptr<v1::Agent::Stub> stub(const std::string& who) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = read("ca.crt");
    if (!who.empty()) {
      o.pem_cert_chain = read(who + ".crt");
      o.pem_private_key = read(who + ".key");
    }
    return v1::Agent::NewStub(grpc::CreateChannel(tcp(), grpc::SslCredentials(o)));
  }

  static std::string read(const std::string& name) {
    std::ifstream in(gPki->file(name));
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  std::vector<std::string> log() {
    std::lock_guard lk(logMu_);
    return log_;
  }

  std::string policyYaml(const std::string& defaultAction = "deny") {
    return "apiVersion: edgeward.io/v1\nkind: Policy\nmetadata:\n  name: p\nspec:\n"
           "  defaultAction: " +
           defaultAction + "\n";
  }

  FakeControl control_;
  std::unique_ptr<ApiServer> server_;
  std::string unixPath_;
  int port_ = 0;
  std::mutex logMu_;
  std::vector<std::string> log_;
};

std::unique_ptr<grpc::ClientContext> ctx() {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(std::chrono::system_clock::now() + 10s);
  return c;
}

// --- mutual TLS -------------------------------------------------------------------------------

TEST_F(ApiTest, NoClientCertificateFailsTheHandshake) {
  v1::GetStatusResponse resp;
  auto s = stub("")->GetStatus(ctx().get(), {}, &resp);
  EXPECT_TRUE(s.error_code() == grpc::StatusCode::UNAVAILABLE ||
              s.error_code() == grpc::StatusCode::UNAUTHENTICATED)
      << s.error_code() << " " << s.error_message();
  EXPECT_TRUE(control_.calls().empty());
}

TEST_F(ApiTest, CertificateFromAnotherCaIsRejected) {
  auto c = client("foreign");
  auto r = c.status();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::Unavailable) << r.error().str();
  EXPECT_TRUE(control_.calls().empty());
}

TEST_F(ApiTest, ExpiredCertificateIsRejected) {
  auto c = client("expired");
  auto r = c.applyPolicy({policyYaml()});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::Unavailable) << r.error().str();
  EXPECT_TRUE(control_.calls().empty());
}

TEST_F(ApiTest, CertificateWithoutIdentityIsUnauthenticated) {
  v1::GetStatusResponse resp;
  auto s = stub("anon")->GetStatus(ctx().get(), {}, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  EXPECT_TRUE(control_.calls().empty());
  auto l = log();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_NE(l[0].find("GetStatus"), std::string::npos) << l[0];
}

TEST_F(ApiTest, UnknownIdentityIsDeniedEverything) {
  auto s = stub("unknown");
  v1::GetStatusResponse st;
  auto r1 = s->GetStatus(ctx().get(), {}, &st);
  EXPECT_EQ(r1.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(r1.error_message(), "\"mallory\" has no role on this agent");
  v1::ListVersionsResponse lv;
  EXPECT_EQ(s->ListVersions(ctx().get(), {}, &lv).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(control_.calls().empty());
  auto l = log();
  ASSERT_EQ(l.size(), 2u);
  EXPECT_NE(l[0].find("GetStatus"), std::string::npos) << l[0];
  EXPECT_NE(l[0].find("\"mallory\""), std::string::npos) << l[0];
  EXPECT_NE(l[1].find("ListVersions"), std::string::npos) << l[1];
}

// --- roles --------------------------------------------------------------------------------------

TEST_F(ApiTest, ViewerMayReadButNotApply) {
  auto s = stub("viewer");
  v1::ApplyPolicyRequest req;
  req.set_yaml(policyYaml());
  v1::ApplyPolicyResponse resp;
  auto st = s->ApplyPolicy(ctx().get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(st.error_message(),
            std::string("ApplyPolicy needs the admin role; \"") + kViewerUri + "\" is a viewer");
  EXPECT_TRUE(control_.calls().empty());
  auto l = log();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_NE(l[0].find("ApplyPolicy"), std::string::npos) << l[0];
  EXPECT_NE(l[0].find(kViewerUri), std::string::npos) << l[0];

  auto c = client("viewer");
  auto status = c.status();
  ASSERT_TRUE(status) << status.error().str();
  EXPECT_EQ(status->programTag, "a1b2c3d4e5f60718");
  EXPECT_EQ(status->programLoadedAtMs, 1764633600123);
  ASSERT_EQ(status->interfaces.size(), 1u);
  EXPECT_EQ(status->interfaces[0].mode, "xdp-native");
  EXPECT_TRUE(c.listVersions());
  EXPECT_TRUE(c.diffPolicy(policyYaml(), "p.yaml"));
  auto rb = c.rollbackPolicy();
  auto sw = c.setSwitches(false);
  auto up = c.upgradeProgram("");
  ASSERT_FALSE(rb || sw || up);
  for (const auto& e : {rb.error(), sw.error(), up.error()})
    EXPECT_EQ(e.code(), ErrorCode::PermissionDenied) << e.str();
  for (const auto& call : control_.calls())
    EXPECT_TRUE(call.who.identity.empty()) << call.method << " reached the agent";
}

TEST_F(ApiTest, AdminAppliesAsItsCommonName) {
  auto c = client("admin");
  ApplyRequest req{policyYaml(), "web.yaml"};
  auto r = c.applyPolicy(req);
  ASSERT_TRUE(r) << r.error().str();
  EXPECT_TRUE(r->changed);
  EXPECT_EQ(r->version.version, 1u);
  EXPECT_EQ(r->version.author, "admin-alice");
  auto calls = control_.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].who.identity, "admin-alice");
  EXPECT_EQ(calls[0].who.role, Role::Admin);
  EXPECT_EQ(control_.lastApply().source, "web.yaml");
  EXPECT_FALSE(control_.lastApply().ifVersion);
  // The diff survives the trip, prefixes included.
  ASSERT_EQ(r->diff.identityChanges.size(), 1u);
  ASSERT_EQ(r->diff.identityChanges[0].added.size(), 2u);
  EXPECT_EQ(r->diff.identityChanges[0].added[1].str(), "fd00::/8");
  EXPECT_EQ(r->diff.rulesAdded.at(0).after, "allow from [db] tcp/5432");
  EXPECT_TRUE(log().empty());

  auto p = c.getPolicy();
  ASSERT_TRUE(p) << p.error().str();
  EXPECT_EQ(p->second, policyYaml());
  auto sw = c.setSwitches(false);
  ASSERT_TRUE(sw) << sw.error().str();
  EXPECT_FALSE(c.status()->synLimit);
  auto up = c.upgradeProgram("/opt/edgeward/firewall.bpf.o");
  ASSERT_TRUE(up) << up.error().str();
  EXPECT_EQ(*up, "program tag a1b2c3d4e5f60718 -> 0f0e0d0c0b0a0908");
}

// --- status codes -------------------------------------------------------------------------------

TEST_F(ApiTest, IfVersionConflictIsAborted) {
  auto c = client("admin");
  ASSERT_TRUE(c.applyPolicy({policyYaml()}));
  ApplyRequest req{policyYaml("allow")};
  req.ifVersion = 1;
  ASSERT_TRUE(c.applyPolicy(req));  // current: 2

  v1::ApplyPolicyRequest stale;
  stale.set_yaml(policyYaml());
  stale.set_if_version(1);
  v1::ApplyPolicyResponse resp;
  auto s = stub("admin")->ApplyPolicy(ctx().get(), stale, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_EQ(s.error_message(), "policy is at version 2, not 1");
  req.ifVersion = 1;
  auto r = c.applyPolicy(req);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::Conflict);
}

TEST_F(ApiTest, BadRequestIsInvalidArgumentWithTheMessageIntact) {
  v1::ApplyPolicyRequest req;
  req.set_yaml(policyYaml("maybe"));
  req.set_source("/etc/edgeward/policy.yaml");
  v1::ApplyPolicyResponse resp;
  auto s = stub("admin")->ApplyPolicy(ctx().get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(),
            "/etc/edgeward/policy.yaml:6: spec.defaultAction: \"maybe\" is not allow or deny");

  auto r = client("admin").applyPolicy({policyYaml("maybe"), "p.yaml"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  EXPECT_EQ(r.error().str(), "p.yaml:6: spec.defaultAction: \"maybe\" is not allow or deny");
}

TEST_F(ApiTest, MissingVersionIsNotFound) {
  v1::GetPolicyRequest req;
  req.set_version(7);
  v1::GetPolicyResponse resp;
  auto s = stub("viewer")->GetPolicy(ctx().get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(), "no policy version 7");
}

TEST_F(ApiTest, DryRunChangesNothing) {
  auto c = client("admin");
  ApplyRequest req{policyYaml()};
  req.dryRun = true;
  auto r = c.applyPolicy(req);
  ASSERT_TRUE(r) << r.error().str();
  EXPECT_FALSE(r->changed);
  EXPECT_TRUE(control_.lastApply().dryRun);
  EXPECT_TRUE(c.listVersions()->empty());
}

// --- unix socket --------------------------------------------------------------------------------

TEST_F(ApiTest, UnixSocketIsOwnerOnlyAndItsCallersAreAdmins) {
  struct stat st {};
  ASSERT_EQ(::stat(unixPath_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);

  auto c = local();
  auto r = c.applyPolicy({policyYaml()});
  ASSERT_TRUE(r) << r.error().str();
  auto calls = control_.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_TRUE(calls[0].who.identity.starts_with("local")) << calls[0].who.identity;
  EXPECT_EQ(calls[0].who.role, Role::Admin);
  auto v = c.listVersions();
  ASSERT_TRUE(v);
  EXPECT_EQ(v->size(), 1u);
}

TEST_F(ApiTest, SecondServerOnTheSameSocketIsRefusedAndShutdownRemovesIt) {
  FakeControl other;
  ApiServerConfig c;
  c.unixPath = unixPath_;
  ApiServer second(other, c);
  auto r = second.start();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().str(), "api: another agent is listening on " + unixPath_);
  EXPECT_TRUE(local().status());  // the first one still serves

  server_->shutdown();
  EXPECT_NE(::access(unixPath_.c_str(), F_OK), 0);
}

TEST_F(ApiTest, StaleSocketIsReplaced) {
  server_.reset();  // removes the socket; leave a stale one the way a crash would
  std::string path = gPki->file("stale.sock");
  {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, path.c_str(), path.size());
    ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  }  // closed without unlink: nobody listens, the file stays
  ASSERT_EQ(::access(path.c_str(), F_OK), 0);
  ApiServerConfig c;
  c.unixPath = path;
  ApiServer s(control_, c);
  auto r = s.start();
  ASSERT_TRUE(r) << r.error().str();
  unixPath_ = path;
  EXPECT_TRUE(local().status());
}

TEST_F(ApiTest, UnreachableAgentIsUnavailable) {
  ClientOptions o;
  o.server = "unix://" + gPki->file("nobody-here.sock");
  auto c = AgentClient::connect(o);
  ASSERT_TRUE(c);
  auto r = c->status();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::Unavailable);
  EXPECT_EQ(r.error().str().find('\n'), std::string::npos);

  o.server = tcp();
  auto noCerts = AgentClient::connect(o);
  ASSERT_FALSE(noCerts);
  EXPECT_EQ(noCerts.error().code(), ErrorCode::InvalidArgument);
}

// --- Watch --------------------------------------------------------------------------------------

// Runs a watch on a thread and collects what it receives.
class Watcher {
 public:
  explicit Watcher(AgentClient c) : client_(std::move(c)) {
    std::promise<void> subscribed;
    auto ready = subscribed.get_future();
    thread_ = std::jthread([this, p = std::move(subscribed)](std::stop_token stop) mutable {
      auto r = client_.watch(
          [this](const WatchEvent& e) {
            std::lock_guard lk(mu_);
            events_.push_back(e);
            cv_.notify_all();
            return true;
          },
          stop, [&p] { p.set_value(); });
      std::lock_guard lk(mu_);
      result_ = r;
      done_ = true;
      cv_.notify_all();
    });
    ready.wait();
  }

  bool waitEvents(size_t n) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, 10s, [&] { return events_.size() >= n; });
  }
  bool waitDone() {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, 10s, [&] { return done_; });
  }
  std::vector<WatchEvent> events() {
    std::lock_guard lk(mu_);
    return events_;
  }
  Result<void> result() {
    std::lock_guard lk(mu_);
    return result_;
  }
  void stop() { thread_.request_stop(); }

 private:
  AgentClient client_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<WatchEvent> events_;
  Result<void> result_;
  bool done_ = false;
  std::jthread thread_;
};

TEST_F(ApiTest, WatchReceivesEventsAndEndsOnShutdown) {
  Watcher viewer(client("viewer"));
  Watcher local(this->local());
  ASSERT_EQ(control_.watchers(), 2u);

  auto admin = client("admin");
  ASSERT_TRUE(admin.applyPolicy({policyYaml()}));
  ASSERT_TRUE(admin.applyPolicy({policyYaml("allow")}));
  ASSERT_TRUE(admin.rollbackPolicy());
  control_.emit({WatchEvent::Kind::UpstreamChanged, {}, "connected 10.0.0.1:7443", 3000});
  control_.emit({WatchEvent::Kind::PluginDisabled, {}, "plugin p disabled: 5 failures", 4000});
  for (auto* w : {&viewer, &local}) {
    ASSERT_TRUE(w->waitEvents(5));
    auto ev = w->events();
    EXPECT_EQ(ev[0].kind, WatchEvent::Kind::PolicyApplied);
    EXPECT_EQ(ev[0].version.version, 1u);
    EXPECT_EQ(ev[0].message, "applied by admin-alice");
    EXPECT_EQ(ev[2].kind, WatchEvent::Kind::PolicyRolledBack);
    EXPECT_EQ(ev[2].version.origin, "rollback from 2");
    EXPECT_EQ(ev[3].kind, WatchEvent::Kind::UpstreamChanged);
    EXPECT_EQ(ev[3].atMs, 3000);
    EXPECT_EQ(ev[4].kind, WatchEvent::Kind::PluginDisabled);
    EXPECT_EQ(ev[4].message, "plugin p disabled: 5 failures");
  }

  auto t0 = std::chrono::steady_clock::now();
  server_->shutdown();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  for (auto* w : {&viewer, &local}) {
    ASSERT_TRUE(w->waitDone());
    auto r = w->result();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ErrorCode::Unavailable);
    EXPECT_EQ(r.error().str(), "agent shutting down");
  }
  EXPECT_EQ(control_.watchers(), 0u);
}

TEST_F(ApiTest, WatchEndsWhenTheClientCancels) {
  Watcher w(client("viewer"));
  ASSERT_EQ(control_.watchers(), 1u);
  w.stop();
  ASSERT_TRUE(w.waitDone());
  EXPECT_TRUE(w.result()) << w.result().error().str();
  // The server notices within its poll interval and drops the subscription.
  for (int i = 0; i < 100 && control_.watchers() > 0; ++i) std::this_thread::sleep_for(20ms);
  EXPECT_EQ(control_.watchers(), 0u);
}

TEST_F(ApiTest, UnknownIdentityCannotWatch) {
  grpc::ClientContext c;
  auto reader = stub("unknown")->Watch(&c, {});
  v1::WatchEvent e;
  EXPECT_FALSE(reader->Read(&e));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(control_.watchers(), 0u);
}

// --- the CLI against the API --------------------------------------------------------------------

using edgeward::testing::Output;

Output run(const std::string& args) { return edgeward::testing::runEdgeward(args); }

class CliTest : public ApiTest {
 protected:
  std::string local() const { return " --server unix://" + unixPath_; }
  std::string as(const std::string& who) const {
    return " --server " + tcp() + " --ca " + gPki->file("ca.crt") + " --cert " +
           gPki->file(who + ".crt") + " --key " + gPki->file(who + ".key");
  }
  std::string policyFile(const std::string& defaultAction = "deny") {
    std::string path = gPki->file("cli-" + defaultAction + ".yaml");
    std::ofstream(path) << policyYaml(defaultAction);
    return path;
  }
};

TEST_F(CliTest, ApplyGetVersionsStatusOverTheUnixSocket) {
  auto file = policyFile();
  auto o = run("policy apply " + file + local());
  ASSERT_EQ(o.code, 0) << o.out;
  EXPECT_NE(o.out.find("+ identity db (2 prefixes)"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("applied policy \"p\" as version 1"), std::string::npos) << o.out;
  EXPECT_EQ(control_.lastApply().source, file);

  o = run("policy get" + local());
  EXPECT_EQ(o.code, 0) << o.out;
  EXPECT_EQ(o.out, policyYaml());

  o = run("policy versions -o json" + local());
  ASSERT_EQ(o.code, 0) << o.out;
  auto v = nlohmann::json::parse(o.out);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0]["version"], 1);
  EXPECT_TRUE(v[0]["author"].get<std::string>().starts_with("local"));

  o = run("status -o json" + local());
  ASSERT_EQ(o.code, 0) << o.out;
  auto st = nlohmann::json::parse(o.out);
  EXPECT_EQ(st["policy"]["version"], 1);
  EXPECT_EQ(st["program"]["tag"], "a1b2c3d4e5f60718");
  EXPECT_EQ(st["packets"]["dropped"], 3);

  o = run("status" + local());
  EXPECT_EQ(o.code, 0) << o.out;
  EXPECT_NE(o.out.find("eth0 xdp-native attached"), std::string::npos) << o.out;
}

TEST_F(CliTest, DryRunAndDiffChangeNothing) {
  auto o = run("policy apply --dry-run " + policyFile() + local());
  ASSERT_EQ(o.code, 0) << o.out;
  EXPECT_NE(o.out.find("nothing applied"), std::string::npos) << o.out;
  o = run("policy diff -o json " + policyFile() + local());
  ASSERT_EQ(o.code, 0) << o.out;
  auto d = nlohmann::json::parse(o.out);
  EXPECT_EQ(d["identityChanges"][0]["added"][1], "fd00::/8");
  EXPECT_EQ(run("policy versions" + local()).out, "no policy applied yet\n");
}

TEST_F(CliTest, ExitCodesSayWhatWentWrong) {
  ASSERT_EQ(run("policy apply " + policyFile() + local()).code, 0);

  auto o = run("policy apply --if-version 7 " + policyFile("allow") + local());
  EXPECT_EQ(o.code, 3) << o.out;
  EXPECT_EQ(o.out, "edgeward: policy is at version 1, not 7\n");

  auto bad = policyFile("maybe");
  o = run("policy apply " + bad + local());
  EXPECT_EQ(o.code, 1) << o.out;
  EXPECT_EQ(o.out, "edgeward: " + bad + ":6: spec.defaultAction: \"maybe\" is not allow or deny\n");

  o = run("policy apply " + policyFile() + as("viewer"));
  EXPECT_EQ(o.code, 4) << o.out;
  EXPECT_EQ(o.out, std::string("edgeward: ApplyPolicy needs the admin role; \"") + kViewerUri +
                       "\" is a viewer\n");

  o = run("status --server unix://" + gPki->file("nobody.sock"));
  EXPECT_EQ(o.code, 5) << o.out;
  EXPECT_EQ(std::count(o.out.begin(), o.out.end(), '\n'), 1) << o.out;

  o = run("status" + as("foreign"));  // the agent refuses the handshake
  EXPECT_EQ(o.code, 5) << o.out;
  EXPECT_TRUE(o.out.starts_with("edgeward: cannot reach the agent at " + tcp())) << o.out;
  EXPECT_EQ(std::count(o.out.begin(), o.out.end(), '\n'), 1) << o.out;

  // The client refuses the agent: its certificate is not from the CA the client trusts.
  o = run("status --server " + tcp() + " --ca " + gPki->file("otherca.crt") + " --cert " +
          gPki->file("admin.crt") + " --key " + gPki->file("admin.key"));
  EXPECT_EQ(o.code, 5) << o.out;
  EXPECT_EQ(std::count(o.out.begin(), o.out.end(), '\n'), 1) << o.out;

  o = run("status --server " + tcp());
  EXPECT_EQ(o.code, 1) << o.out;
  EXPECT_NE(o.out.find("needs mutual TLS"), std::string::npos) << o.out;

  o = run("policy get --version 9" + local());
  EXPECT_EQ(o.code, 1) << o.out;
  EXPECT_EQ(o.out, "edgeward: no policy version 9\n");
}

TEST_F(CliTest, AdminOverMutualTls) {
  auto o = run("policy apply -o json " + policyFile() + as("admin"));
  ASSERT_EQ(o.code, 0) << o.out;
  auto j = nlohmann::json::parse(o.out);
  EXPECT_EQ(j["version"]["author"], "admin-alice");
  EXPECT_EQ(j["changed"], true);

  o = run("program set --syn-limit off" + as("admin"));
  EXPECT_EQ(o.code, 0) << o.out;
  EXPECT_EQ(o.out, "syn limit off\n");
  o = run("program upgrade --object /opt/fw.o" + as("admin"));
  EXPECT_EQ(o.code, 0) << o.out;
  EXPECT_EQ(o.out, "program tag a1b2c3d4e5f60718 -> 0f0e0d0c0b0a0908\n");
  o = run("policy rollback --to 1" + as("admin"));
  EXPECT_EQ(o.code, 0) << o.out;
  EXPECT_NE(o.out.find("version 2 is active (rollback from 1"), std::string::npos) << o.out;
  o = run("status -o json" + as("viewer"));
  ASSERT_EQ(o.code, 0) << o.out;
  EXPECT_EQ(nlohmann::json::parse(o.out)["switches"]["synLimit"], false);
}

TEST_F(CliTest, WatchPrintsJsonLinesUntilInterrupted) {
  Output o;
  std::jthread t([&] {
    o = run("policy versions" + local() + " >/dev/null; timeout --preserve-status -s INT 4 " +
            EW_EDGEWARD_BIN + " watch -o json" + local());
  });
  for (int i = 0; i < 200 && control_.watchers() == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(control_.watchers(), 1u);
  auto admin = client("admin");
  ASSERT_TRUE(admin.applyPolicy({policyYaml()}));
  t.join();
  EXPECT_EQ(o.code, 0) << o.out;
  auto j = nlohmann::json::parse(o.out);
  EXPECT_EQ(j["kind"], "policy-applied");
  EXPECT_EQ(j["version"]["version"], 1);
  EXPECT_EQ(j["message"], "applied by admin-alice");
}

// ---------------------------------------------------------------------------------------------
// The HTTP listener (metrics, functions): mutual TLS and the caller's identity.

class HttpTest : public ApiTest {
 protected:
  static HttpResponse echo(const HttpRequest& r) {
    return {200, "text/plain", r.identity + "|" + r.name + "|" + r.body};
  }
  std::unique_ptr<httplib::SSLClient> tlsClient(int port, const std::string& leaf) {
    std::unique_ptr<httplib::SSLClient> c;
    if (leaf.empty())
      c = std::make_unique<httplib::SSLClient>("127.0.0.1", port);
    else
      c = std::make_unique<httplib::SSLClient>("127.0.0.1", port, gPki->file(leaf + ".crt"),
                                               gPki->file(leaf + ".key"));
    c->set_ca_cert_path(gPki->file("ca.crt").c_str());
    c->enable_server_certificate_verification(true);
    c->set_connection_timeout(3);
    return c;
  }
};

TEST_F(HttpTest, MutualTlsGivesHandlersTheCallersIdentity) {
  HttpServer http(
      HttpTls{gPki->file("server.crt"), gPki->file("server.key"), gPki->file("ca.crt")});
  http.post("/v1/functions/", echo);
  ASSERT_TRUE(http.start("127.0.0.1:0"));
  ASSERT_GT(http.port(), 0);

  auto admin = tlsClient(http.port(), "admin")->Post("/v1/functions/resize", "abc", "text/plain");
  ASSERT_TRUE(admin) << httplib::to_string(admin.error());
  EXPECT_EQ(admin->status, 200);
  EXPECT_EQ(admin->body, "admin-alice|resize|abc");
  auto viewer = tlsClient(http.port(), "viewer")->Post("/v1/functions/x", "", "text/plain");
  ASSERT_TRUE(viewer);
  EXPECT_EQ(viewer->body, std::string(kViewerUri) + "|x|") << "URI SAN before CN";

  EXPECT_FALSE(tlsClient(http.port(), "")->Post("/v1/functions/x", "", "text/plain"))
      << "no client certificate";
  EXPECT_FALSE(tlsClient(http.port(), "foreign")->Post("/v1/functions/x", "", "text/plain"))
      << "another CA";
  EXPECT_FALSE(tlsClient(http.port(), "expired")->Post("/v1/functions/x", "", "text/plain"))
      << "expired";
  auto missing = tlsClient(http.port(), "admin")->Post("/v1/other", "", "text/plain");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
}

// Two event loops serve 40 kept-alive connections at once (a thread per connection would leave
// all but a few waiting), and every request is answered on its own connection.
TEST_F(HttpTest, FewLoopsServeManyKeptAliveConnections) {
  HttpServer http(std::nullopt, 2);
  http.post("/v1/functions/", echo);
  ASSERT_TRUE(http.start("127.0.0.1:0"));
  constexpr int kClients = 40;
  std::vector<std::unique_ptr<httplib::Client>> clients;
  for (int i = 0; i < kClients; i++) {
    clients.push_back(std::make_unique<httplib::Client>("127.0.0.1", http.port()));
    clients.back()->set_keep_alive(true);
    clients.back()->set_read_timeout(2);
  }
  for (int round = 0; round < 3; round++) {
    std::vector<std::thread> ts;
    std::atomic<int> ok{0};
    for (int i = 0; i < kClients; i++)
      ts.emplace_back([&, i] {
        auto body = fmt::format("{}-{}", i, round);
        auto r = clients[i]->Post("/v1/functions/f", body, "text/plain");
        if (r && r->status == 200 && r->body == "|f|" + body) ok++;
      });
    for (auto& t : ts) t.join();
    EXPECT_EQ(ok.load(), kClients) << "round " << round;
  }
}

TEST_F(HttpTest, WrongMethodsUnknownPathsAndHugeBodiesGetTheirStatus) {
  HttpServer http;
  http.get("/metrics", [] { return HttpResponse{200, "text/plain", "m 1\n"}; });
  http.post("/v1/functions/", echo);
  ASSERT_TRUE(http.start("127.0.0.1:0"));
  httplib::Client c("127.0.0.1", http.port());
  auto get = c.Get("/v1/functions/f");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 405);
  auto post = c.Post("/metrics", "", "text/plain");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
  auto missing = c.Get("/nothing");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_NE(missing->body.find("/nothing"), std::string::npos);
  for (const char* path : {"/v1/functions/", "/v1/functions/a/b", "/v1/functionsx"}) {
    auto r = c.Post(path, "", "text/plain");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404) << path << ": a route's name is one non-empty path segment";
  }
  auto huge = c.Post("/v1/functions/f", std::string(HttpServer::kMaxBody + 1, 'x'), "text/plain");
  ASSERT_TRUE(huge);
  EXPECT_EQ(huge->status, 413);
  auto fine = c.Post("/v1/functions/f", "ok", "text/plain");
  ASSERT_TRUE(fine);
  EXPECT_EQ(fine->body, "|f|ok") << "the connection still serves after a refused body";
}

TEST_F(HttpTest, PlainHttpServesGetAndBadSetupIsOneError) {
  HttpServer http;
  http.get("/metrics", [] { return HttpResponse{200, "text/plain; version=0.0.4", "m 1\n"}; });
  ASSERT_TRUE(http.start("127.0.0.1:0"));
  httplib::Client c("127.0.0.1", http.port());
  auto r = c.Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "m 1\n");

  HttpServer taken;
  auto busy = taken.start(fmt::format("127.0.0.1:{}", http.port()));
  ASSERT_FALSE(busy);
  EXPECT_NE(busy.error().str().find(fmt::format("cannot listen on 127.0.0.1:{}", http.port())),
            std::string::npos)
      << busy.error().str();
  HttpServer bad;
  auto noPort = bad.start("localhost");
  ASSERT_FALSE(noPort);
  EXPECT_NE(noPort.error().str().find("is not host:port"), std::string::npos);
  HttpServer badTls(HttpTls{"/nonexistent/server.crt", gPki->file("server.key"), ""});
  auto tls = badTls.start("127.0.0.1:0");
  ASSERT_FALSE(tls);
  EXPECT_NE(tls.error().str().find("/nonexistent/server.crt"), std::string::npos);
  // An empty CA file would leave clients unverified: refused.
  const std::string emptyCa = ::testing::TempDir() + "ew-empty-ca.pem";
  std::ofstream(emptyCa).close();
  HttpServer noCa(HttpTls{gPki->file("server.crt"), gPki->file("server.key"), emptyCa});
  auto ca = noCa.start("127.0.0.1:0");
  ASSERT_FALSE(ca);
  EXPECT_NE(ca.error().str().find("client CA file " + emptyCa + " is empty"), std::string::npos)
      << ca.error().str();
  std::remove(emptyCa.c_str());
}

}  // namespace
