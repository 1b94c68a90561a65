// The real agent binary enforcing on a veth inside namespaces the test creates, driven through
// its API: restarts under a packet stream (SIGTERM and kill -9), policy swaps under a stream,
// concurrent applies, rollback, and follow mode with a real controller.
#include <gtest/gtest.h>
#include <signal.h>
#include <poll.h>
#include <pty.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <bpf/bpf.h>
#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "api/grpc_client.h"
#include "common/netns.h"
#include "common/unique_fd.h"
#include "edgeward/v1/agent.grpc.pb.h"
#include "policy/policy.h"
#include "support/packet.h"
#include "support/pki.h"
#include "support/run.h"

namespace edgeward {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string policyYaml(const std::string& name, const std::vector<uint16_t>& allowUdp,
                       const std::vector<uint16_t>& denyUdp = {}) {
  std::string s = fmt::format(R"(apiVersion: edgeward.io/v1
kind: Policy
metadata:
  name: {}
spec:
  defaultAction: deny
  identities:
    client: [10.77.0.1]
  ingress:
)",
                              name);
  for (uint16_t p : allowUdp)
    s += fmt::format(
        "    - {{name: allow-{0}, from: [client], ports: [{{protocol: udp, port: {0}}}], "
        "action: allow}}\n",
        p);
  for (uint16_t p : denyUdp)
    s += fmt::format(
        "    - {{name: deny-{0}, from: [any], ports: [{{protocol: udp, port: {0}}}], "
        "action: deny}}\n",
        p);
  return s;
}

void writeFile(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }
std::string readFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A throwaway lab: client and server namespaces joined by a veth pair; an agent config that
// enforces on the server end; a pin directory and state directory of its own.
class AgentLab : public ::testing::Test {
 protected:
  void SetUp() override {
    tag_ = fmt::format("ewt-{}-", getpid());
    netns::cleanupDead("ewt-");
    auto c = netns::NetNs::create(tag_ + "c");
    auto s = netns::NetNs::create(tag_ + "s");
    ASSERT_TRUE(c && s) << (c ? s.error().str() : c.error().str());
    client_ = std::move(*c);
    server_ = std::move(*s);
    auto v = netns::VethPair::create({tag_ + "vc", client_.name(), {"10.77.0.1/24"}},
                                     {tag_ + "vs", server_.name(), {"10.77.0.2/24"}});
    ASSERT_TRUE(v) << v.error().str();
    veth_ = std::move(*v);
    dir_ = fs::path("/tmp") / (tag_ + "agent");
    fs::create_directories(dir_);
    pinDir_ = "/sys/fs/bpf/" + tag_ + "pins";
    socket_ = (dir_ / "agent.sock").string();
    writeFile(dir_ / "policy.yaml", policyYaml("first", {7001}));
    writeFile(dir_ / "agent.yaml",
              fmt::format(R"(apiVersion: edgeward.io/v1
kind: AgentConfig
interfaces:
  - name: {}
    netns: {}
    mode: xdp
policy:
  file: {}
  keepVersions: 10
stateDir: {}
bpffs: {}
api:
  unixSocket: {}
capacity:
  ipv4Intervals: 4096
  ipv6Intervals: 4096
  groups: 1024
  portEntries: 4096
  rules: 1024
  conntrack: 16384
)",
                          tag_ + "vs", server_.name(), (dir_ / "policy.yaml").string(),
                          (dir_ / "state").string(), pinDir_, socket_));
  }

  void TearDown() override {
    stopAgent(SIGKILL);
    // Remove what the agent pinned (detaching its links), as `edgeward reset` would.
    std::string cmd =
        fmt::format("{} reset --pin-dir {} >/dev/null 2>&1", EW_EDGEWARD_BIN, pinDir_);
    EXPECT_EQ(std::system(cmd.c_str()), 0);
    EXPECT_FALSE(fs::exists(pinDir_));
    veth_.remove();
    server_.remove();
    client_.remove();
    fs::remove_all(dir_);
  }

  // Appends to the agent config (before startAgent).
  void addConfig(const std::string& text) {
    std::ofstream(dir_ / "agent.yaml", std::ios::app) << text;
  }

  void startAgent() {
    // No Prometheus listener on the default port unless a test asks for one: tests must not
    // depend on 127.0.0.1:9479 being free.
    if (readFile(dir_ / "agent.yaml").find("\nmetrics:") == std::string::npos)
      addConfig("metrics:\n  address: off\n");
    pid_ = fork();
    if (pid_ == 0) {
      std::string log = (dir_ / "agent.log").string();
      freopen(log.c_str(), "a", stdout);
      freopen(log.c_str(), "a", stderr);
      execl(EW_EDGEWARD_BIN, EW_EDGEWARD_BIN, "agent", "--config", (dir_ / "agent.yaml").c_str(),
            nullptr);
      _exit(127);
    }
    // Ready when the API answers.
    for (int i = 0; i < 100; i++) {
      if (auto c = client(); c && c->status()) return;
      std::this_thread::sleep_for(100ms);
    }
    FAIL() << "the agent did not come up; log:\n" << log();
  }

  void stopAgent(int sig) {
    if (pid_ <= 0) return;
    kill(pid_, sig);
    int st = 0;
    waitpid(pid_, &st, 0);
    pid_ = -1;
  }

  std::string log() { return readFile(dir_ / "agent.log"); }

  // The CLI against this agent.
  testing::Output ew(const std::string& args) {
    return testing::runShell(
        fmt::format("EDGEWARD_SERVER=unix://{} {} {}", socket_, EW_EDGEWARD_BIN, args));
  }

  Result<api::AgentClient> client() {
    api::ClientOptions o;
    o.server = "unix://" + socket_;
    o.timeout = 10s;
    return api::AgentClient::connect(o);
  }

  // Datagrams from the client to the server's port that arrived (server-side count).
  struct Stream {
    std::unique_ptr<netns::EchoServer> server;
    std::atomic<uint64_t> sent{0};
  };

  std::string tag_;
  netns::NetNs client_, server_;
  netns::VethPair veth_;
  fs::path dir_;
  std::string pinDir_, socket_;
  pid_t pid_ = -1;
};

// Sends paced UDP datagrams to each port from the client namespace until `stop`.
class Sender {
 public:
  Sender(const std::string& clientNs, std::vector<uint16_t> ports) : ports_(std::move(ports)) {
    sent_.resize(ports_.size());
    for (auto& s : sent_) s = 0;
    thread_ = std::thread([this, clientNs] {
      while (!stop_) {
        for (size_t i = 0; i < ports_.size() && !stop_; i++) {
          auto r = netns::runIn(
              clientNs, [&] { return netns::sendUdp("10.77.0.1", "10.77.0.2", ports_[i], 16); });
          if (r) sent_[i] += 16;
        }
      }
    });
  }
  ~Sender() { finish(); }
  void finish() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t sent(size_t i) const { return sent_[i]; }

