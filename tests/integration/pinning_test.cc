// Pinned state, restarts and program upgrades against the real kernel: the firewall attached on
// the server end of a veth pair between two namespaces this test creates, with its maps and
// links pinned under a bpffs directory of its own (/sys/fs/bpf/ewt-<pid>-<test>).
//
//  - pinned maps and links keep filtering after the loading process let go of everything;
//  - a second load adopts the maps (policy generation, counters) and moves the links to the new
//    program with bpf_link_update while UDP streams run: no allowed packet lost, no denied one
//    passed;
//  - ProgramManager upgrades (another build from a file, other load-time switches) without loss,
//    and rolls back on a self-test difference, a verifier error, a bad file and a failed update;
//  - resetPins / `edgeward reset` detach and remove everything, twice in a row.
//
// Every namespace, link and pin is removed when a test ends, pass or fail; leftovers of a killed
// run (a pid that no longer exists) are removed when the next run starts. Needs root.
#include <elf.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bpf/firewall_program.h"
#include "common/netns.h"
#include "dataplane/dataplane.h"
#include "dataplane/program_manager.h"
#include "dataplane/selftest.h"
#include "policy/compiler.h"
#include "policy/policy.h"
#include "support/lab.h"
#include "support/run.h"

namespace edgeward {
namespace {

namespace fs = std::filesystem;
using bpf::FirewallMap;
using bpf::FirewallOptions;
using bpf::FirewallProgram;
using bpf::Hook;
using netns::Outcome;
using netns::Proto;
using testing::compiledPolicy;
using testing::Lab;
using testing::pidPrefix;
using namespace std::chrono_literals;

constexpr char kClient4[] = "10.202.0.1";
constexpr char kServer4[] = "10.202.0.2";
constexpr char kClient6[] = "fd00:202::1";
constexpr char kServer6[] = "fd00:202::2";
constexpr uint16_t kWeb = 80, kSsh = 22, kDns = 5353, kSyslog = 9999;

// Allowed: tcp 80 and udp 5353 from the client, pings. Everything else in is dropped.
constexpr char kPolicy[] = R"(apiVersion: edgeward.io/v1
kind: Policy
metadata: {name: pinning-test}
spec:
  defaultAction: deny
  identities:
    client: [10.202.0.1, "fd00:202::1"]
  ingress:
    - name: web
      from: [client]
      ports: [{protocol: tcp, port: 80}]
      action: allow
    - name: dns
      from: [client]
      ports: [{protocol: udp, port: 5353}]
      action: allow
    - name: ping
      from: [client]
      ports: [{protocol: icmp}, {protocol: icmpv6}]
      action: allow
)";

// The same without dns.
constexpr char kNoDnsPolicy[] = R"(apiVersion: edgeward.io/v1
kind: Policy
metadata: {name: pinning-test-no-dns}
spec:
  defaultAction: deny
  identities:
    client: [10.202.0.1, "fd00:202::1"]
  ingress:
    - name: web
      from: [client]
      ports: [{protocol: tcp, port: 80}]
      action: allow
)";

std::string pinDirFor(const std::string& test) {
  return fmt::format("/sys/fs/bpf/{}{}", pidPrefix(), test);
}

// Small maps: these tests need few entries, and several programs are loaded at once.
FirewallOptions smallOptions(const policy::CompiledPolicy& p, const std::string& pinDir) {
  FirewallOptions base;
  base.capIntervals4 = base.capIntervals6 = base.capPortEntries = 256;
  base.capGroups = 16;
  base.capRules = 64;
  base.conntrackEntries = 4096;
  auto o = dataplane::optionsFor(p, base);
  o.pinDir = pinDir;
  return o;
}

// Before any test: remove what killed runs of this binary left (their pid is gone).
class RemoveLeftovers : public ::testing::Environment {
 public:
  void SetUp() override {
    auto r = netns::cleanupDead("ewt-");
    ASSERT_TRUE(r) << r.error().str();
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/sys/fs/bpf", ec)) {
      const std::string name = e.path().filename().string();
      if (!name.starts_with("ewt-")) continue;
      auto dash = name.find('-', 4);
      if (dash == std::string::npos) continue;
      const std::string pid = name.substr(4, dash - 4);
      if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
      if (fs::exists("/proc/" + pid)) continue;
      auto removed = FirewallProgram::resetPins(e.path().string());
      EXPECT_TRUE(removed) << removed.error().str();
    }
  }
};
[[maybe_unused]] ::testing::Environment* const kRemoveLeftovers =
    ::testing::AddGlobalTestEnvironment(new RemoveLeftovers);

// Two namespaces joined by a veth pair, echo servers on the server side. Removed on destruction.
Result<std::unique_ptr<Lab>> makeLab() {
  return Lab::create(
      {.clientNs = "pc",
       .serverNs = "ps",
       .clientAddresses = {fmt::format("{}/24", kClient4), fmt::format("{}/64", kClient6)},
       .serverAddresses = {fmt::format("{}/24", kServer4), fmt::format("{}/64", kServer6)},
       .serverEcho = {
           {Proto::Tcp, kWeb}, {Proto::Tcp, kSsh}, {Proto::Udp, kDns}, {Proto::Udp, kSyslog}}});
}

