// Attach-and-trigger tests: the firewall attached on the server end of a veth pair between two
// network namespaces this test creates, real TCP/UDP/ICMP exchanges over IPv4 and IPv6, in both
// modes (XDP ingress + tcx egress, tcx both ways), and the counters checked against what was
// sent. Also `edgeward run` as a subprocess.
//
// Every object is named ewt-<pid>-...: RAII removes them when a test ends, pass or fail, and
// leftovers of a killed run (a pid that no longer exists) are removed when the next run starts.
// Needs root.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "bpf/firewall_program.h"
#include "common/netns.h"
#include "dataplane/dataplane.h"
#include "policy/compiler.h"
#include "policy/policy.h"
#include "support/lab.h"

extern char** environ;

namespace edgeward {
namespace {

using bpf::FirewallMap;
using netns::Outcome;
using netns::Probe;
using netns::Proto;
using testing::compiledPolicy;
using testing::Lab;
using testing::pidPrefix;
using namespace std::chrono_literals;

constexpr char kClient4[] = "10.201.0.1";
constexpr char kServer4[] = "10.201.0.2";
constexpr char kOther4[] = "10.201.0.66";  // a second client address no identity names
constexpr char kClient6[] = "fd00:201::1";
constexpr char kServer6[] = "fd00:201::2";
constexpr char kOther6[] = "fd00:201::66";

// Ports with echo servers. Server: kWeb, kSsh, kAlt (tcp), kDns, kSyslog (udp). Client: kBack.
constexpr uint16_t kWeb = 80, kSsh = 22, kAlt = 9000, kDns = 5353, kSyslog = 9999, kBack = 7000;

constexpr char kPolicy[] = R"(apiVersion: edgeward.io/v1
kind: Policy
metadata:
  name: netns-test
spec:
  defaultAction: deny
  identities:
    client: [10.201.0.1, "fd00:201::1"]
  ingress:
    - name: web
      from: [client]
      ports:
        - {protocol: tcp, port: 80}
      action: allow
    - name: dns
      from: [client]
      ports:
        - {protocol: udp, port: 5353}
      action: allow
    - name: ping
      from: [client]
      ports:
        - {protocol: icmp}
        - {protocol: icmpv6}
      action: allow
    - name: no-ssh
      from: [any]
      ports:
        - {protocol: tcp, port: 22}
      action: deny
)";

// Default deny, nothing allowed in, the server may open TCP connections to the client's 7000.
constexpr char kEgressOnlyPolicy[] = R"(apiVersion: edgeward.io/v1
kind: Policy
metadata:
  name: egress-only
spec:
  defaultAction: deny
  identities:
    client: [10.201.0.1, "fd00:201::1"]
  egress:
    - name: back-out
      to: [client]
      ports:
        - {protocol: tcp, port: 7000}
      action: allow
)";

std::string base() { return "ewt-"; }

// Two namespaces joined by a veth pair, echo servers on both sides. Removed on destruction.
Result<std::unique_ptr<Lab>> makeLab() {
  return Lab::create(
      {.clientNs = "client",
       .serverNs = "server",
       .clientAddresses = {fmt::format("{}/24", kClient4), fmt::format("{}/64", kClient6),
                           fmt::format("{}/24", kOther4), fmt::format("{}/64", kOther6)},
       .serverAddresses = {fmt::format("{}/24", kServer4), fmt::format("{}/64", kServer6)},
       .serverEcho = {{Proto::Tcp, kWeb},
                      {Proto::Tcp, kSsh},
                      {Proto::Tcp, kAlt},
                      {Proto::Udp, kDns},
                      {Proto::Udp, kSyslog}},
       .clientEcho = {{Proto::Tcp, kBack}}});
}

// The firewall with a policy applied and attached to the server's veth end.
struct Firewall {
  std::unique_ptr<bpf::FirewallProgram> fw;
  std::unique_ptr<dataplane::Dataplane> dp;
  std::vector<UniqueFd> links;
  policy::CompiledPolicy policy;