 private:
  std::vector<uint16_t> ports_;
  std::vector<uint64_t> sent_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::unique_ptr<netns::EchoServer> udpServer(const std::string& ns, uint16_t port) {
  auto s = netns::EchoServer::start(ns, {{netns::Proto::Udp, port}});
  EXPECT_TRUE(s) << s.error().str();
  return s ? std::move(*s) : nullptr;
}

TEST_F(AgentLab, RestartsUnderAPacketStreamGiveNoWrongVerdictAndCountersContinue) {
  startAgent();
  auto allowed = udpServer(server_.name(), 7001);
  auto denied = udpServer(server_.name(), 7002);
  ASSERT_TRUE(allowed && denied);
  auto before = client()->status();
  ASSERT_TRUE(before) << before.error().str();
  EXPECT_EQ(before->policy.version, 1u);

  Sender stream(client_.name(), {7001, 7002});
  std::this_thread::sleep_for(300ms);
  stopAgent(SIGTERM);  // graceful: the data plane stays pinned
  std::this_thread::sleep_for(300ms);
  startAgent();
  std::this_thread::sleep_for(300ms);
  stopAgent(SIGKILL);  // a crash
  std::this_thread::sleep_for(300ms);
  startAgent();
  std::this_thread::sleep_for(300ms);
  stream.finish();
  std::this_thread::sleep_for(200ms);

  EXPECT_GT(stream.sent(0), 500u);
  EXPECT_EQ(allowed->udpReceived(), stream.sent(0)) << "allowed datagrams lost";
  EXPECT_EQ(denied->udpReceived(), 0u) << "denied datagrams passed";
  auto after = client()->status();
  ASSERT_TRUE(after) << after.error().str();
  EXPECT_EQ(after->policy.version, 1u) << "a restart must not create versions";
  // Counters live in the pinned maps: they continued across both restarts.
  EXPECT_GE(after->packetsDropped, stream.sent(1));
  EXPECT_NE(log().find("adopted"), std::string::npos) << log();
}

TEST_F(AgentLab, PolicySwapsUnderAStreamGiveOnlyVerdictsOneOfThePoliciesWouldGive) {
  startAgent();
  // Port 7001: allowed by both policies; 7003: only by the second; 7002: by neither.
  auto both = udpServer(server_.name(), 7001);
  auto none = udpServer(server_.name(), 7002);
  auto some = udpServer(server_.name(), 7003);
  ASSERT_TRUE(both && none && some);
  auto c = client();
  ASSERT_TRUE(c);
  const std::string a = policyYaml("a", {7001}, {7002}), b = policyYaml("b", {7001, 7003});
  Sender stream(client_.name(), {7001, 7002, 7003});
  for (int i = 0; i < 30; i++) {
    api::ApplyRequest req;
    req.yaml = i % 2 ? a : b;
    auto r = c->applyPolicy(req);
    ASSERT_TRUE(r) << r.error().str();
    std::this_thread::sleep_for(20ms);
  }
  stream.finish();
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(both->udpReceived(), stream.sent(0));
  EXPECT_EQ(none->udpReceived(), 0u);
  EXPECT_LE(some->udpReceived(), stream.sent(2));
  auto versions = c->listVersions();
  ASSERT_TRUE(versions);
  EXPECT_EQ(versions->front().version, 31u);
  EXPECT_EQ(versions->size(), 10u) << "keepVersions";
}

TEST_F(AgentLab, TwoClientsApplyingAtOnceOneWinsTheOtherGetsAConflict) {
  startAgent();
  std::atomic<int> ok{0}, conflict{0}, other{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 2; i++)
    ts.emplace_back([&, i] {
      auto c = client();
      api::ApplyRequest req;
      req.yaml = policyYaml(fmt::format("writer{}", i), {uint16_t(7100 + i)});
      req.ifVersion = 1;
      auto r = c->applyPolicy(req);
      if (r)
        ok++;
      else if (r.error().code() == ErrorCode::Conflict)
        conflict++;
      else
        other++;
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok, 1);
  EXPECT_EQ(conflict, 1);
  EXPECT_EQ(other, 0);
  EXPECT_EQ(client()->status()->policy.version, 2u);
}

TEST_F(AgentLab, BadRequestsChangeNothingAndRollbackRestoresTheContent) {
  startAgent();
  auto c = client();
  ASSERT_TRUE(c);
  api::ApplyRequest bad;
  bad.yaml = "apiVersion: edgeward.io/v1\nkind: Policy\nmetadata: {name: x}\nspec: {bogus: 1}\n";
  bad.source = "bad.yaml";
  auto r = c->applyPolicy(bad);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(r.error().message().find("bad.yaml:4: spec.bogus: unknown field"), std::string::npos)
      << r.error().message();
  EXPECT_EQ(c->status()->policy.version, 1u);
  auto missing = c->getPolicy(99);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::NotFound);

  api::ApplyRequest dry;
  dry.yaml = policyYaml("second", {7001, 7005});
  dry.dryRun = true;
  auto d = c->applyPolicy(dry);
  ASSERT_TRUE(d) << d.error().str();
  EXPECT_FALSE(d->changed);
  EXPECT_EQ(d->diff.rulesAdded.size(), 1u);
  EXPECT_EQ(c->status()->policy.version, 1u);

  dry.dryRun = false;
  ASSERT_TRUE(c->applyPolicy(dry));
  auto open = udpServer(server_.name(), 7005);
  auto got = netns::runIn(client_.name(),
                          [] { return netns::sendUdp("10.77.0.1", "10.77.0.2", 7005, 5, 500ms); });
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, 5);
  auto rb = c->rollbackPolicy();
  ASSERT_TRUE(rb) << rb.error().str();
  EXPECT_EQ(rb->version, 3u);
  EXPECT_EQ(rb->name, "first");
  got = netns::runIn(client_.name(),
                     [] { return netns::sendUdp("10.77.0.1", "10.77.0.2", 7005, 5, 300ms); });
  EXPECT_EQ(*got, 0);
}

TEST_F(AgentLab, ProgramUpgradeUnderAStreamLosesNothingAndABadBuildChangesNothing) {
  startAgent();
  auto allowed = udpServer(server_.name(), 7001);
  auto denied = udpServer(server_.name(), 7002);
  ASSERT_TRUE(allowed && denied);
  auto c = client();
  ASSERT_TRUE(c);
  const std::string tagBefore = c->status()->programTag;
  // The kernel's load time, on the wall clock: within the last minute.
  const int64_t loadedBefore = c->status()->programLoadedAtMs;
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  EXPECT_GT(loadedBefore, now - 60'000);
  EXPECT_LE(loadedBefore, now + 1000);

  // A junk "build": refused before anything moves.
  writeFile(dir_ / "junk.bpf.o", "not an ELF object\n");
  auto bad = c->upgradeProgram((dir_ / "junk.bpf.o").string());
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("upgrade refused"), std::string::npos)
      << bad.error().message();
  EXPECT_EQ(c->status()->programTag, tagBefore);

  // The real build from its object file, while traffic flows.
  Sender stream(client_.name(), {7001, 7002});
  std::this_thread::sleep_for(200ms);
  auto ok = c->upgradeProgram(EW_FIREWALL_OBJECT);
  ASSERT_TRUE(ok) << ok.error().str();
  EXPECT_NE(ok->find("self-test packets matched"), std::string::npos) << *ok;
  EXPECT_GT(c->status()->programLoadedAtMs, loadedBefore) << "the new program's load time";
  std::this_thread::sleep_for(200ms);
  stream.finish();
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(allowed->udpReceived(), stream.sent(0));
  EXPECT_EQ(denied->udpReceived(), 0u);

  // The upgraded build survives a restart.
  stopAgent(SIGTERM);
  startAgent();
  EXPECT_NE(log().find("firewall.bpf.o"), std::string::npos) << log();
}

int freePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

pid_t startController(const std::string& listen, const std::string& dir, const std::string& log) {
  pid_t pid = fork();
  if (pid == 0) {
    freopen(log.c_str(), "a", stdout);
    freopen(log.c_str(), "a", stderr);
    execl(EW_EDGEWARD_BIN, EW_EDGEWARD_BIN, "controller", "--listen", listen.c_str(), "--policies",
          dir.c_str(), nullptr);
    _exit(127);
  }
  return pid;
}

void stopProcess(pid_t pid) {
  kill(pid, SIGTERM);
  int st = 0;
  waitpid(pid, &st, 0);
}

