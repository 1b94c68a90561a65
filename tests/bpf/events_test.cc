// Firewall events and flowmon against the real kernel: what the BPF programs write to their
// ring buffers, what they count, and that every drop is accounted for.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "bpf/firewall_program.h"
#include "bpf/flowmon_program.h"
#include "bpf/ring_reader.h"
#include "dataplane/dataplane.h"
#include "pipeline/event.h"
#include "pipeline/event_bus.h"
#include "pipeline/ring_source.h"
#include "policy/compiler.h"
#include "support/packet.h"
#include "support/policy_builders.h"

namespace edgeward {
namespace {

using bpf::FirewallProgram;
using bpf::Hook;
using testing::buildPacket;
using testing::L4;
using testing::PacketSpec;

class FirewallEvents : public ::testing::Test {
 protected:
  void load(uint32_t ringBytes = 1u << 22) {
    bpf::FirewallOptions o;
    o.eventRingBytes = ringBytes;
    auto fw = FirewallProgram::load(o);
    ASSERT_TRUE(fw) << fw.error().str();
    fw_ = std::move(*fw);
    ASSERT_TRUE(reader_.add(fw_->mapFd(bpf::FirewallMap::Events), [this](auto rec) {
      auto e = pipeline::decodeFirewall(rec, clock_);
      ASSERT_TRUE(e) << "record of " << rec.size() << " bytes did not decode";
      events_.push_back(*e);
    }));
  }
  void configure(uint32_t flags, uint32_t sample, uint64_t intervalNs, uint32_t burst) {
    auto cur = fw_->readConfig();  // keeps the active generation
    ASSERT_TRUE(cur) << cur.error().str();
    ew_config c = *cur;
    c.flags = flags;
    c.drop_sample = sample;
    c.drop_interval_ns = intervalNs;
    c.drop_burst = burst;
    ASSERT_TRUE(fw_->writeConfig(c));
  }
  void send(const PacketSpec& s, uint32_t times, Hook h = Hook::XdpIngress) {
    auto frame = buildPacket(s);
    auto r = fw_->testRun(h, frame, times);
    ASSERT_TRUE(r) << r.error().str();
  }
  size_t drain() {
    auto n = reader_.consume();
    EXPECT_TRUE(n) << n.error().str();
    return n ? static_cast<size_t>(*n) : 0;
  }
  std::array<uint64_t, EW_EVS_COUNT> stats() {
    auto s = fw_->readEventStats();
    EXPECT_TRUE(s) << s.error().str();
    return s ? *s : std::array<uint64_t, EW_EVS_COUNT>{};
  }