constexpr std::chrono::milliseconds kReply = 2s, kDropped = 300ms;

// UDP datagrams a namespace's sockets could not take (receive buffer full while the receiver
// was not scheduled): /proc/net/snmp's Udp InErrors, which includes RcvbufErrors.
uint64_t udpInErrors(const std::string& ns) {
  auto r = testing::runShell(fmt::format("ip netns exec {} cat /proc/net/snmp", ns));
  std::istringstream in(r.out);
  std::string header, values, line;
  while (std::getline(in, line))
    if (line.starts_with("Udp: ")) (header.empty() ? header : values) = line;
  std::istringstream h(header), v(values);
  std::string name, value;
  while (h >> name && v >> value)
    if (name == "InErrors") return std::stoull(value);
  ADD_FAILURE() << "no Udp InErrors in " << r.out;
  return 0;
}

// Frames a veth dropped on transmit because its peer's queue was full (the kernel counts them
// as the sender's tx_dropped): lost before any program saw them, as on a real link under load.
uint64_t txDropped(const std::string& ns, const std::string& dev) {
  auto r = testing::runShell(fmt::format("ip -n {} -j -s link show dev {}", ns, dev));
  if (r.code != 0) {
    ADD_FAILURE() << r.out;
    return 0;
  }
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  if (j.is_discarded() || !j.is_array() || j.empty()) {
    ADD_FAILURE() << "unexpected ip -j output: " << r.out;
    return 0;
  }
  return j[0]["stats64"]["tx"]["dropped"].template get<uint64_t>();
}

// Frames or datagrams the kernel dropped on the way to the server namespace before or after
// the program: the client veth's full peer queue, the server sockets' full buffers.
uint64_t kernelDropsTowards(const Lab& lab) {
  return txDropped(lab.client.name(), lab.clientIf) + udpInErrors(lab.server.name());
}
uint64_t kernelDropsBack(const Lab& lab) {
  return txDropped(lab.server.name(), lab.serverIf) + udpInErrors(lab.client.name());
}

// Allowed and denied UDP streams from the client, paced 16 datagrams per millisecond, in bursts
// of kBurst (each burst waits for its echoes), until stopped: they surround whatever the test
// does meanwhile, however long it takes.
class Streams {
 public:
  static constexpr int kBurst = 800;  // 50 ms

  explicit Streams(const Lab& lab)
      : lab_(lab),
        before_(lab.serverEcho->udpReceived()),
        queueDropsBefore_(kernelDropsTowards(lab)),
        replyQueueDropsBefore_(kernelDropsBack(lab)),
        started_(std::chrono::steady_clock::now()) {
    allowed_ = std::thread([this] { run(kDns, 3s, allowedSent_, allowedReplies_, allowedError_); });
    denied_ =
        std::thread([this] { run(kSyslog, 20ms, deniedSent_, deniedReplies_, deniedError_); });
  }
  ~Streams() { stop(); }

  // Checks the streams after stopping them: every allowed datagram came back, no denied one
  // arrived, and some of both were sent after `lastChange`.
  void expectLossless(std::chrono::steady_clock::time_point lastChange) {
    // Let a few bursts go through the changed program before stopping.
    std::this_thread::sleep_for(150ms);
    stop();
    EXPECT_TRUE(allowedError_.empty()) << allowedError_;
    EXPECT_TRUE(deniedError_.empty()) << deniedError_;
    EXPECT_GT(allowedSent_, 0);
    EXPECT_EQ(deniedReplies_, 0) << "denied datagrams answered";
    // Every allowed datagram reached the server, except those the kernel dropped outside the
    // program (a full veth queue, a full socket buffer while the echo server was not scheduled:
    // seen when the machine is saturated). The kernel counts those, so the loss must be fully
    // accounted for by them; no allowed datagram may be lost to the program swap.
    const uint64_t received = lab_.serverEcho->udpReceived() - before_;
    const uint64_t queueDrops = kernelDropsTowards(lab_) - queueDropsBefore_;
    const uint64_t missing = static_cast<uint64_t>(allowedSent_) - received;
    EXPECT_LE(received, static_cast<uint64_t>(allowedSent_)) << "denied datagrams arrived";
    EXPECT_LE(missing, queueDrops)
        << missing << " allowed datagrams lost, " << queueDrops
        << " dropped by the kernel outside the program (veth queue, socket buffers)";
    const uint64_t replyQueueDrops = kernelDropsBack(lab_) - replyQueueDropsBefore_;
    EXPECT_LE(received - static_cast<uint64_t>(allowedReplies_), replyQueueDrops)
        << "replies lost beyond what the veth queue dropped";
    if (queueDrops || replyQueueDrops)
      fmt::print(stderr,
                 "note: the kernel dropped {} + {} datagrams on full queues or socket buffers "
                 "(machine busy)\n",
                 queueDrops, replyQueueDrops);
    EXPECT_LT(started_, lastChange) << "the streams started after the change: not covered";
  }
  int allowedSent() const { return allowedSent_; }