TEST_F(AgentLab, FollowsTheControllerAndKeepsTheLastPolicyWhileItIsAway) {
  const std::string listen = fmt::format("127.0.0.1:{}", freePort());
  const fs::path groups = dir_ / "groups";
  fs::create_directories(groups);
  writeFile(groups / "edge.yaml", policyYaml("from-controller", {7001, 7007}));
  const std::string clog = (dir_ / "controller.log").string();
  pid_t ctl = startController(listen, groups.string(), clog);
  addConfig(fmt::format("upstream:\n  address: {}\n  group: edge\n  node: n1\n", listen));
  startAgent();

  auto waitFor = [&](auto pred) {
    for (int i = 0; i < 100; i++) {
      auto st = client()->status();
      if (st && pred(*st)) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  };
  EXPECT_TRUE(waitFor([](const api::Status& s) { return s.policy.name == "from-controller"; }));
  auto st = client()->status();
  EXPECT_NE(st->upstream.find("connected " + listen), std::string::npos) << st->upstream;

  // A new policy for the group reaches the agent; a bad one is not served and changes nothing.
  writeFile(groups / "edge.yaml", policyYaml("second-push", {7001}));
  EXPECT_TRUE(waitFor([](const api::Status& s) { return s.policy.name == "second-push"; }));
  writeFile(groups / "edge.yaml", "apiVersion: edgeward.io/v1\nkind: Policy\n");
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(client()->status()->policy.name, "second-push");

  // Controller gone: the agent keeps enforcing and says it is disconnected.
  stopProcess(ctl);
  EXPECT_TRUE(waitFor([](const api::Status& s) {
    return s.upstream.rfind("disconnected", 0) == 0;
  })) << client()->status()->upstream;
  auto open = udpServer(server_.name(), 7001);
  auto got = netns::runIn(client_.name(),
                          [] { return netns::sendUdp("10.77.0.1", "10.77.0.2", 7001, 5, 500ms); });
  EXPECT_EQ(*got, 5);

  // Back: the agent reconnects (backoff) and takes the group's current policy.
  writeFile(groups / "edge.yaml", policyYaml("third-push", {7001}));
  ctl = startController(listen, groups.string(), clog);
  EXPECT_TRUE(waitFor([](const api::Status& s) { return s.policy.name == "third-push"; }))
      << client()->status()->upstream << "\ncontroller log:\n"
      << std::string(std::istreambuf_iterator<char>(std::ifstream(clog).rdbuf()), {})
      << "\nagent log:\n"
      << log();
  stopProcess(ctl);
}

// ---------------------------------------------------------------------------------------------
// Observability: events, counters, TCP lifecycle and metrics of the real agent.

namespace obs {

// Collects the agent's event stream on a thread until stopped.
class EventCollector {
 public:
  EventCollector(api::AgentClient c, api::EventsRequest req) : client_(std::move(c)) {
    req.follow = true;
    thread_ = std::jthread([this, req](std::stop_token st) {
      auto r = client_.events(
          req,
          [this](const std::vector<api::EventRecord>& b, uint64_t lost) {
            std::lock_guard lock(mu_);
            events_.insert(events_.end(), b.begin(), b.end());
            lost_ += lost;
            return true;
          },
          st);
      std::lock_guard lock(mu_);
      if (!r) error_ = r.error().str();
    });
  }
  std::vector<api::EventRecord> events() {
    std::lock_guard lock(mu_);
    return events_;
  }
  uint64_t lost() {
    std::lock_guard lock(mu_);
    return lost_;
  }
  std::string error() {
    std::lock_guard lock(mu_);
    return error_;
  }
  void stop() {
    thread_.request_stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  api::AgentClient client_;
  std::mutex mu_;
  std::vector<api::EventRecord> events_;
  uint64_t lost_ = 0;
  std::string error_;
  std::jthread thread_;
};

uint64_t reasonPackets(const api::Status& s, const std::string& dir, const std::string& reason) {
  for (const auto& r : s.reasons)
    if (r.direction == dir && r.reason == reason) return r.packets;
  return 0;
}

uint64_t rulePackets(const api::Status& s, const std::string& name) {
  for (const auto& r : s.rules)
    if (r.name == name) return r.packets;
  return ~0ull;
}

// Sends `n` datagrams from the client namespace to the server's `port` (denied by the lab's
// policy) and counts the drop events for that port that reach a subscriber of `c`.
size_t dropEventsSeen(api::AgentClient c, const std::string& clientNs, uint16_t port, int n) {
  EventCollector drops(std::move(c), {.kinds = {"drop"}, .port = port});
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(
      netns::runIn(clientNs, [&] { return netns::sendUdp("10.77.0.1", "10.77.0.2", port, n); }));
  std::this_thread::sleep_for(400ms);
  drops.stop();
  return drops.events().size();
}

}  // namespace obs

TEST_F(AgentLab, EveryDropIsAnEventOrCountedAndCountersEqualTheTraffic) {
  addConfig("events:\n  dropsPerPeer: 20\n  dropBurst: 10\n");
  startAgent();
  auto allowed = udpServer(server_.name(), 7001);
  ASSERT_TRUE(allowed);
  auto c = client();
  ASSERT_TRUE(c);
  obs::EventCollector drops(*client(), {.kinds = {"drop"}, .port = 7002});
  std::this_thread::sleep_for(300ms);  // subscribed
  auto before = c->status();
  ASSERT_TRUE(before) << before.error().str();

  auto a = netns::runIn(client_.name(),
                        [] { return netns::sendUdp("10.77.0.1", "10.77.0.2", 7001, 300, 500ms); });
  auto d = netns::runIn(client_.name(),
                        [] { return netns::sendUdp("10.77.0.1", "10.77.0.2", 7002, 400); });
  ASSERT_TRUE(a && d);
  EXPECT_EQ(*a, 300) << "every allowed datagram was echoed";
  std::this_thread::sleep_for(500ms);
  drops.stop();
  auto after = c->status();
  ASSERT_TRUE(after) << after.error().str();

  // Counters equal the packets sent. A rule counts every packet of the flows it allowed: the
  // 300 datagrams and their 300 echoes (which pass as part of the tracked flow).
  EXPECT_EQ(obs::rulePackets(*after, "allow-7001") - obs::rulePackets(*before, "allow-7001"), 600u);
  const uint64_t dropped = obs::reasonPackets(*after, "ingress", "default-deny") -
                           obs::reasonPackets(*before, "ingress", "default-deny");
  EXPECT_EQ(dropped, 400u);

  // Every drop is an event, or counted as suppressed (per-peer limit) or lost.
  auto evs = drops.events();
  EXPECT_EQ(drops.error(), "");
  EXPECT_EQ(drops.lost(), 0u);
  const uint64_t limited = after->events.dropsRateLimited - before->events.dropsRateLimited;
  const uint64_t sampled = after->events.dropsSampledOut - before->events.dropsSampledOut;
  const uint64_t lost = after->events.firewallLost - before->events.firewallLost;
  EXPECT_EQ(evs.size() + limited + sampled + lost, 400u)
      << evs.size() << " events, " << limited << " limited, " << sampled << " sampled out, " << lost
      << " lost";
  EXPECT_GT(limited, 0u) << "400 drops in ~30 ms exceed a burst of 10";
  uint64_t carried = 0;  // suppressed drops the events report
  for (const auto& e : evs) {
    EXPECT_EQ(e.kind, "drop");
    EXPECT_EQ(e.src, "10.77.0.1");
    EXPECT_EQ(e.dst, "10.77.0.2");
    EXPECT_EQ(e.dport, 7002u);
    EXPECT_EQ(e.reason, "default-deny");
    EXPECT_EQ(e.identity, "client");
    EXPECT_EQ(e.interface, server_.name() + "/" + tag_ + "vs");
    carried += e.sampledOut;
  }
  EXPECT_LE(carried, limited);
}

TEST_F(AgentLab, TcpLifecycleEventsMatchTheConnectionsTheTestMade) {
  startAgent();
  auto echo = netns::EchoServer::start(server_.name(), {{netns::Proto::Tcp, 7003}});
  ASSERT_TRUE(echo) << echo.error().str();
  obs::EventCollector tcp(*client(), {.kinds = {"tcp_open", "tcp_close"}, .port = 7003});
  std::this_thread::sleep_for(300ms);
  constexpr int kConnections = 6;
  for (int i = 0; i < kConnections; i++) {
    // Inside the server namespace, over its loopback: flowmon sees every namespace.
    auto r = netns::runIn(server_.name(), [] {
      return netns::probe({netns::Proto::Tcp, "", "127.0.0.1", 7003});
    });
    ASSERT_TRUE(r) << r.error().str();
    EXPECT_EQ(*r, netns::Outcome::Reply);
  }
  std::this_thread::sleep_for(700ms);
  tcp.stop();
  int opens = 0, closes = 0;
  std::set<uint32_t> nets;
  for (const auto& e : tcp.events()) {
    if (e.kind == "tcp_open") opens++;
    if (e.kind == "tcp_close") {
      closes++;
      EXPECT_LT(e.durationNs, 5'000'000'000u);
    }
    nets.insert(e.netns);
    EXPECT_EQ(e.src, "127.0.0.1");
    EXPECT_EQ(e.dport, 7003u);
  }
  // Both ends of each connection: the client's active open and the server's passive one.
  EXPECT_EQ(opens, 2 * kConnections);
  EXPECT_EQ(closes, 2 * kConnections);
  EXPECT_EQ(nets.size(), 1u) << "all in the server namespace";
  EXPECT_EQ(tcp.error(), "");
  // Status counts what flowmon wrote (the test's events, and any other TCP on the machine).
  auto st = client()->status();
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->events.flowmon);
  EXPECT_GE(st->events.flowmonSent, uint64_t{4 * kConnections});
  EXPECT_EQ(st->events.flowmonLost, 0u);
}

TEST_F(AgentLab, MetricsEndpointPassesPromtoolAndAgreesWithStatus) {
  const int port = 20000 + getpid() % 20000;
  addConfig(fmt::format("metrics:\n  address: 127.0.0.1:{}\n", port));
  startAgent();
  auto allowed = udpServer(server_.name(), 7001);
  ASSERT_TRUE(allowed);
  auto sent = netns::runIn(
      client_.name(), [] { return netns::sendUdp("10.77.0.1", "10.77.0.2", 7001, 50, 300ms); });
  ASSERT_TRUE(sent);
  httplib::Client http("127.0.0.1", port);
  auto res = http.Get("/metrics");
  ASSERT_TRUE(res) << "no answer on port " << port << "; log:\n" << log();
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->get_header_value("Content-Type").find("text/plain"), std::string::npos);
  const std::string text = res->body;
  const fs::path scrape = dir_ / "metrics.txt";
  std::ofstream(scrape) << text;
  // 50 datagrams and their 50 echoes, as in status.
  auto st = client()->status();
  ASSERT_TRUE(st);
  EXPECT_EQ(obs::rulePackets(*st, "allow-7001"), 100u);
  EXPECT_NE(text.find("edgeward_rule_packets_total{action=\"allow\",direction=\"ingress\",rule="
                      "\"allow-7001\"} 100"),
            std::string::npos)
      << text.substr(0, 2000);
  for (const char* name :
       {"edgeward_events_lost_total{source=\"firewall\"}", "edgeward_policy_version 1",
        "edgeward_conntrack_entries", "edgeward_bpf_program_run_seconds_total",
        "process_resident_memory_bytes", "edgeward_tcp_state_transitions_total"})
    EXPECT_NE(text.find(name), std::string::npos) << name;
  const std::string check = fmt::format("promtool check metrics < {} 2>&1", scrape.string());
  EXPECT_EQ(std::system(check.c_str()), 0);

  // Every metric the Grafana dashboard queries exists on the endpoint.
  std::ifstream dash(std::string(EW_SOURCE_DIR) + "/deploy/grafana/edgeward.json");
  std::string board((std::istreambuf_iterator<char>(dash)), {});
  ASSERT_FALSE(board.empty());
  std::regex name(R"(\b((?:edgeward|process)_[a-z_]+))");
  std::set<std::string> names;
  for (std::sregex_iterator it(board.begin(), board.end(), name), end; it != end; ++it)
    names.insert((*it)[1]);
  EXPECT_GT(names.size(), 10u);
  for (std::string n : names) {
    if (n.ends_with("_bucket")) n.resize(n.size() - 7);
    EXPECT_NE(text.find("# TYPE " + n + " "), std::string::npos) << "the dashboard queries " << n;
  }
}

TEST_F(AgentLab, AFloodedRingBufferCountsEveryLostEventAndTheAgentStaysResponsive) {
  addConfig("events:\n  dropsPerPeer: 0\n  ringBytes: 4096\n");
  startAgent();
  // The agent's own pinned XDP program, flooded with BPF_PROG_TEST_RUN: ~1M denied frames
  // a second into a ring of ~60 events.
  const std::string prog = pinDir_ + "/progs/ew_xdp_ingress";
  UniqueFd progFd(bpf_obj_get(prog.c_str()));
  ASSERT_TRUE(progFd.valid()) << prog;
  auto c = client();
  ASSERT_TRUE(c);
  auto before = c->status();
  ASSERT_TRUE(before);
  testing::PacketSpec denied;
  denied.src = "10.77.0.1";
  denied.dst = "10.77.0.2";
  denied.l4 = testing::L4::Udp;
  denied.dport = 7002;
  const auto frame = testing::buildPacket(denied);
  std::atomic<bool> done{false};
  int floodRc = -1;
  std::thread flooder([&] {
    bpf_test_run_opts o{};
    o.sz = sizeof o;
    o.data_in = frame.data();
    o.data_size_in = static_cast<uint32_t>(frame.size());
    o.repeat = 200000;
    floodRc = bpf_prog_test_run_opts(progFd.get(), &o);
    done = true;
  });
  int answered = 0;
  while (!done) {
    auto t0 = std::chrono::steady_clock::now();
    auto s = c->status();
    EXPECT_TRUE(s) << s.error().str();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s) << "status during the flood";
    answered++;
    std::this_thread::sleep_for(50ms);
  }
  flooder.join();
  ASSERT_EQ(floodRc, 0) << "BPF_PROG_TEST_RUN on " << prog;
  EXPECT_GT(answered, 0);
  std::this_thread::sleep_for(500ms);  // the reader drains what is left
  auto after = c->status();
  ASSERT_TRUE(after);
  const uint64_t dropped = obs::reasonPackets(*after, "ingress", "default-deny") -
                           obs::reasonPackets(*before, "ingress", "default-deny");
  const uint64_t lost = after->events.firewallLost - before->events.firewallLost;
  const uint64_t published = after->events.published - before->events.published;
  EXPECT_EQ(dropped, 200000u);
  EXPECT_GT(lost, 0u);
  // Exactly: what was not lost reached the pipeline (plus any flowmon events meanwhile).
  EXPECT_GE(published + lost, 200000u);
  EXPECT_LE(published + lost - 200000u, 100u) << "only a few TCP events besides";
  EXPECT_EQ(after->events.dropsRateLimited - before->events.dropsRateLimited, 0u);
}