  std::unique_ptr<FirewallProgram> fw_;
  bpf::RingReader reader_;
  pipeline::ClockOffset clock_;
  std::vector<pipeline::Event> events_;
};

TEST_F(FirewallEvents, EveryDropIsAnEventWithTheFiveTuple) {
  load();
  configure(EW_F_EV_DROP | EW_F_CONNTRACK, 1, 0, 0);
  PacketSpec s;
  s.src = "192.0.2.7";
  s.dst = "198.51.100.9";
  s.sport = 41000;
  s.dport = 2222;
  send(s, 25);
  PacketSpec v6;
  v6.v6 = true;
  v6.src = "2001:db8::7";
  v6.dst = "2001:db8::9";
  v6.l4 = L4::Udp;
  v6.dport = 53;
  send(v6, 5, Hook::TcEgress);
  EXPECT_EQ(drain(), 30u);
  ASSERT_EQ(events_.size(), 30u);
  const auto& e = events_.front();
  EXPECT_EQ(e.kind, EW_EV_DROP);
  EXPECT_EQ(e.family, 4);
  EXPECT_EQ(e.proto, 6);
  EXPECT_EQ(e.direction, EW_DIR_INGRESS);
  EXPECT_EQ(e.reason, EW_R_DEFAULT_DENY);
  EXPECT_EQ(e.rule, EW_RULE_NONE);
  EXPECT_EQ(pipeline::srcAddr(e), "192.0.2.7");
  EXPECT_EQ(pipeline::dstAddr(e), "198.51.100.9");
  EXPECT_EQ(e.sport, 41000);
  EXPECT_EQ(e.dport, 2222);
  EXPECT_EQ(e.pkt_len, buildPacket(s).size());
  // Stamped now (realtime), within a minute.
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  EXPECT_LT(std::llabs(static_cast<int64_t>(e.ts_ns) -
                       std::chrono::duration_cast<std::chrono::nanoseconds>(now).count()),
            60'000'000'000ll);
  const auto& last = events_.back();
  EXPECT_EQ(last.family, 6);
  EXPECT_EQ(last.proto, 17);
  EXPECT_EQ(last.direction, EW_DIR_EGRESS);
  EXPECT_EQ(pipeline::srcAddr(last), "2001:db8::7");
  EXPECT_EQ(last.dport, 53);
  auto st = stats();
  EXPECT_EQ(st[EW_EVS_DROP_SENT], 30u);
  EXPECT_EQ(st[EW_EVS_DROP_LOST] + st[EW_EVS_DROP_SAMPLED_OUT] + st[EW_EVS_DROP_RATE_LIMITED], 0u);
}

TEST_F(FirewallEvents, MalformedDropsAreEventsToo) {
  load();
  configure(EW_F_EV_DROP, 1, 0, 0);
  PacketSpec s;
  auto frame = buildPacket(s);
  frame.resize(testing::l3Offset(s) + 10);  // cut inside the IPv4 header
  ASSERT_TRUE(fw_->testRun(Hook::XdpIngress, frame, 3));
  EXPECT_EQ(drain(), 3u);
  ASSERT_EQ(events_.size(), 3u);
  EXPECT_EQ(events_[0].reason, EW_R_TRUNCATED);
}

TEST_F(FirewallEvents, SamplingCountsWhatItLeavesOut) {
  load();
  configure(EW_F_EV_DROP, 4, 0, 0);
  send(PacketSpec{}, 4000);
  drain();
  auto st = stats();
  EXPECT_EQ(st[EW_EVS_DROP_SENT] + st[EW_EVS_DROP_SAMPLED_OUT], 4000u);
  EXPECT_EQ(events_.size(), st[EW_EVS_DROP_SENT]);
  // 1 in 4 on average: 1000 expected, 800..1200 is > 8 sigma wide.
  EXPECT_GT(st[EW_EVS_DROP_SENT], 800u);
  EXPECT_LT(st[EW_EVS_DROP_SENT], 1200u);
}

TEST_F(FirewallEvents, PerPeerLimitReportsSuppressedDropsInTheNextEvent) {
  load();
  configure(EW_F_EV_DROP, 1, 200'000'000 /* 5/s */, 10);
  PacketSpec a;
  a.src = "192.0.2.1";
  PacketSpec b;
  b.src = "192.0.2.2";
  send(a, 100);
  send(b, 3);
  drain();
  auto st = stats();
  // Peer a: its burst of 10, the other 90 suppressed; peer b is not limited by a's rate.
  EXPECT_EQ(st[EW_EVS_DROP_SENT], 13u);
  EXPECT_EQ(st[EW_EVS_DROP_RATE_LIMITED], 90u);
  std::this_thread::sleep_for(std::chrono::milliseconds(450));  // >= 2 intervals, coarse clock
  events_.clear();
  send(a, 1);
  drain();
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].sampled_out, 90u);
}

TEST_F(FirewallEvents, AFullRingBufferCountsEveryLostEvent) {
  load(4096);  // room for ~60 events
  configure(EW_F_EV_DROP, 1, 0, 0);
  send(PacketSpec{}, 1000);  // nobody reads meanwhile
  auto st = stats();
  EXPECT_GT(st[EW_EVS_DROP_LOST], 0u);
  EXPECT_EQ(st[EW_EVS_DROP_SENT] + st[EW_EVS_DROP_LOST], 1000u);
  EXPECT_EQ(drain(), st[EW_EVS_DROP_SENT]);
}

TEST_F(FirewallEvents, NewConnectionsAreEventsRepliesAreNot) {
  load();
  using namespace policy::builders;
  auto pol = parseOk(policyDoc(R"(
  defaultAction: deny
  identities:
    clients: [192.0.2.0/24]
  ingress:
    - name: web
      action: allow
      from: [clients]
      ports: [{protocol: tcp, port: 80}]
)",
                               "conn"));
  auto compiled = policy::compile(pol);
  ASSERT_TRUE(compiled) << compiled.error().str();
  dataplane::Dataplane dp(*fw_);
  ASSERT_TRUE(dp.apply(*compiled, 1));
  configure(EW_F_EV_CONN | EW_F_CONNTRACK, 1, 0, 0);
  PacketSpec syn;
  syn.src = "192.0.2.5";
  syn.dport = 80;
  send(syn, 1);
  send(syn, 1);  // the same connection again: tracked, no new event
  PacketSpec reply;
  reply.src = "10.0.0.2";
  reply.dst = "192.0.2.5";
  reply.sport = 80;
  reply.dport = 40000;
  reply.tcpFlags = 0x12;
  send(reply, 1, Hook::TcEgress);
  drain();
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].kind, EW_EV_CONN_NEW);
  EXPECT_EQ(events_[0].reason, EW_R_RULE_ALLOW);
  EXPECT_EQ(events_[0].rule, 0u) << "rule web is the first rule";
  EXPECT_EQ(stats()[EW_EVS_CONN_SENT], 1u);
}