 private:
  void run(uint16_t port, std::chrono::milliseconds wait, int& sent, int& replies,
           std::string& error) {
    while (!stop_.load()) {
      auto r = netns::runIn(lab_.client.name(),
                            [&] { return netns::sendUdp(kClient4, kServer4, port, kBurst, wait); });
      if (!r) {
        error = r.error().str();
        return;
      }
      sent += kBurst;
      replies += *r;
    }
  }
  void stop() {
    stop_.store(true);
    if (allowed_.joinable()) allowed_.join();
    if (denied_.joinable()) denied_.join();
  }

  const Lab& lab_;
  const uint64_t before_;
  const uint64_t queueDropsBefore_, replyQueueDropsBefore_;
  const std::chrono::steady_clock::time_point started_;
  std::atomic<bool> stop_{false};
  std::thread allowed_, denied_;
  int allowedSent_ = 0, allowedReplies_ = 0, deniedSent_ = 0, deniedReplies_ = 0;
  std::string allowedError_, deniedError_;
};

class Pinning : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "integration tests need root";
    pinDir_ = pinDirFor(::testing::UnitTest::GetInstance()->current_test_info()->name());
    auto lab = makeLab();
    ASSERT_TRUE(lab) << lab.error().str();
    lab_ = std::move(*lab);
    policy_ = compiledPolicy(kPolicy);
  }

  void TearDown() override {
    std::string c = lab_ ? lab_->client.name() : "", s = lab_ ? lab_->server.name() : "";
    auto removed = FirewallProgram::resetPins(pinDir_);
    EXPECT_TRUE(removed) << removed.error().str();
    EXPECT_FALSE(fs::exists(pinDir_));
    lab_.reset();
    if (!c.empty()) {
      EXPECT_FALSE(netns::nsExists(c));
    }
    if (!s.empty()) {
      EXPECT_FALSE(netns::nsExists(s));
    }
  }

  Outcome probe(Proto p, uint16_t port, std::chrono::milliseconds timeout = kReply,
                const char* dst = kServer4) {
    auto r = netns::runIn(lab_->client.name(), [&] {
      return netns::probe({p, "", dst, port, timeout});
    });
    EXPECT_TRUE(r) << r.error().str();
    return r ? *r : Outcome::SendFailed;
  }
  void expectFiltering() {
    EXPECT_EQ(probe(Proto::Tcp, kWeb), Outcome::Reply);
    EXPECT_EQ(probe(Proto::Udp, kDns), Outcome::Reply);
    EXPECT_EQ(probe(Proto::Icmp, 0, kReply, kServer6), Outcome::Reply);
    EXPECT_EQ(probe(Proto::Tcp, kSsh, kDropped), Outcome::Timeout);
    EXPECT_EQ(probe(Proto::Udp, kSyslog, kDropped), Outcome::Timeout);
  }

  // XDP ingress and tcx egress on the server's veth end, pinned.
  Result<std::vector<UniqueFd>> attachPinned(FirewallProgram& fw) {
    return netns::runIn(lab_->server.name(), [&]() -> Result<std::vector<UniqueFd>> {
      EW_TRY(ifindex, bpf::ifindexOf(lab_->serverIf));
      std::vector<UniqueFd> out;
      for (Hook h : {Hook::XdpIngress, Hook::TcEgress}) {
        EW_TRY(fd, fw.attach(h, *ifindex));
        EW_TRY(pinned, fw.pinLink(fd->get(), FirewallProgram::linkPinName(lab_->server.name(),
                                                                          lab_->serverIf, h)));
        out.push_back(std::move(*fd));
      }
      return out;
    });
  }
  std::string linkPin(Hook h) const {
    return pinDir_ + "/links/" +
           FirewallProgram::linkPinName(lab_->server.name(), lab_->serverIf, h);
  }

  // A manager on this test's pin dir with the policy applied and both links attached.
  std::unique_ptr<dataplane::ProgramManager> startManager() {
    auto pm = dataplane::ProgramManager::start(smallOptions(policy_, pinDir_));
    EXPECT_TRUE(pm) << pm.error().str();
    if (!pm) return nullptr;
    dataplane::Dataplane dp((*pm)->program());
    auto applied = dp.apply(policy_, 1);
    EXPECT_TRUE(applied) << applied.error().str();
    auto linked = netns::runIn(lab_->server.name(), [&]() -> Result<void> {
      for (Hook h : {Hook::XdpIngress, Hook::TcEgress}) {
        EW_TRY(l, (*pm)->ensureLink(lab_->server.name(), lab_->serverIf, h));
      }
      return {};
    });
    EXPECT_TRUE(linked) << linked.error().str();
    return std::move(*pm);
  }

  // Per hook: the program id each managed link runs now (from the kernel).
  static std::map<Hook, uint32_t> linkProgIds(const dataplane::ProgramManager& pm) {
    std::map<Hook, uint32_t> ids;
    for (const auto& l : pm.links()) {
      auto info = FirewallProgram::linkInfo(l.fd.get());
      EXPECT_TRUE(info) << info.error().str();
      ids[l.hook] = info ? info->progId : 0;
    }
    return ids;
  }
  // Per hook of the managed links: the id of the active program object's program.
  static std::map<Hook, uint32_t> programIds(const dataplane::ProgramManager& pm) {
    std::map<Hook, uint32_t> ids;
    for (const auto& l : pm.links()) {
      auto info = pm.program().programInfo(l.hook);
      EXPECT_TRUE(info) << info.error().str();
      ids[l.hook] = info ? info->id : 0;
    }
    return ids;
  }

  std::string pinDir_;
  std::unique_ptr<Lab> lab_;
  policy::CompiledPolicy policy_;
};