TEST_F(AgentLab, TopRefreshesInPlaceAndQuitsOnQ) {
  startAgent();
  auto allowed = udpServer(server_.name(), 7001);
  ASSERT_TRUE(allowed);
  int master = -1;
  pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string server = "unix://" + socket_;
    execl(EW_EDGEWARD_BIN, EW_EDGEWARD_BIN, "top", "--server", server.c_str(), "--interval-ms",
          "200", nullptr);
    _exit(127);
  }
  Sender stream(client_.name(), {7001});
  std::string screen;
  auto readFor = [&](std::chrono::milliseconds d) {
    const auto end = std::chrono::steady_clock::now() + d;
    char buf[4096];
    while (std::chrono::steady_clock::now() < end) {
      pollfd p{master, POLLIN, 0};
      if (::poll(&p, 1, 50) > 0) {
        ssize_t n = ::read(master, buf, sizeof buf);
        if (n <= 0) break;
        screen.append(buf, static_cast<size_t>(n));
      }
    }
  };
  readFor(1500ms);
  stream.finish();
  EXPECT_NE(screen.find("edgeward top"), std::string::npos) << screen;
  EXPECT_NE(screen.find("allow-7001"), std::string::npos) << screen;
  // Redrawn in place (cursor home, then the frame), more than once in 1.5 s at 200 ms.
  size_t frames = 0;
  for (size_t at = screen.find("\x1b[H"); at != std::string::npos;
       at = screen.find("\x1b[H", at + 1))
    frames++;
  EXPECT_GE(frames, 2u) << screen;
  ASSERT_EQ(::write(master, "q", 1), 1);
  int status = -1;
  for (int i = 0; i < 40 && waitpid(pid, &status, WNOHANG) == 0; i++)
    std::this_thread::sleep_for(50ms);
  if (waitpid(pid, &status, WNOHANG) == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    ADD_FAILURE() << "top did not quit on q";
  }
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  ::close(master);
}