  static Result<std::unique_ptr<Firewall>> attach(const Lab& lab, const char* yaml,
                                                  const std::string& mode) {
    auto f = std::make_unique<Firewall>();
    f->policy = compiledPolicy(yaml);
    EW_TRY(fw, bpf::FirewallProgram::load(dataplane::optionsFor(f->policy)));
    f->fw = std::move(*fw);
    f->dp = std::make_unique<dataplane::Dataplane>(*f->fw);
    EW_TRY(applied, f->dp->apply(f->policy, 1));
    EW_TRY(links, netns::runIn(lab.server.name(), [&]() -> Result<std::vector<UniqueFd>> {
             EW_TRY(ifindex, bpf::ifindexOf(lab.serverIf));
             std::vector<UniqueFd> out;
             EW_TRY(in, f->fw->attach(mode == "xdp" ? bpf::Hook::XdpIngress : bpf::Hook::TcIngress,
                                      *ifindex));
             out.push_back(std::move(*in));
             EW_TRY(eg, f->fw->attach(bpf::Hook::TcEgress, *ifindex));
             out.push_back(std::move(*eg));
             return out;
           }));
    f->links = std::move(*links);
    return f;
  }

  uint64_t reason(uint8_t dir, uint8_t r) const {
    auto c = fw->readCounters(FirewallMap::ReasonStats, uint32_t{EW_DIRS} * EW_R_COUNT);
    EXPECT_TRUE(c) << c.error().str();
    return c ? (*c)[dir * EW_R_COUNT + r].packets : 0;
  }
  uint64_t rule(const char* name) const {
    uint32_t id = policy.ruleId(name);
    EXPECT_NE(id, EW_RULE_NONE) << name;
    auto c = fw->readCounters(FirewallMap::RuleStats, static_cast<uint32_t>(policy.rules.size()));
    EXPECT_TRUE(c) << c.error().str();
    return c && id < c->size() ? (*c)[id].packets : 0;
  }
};

// A probe expected to get its reply waits long enough for a loaded machine; one expected to
// be dropped waits kDropped: its timeout is the test's running time.
constexpr std::chrono::milliseconds kReply = 2s, kDropped = 300ms;

Outcome probeFrom(const netns::NetNs& ns, Proto proto, const std::string& src,
                  const std::string& dst, uint16_t port, std::chrono::milliseconds timeout) {
  auto r = netns::runIn(ns.name(), [&] { return netns::probe({proto, src, dst, port, timeout}); });
  EXPECT_TRUE(r) << r.error().str();
  return r ? *r : Outcome::SendFailed;
}

// Packets of a finished exchange (FIN, last ACK) may still be in flight for a moment.
void settle() { std::this_thread::sleep_for(50ms); }

// Before any test: remove what killed runs of this binary left (their pid is gone).
class RemoveLeftovers : public ::testing::Environment {
 public:
  void SetUp() override {
    auto r = netns::cleanupDead(base());
    ASSERT_TRUE(r) << r.error().str();
  }
};
[[maybe_unused]] ::testing::Environment* const kRemoveLeftovers =
    ::testing::AddGlobalTestEnvironment(new RemoveLeftovers);

class FirewallNetns : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "integration tests need root";
    auto lab = makeLab();
    ASSERT_TRUE(lab) << lab.error().str();
    lab_ = std::move(*lab);
  }

  void TearDown() override {
    std::string c = lab_ ? lab_->client.name() : "", s = lab_ ? lab_->server.name() : "";
    fw_.reset();
    lab_.reset();
    // The lab is gone: nothing of it may survive a test, whatever the test did.
    if (!c.empty()) {
      EXPECT_FALSE(netns::nsExists(c));
    }
    if (!s.empty()) {
      EXPECT_FALSE(netns::nsExists(s));
    }
  }

  void attach(const char* yaml) {
    auto f = Firewall::attach(*lab_, yaml, GetParam());
    ASSERT_TRUE(f) << f.error().str();
    fw_ = std::move(*f);
  }

  Outcome fromClient(Proto p, const std::string& src, const std::string& dst, uint16_t port,
                     std::chrono::milliseconds timeout = kReply) {
    return probeFrom(lab_->client, p, src, dst, port, timeout);
  }
  Outcome fromServer(Proto p, const std::string& src, const std::string& dst, uint16_t port,
                     std::chrono::milliseconds timeout = kReply) {
    return probeFrom(lab_->server, p, src, dst, port, timeout);
  }

  std::unique_ptr<Lab> lab_;
  std::unique_ptr<Firewall> fw_;
};

struct Family {
  const char* client;
  const char* server;
  const char* other;
};
constexpr Family kFamilies[] = {{kClient4, kServer4, kOther4}, {kClient6, kServer6, kOther6}};