uint64_t ruleCount(const FirewallProgram& fw, const policy::CompiledPolicy& p, const char* rule) {
  auto c = fw.readCounter(FirewallMap::RuleStats, p.ruleId(rule));
  EXPECT_TRUE(c) << c.error().str();
  return c ? c->packets : 0;
}

// ---------------------------------------------------------------------------------------------

TEST_F(Pinning, PinnedStateKeepsFilteringAfterTheLoaderIsGone) {
  {
    auto fw = FirewallProgram::load(smallOptions(policy_, pinDir_));
    ASSERT_TRUE(fw) << fw.error().str();
    EXPECT_FALSE((*fw)->adoptedMaps());
    dataplane::Dataplane dp(**fw);
    auto applied = dp.apply(policy_, 7);
    ASSERT_TRUE(applied) << applied.error().str();
    auto links = attachPinned(**fw);
    ASSERT_TRUE(links) << links.error().str();
    expectFiltering();
  }  // program object, map fds and link fds all closed: as if the process exited
  for (const char* sub : {"maps/ew_config", "maps/ew_ct4", "links"})
    EXPECT_TRUE(fs::exists(pinDir_ + "/" + sub)) << sub;
  EXPECT_FALSE(fs::exists(pinDir_ + "/maps/ew_verdict"));  // per-load scratch, not pinned
  EXPECT_TRUE(fs::exists(linkPin(Hook::XdpIngress)));
  EXPECT_TRUE(fs::exists(linkPin(Hook::TcEgress)));
  expectFiltering();
}

TEST_F(Pinning, ReloadAdoptsMapsAndLinksWithoutLosingAPacket) {
  uint32_t gen = 0, oldXdp = 0, oldEgress = 0;
  uint64_t dnsBefore = 0;
  {
    auto fw = FirewallProgram::load(smallOptions(policy_, pinDir_));
    ASSERT_TRUE(fw) << fw.error().str();
    dataplane::Dataplane dp(**fw);
    auto applied = dp.apply(policy_, 7);
    ASSERT_TRUE(applied) << applied.error().str();
    auto links = attachPinned(**fw);
    ASSERT_TRUE(links) << links.error().str();
    auto sent = netns::runIn(lab_->client.name(),
                             [] { return netns::sendUdp(kClient4, kServer4, kDns, 20, 2s); });
    ASSERT_TRUE(sent) << sent.error().str();
    EXPECT_EQ(*sent, 20);
    auto cfg = (*fw)->readConfig();
    ASSERT_TRUE(cfg) << cfg.error().str();
    gen = cfg->gen;
    dnsBefore = ruleCount(**fw, policy_, "dns");
    EXPECT_EQ(dnsBefore, 40u);  // the rule counts requests and (established) replies
    oldXdp = (*fw)->programInfo(Hook::XdpIngress)->id;
    oldEgress = (*fw)->programInfo(Hook::TcEgress)->id;
  }
  // Nobody holds the program now; the pinned state still counts.
  auto sent = netns::runIn(lab_->client.name(),
                           [] { return netns::sendUdp(kClient4, kServer4, kDns, 10, 2s); });
  ASSERT_TRUE(sent) << sent.error().str();
  EXPECT_EQ(*sent, 10);

  // "Restart": another build of the program (the object file) on the same pins.
  auto opts = smallOptions(policy_, pinDir_);
  opts.objectPath = EW_FIREWALL_OBJECT;
  auto fw = FirewallProgram::load(opts);
  ASSERT_TRUE(fw) << fw.error().str();
  EXPECT_TRUE((*fw)->adoptedMaps());
  auto cfg = (*fw)->readConfig();
  ASSERT_TRUE(cfg) << cfg.error().str();
  EXPECT_EQ(cfg->gen, gen) << "the active generation must survive";
  ew_policy_hdr hdr{};
  auto read = (*fw)->readArray(FirewallMap::Policy, cfg->gen & 1, &hdr, 1, sizeof hdr);
  ASSERT_TRUE(read) << read.error().str();
  EXPECT_EQ(hdr.version, 7u) << "the active policy must not be re-initialised";
  EXPECT_EQ(ruleCount(**fw, policy_, "dns"), dnsBefore + 2 * 10) << "counters continue";

  // Adopt the links: they still run the old programs.
  auto xdp = FirewallProgram::adoptLink(linkPin(Hook::XdpIngress));
  ASSERT_TRUE(xdp) << xdp.error().str();
  auto egress = FirewallProgram::adoptLink(linkPin(Hook::TcEgress));
  ASSERT_TRUE(egress) << egress.error().str();
  auto xi = FirewallProgram::linkInfo(xdp->get());
  auto ei = FirewallProgram::linkInfo(egress->get());
  ASSERT_TRUE(xi && ei);
  EXPECT_EQ(xi->progId, oldXdp);
  EXPECT_EQ(ei->progId, oldEgress);
  EXPECT_EQ(xi->hook, Hook::XdpIngress);
  EXPECT_EQ(ei->hook, Hook::TcEgress);
  auto oldXdpFd = FirewallProgram::programById(oldXdp);
  auto oldEgressFd = FirewallProgram::programById(oldEgress);
  ASSERT_TRUE(oldXdpFd && oldEgressFd);

  // Move both links to the new program while traffic flows.
  int streamed = 0;
  {
    Streams streams(*lab_);
    std::this_thread::sleep_for(100ms);
    auto u1 = (*fw)->updateLink(xdp->get(), Hook::XdpIngress, oldXdpFd->get());
    ASSERT_TRUE(u1) << u1.error().str();
    auto u2 = (*fw)->updateLink(egress->get(), Hook::TcEgress, oldEgressFd->get());
    ASSERT_TRUE(u2) << u2.error().str();
    streams.expectLossless(std::chrono::steady_clock::now());
    streamed = streams.allowedSent();
  }
  EXPECT_EQ(FirewallProgram::linkInfo(xdp->get())->progId,
            (*fw)->programInfo(Hook::XdpIngress)->id);
  EXPECT_EQ(FirewallProgram::linkInfo(egress->get())->progId,
            (*fw)->programInfo(Hook::TcEgress)->id);
  EXPECT_EQ(ruleCount(**fw, policy_, "dns"),
            dnsBefore + 2 * (10 + static_cast<uint64_t>(streamed)));
  expectFiltering();
}