// The real agent with a TCP listener that requires mutual TLS, driven through the CLI client:
// an admin applies, a viewer reads but may not apply, a client without a certificate or with one
// from another CA gets nothing, and none of the refused calls changes the policy.
TEST_F(AgentLab, MutualTlsListenerAuthorisesTheCliByCertificate) {
  testing::Pki pki;
  ASSERT_TRUE(pki.ok()) << pki.log();
  const int port = freePort();
  std::string config;
  {
    std::ifstream in(dir_ / "agent.yaml");
    config.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::string unixLine = fmt::format("  unixSocket: {}\n", socket_);
  ASSERT_NE(config.find(unixLine), std::string::npos);
  config.replace(config.find(unixLine), unixLine.size(),
                 unixLine + fmt::format(R"(  tcp:
    address: 127.0.0.1:{}
    ca: {}
    cert: {}
    key: {}
    roles:
      admin-alice: admin
      spiffe://edgeward.test/ops/viewer: viewer
)",
                                        port, pki.file("ca.crt"), pki.file("server.crt"),
                                        pki.file("server.key")));
  writeFile(dir_ / "agent.yaml", config);
  startAgent();
  ASSERT_EQ(client()->status()->policy.version, 1u);

  auto as = [&](const std::string& who) {
    return fmt::format("--server 127.0.0.1:{} --ca {} --cert {} --key {}", port, pki.file("ca.crt"),
                       pki.file(who + ".crt"), pki.file(who + ".key"));
  };
  const std::string second = (dir_ / "second.yaml").string();
  writeFile(second, policyYaml("second", {7001, 7002}));

  auto admin = testing::runEdgeward("policy apply " + second + " " + as("admin"));
  EXPECT_EQ(admin.code, 0) << admin.out;
  EXPECT_NE(admin.out.find("applied policy \"second\" as version 2"), std::string::npos)
      << admin.out;
  auto versions = testing::runEdgeward("policy versions -o json " + as("admin"));
  ASSERT_EQ(versions.code, 0) << versions.out;
  EXPECT_NE(versions.out.find("\"author\":\"admin-alice\""), std::string::npos) << versions.out;

  writeFile(second, policyYaml("third", {7003}));
  auto viewer = testing::runEdgeward("policy apply " + second + " " + as("viewer"));
  EXPECT_EQ(viewer.code, 4) << viewer.out;  // permission denied
  EXPECT_NE(
      viewer.out.find(
          "ApplyPolicy needs the admin role; \"spiffe://edgeward.test/ops/viewer\" is a viewer"),
      std::string::npos)
      << viewer.out;
  auto viewerPatch =
      testing::runEdgeward("policy patch --identity client --add 10.77.0.9 " + as("viewer"));
  EXPECT_EQ(viewerPatch.code, 4) << viewerPatch.out;
  auto viewerStatus = testing::runEdgeward("status -o json " + as("viewer"));
  EXPECT_EQ(viewerStatus.code, 0) << viewerStatus.out;
  EXPECT_NE(viewerStatus.out.find("\"version\":2"), std::string::npos) << viewerStatus.out;

  // No certificate: the CLI says what is missing; a client that tries anyway fails the handshake.
  auto noCert = testing::runEdgeward(fmt::format("policy apply {} --server 127.0.0.1:{} --ca {}",
                                                 second, port, pki.file("ca.crt")));
  EXPECT_NE(noCert.code, 0) << noCert.out;
  EXPECT_EQ(noCert.out.find("applied"), std::string::npos) << noCert.out;
  grpc::SslCredentialsOptions o;
  {
    std::ifstream in(pki.file("ca.crt"));
    o.pem_root_certs.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto stub = edgeward::v1::Agent::NewStub(
      grpc::CreateChannel(fmt::format("127.0.0.1:{}", port), grpc::SslCredentials(o)));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  edgeward::v1::ApplyPolicyRequest req;
  req.set_yaml(policyYaml("fourth", {7004}));
  edgeward::v1::ApplyPolicyResponse resp;
  auto status = stub->ApplyPolicy(&ctx, req, &resp);
  EXPECT_TRUE(status.error_code() == grpc::StatusCode::UNAVAILABLE ||
              status.error_code() == grpc::StatusCode::UNAUTHENTICATED)
      << status.error_code() << " " << status.error_message();

  auto foreign = testing::runEdgeward("policy apply " + second + " " + as("foreign"));
  EXPECT_EQ(foreign.code, 5) << foreign.out;  // the agent is unreachable for this client

  auto st = client()->status();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->policy.version, 2u);
  EXPECT_EQ(st->policy.name, "second");
  EXPECT_EQ(st->policy.author, "admin-alice");
}

// Patches through the real agent: the stored text is the old one with the identity's list edited,
// the version history, --if-version, --dry-run and rollback work as for apply, and packets see
// the patched policy.
TEST_F(AgentLab, PatchesChangePrefixesAsVersionedTransactions) {
  startAgent();
  auto c = client();
  ASSERT_TRUE(c);
  auto before = c->getPolicy();
  ASSERT_TRUE(before);

  auto dry = testing::runEdgeward(fmt::format(
      "policy patch --identity client --add 10.77.0.0/28 --dry-run --server unix://{}", socket_));
  EXPECT_EQ(dry.code, 0) << dry.out;
  EXPECT_NE(dry.out.find("10.77.0.0/28"), std::string::npos) << dry.out;
  EXPECT_EQ(c->status()->policy.version, 1u);

  auto conflict = testing::runEdgeward(fmt::format(
      "policy patch --identity client --add 10.77.0.0/28 --if-version 7 --server unix://{}",
      socket_));
  EXPECT_EQ(conflict.code, 3) << conflict.out;

  auto bad = testing::runEdgeward(
      fmt::format("policy patch --identity clinet --add 10.77.0.0/28 --server unix://{}", socket_));
  EXPECT_EQ(bad.code, 1) << bad.out;
  EXPECT_NE(bad.out.find("patch: unknown identity \"clinet\" (did you mean \"client\"?)"),
            std::string::npos)
      << bad.out;
  EXPECT_EQ(c->status()->policy.version, 1u);

  auto ok = testing::runEdgeward(fmt::format(
      "policy patch --identity client --add 10.77.0.16/28 2001:db8:77::/48 --if-version 1 "
      "--server unix://{}",
      socket_));
  EXPECT_EQ(ok.code, 0) << ok.out;
  EXPECT_NE(ok.out.find("as version 2"), std::string::npos) << ok.out;
  auto v2 = c->getPolicy();
  ASSERT_TRUE(v2);
  EXPECT_EQ(v2->first.origin, "patch");
  EXPECT_EQ(v2->second, std::string(before->second)
                            .replace(before->second.find("[10.77.0.1]"), 11,
                                     "[10.77.0.1, 10.77.0.16/28, 2001:db8:77::/48]"));

  // The packet path: with the client's address removed, its datagrams to 7001 are dropped.
  auto swap = testing::runEdgeward(fmt::format(
      "policy patch --identity client --remove 10.77.0.1 --add 10.77.0.2 --server unix://{}",
      socket_));
  EXPECT_EQ(swap.code, 0) << swap.out;
  auto srv = netns::EchoServer::start(server_.name(), {{netns::Proto::Udp, 7001}});
  ASSERT_TRUE(srv) << srv.error().str();
  auto send = [&] {
    return netns::runIn(client_.name(),
                        [&] { return netns::sendUdp("10.77.0.1", "10.77.0.2", 7001, 20, 300ms); });
  };
  auto sent = send();
  ASSERT_TRUE(sent);
  EXPECT_EQ((*srv)->udpReceived(), 0u);

  // Rollback to version 2 brings the client's address back, as a new version.
  auto rb = c->rollbackPolicy(2);
  ASSERT_TRUE(rb) << rb.error().str();
  EXPECT_EQ(rb->version, 4u);
  sent = send();
  ASSERT_TRUE(sent);
  EXPECT_EQ((*srv)->udpReceived(), 20u);

  // After more patches on top of the rollback, the agent restarts from the stored text and
  // enforces the same thing.
  auto more = testing::runEdgeward(
      fmt::format("policy patch --identity client --add 10.77.1.0/24 --server unix://{}", socket_));
  EXPECT_EQ(more.code, 0) << more.out;
  auto text = c->getPolicy();
  ASSERT_TRUE(text);
  auto parsed = policy::parsePolicy(text->second, "stored");
  ASSERT_TRUE(parsed) << parsed.error().str();
  ASSERT_EQ(parsed->identities.size(), 1u);
  std::vector<std::string> got;
  for (const auto& p : parsed->identities[0].prefixes) got.push_back(p.str());
  EXPECT_EQ(got, (std::vector<std::string>{"10.77.0.1/32", "10.77.0.16/28", "2001:db8:77::/48",
                                           "10.77.1.0/24"}));
}