TEST_P(FirewallNetns, LabWorksWithoutFirewall) {
  for (const auto& f : kFamilies) {
    SCOPED_TRACE(f.client);
    EXPECT_EQ(fromClient(Proto::Tcp, f.client, f.server, kSsh), Outcome::Reply);
    EXPECT_EQ(fromClient(Proto::Udp, f.client, f.server, kSyslog), Outcome::Reply);
    EXPECT_EQ(fromClient(Proto::Icmp, f.other, f.server, 0), Outcome::Reply);
  }
}

TEST_P(FirewallNetns, AllowedFlowsPass) {
  ASSERT_NO_FATAL_FAILURE(attach(kPolicy));
  for (const auto& f : kFamilies) {
    SCOPED_TRACE(f.client);
    const uint64_t web = fw_->rule("web"), dns = fw_->rule("dns"), ping = fw_->rule("ping");
    EXPECT_EQ(fromClient(Proto::Tcp, f.client, f.server, kWeb), Outcome::Reply);
    EXPECT_EQ(fromClient(Proto::Udp, f.client, f.server, kDns), Outcome::Reply);
    EXPECT_EQ(fromClient(Proto::Icmp, f.client, f.server, 0), Outcome::Reply);
    settle();
    EXPECT_GT(fw_->rule("web"), web);
    // One request and its reply, both credited to the rule that allowed the connection.
    EXPECT_EQ(fw_->rule("dns"), dns + 2);
    EXPECT_EQ(fw_->rule("ping"), ping + 2);
  }
}

TEST_P(FirewallNetns, DeniedFlowsTimeOut) {
  ASSERT_NO_FATAL_FAILURE(attach(kPolicy));
  const uint64_t accepted = lab_->serverEcho->tcpAccepted();
  const uint64_t received = lab_->serverEcho->udpReceived();
  for (const auto& f : kFamilies) {
    SCOPED_TRACE(f.client);
    const uint64_t ruleDeny = fw_->reason(EW_INGRESS, EW_R_RULE_DENY);
    const uint64_t noSsh = fw_->rule("no-ssh");
    // A deny rule. One SYN is counted: the first retransmission would come after 1 s.
    EXPECT_EQ(fromClient(Proto::Tcp, f.client, f.server, kSsh, kDropped), Outcome::Timeout);
    EXPECT_EQ(fw_->rule("no-ssh"), noSsh + 1);
    EXPECT_EQ(fw_->reason(EW_INGRESS, EW_R_RULE_DENY), ruleDeny + 1);

    // No rule matches: a port nobody allows, and the allowed port from an unknown address.
    const uint64_t defaultDeny = fw_->reason(EW_INGRESS, EW_R_DEFAULT_DENY);
    EXPECT_EQ(fromClient(Proto::Tcp, f.client, f.server, kAlt, kDropped), Outcome::Timeout);
    EXPECT_EQ(fromClient(Proto::Udp, f.client, f.server, kSyslog, kDropped), Outcome::Timeout);
    EXPECT_EQ(fromClient(Proto::Tcp, f.other, f.server, kWeb, kDropped), Outcome::Timeout);
    EXPECT_EQ(fromClient(Proto::Icmp, f.other, f.server, 0, kDropped), Outcome::Timeout);
    EXPECT_EQ(fw_->reason(EW_INGRESS, EW_R_DEFAULT_DENY), defaultDeny + 4);
  }
  EXPECT_EQ(lab_->serverEcho->tcpAccepted(), accepted);
  EXPECT_EQ(lab_->serverEcho->udpReceived(), received);
}

TEST_P(FirewallNetns, CountersEqualWhatWasSent) {
  ASSERT_NO_FATAL_FAILURE(attach(kPolicy));
  constexpr int kN = 200;
  for (const auto& f : kFamilies) {
    SCOPED_TRACE(f.client);
    // N datagrams to a port no rule allows: the default-deny counter grows by exactly N.
    const uint64_t denied = fw_->reason(EW_INGRESS, EW_R_DEFAULT_DENY);
    const uint64_t received = lab_->serverEcho->udpReceived();
    auto sent = netns::runIn(lab_->client.name(),
                             [&] { return netns::sendUdp(f.client, f.server, kSyslog, kN); });
    ASSERT_TRUE(sent) << sent.error().str();
    settle();
    EXPECT_EQ(fw_->reason(EW_INGRESS, EW_R_DEFAULT_DENY), denied + kN);
    EXPECT_EQ(lab_->serverEcho->udpReceived(), received);

    // N allowed datagrams: N rule-allow on the way in, N echoes out as established.
    const uint64_t allowed = fw_->reason(EW_INGRESS, EW_R_RULE_ALLOW);
    const uint64_t established = fw_->reason(EW_EGRESS, EW_R_CT_ESTABLISHED);
    const uint64_t dns = fw_->rule("dns");
    auto echoed = netns::runIn(lab_->client.name(),
                               [&] { return netns::sendUdp(f.client, f.server, kDns, kN, 2s); });
    ASSERT_TRUE(echoed) << echoed.error().str();
    EXPECT_EQ(*echoed, kN);
    settle();
    EXPECT_EQ(lab_->serverEcho->udpReceived(), received + kN);
    EXPECT_EQ(fw_->reason(EW_INGRESS, EW_R_RULE_ALLOW), allowed + kN);
    EXPECT_EQ(fw_->reason(EW_EGRESS, EW_R_CT_ESTABLISHED), established + kN);
    EXPECT_EQ(fw_->rule("dns"), dns + 2 * kN);
  }
}