TEST_F(Pinning, ManagerRestartKeepsTheSameCodeAndUpdatesOtherCode) {
  std::map<Hook, uint32_t> first;
  {
    auto pm = startManager();
    ASSERT_TRUE(pm);
    ASSERT_EQ(pm->links().size(), 2u);
    for (const auto& l : pm->links()) EXPECT_EQ(l.origin, "attached");
    first = linkProgIds(*pm);
  }
  expectFiltering();
  {
    // Same build, same switches: nothing to replace.
    auto pm = dataplane::ProgramManager::start(smallOptions(policy_, pinDir_));
    ASSERT_TRUE(pm) << pm.error().str();
    EXPECT_TRUE((*pm)->program().adoptedMaps());
    ASSERT_EQ((*pm)->links().size(), 2u);
    for (const auto& l : (*pm)->links()) EXPECT_EQ(l.origin, "adopted") << l.pinName;
    EXPECT_EQ(linkProgIds(**pm), first);
  }
  {
    // Another load-time switch: the links move to the new program.
    auto opts = smallOptions(policy_, pinDir_);
    opts.recordVerdict = true;
    auto pm = dataplane::ProgramManager::start(opts);
    ASSERT_TRUE(pm) << pm.error().str();
    ASSERT_EQ((*pm)->links().size(), 2u);
    for (const auto& l : (*pm)->links()) EXPECT_EQ(l.origin, "adopted, updated") << l.pinName;
    EXPECT_EQ(linkProgIds(**pm), programIds(**pm));
    EXPECT_NE(linkProgIds(**pm), first);
    // ensureLink claims the adopted links instead of attaching again.
    auto claimed = netns::runIn(lab_->server.name(), [&]() -> Result<void> {
      for (Hook h : {Hook::XdpIngress, Hook::TcEgress}) {
        EW_TRY(l, (*pm)->ensureLink(lab_->server.name(), lab_->serverIf, h));
      }
      return {};
    });
    ASSERT_TRUE(claimed) << claimed.error().str();
    EXPECT_EQ((*pm)->links().size(), 2u);
    expectFiltering();
  }
}

TEST_F(Pinning, UpgradeSwapsTheProgramWithoutLosingAPacket) {
  auto pm = startManager();
  ASSERT_TRUE(pm);
  dataplane::Dataplane dp(pm->program());  // must stay valid across upgrades
  auto cases = pm->casesFromCurrent(dataplane::selfTestPackets(policy_));
  ASSERT_TRUE(cases) << cases.error().str();
  ASSERT_GT(cases->size(), 50u);
  size_t passing =
      std::count_if(cases->begin(), cases->end(), [](const auto& c) { return c.expected.pass; });
  EXPECT_GT(passing, 0u);
  EXPECT_LT(passing, cases->size());
  const auto before = linkProgIds(*pm);

  // Another build (the object file), with traffic.
  auto opts = pm->program().options();
  opts.objectPath = EW_FIREWALL_OBJECT;
  dataplane::UpgradeResult res;
  double upgradeMs = 0;
  {
    Streams streams(*lab_);
    std::this_thread::sleep_for(100ms);
    auto t0 = std::chrono::steady_clock::now();
    res = pm->upgrade(opts, *cases);
    auto t1 = std::chrono::steady_clock::now();
    upgradeMs = std::chrono::duration<double, std::milli>(t1 - t0).count();
    streams.expectLossless(t1);
  }
  ASSERT_TRUE(res.ok) << res.reason;
  EXPECT_TRUE(res.reason.empty()) << res.reason;
  std::printf("upgrade: self-test + load + link updates took %.0f ms\n", upgradeMs);
  EXPECT_EQ(res.linksUpdated, 2u);
  EXPECT_EQ(res.selfTestPackets, cases->size());
  EXPECT_EQ(res.programTag.size(), 16u);
  EXPECT_EQ(pm->program().options().objectPath, EW_FIREWALL_OBJECT);
  auto after = linkProgIds(*pm);
  EXPECT_EQ(after, programIds(*pm));
  EXPECT_NE(after, before);

  // Other load-time switches, with traffic.
  opts.recordVerdict = true;
  {
    Streams streams(*lab_);
    std::this_thread::sleep_for(100ms);
    res = pm->upgrade(opts, *cases);
    streams.expectLossless(std::chrono::steady_clock::now());
  }
  ASSERT_TRUE(res.ok) << res.reason;
  EXPECT_TRUE(pm->program().options().recordVerdict);
  EXPECT_EQ(linkProgIds(*pm), programIds(*pm));
  expectFiltering();

  // The Dataplane built before the upgrades drives the new program's (shared) maps.
  auto applied = dp.apply(compiledPolicy(kNoDnsPolicy), 2);
  ASSERT_TRUE(applied) << applied.error().str();
  EXPECT_EQ(probe(Proto::Udp, kDns, kDropped), Outcome::Timeout);
  EXPECT_EQ(probe(Proto::Tcp, kWeb), Outcome::Reply);
}