// A filter plugin on the agent's event pipeline and a function on its HTTP listener.
TEST_F(AgentLab, PluginsFilterTheEventStreamAndFunctionsAnswerOverHttp) {
  const int port = 20000 + (getpid() + 7) % 20000;
  const std::string examples = EW_EXAMPLES_DIR, sources = std::string(EW_SOURCE_DIR);
  const std::string messages = (dir_ / "messages.jsonl").string();
  addConfig(fmt::format(R"(events:
  dropsPerPeer: 0
plugins:
  modules:
    - {{module: {0}/event_filter.wasm, manifest: {1}/plugins/examples/event_filter.yaml}}
    - {{module: {0}/enricher.wasm, manifest: {1}/plugins/examples/enricher.yaml}}
    - {{module: {0}/wordcount.wasm, manifest: {1}/plugins/examples/wordcount.yaml}}
  functions:
    address: 127.0.0.1:{2}
publish:
  file:
    path: {4}
metrics:
  address: 127.0.0.1:{3}
)",
                        examples, sources, port, port + 1, messages));
  startAgent();
  obs::EventCollector drops(*client(), {.kinds = {"drop"}});
  std::this_thread::sleep_for(300ms);
  auto noisy = netns::runIn(client_.name(),
                            [] { return netns::sendUdp("10.77.0.1", "10.77.0.2", 137, 40); });
  auto other = netns::runIn(client_.name(),
                            [] { return netns::sendUdp("10.77.0.1", "10.77.0.2", 7002, 100); });
  ASSERT_TRUE(noisy && other);
  std::this_thread::sleep_for(500ms);
  drops.stop();
  int to137 = 0, to7002 = 0;
  for (const auto& e : drops.events()) {
    if (e.dport == 137) to137++;
    if (e.dport == 7002) to7002++;
  }
  EXPECT_EQ(to137, 0) << "the event filter drops NetBIOS noise before subscribers";
  EXPECT_EQ(to7002, 100) << "other drops pass the filter";
  // The enricher, next in the chain, counts them per source; at the 100th it publishes an alert;
  // the agent writes it to the publish file and acknowledges it to the plugin.
  std::vector<nlohmann::json> published;
  for (int i = 0; i < 100 && published.empty(); i++) {
    std::ifstream in(messages);
    for (std::string line; std::getline(in, line);)
      published.push_back(nlohmann::json::parse(line));
    if (published.empty()) std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(published.size(), 1u) << log();
  EXPECT_EQ(published[0]["source"], "enricher");
  EXPECT_EQ(published[0]["topic"], "alerts");
  EXPECT_EQ(published[0]["payload"], R"({"source":"10.77.0.1","drops":100})");
  // ...and the plugin hears back: its ew_on_complete ran with the destination's acknowledgement.
  nlohmann::json stats;
  for (int i = 0; i < 100; i++) {
    auto st = ew("plugin stats enricher -o json");
    ASSERT_EQ(st.code, 0) << st.out;
    stats = nlohmann::json::parse(st.out);
    if (stats["completions"] == 1) break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(stats["published"], 1) << stats.dump();
  EXPECT_EQ(stats["completions"], 1) << stats.dump();

  httplib::Client http("127.0.0.1", port);
  auto r = http.Post("/v1/functions/wordcount", "one two three\nfour\n", "text/plain");
  ASSERT_TRUE(r) << log();
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_NE(r->body.find("\"words\":4"), std::string::npos) << r->body;
  EXPECT_EQ(r->get_header_value("X-Edgeward-Exit-Code"), "0");
  auto missing = http.Post("/v1/functions/nope", "", "text/plain");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_NE(missing->body.find("nope"), std::string::npos);

  auto metrics = httplib::Client("127.0.0.1", port + 1).Get("/metrics");
  ASSERT_TRUE(metrics);
  {
    std::string plug;
    for (size_t at = 0; (at = metrics->body.find("edgeward_plugin", at)) != std::string::npos;) {
      auto nl = metrics->body.find('\n', at);
      plug += metrics->body.substr(at, nl - at + 1);
      at = nl;
    }
    EXPECT_NE(metrics->body.find(
                  "edgeward_plugin_events_total{plugin=\"event-filter\",verdict=\"drop\"} 40"),
              std::string::npos)
        << plug;
    // Every invocation is in the duration histogram, in a bucket below the +Inf one.
    auto sample = [&](const std::string& key) -> double {
      auto at = metrics->body.find(key + " ");
      return at == std::string::npos ? -1 : std::stod(metrics->body.substr(at + key.size() + 1));
    };
    const double calls = sample("edgeward_function_invocations_total{function=\"wordcount\"}");
    EXPECT_GE(calls, 1);
    EXPECT_EQ(sample("edgeward_function_duration_seconds_count{function=\"wordcount\"}"), calls);
    EXPECT_EQ(sample("edgeward_function_duration_seconds_bucket{function=\"wordcount\",le=\"1\"}"),
              calls);
    const fs::path scrape = dir_ / "metrics.txt";
    std::ofstream(scrape) << metrics->body;
    EXPECT_EQ(std::system(fmt::format("promtool check metrics < {}", scrape.string()).c_str()), 0)
        << "with plugins and functions";
    EXPECT_NE(metrics->body.find("edgeward_plugin_messages_total{result=\"delivered\"} 1"),
              std::string::npos)
        << plug;
  }
}

// A plugin that keeps failing is disabled and reported in the three places an operator looks:
// `plugin stats`, /metrics and the watch stream. The enricher numbers each drop from a source in
// `value`; the test plugin behind it takes `value` as its action: 1 drop, 2 replace, 3 spin
// (stopped at its CPU limit), 4 allocate without end (stopped at its memory or CPU limit,
// whichever comes first), 5 recurse without end. Two failures in a row disable it, whichever
// two (an event that finds the one instance still being replaced is skipped, not failed).
TEST_F(AgentLab, APluginThatKeepsFailingIsDisabledAndReported) {
  const int port = 20000 + (getpid() + 11) % 20000;
  writeFile(dir_ / "chaos.yaml", R"(apiVersion: edgeward.io/v1
kind: Plugin
name: chaos
version: "1"
events: [drop]
limits: {memory: 2MiB, cpuPerCall: 5ms, instances: 1}
failure: {policy: fail-open, disableAfter: 2}
)");
  addConfig(fmt::format(R"(events:
  dropsPerPeer: 0
plugins:
  modules:
    - {{module: {0}/enricher.wasm, manifest: {1}/plugins/examples/enricher.yaml}}
    - {{module: {2}/test_plugin.wasm, manifest: {3}}}
metrics:
  address: 127.0.0.1:{4}
)",
                        EW_EXAMPLES_DIR, EW_SOURCE_DIR, EW_TEST_GUESTS_DIR,
                        (dir_ / "chaos.yaml").string(), port));
  startAgent();
  testing::Output watched;
  std::jthread watcher([&] { watched = ew("watch -o json & sleep 3; kill -INT $!; wait $!"); });
  std::this_thread::sleep_for(500ms);  // the watch is subscribed
  auto sent = netns::runIn(client_.name(),
                           [] { return netns::sendUdp("10.77.0.1", "10.77.0.2", 7002, 5); });
  ASSERT_TRUE(sent);
  watcher.join();

  bool reported = false;
  std::istringstream lines(watched.out);
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j["kind"] == "plugin-disabled") {
      reported = true;
      EXPECT_NE(j["message"].get<std::string>().find("plugin chaos disabled: disabled after 2 "
                                                     "consecutive failures"),
                std::string::npos)
          << line;
    }
  }
  EXPECT_TRUE(reported) << "watch said:\n" << watched.out << log();

  auto st = ew("plugin stats chaos -o json");
  ASSERT_EQ(st.code, 0) << st.out;
  auto stats = nlohmann::json::parse(st.out);
  EXPECT_EQ(stats["enabled"], false);
  EXPECT_EQ(stats["failures"], 2) << stats.dump();
  EXPECT_EQ(stats["dropped"], 1) << stats.dump();
  EXPECT_NE(stats["disabledReason"].get<std::string>().find("consecutive failures"),
            std::string::npos);
  auto metrics = httplib::Client("127.0.0.1", port).Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("edgeward_plugin_enabled{plugin=\"chaos\"} 0"), std::string::npos);
  // The failures by kind add up to the stats' count.
  double byKind = 0;
  for (const char* kind : {"timeout", "memory", "stack_overflow", "trap"}) {
    const std::string key =
        fmt::format("edgeward_plugin_failures_total{{plugin=\"chaos\",kind=\"{}\"}} ", kind);
    auto at = metrics->body.find(key);
    ASSERT_NE(at, std::string::npos) << key;
    byKind += std::stod(metrics->body.substr(at + key.size()));
  }
  EXPECT_EQ(byKind, 2) << stats.dump();
  EXPECT_NE(metrics->body.find("edgeward_plugin_enabled{plugin=\"enricher\"} 1"), std::string::npos)
      << "the plugin before it carries on";
}