TEST_P(FirewallNetns, EgressAllowWorksThroughConntrack) {
  ASSERT_NO_FATAL_FAILURE(attach(kEgressOnlyPolicy));
  for (const auto& f : kFamilies) {
    SCOPED_TRACE(f.client);
    const uint64_t replies = fw_->reason(EW_INGRESS, EW_R_CT_ESTABLISHED);
    const uint64_t out = fw_->rule("back-out");
    // The server connects out: the SYN is allowed by back-out, the SYN-ACK and the echo come
    // back in through connection tracking although no ingress rule exists.
    EXPECT_EQ(fromServer(Proto::Tcp, f.server, f.client, kBack), Outcome::Reply);
    settle();
    EXPECT_GT(fw_->reason(EW_INGRESS, EW_R_CT_ESTABLISHED), replies);
    EXPECT_GT(fw_->rule("back-out"), out);
    // The same port the other way, and anything else in, is dropped.
    EXPECT_EQ(fromClient(Proto::Tcp, f.client, f.server, kWeb, kDropped), Outcome::Timeout);
    EXPECT_EQ(fromClient(Proto::Icmp, f.client, f.server, 0, kDropped), Outcome::Timeout);
    // Egress to a port back-out does not name is dropped on the way out.
    const uint64_t dropped = fw_->reason(EW_EGRESS, EW_R_DEFAULT_DENY);
    const Outcome o = fromServer(Proto::Udp, f.server, f.client, kDns, kDropped);
    EXPECT_TRUE(o == Outcome::Timeout || o == Outcome::SendFailed) << netns::outcomeName(o);
    EXPECT_EQ(fw_->reason(EW_EGRESS, EW_R_DEFAULT_DENY), dropped + 1);
  }
}

TEST_P(FirewallNetns, DetachingRestoresTraffic) {
  ASSERT_NO_FATAL_FAILURE(attach(kPolicy));
  for (const auto& f : kFamilies) {
    EXPECT_EQ(fromClient(Proto::Tcp, f.client, f.server, kSsh, kDropped), Outcome::Timeout);
    EXPECT_EQ(fromClient(Proto::Udp, f.client, f.server, kSyslog, kDropped), Outcome::Timeout);
  }
  fw_->links.clear();  // closing the link fds detaches both programs
  const uint64_t before = fw_->reason(EW_INGRESS, EW_R_RULE_DENY) +
                          fw_->reason(EW_INGRESS, EW_R_DEFAULT_DENY) +
                          fw_->reason(EW_INGRESS, EW_R_RULE_ALLOW);
  for (const auto& f : kFamilies) {
    SCOPED_TRACE(f.client);
    EXPECT_EQ(fromClient(Proto::Tcp, f.client, f.server, kSsh), Outcome::Reply);
    EXPECT_EQ(fromClient(Proto::Udp, f.client, f.server, kSyslog), Outcome::Reply);
    EXPECT_EQ(fromClient(Proto::Icmp, f.other, f.server, 0), Outcome::Reply);
  }
  settle();
  // Nothing runs the program any more.
  EXPECT_EQ(fw_->reason(EW_INGRESS, EW_R_RULE_DENY) + fw_->reason(EW_INGRESS, EW_R_DEFAULT_DENY) +
                fw_->reason(EW_INGRESS, EW_R_RULE_ALLOW),
            before);
}

INSTANTIATE_TEST_SUITE_P(Modes, FirewallNetns, ::testing::Values("xdp", "tcx"),
                         [](const auto& info) { return info.param; });