TEST_F(Pinning, UpgradeRollsBackOnASelfTestDifference) {
  auto pm = startManager();
  ASSERT_TRUE(pm);
  auto cases = pm->casesFromCurrent(dataplane::selfTestPackets(policy_));
  ASSERT_TRUE(cases) << cases.error().str();
  // A deliberately wrong expectation: the packet the policy passes, expected to drop.
  auto it = std::find_if(cases->begin(), cases->end(), [](const auto& c) {
    return c.expected.pass && c.expected.reason == EW_R_RULE_ALLOW;
  });
  ASSERT_NE(it, cases->end());
  it->expected = {false, EW_R_RULE_DENY, it->expected.rule};
  const auto before = linkProgIds(*pm);
  const auto tag = pm->program().programInfo(Hook::XdpIngress)->tag;

  auto opts = pm->program().options();
  opts.objectPath = EW_FIREWALL_OBJECT;
  auto res = pm->upgrade(opts, *cases);
  EXPECT_FALSE(res.ok);
  EXPECT_NE(res.reason.find("self-test: 1 of"), std::string::npos) << res.reason;
  EXPECT_NE(res.reason.find(it->packet.label), std::string::npos) << res.reason;
  ASSERT_EQ(res.mismatches.size(), 1u);
  EXPECT_TRUE(res.mismatches[0].actual.pass);
  EXPECT_EQ(res.programTag, tag);
  EXPECT_EQ(linkProgIds(*pm), before) << "links must still run the old program";
  EXPECT_EQ(programIds(*pm), before);
  EXPECT_TRUE(pm->program().options().objectPath.empty());
  expectFiltering();
}