TEST_F(AgentLab, ABadPluginStopsTheStartWithOneClearError) {
  const std::string sources = std::string(EW_SOURCE_DIR);
  writeFile(dir_ / "bad.wasm", "not a module");
  addConfig(fmt::format(R"(plugins:
  modules:
    - {{module: {}, manifest: {}/plugins/examples/event_filter.yaml}}
)",
                        (dir_ / "bad.wasm").string(), sources));
  auto r = testing::runShell(fmt::format("timeout 20 {} agent --config {} 2>&1", EW_EDGEWARD_BIN,
                                         (dir_ / "agent.yaml").string()));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("bad.wasm"), std::string::npos) << r.out;
}

// Modules on a running agent through the CLI: load, list, stats, replace, unload a plugin;
// deploy, invoke, list, remove a function; a bad module changes nothing.
TEST_F(AgentLab, PluginsAndFunctionsAreManagedThroughTheApi) {
  startAgent();
  const std::string examples = EW_EXAMPLES_DIR, sources = std::string(EW_SOURCE_DIR);
  const std::string filter = fmt::format(
      "{}/event_filter.wasm -m {}/plugins/examples/event_filter.yaml", examples, sources);
  auto r = ew("plugin load " + filter);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("plugin event-filter loaded"), std::string::npos) << r.out;

  EXPECT_EQ(obs::dropEventsSeen(*client(), client_.name(), 137, 20), 0u)
      << "the loaded plugin drops them";

  r = ew("plugin list -o json");
  ASSERT_EQ(r.code, 0) << r.out;
  auto list = nlohmann::json::parse(r.out);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["name"], "event-filter");
  EXPECT_EQ(list[0]["dropped"], 20);
  r = ew("plugin stats event-filter");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("20 dropped"), std::string::npos) << r.out;
  r = ew("plugin load " + filter);  // the same name again: a replacement
  EXPECT_NE(r.out.find("replaced"), std::string::npos) << r.out;

  writeFile(dir_ / "bad.wasm", "\0asm garbage");
  r = ew(fmt::format("plugin load {} -m {}/plugins/examples/enricher.yaml",
                     (dir_ / "bad.wasm").string(), sources));
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one line: " << r.out;
  r = ew("plugin list -o json");
  EXPECT_EQ(nlohmann::json::parse(r.out).size(), 1u) << "nothing changed";

  r = ew("plugin unload event-filter");
  EXPECT_EQ(r.code, 0) << r.out;
  r = ew("plugin unload event-filter");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("event-filter"), std::string::npos) << r.out;

  r = ew(fmt::format("fn deploy {}/wordcount.wasm -m {}/plugins/examples/wordcount.yaml", examples,
                     sources));
  ASSERT_EQ(r.code, 0) << r.out;
  writeFile(dir_ / "input.txt", "a b c\n");
  r = ew("fn invoke wordcount < " + (dir_ / "input.txt").string());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\"words\":3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"caller\":\"local\""), std::string::npos) << r.out;
  r = ew("fn list");
  EXPECT_NE(r.out.find("wordcount"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("memcpy"), std::string::npos) << "its reset: " << r.out;
  r = ew("fn list -o json");
  auto fns = nlohmann::json::parse(r.out);
  ASSERT_EQ(fns.size(), 1u) << r.out;
  EXPECT_EQ(fns[0]["reset"], "memcpy");
  EXPECT_EQ(fns[0]["calls"], 1);
  EXPECT_GT(fns[0]["callNsTotal"].get<uint64_t>(), 0u);
  r = ew("fn invoke missing </dev/null");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("missing"), std::string::npos) << r.out;
  r = ew("fn remove wordcount");
  EXPECT_EQ(r.code, 0) << r.out;
}

// Where `plugin load` and `fn deploy` keep what they loaded: <stateDir>/modules/<kind>/<name>.
// Every name in the kind directories, hidden ones too (temporary directories), sorted.
std::vector<std::string> storedEntries(const fs::path& state) {
  std::vector<std::string> out;
  for (const char* kind : {"function", "plugin"})
    if (fs::is_directory(state / "modules" / kind))
      for (const auto& e : fs::directory_iterator(state / "modules" / kind))
        out.push_back(fmt::format("{}/{}", kind, e.path().filename().string()));
  std::sort(out.begin(), out.end());
  return out;
}

// The names and versions `plugin list -o json` or `fn list -o json` print.
std::map<std::string, std::string> listed(const testing::Output& r) {
  std::map<std::string, std::string> out;
  if (r.code != 0) return {{"(failed)", r.out}};
  for (const auto& m : nlohmann::json::parse(r.out))
    out[m["name"].get<std::string>()] = m["version"].get<std::string>();
  return out;
}

using Listed = std::map<std::string, std::string>;

// Modules loaded through the API are as durable as policy: loaded again after a graceful restart
// and after kill -9, and working (the plugin filters, the function answers), until they are
// unloaded; a load that fails stores nothing.
TEST_F(AgentLab, ModulesLoadedThroughTheApiSurviveRestartsUntilUnloaded) {
  startAgent();
  const std::string examples = EW_EXAMPLES_DIR, sources = std::string(EW_SOURCE_DIR);
  const fs::path state = dir_ / "state";
  const std::string filter = fmt::format(
      "{}/event_filter.wasm -m {}/plugins/examples/event_filter.yaml", examples, sources);
  auto r = ew("plugin load " + filter);
  ASSERT_EQ(r.code, 0) << r.out;
  r = ew(fmt::format("fn deploy {}/wordcount.wasm -m {}/plugins/examples/wordcount.yaml", examples,
                     sources));
  ASSERT_EQ(r.code, 0) << r.out;
  const std::vector<std::string> both{"function/wordcount", "plugin/event-filter"};
  EXPECT_EQ(storedEntries(state), both);
  EXPECT_EQ(readFile(state / "modules/plugin/event-filter/module.wasm"),
            readFile(examples + "/event_filter.wasm"));

  // Failed loads, of a new module and of a replacement, store nothing.
  writeFile(dir_ / "bad.wasm", "not a module");
  r = ew(fmt::format("plugin load {} -m {}/plugins/examples/enricher.yaml",
                     (dir_ / "bad.wasm").string(), sources));
  EXPECT_EQ(r.code, 1) << r.out;
  r = ew(fmt::format("plugin load {} -m {}/plugins/examples/event_filter.yaml",
                     (dir_ / "bad.wasm").string(), sources));
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_EQ(storedEntries(state), both) << "no entry, no temporary directory";
  EXPECT_EQ(readFile(state / "modules/plugin/event-filter/module.wasm"),
            readFile(examples + "/event_filter.wasm"));

  writeFile(dir_ / "input.txt", "a b c\n");
  for (int sig : {SIGTERM, SIGKILL}) {
    SCOPED_TRACE(sig == SIGTERM ? "after SIGTERM" : "after kill -9");
    stopAgent(sig);
    startAgent();
    EXPECT_EQ(listed(ew("plugin list -o json")), (Listed{{"event-filter", "1"}}));
    EXPECT_EQ(listed(ew("fn list -o json")), (Listed{{"wordcount", "1"}}));
    r = ew("fn invoke wordcount < " + (dir_ / "input.txt").string());
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("\"words\":3"), std::string::npos) << r.out;
  }
  EXPECT_NE(log().find(fmt::format("plugin event-filter loaded from {} (stored through the API)",
                                   (state / "modules/plugin/event-filter").string())),
            std::string::npos)
      << log();
  // The plugin is on the event pipeline again, not only listed.
  EXPECT_EQ(obs::dropEventsSeen(*client(), client_.name(), 137, 20), 0u)
      << "the restored plugin drops them";
  r = ew("plugin stats event-filter");
  EXPECT_NE(r.out.find("20 dropped"), std::string::npos) << r.out;

  r = ew("plugin unload event-filter");
  EXPECT_EQ(r.code, 0) << r.out;
  r = ew("fn remove wordcount");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(storedEntries(state), std::vector<std::string>{});
  stopAgent(SIGTERM);
  startAgent();
  EXPECT_EQ(listed(ew("plugin list -o json")), Listed{});
  EXPECT_EQ(listed(ew("fn list -o json")), Listed{});
}