TEST_F(FirewallEvents, EventsOffMeansNoneAndNoCounts) {
  load();
  configure(EW_F_CONNTRACK, 1, 0, 0);
  send(PacketSpec{}, 50);
  EXPECT_EQ(drain(), 0u);
  auto st = stats();
  for (uint64_t v : st) EXPECT_EQ(v, 0u);
}

TEST_F(FirewallEvents, RingSizeMustBeAPowerOfTwo) {
  bpf::FirewallOptions o;
  o.eventRingBytes = 5000;
  auto fw = FirewallProgram::load(o);
  ASSERT_FALSE(fw);
  EXPECT_NE(fw.error().str().find("power of two"), std::string::npos) << fw.error().str();
}

TEST_F(FirewallEvents, AReaderTakesAtMostItsBatchPerPollConsumeTakesAll) {
  load();
  configure(EW_F_EV_DROP, 1, 0, 0);
  bpf::RingReader small(100);
  size_t got = 0;
  ASSERT_TRUE(small.add(fw_->mapFd(bpf::FirewallMap::Events), [&](auto) { got++; }));
  send(PacketSpec{}, 250);
  auto n = small.poll(0);
  ASSERT_TRUE(n) << n.error().str();
  EXPECT_EQ(*n, 100);
  n = small.poll(0);  // the ring stays readable while records wait
  ASSERT_TRUE(n) << n.error().str();
  EXPECT_EQ(*n, 100);
  auto rest = small.consume();
  ASSERT_TRUE(rest) << rest.error().str();
  EXPECT_EQ(*rest, 50);
  EXPECT_EQ(got, 250u);
}