// The firewall object with the last instruction of its XDP program (`exit`; never relocated)
// replaced by `r0 = 0`: the program falls off its end.
std::string verifierRejectedObject(const std::string& dir) {
  std::ifstream in(EW_FIREWALL_OBJECT, std::ios::binary);
  std::vector<char> elf((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Elf64_Ehdr eh;
  std::memcpy(&eh, elf.data(), sizeof eh);
  auto section = [&](size_t i) {
    Elf64_Shdr sh;
    std::memcpy(&sh, elf.data() + eh.e_shoff + i * eh.e_shentsize, sizeof sh);
    return sh;
  };
  const Elf64_Shdr names = section(eh.e_shstrndx);
  bool patched = false;
  for (size_t i = 0; i < eh.e_shnum && !patched; i++) {
    Elf64_Shdr sh = section(i);
    if (std::string(elf.data() + names.sh_offset + sh.sh_name) != "xdp") continue;
    const unsigned char movR0[8] = {0xb7, 0, 0, 0, 0, 0, 0, 0};
    std::memcpy(elf.data() + sh.sh_offset + sh.sh_size - sizeof movR0, movR0, sizeof movR0);
    patched = true;
  }
  EXPECT_TRUE(patched) << "no xdp section in " << EW_FIREWALL_OBJECT;
  std::string path = dir + "/rejected.bpf.o";
  std::ofstream(path, std::ios::binary).write(elf.data(), static_cast<std::streamsize>(elf.size()));
  return path;
}

TEST_F(Pinning, UpgradeRefusesAnUnloadableProgramAndChangesNothing) {
  auto pm = startManager();
  ASSERT_TRUE(pm);
  auto cases = pm->casesFromCurrent(dataplane::selfTestPackets(policy_, 32));
  ASSERT_TRUE(cases) << cases.error().str();
  const auto before = linkProgIds(*pm);
  const std::string tmp = fs::temp_directory_path() / (pidPrefix() + "objects");
  fs::create_directories(tmp);

  // Not a BPF object at all.
  const std::string junk = tmp + "/junk.bpf.o";
  std::ofstream(junk) << "not an ELF file\n";
  auto opts = pm->program().options();
  opts.objectPath = junk;
  auto res = pm->upgrade(opts, *cases);
  EXPECT_FALSE(res.ok);
  EXPECT_NE(res.reason.find("did not load"), std::string::npos) << res.reason;
  EXPECT_NE(res.reason.find(junk), std::string::npos) << res.reason;

  // A program the verifier rejects.
  opts.objectPath = verifierRejectedObject(tmp);
  res = pm->upgrade(opts, *cases);
  EXPECT_FALSE(res.ok);
  EXPECT_NE(res.reason.find("verifier rejected program 'ew_xdp_ingress'"), std::string::npos)
      << res.reason;

  // A missing file.
  opts.objectPath = tmp + "/missing.bpf.o";
  res = pm->upgrade(opts, *cases);
  EXPECT_FALSE(res.ok);
  EXPECT_NE(res.reason.find("missing.bpf.o"), std::string::npos) << res.reason;

  fs::remove_all(tmp);
  EXPECT_EQ(linkProgIds(*pm), before);
  EXPECT_EQ(programIds(*pm), before);
  expectFiltering();
}

TEST_F(Pinning, UpgradeMovesLinksBackWhenALinkUpdateFails) {
  auto pm = startManager();
  ASSERT_TRUE(pm);
  ASSERT_EQ(pm->links().size(), 2u);
  ASSERT_EQ(pm->links()[0].hook, Hook::XdpIngress);
  auto cases = pm->casesFromCurrent(dataplane::selfTestPackets(policy_, 32));
  ASSERT_TRUE(cases) << cases.error().str();
  const auto before = linkProgIds(*pm);

  // Someone else moved the egress link to another program behind the manager's back: its
  // update (which names the program it expects to replace) fails after the XDP one succeeded.
  auto other = FirewallProgram::load(smallOptions(policy_, ""));
  ASSERT_TRUE(other) << other.error().str();
  auto egress = FirewallProgram::adoptLink(pm->links()[1].pinPath);
  ASSERT_TRUE(egress) << egress.error().str();
  auto moved = (*other)->updateLink(egress->get(), Hook::TcEgress);
  ASSERT_TRUE(moved) << moved.error().str();

  auto opts = pm->program().options();
  opts.recordVerdict = true;
  auto res = pm->upgrade(opts, *cases);
  EXPECT_FALSE(res.ok);
  EXPECT_TRUE(res.rolledBack);
  EXPECT_NE(res.reason.find("updating link " + pm->links()[1].pinName), std::string::npos)
      << res.reason;
  EXPECT_NE(res.reason.find("1 link(s) moved back"), std::string::npos) << res.reason;
  EXPECT_EQ(res.reason.find("ROLLBACK FAILED"), std::string::npos) << res.reason;
  EXPECT_EQ(linkProgIds(*pm)[Hook::XdpIngress], before.at(Hook::XdpIngress))
      << "the XDP link must be back on the old program";
  EXPECT_EQ(programIds(*pm), before);
  EXPECT_FALSE(pm->program().options().recordVerdict);
}

TEST_F(Pinning, ResetDetachesAndRemovesEverythingTwice) {
  auto pm = startManager();  // still holding its links: reset detaches them anyway
  ASSERT_TRUE(pm);
  expectFiltering();
  auto removed = FirewallProgram::resetPins(pinDir_);
  ASSERT_TRUE(removed) << removed.error().str();
  size_t links = 0, maps = 0, progs = 0;
  for (const auto& r : *removed) {
    links += r.what.starts_with("link");
    maps += r.what == "map";
    progs += r.what == "program";
  }
  EXPECT_EQ(links, 2u);
  EXPECT_EQ(maps, bpf::kFirewallMapCount);
  EXPECT_EQ(progs, 3u);
  EXPECT_FALSE(fs::exists(pinDir_));
  // Unfiltered again.
  EXPECT_EQ(probe(Proto::Tcp, kSsh), Outcome::Reply);
  EXPECT_EQ(probe(Proto::Udp, kSyslog), Outcome::Reply);
  EXPECT_EQ(probe(Proto::Tcp, kWeb), Outcome::Reply);

  auto again = FirewallProgram::resetPins(pinDir_);
  ASSERT_TRUE(again) << again.error().str();
  EXPECT_TRUE(again->empty());
}

using edgeward::testing::runEdgeward;

TEST_F(Pinning, ResetCommandRemovesEverythingAndSaysSo) {
  {
    auto pm = startManager();
    ASSERT_TRUE(pm);
  }
  expectFiltering();
  auto r = runEdgeward("reset --pin-dir " + pinDir_);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find(linkPin(Hook::XdpIngress)), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2 links detached"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(pinDir_));
  EXPECT_EQ(probe(Proto::Tcp, kSsh), Outcome::Reply);

  r = runEdgeward("reset --pin-dir " + pinDir_);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("nothing pinned under " + pinDir_), std::string::npos) << r.out;

  r = runEdgeward("reset --pin-dir /sys/fs/bpf");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("refusing"), std::string::npos) << r.out;
}

// ---------------------------------------------------------------------------------------------
// Pinned maps without traffic.