// A stored module replaces the config's module of the same name (it was the later action). One
// that no longer loads (the operator took its directory grant back) or whose entry is damaged
// does not stop the agent: it is skipped with a note naming it and why, kept on disk, and
// removable with unload.
TEST_F(AgentLab, StoredModulesReplaceTheConfigsAndOnesThatNoLongerLoadAreSkipped) {
  const std::string examples = EW_EXAMPLES_DIR, sources = std::string(EW_SOURCE_DIR);
  const fs::path state = dir_ / "state", geo = dir_ / "geo";
  fs::create_directories(geo);
  const std::string withoutModules = readFile(dir_ / "agent.yaml");
  const std::string modules = fmt::format(R"(plugins:
  modules:
    - {{module: {0}/event_filter.wasm, manifest: {1}/plugins/examples/event_filter.yaml}}
)",
                                          examples, sources);
  addConfig(modules + fmt::format("  grants:\n    - {{host: {}}}\n", geo.string()));
  startAgent();

  std::string v2 = readFile(sources + "/plugins/examples/event_filter.yaml");
  v2.replace(v2.find("version: \"1\""), 12, "version: \"2\"");
  writeFile(dir_ / "filter-v2.yaml", v2);
  auto r = ew(fmt::format("plugin load {}/event_filter.wasm -m {}", examples,
                          (dir_ / "filter-v2.yaml").string()));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("replaced"), std::string::npos) << r.out;
  writeFile(dir_ / "wordcount-geo.yaml",
            readFile(sources + "/plugins/examples/wordcount.yaml") +
                fmt::format("wasi:\n  dirs:\n    - {{host: {}, guest: /geo}}\n", geo.string()));
  r = ew(fmt::format("fn deploy {}/wordcount.wasm -m {}", examples,
                     (dir_ / "wordcount-geo.yaml").string()));
  ASSERT_EQ(r.code, 0) << r.out;
  std::string two = readFile(sources + "/plugins/examples/wordcount.yaml");
  two.replace(two.find("name: wordcount"), 15, "name: wc-two");
  writeFile(dir_ / "wc-two.yaml", two);
  r = ew(
      fmt::format("fn deploy {}/wordcount.wasm -m {}", examples, (dir_ / "wc-two.yaml").string()));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(listed(ew("fn list -o json")), (Listed{{"wc-two", "1"}, {"wordcount", "1"}}));

  stopAgent(SIGTERM);
  writeFile(dir_ / "agent.yaml", withoutModules + modules);  // the grant is taken back
  fs::remove(state / "modules/function/wc-two/module.wasm");
  const size_t logFrom = log().size();
  startAgent();
  const std::string startLog = log().substr(logFrom);

  EXPECT_EQ(listed(ew("plugin list -o json")), (Listed{{"event-filter", "2"}}))
      << "the stored one, not the config's";
  EXPECT_NE(
      startLog.find(fmt::format("plugin event-filter from {} replaces the one from the config ({}/"
                                "event_filter.wasm): it was loaded through the API later",
                                (state / "modules/plugin/event-filter").string(), examples)),
      std::string::npos)
      << startLog;
  EXPECT_EQ(listed(ew("fn list -o json")), Listed{});
  // On stderr (edgeward: ...) and in the startup notes (indented, on stdout).
  const std::string skipped = fmt::format(
      "function wordcount stored in {} was not loaded: wordcount: wasi.dirs[0]: {} is not "
      "granted by the operator; the entry is kept (`edgeward fn remove wordcount` removes it)",
      (state / "modules/function/wordcount").string(), geo.string());
  EXPECT_NE(startLog.find("edgeward: " + skipped), std::string::npos) << startLog;
  EXPECT_NE(startLog.find("  " + skipped), std::string::npos) << startLog;
  const std::string damaged = fmt::format(
      "modules: {0}: damaged entry: {0}/module.wasm: No such file or directory; the "
      "entry is kept",
      (state / "modules/function/wc-two").string());
  EXPECT_NE(startLog.find("edgeward: " + damaged), std::string::npos) << startLog;
  EXPECT_NE(startLog.find("  " + damaged), std::string::npos) << startLog;
  EXPECT_EQ(storedEntries(state), (std::vector<std::string>{"function/wc-two", "function/wordcount",
                                                            "plugin/event-filter"}));

  // Unloading removes entries that did not load too.
  r = ew("fn remove wordcount");
  EXPECT_EQ(r.code, 0) << r.out;
  r = ew("fn remove wc-two");
  EXPECT_EQ(r.code, 0) << r.out;
  r = ew("fn remove wc-two");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("wc-two"), std::string::npos) << r.out;
  // Unloading the stored plugin: the config's is loaded again at the next start.
  r = ew("plugin unload event-filter");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(storedEntries(state), std::vector<std::string>{});
  stopAgent(SIGTERM);
  startAgent();
  EXPECT_EQ(listed(ew("plugin list -o json")), (Listed{{"event-filter", "1"}}));
}

// Storing is part of the load: when it fails, the module that was running before runs again and
// the command fails with one line, whether writing failed (before the swap) or putting the entry
// in place did (after it).
TEST_F(AgentLab, WhenStoringAModuleFailsTheLoadIsUndone) {
  startAgent();
  const std::string examples = EW_EXAMPLES_DIR, sources = std::string(EW_SOURCE_DIR);
  const fs::path state = dir_ / "state", plugins = state / "modules/plugin";
  const std::string filter = fmt::format(
      "{}/event_filter.wasm -m {}/plugins/examples/event_filter.yaml", examples, sources);
  std::string v2 = readFile(sources + "/plugins/examples/event_filter.yaml");
  v2.replace(v2.find("version: \"1\""), 12, "version: \"2\"");
  writeFile(dir_ / "filter-v2.yaml", v2);
  const std::string filterV2 =
      fmt::format("{}/event_filter.wasm -m {}", examples, (dir_ / "filter-v2.yaml").string());

  // Writing fails: a file where the plugin directory belongs.
  fs::remove_all(plugins);
  writeFile(plugins, "in the way");
  auto r = ew("plugin load " + filter);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one line: " << r.out;
  EXPECT_NE(r.out.find("plugin event-filter not loaded: storing it failed: " + plugins.string()),
            std::string::npos)
      << r.out;
  EXPECT_EQ(listed(ew("plugin list -o json")), Listed{});
  fs::remove(plugins);
  fs::create_directory(plugins);

  r = ew("plugin load " + filter);
  ASSERT_EQ(r.code, 0) << r.out;
  // Putting the replacement in place fails after it was swapped in: the entry is a mount point,
  // which rename refuses (EBUSY).
  const fs::path entry = plugins / "event-filter", cover = dir_ / "cover";
  fs::create_directories(cover);
  ASSERT_EQ(::mount(cover.c_str(), entry.c_str(), nullptr, MS_BIND, nullptr), 0)
      << std::strerror(errno);
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }  // when an assertion left early
  } unmount{entry.string()};
  r = ew("plugin load " + filterV2);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one line: " << r.out;
  EXPECT_NE(r.out.find(fmt::format("plugin event-filter not loaded: storing it failed: {}: Device "
                                   "or resource busy; the previous version runs again",
                                   entry.string())),
            std::string::npos)
      << r.out;
  EXPECT_EQ(listed(ew("plugin list -o json")), (Listed{{"event-filter", "1"}}));
  ASSERT_EQ(::umount2(entry.c_str(), 0), 0) << std::strerror(errno);
  EXPECT_EQ(storedEntries(state), std::vector<std::string>{"plugin/event-filter"});
  EXPECT_NE(readFile(entry / "manifest.yaml").find("version: \"1\""), std::string::npos);

  stopAgent(SIGTERM);
  startAgent();
  EXPECT_EQ(listed(ew("plugin list -o json")), (Listed{{"event-filter", "1"}}));
}

}  // namespace
}  // namespace edgeward