TEST_F(FirewallEvents, RingSourcePublishesEveryEventToSubscribers) {
  load();
  configure(EW_F_EV_DROP, 1, 0, 0);
  pipeline::EventBus bus;
  auto sub = bus.subscribe("test", 100'000);
  pipeline::RingSource::Options o;
  o.maxBatchPerRing = 64;
  auto src = pipeline::RingSource::start(
      bus, {{pipeline::Source::Firewall, fw_->mapFd(bpf::FirewallMap::Events)}}, o);
  ASSERT_TRUE(src) << src.error().str();
  send(PacketSpec{}, 5000);
  send(PacketSpec{}, 1);  // a lone record after the burst is not held back
  size_t got = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (got < 5001 && std::chrono::steady_clock::now() < deadline) {
    auto b = sub->next(100'000, std::chrono::milliseconds(100));
    EXPECT_EQ(b.lost, 0u);
    got += b.events.size();
  }
  EXPECT_EQ(got, 5001u);
  EXPECT_EQ((*src)->received(pipeline::Source::Firewall), 5001u);
  EXPECT_EQ((*src)->malformed(), 0u);
}

// ---------------------------------------------------------------------------------------------
// flowmon: real TCP connections on loopback.

struct Conn {
  uint16_t serverPort;
  uint16_t clientPort;
};

// Opens `n` TCP connections to a listener on 127.0.0.1, keeps each ~holdMs, closes them.
std::vector<Conn> tcpConnections(int n, int holdMs) {
  std::vector<Conn> out;
  int ls = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(::listen(ls, 64), 0);
  socklen_t len = sizeof a;
  ::getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len);
  for (int i = 0; i < n; i++) {
    int c = ::socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    int s = ::accept(ls, nullptr, nullptr);
    sockaddr_in local{};
    len = sizeof local;
    ::getsockname(c, reinterpret_cast<sockaddr*>(&local), &len);
    out.push_back({ntohs(a.sin_port), ntohs(local.sin_port)});
    std::this_thread::sleep_for(std::chrono::milliseconds(holdMs));
    ::close(c);
    ::close(s);
  }
  ::close(ls);
  return out;
}

TEST(Flowmon, OpenAndCloseOfEveryConnectionWithDurations) {
  auto fm = bpf::FlowmonProgram::load();
  ASSERT_TRUE(fm) << fm.error().str();
  bpf::RingReader reader;
  pipeline::ClockOffset clock;
  std::vector<pipeline::Event> events;
  ASSERT_TRUE(reader.add((*fm)->eventsFd(), [&](auto rec) {
    auto e = pipeline::decodeFlowmon(rec, clock);
    ASSERT_TRUE(e);
    events.push_back(*e);
  }));
  auto before = (*fm)->readStates();
  ASSERT_TRUE(before);
  auto conns = tcpConnections(5, 20);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // FIN handshakes finish
  ASSERT_TRUE(reader.consume());

  const uint16_t port = conns[0].serverPort;
  for (const Conn& c : conns) {
    // Each connection: the client's open (active) and the server's (passive), then both closes.
    int opens = 0, closes = 0;
    for (const auto& e : events) {
      bool ours = e.sport == c.clientPort && e.dport == c.serverPort;
      if (!ours) continue;
      EXPECT_EQ(pipeline::srcAddr(e), "127.0.0.1");
      if (e.kind == EW_EV_TCP_OPEN) opens++;
      if (e.kind == EW_EV_TCP_CLOSE) {
        closes++;
        EXPECT_GE(e.value, 15'000'000u) << "held ~20 ms";
        EXPECT_LT(e.value, 5'000'000'000u);
      }
    }
    EXPECT_EQ(opens, 2) << "client port " << c.clientPort;
    EXPECT_EQ(closes, 2) << "client port " << c.clientPort;
  }
  auto hist = (*fm)->readHistogram();
  ASSERT_TRUE(hist);
  ASSERT_TRUE(hist->contains(port));
  const auto& h = hist->at(port);
  EXPECT_EQ(h.count, 10u);  // both ends of 5 connections
  EXPECT_GE(h.sumNs, 10u * 15'000'000u);
  EXPECT_EQ(h.buckets[0], 0u) << "none shorter than 1 ms";
  auto after = (*fm)->readStates();
  ASSERT_TRUE(after);
  EXPECT_GE((*after)[1] - (*before)[1], 10u) << "ESTABLISHED transitions";
  auto st = (*fm)->readStats();
  ASSERT_TRUE(st);
  EXPECT_EQ((*st)[FM_S_OPEN_LOST] + (*st)[FM_S_CLOSE_LOST], 0u);
}

}  // namespace
}  // namespace edgeward