class PinnedMaps : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "needs root";
    pinDir_ = pinDirFor(::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  void TearDown() override {
    auto removed = FirewallProgram::resetPins(pinDir_);
    EXPECT_TRUE(removed) << removed.error().str();
  }
  FirewallOptions options() const {
    FirewallOptions o;
    o.capIntervals4 = 1024;
    o.capIntervals6 = 512;
    o.capGroups = 32;
    o.capPortEntries = 256;
    o.capRules = 128;
    o.conntrackEntries = 2048;
    o.pinDir = pinDir_;
    return o;
  }
  std::string pinDir_;
};

TEST_F(PinnedMaps, OtherCapacitiesAreRefusedNamingTheMapAndBothSizes) {
  {
    auto fw = FirewallProgram::load(options());
    ASSERT_TRUE(fw) << fw.error().str();
  }
  auto bigger = options();
  bigger.capIntervals4 = 4096;
  auto fw = FirewallProgram::load(bigger);
  ASSERT_FALSE(fw);
  const std::string msg = fw.error().str();
  EXPECT_NE(msg.find("ew_iv4"), std::string::npos) << msg;
  EXPECT_NE(msg.find("2048 entries"), std::string::npos) << msg;
  EXPECT_NE(msg.find("8192"), std::string::npos) << msg;

  // What is pinned tells the capacities to load with.
  auto pinned = FirewallProgram::pinnedOptions(pinDir_);
  ASSERT_TRUE(pinned) << pinned.error().str();
  ASSERT_TRUE(pinned->has_value());
  const auto& p = **pinned;
  const auto o = options();
  EXPECT_EQ(p.capIntervals4, o.capIntervals4);
  EXPECT_EQ(p.capIntervals6, o.capIntervals6);
  EXPECT_EQ(p.capGroups, o.capGroups);
  EXPECT_EQ(p.capPortEntries, o.capPortEntries);
  EXPECT_EQ(p.capRules, o.capRules);
  EXPECT_EQ(p.conntrackEntries, o.conntrackEntries);
  auto again = FirewallProgram::load(p);
  ASSERT_TRUE(again) << again.error().str();
  EXPECT_TRUE((*again)->adoptedMaps());

  auto none = FirewallProgram::pinnedOptions(pinDir_ + "-absent");
  ASSERT_TRUE(none) << none.error().str();
  EXPECT_FALSE(none->has_value());
}

TEST_F(PinnedMaps, AnIncompleteSetIsRefused) {
  {
    auto fw = FirewallProgram::load(options());
    ASSERT_TRUE(fw) << fw.error().str();
  }
  ASSERT_EQ(::unlink((pinDir_ + "/maps/ew_piv").c_str()), 0);
  auto fw = FirewallProgram::load(options());
  ASSERT_FALSE(fw);
  const std::string msg = fw.error().str();
  EXPECT_NE(msg.find("incomplete"), std::string::npos) << msg;
  EXPECT_NE(msg.find("ew_piv missing"), std::string::npos) << msg;
  EXPECT_NE(msg.find("edgeward reset"), std::string::npos) << msg;
}

TEST_F(PinnedMaps, FreshMapsStartDenyingAndAdoptedOnesAreNotRewritten) {
  {
    auto fw = FirewallProgram::load(options());
    ASSERT_TRUE(fw) << fw.error().str();
    EXPECT_FALSE((*fw)->adoptedMaps());
    // Switch run-time flags and the generation by hand: a reload must keep them.
    auto cfg = (*fw)->readConfig();
    ASSERT_TRUE(cfg);
    EXPECT_EQ(cfg->flags, FirewallProgram::defaultConfig().flags);
    auto w = (*fw)->writeConfig({1, EW_F_CONNTRACK});
    ASSERT_TRUE(w) << w.error().str();
  }
  auto fw = FirewallProgram::load(options());
  ASSERT_TRUE(fw) << fw.error().str();
  EXPECT_TRUE((*fw)->adoptedMaps());
  auto cfg = (*fw)->readConfig();
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->gen, 1u);
  EXPECT_EQ(cfg->flags, uint32_t{EW_F_CONNTRACK});
}

TEST(ResetPins, RefusesWhatIsNotAnEdgewardPinDirectory) {
  ASSERT_EQ(::geteuid(), 0u) << "needs root";
  const std::string tmp = fs::temp_directory_path() / (pidPrefix() + "not-bpffs");
  fs::create_directories(tmp);
  std::ofstream(tmp + "/precious") << "keep me\n";
  auto r = FirewallProgram::resetPins(tmp);
  EXPECT_FALSE(r);
  EXPECT_TRUE(fs::exists(tmp + "/precious"));
  fs::remove_all(tmp);

  auto root = FirewallProgram::resetPins("/sys/fs/bpf");
  ASSERT_FALSE(root);
  EXPECT_NE(root.error().str().find("root of a bpffs"), std::string::npos) << root.error().str();

  auto absent = FirewallProgram::resetPins(pinDirFor("absent"));
  ASSERT_TRUE(absent) << absent.error().str();
  EXPECT_TRUE(absent->empty());
}

}  // namespace
}  // namespace edgeward