// ---- edgeward run, as a user runs it ----

struct Child {
  pid_t pid = -1;
  Child() = default;
  Child(Child&& o) noexcept : pid(std::exchange(o.pid, -1)) {}
  Child& operator=(Child&&) = delete;
  ~Child() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  // Exit code, or -1 if it did not exit within `limit`.
  int wait(std::chrono::milliseconds limit) {
    for (auto end = std::chrono::steady_clock::now() + limit;
         std::chrono::steady_clock::now() < end; std::this_thread::sleep_for(20ms)) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
    }
    return -1;
  }
};

Child spawnEdgeward(const std::vector<std::string>& args, const std::string& out) {
  std::vector<std::string> argv = {EW_EDGEWARD_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  Child c;
  int rc = ::posix_spawn(&c.pid, cargv[0], &fa, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  EXPECT_EQ(rc, 0) << std::strerror(rc);
  if (rc) c.pid = -1;
  return c;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

class RunCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "integration tests need root";
    auto lab = makeLab();
    ASSERT_TRUE(lab) << lab.error().str();
    lab_ = std::move(*lab);
    policyFile_ = fmt::format("/tmp/{}policy.yaml", pidPrefix());
    outFile_ = fmt::format("/tmp/{}run.out", pidPrefix());
    std::ofstream(policyFile_) << kPolicy;
  }
  void TearDown() override {
    lab_.reset();
    ::unlink(policyFile_.c_str());
    ::unlink(outFile_.c_str());
  }
  std::unique_ptr<Lab> lab_;
  std::string policyFile_, outFile_;
};

TEST_F(RunCommand, EnforcesUntilSigintThenDetaches) {
  Child run = spawnEdgeward(
      {"run", "--iface", lab_->serverIf, "--policy", policyFile_, "--netns", lab_->server.name()},
      outFile_);
  ASSERT_GT(run.pid, 0);
  // Attached once it says so.
  for (int i = 0; i < 200 && slurp(outFile_).find("hooks:") == std::string::npos; i++)
    std::this_thread::sleep_for(20ms);
  ASSERT_NE(slurp(outFile_).find("hooks: xdp-ingress"), std::string::npos) << slurp(outFile_);

  EXPECT_EQ(probeFrom(lab_->client, Proto::Tcp, kClient4, kServer4, kWeb, kReply), Outcome::Reply);
  EXPECT_EQ(probeFrom(lab_->client, Proto::Udp, kClient4, kServer4, kSyslog, kDropped),
            Outcome::Timeout);
  std::this_thread::sleep_for(1200ms);  // at least one rate line
  ASSERT_EQ(::kill(run.pid, SIGINT), 0);
  EXPECT_EQ(run.wait(5s), 0) << slurp(outFile_);
  const std::string out = slurp(outFile_);
  EXPECT_NE(out.find("passed"), std::string::npos) << out;
  EXPECT_NE(out.find("top rule web"), std::string::npos) << out;
  EXPECT_NE(out.find("detached from " + lab_->serverIf), std::string::npos) << out;
  // Detached: what the policy dropped flows again.
  EXPECT_EQ(probeFrom(lab_->client, Proto::Udp, kClient4, kServer4, kSyslog, kReply),
            Outcome::Reply);
}

TEST_F(RunCommand, RefusesAMissingInterface) {
  Child run = spawnEdgeward({"run", "--iface", "ewt-nosuchif", "--policy", policyFile_, "--netns",
                             lab_->server.name(), "--mode", "tcx"},
                            outFile_);
  ASSERT_GT(run.pid, 0);
  EXPECT_EQ(run.wait(10s), 1);
  EXPECT_NE(slurp(outFile_).find("interface \"ewt-nosuchif\" does not exist"), std::string::npos)
      << slurp(outFile_);
}

TEST_F(RunCommand, RefusesABadPolicyInOneLine) {
  std::ofstream(policyFile_) << "apiVersion: edgeward.io/v1\nkind: Policy\nspec: [\n";
  Child run = spawnEdgeward(
      {"run", "--iface", lab_->serverIf, "--policy", policyFile_, "--netns", lab_->server.name()},
      outFile_);
  ASSERT_GT(run.pid, 0);
  EXPECT_EQ(run.wait(10s), 1);
  const std::string out = slurp(outFile_);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_TRUE(out.starts_with("edgeward: ")) << out;
}

}  // namespace
}  // namespace edgeward
