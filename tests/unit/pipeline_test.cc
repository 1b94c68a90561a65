// The event pipeline in user space: bus fan-out and loss accounting, filters, the recent ring,
// JSON, and the file sink's rotation.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "pipeline/event_bus.h"
#include "pipeline/file_sink.h"
#include "pipeline/publisher.h"

namespace edgeward::pipeline {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

Event drop(uint16_t dport, uint8_t lastOctet = 1) {
  Event e{};
  e.kind = EW_EV_DROP;
  e.version = EW_EVENT_VERSION;
  e.size = sizeof(Event);
  e.family = 4;
  e.proto = 17;
  e.saddr[0] = 10;
  e.saddr[3] = lastOctet;
  e.daddr[0] = 10;
  e.daddr[3] = 2;
  e.sport = 5000;
  e.dport = dport;
  e.rule = 0xffffffffu;
  e.reason = 5;  // default-deny
  return e;
}

TEST(EventBus, EverySubscriberGetsEveryEventInOrder) {
  EventBus bus;
  auto a = bus.subscribe("a", 100), b = bus.subscribe("b", 100);
  std::vector<Event> batch;
  for (uint16_t p = 1; p <= 50; p++) batch.push_back(drop(p));
  bus.publish(batch);
  for (auto& s : {a, b}) {
    auto got = s->next(100, 10ms);
    ASSERT_EQ(got.events.size(), 50u);
    for (size_t i = 0; i < 50; i++) EXPECT_EQ(got.events[i].dport, i + 1);
    EXPECT_EQ(got.lost, 0u);
  }
  EXPECT_EQ(bus.published(), 50u);
}

TEST(EventBus, ASlowSubscriberLosesCountedEventsAndOthersDoNot) {
  EventBus bus;
  auto slow = bus.subscribe("slow", 10), fast = bus.subscribe("fast", 1000);
  std::vector<Event> batch(25, drop(7));
  bus.publish(batch);
  auto s = slow->next(100, 10ms);
  EXPECT_EQ(s.events.size(), 10u);
  EXPECT_EQ(s.lost, 15u);
  EXPECT_EQ(slow->next(100, 1ms).lost, 0u) << "reported once";
  EXPECT_EQ(fast->next(100, 10ms).events.size(), 25u);
  EXPECT_EQ(bus.subscriberLost(), 15u);
  bus.unsubscribe(slow);
  EXPECT_EQ(bus.subscriberLost(), 15u) << "kept after the subscriber left";
  EXPECT_EQ(bus.subscribers(), 1u);
}

TEST(EventBus, FiltersAndTheRecentRing) {
  EventBus bus(5);
  auto only80 = bus.subscribe("80", 100, [](const Event& e) { return e.dport == 80; });
  std::vector<Event> batch;
  for (uint16_t p : {80, 81, 80, 82, 83, 84, 80}) batch.push_back(drop(p));
  bus.publish(batch);
  EXPECT_EQ(only80->next(100, 10ms).events.size(), 3u);
  auto recent = bus.recent(10);
  ASSERT_EQ(recent.size(), 5u) << "the ring keeps 5: 80 82 83 84 80";
  EXPECT_EQ(recent[0].dport, 80);
  EXPECT_EQ(recent[1].dport, 82);
  EXPECT_EQ(recent[4].dport, 80);
  auto recent80 = bus.recent(10, [](const Event& e) { return e.dport == 80; });
  EXPECT_EQ(recent80.size(), 2u);
  EXPECT_EQ(bus.recent(2).size(), 2u);
  EXPECT_EQ(bus.recent(2)[0].dport, 84) << "the newest n, oldest first";
}

TEST(EventBus, AStageDropsRewritesAndAddsBeforeSubscribers) {
  EventBus bus;
  auto s = bus.subscribe("s", 100);
  bus.setStage([](std::vector<Event>& b) {
    std::erase_if(b, [](const Event& e) { return e.dport == 22; });  // drop
    for (auto& e : b) e.sport = 1;                                   // rewrite
    Event extra = drop(9999);
    extra.kind = EW_EV_CUSTOM;
    b.push_back(extra);  // add
  });
  bus.publish(std::vector<Event>{drop(22), drop(80)});
  auto got = s->next(10, 10ms).events;
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].dport, 80);
  EXPECT_EQ(got[0].sport, 1);
  EXPECT_EQ(got[1].kind, EW_EV_CUSTOM);
  EXPECT_EQ(bus.published(), 2u) << "what subscribers got";
  bus.setStage({});
  bus.publish(std::vector<Event>{drop(22)});
  EXPECT_EQ(s->next(10, 10ms).events.size(), 1u);
}

TEST(EventBus, CloseWakesWaitingSubscribers) {
  EventBus bus;
  auto s = bus.subscribe("s", 10);
  std::thread t([&] {
    std::this_thread::sleep_for(50ms);
    bus.close();
  });
  auto b = s->next(10, 5s);
  t.join();
  EXPECT_TRUE(b.closed);
}

TEST(EventJson, NamesAndFields) {
  Event e = drop(53);
  e.rule = 3;
  EventNames n;
  n.rule = [](uint32_t r) { return r == 3 ? std::string("no-dns") : std::string(); };
  n.peerIdentity = [](const Event&) { return std::string("lab \"west\""); };
  auto j = nlohmann::json::parse(toJson(e, &n));
  EXPECT_EQ(j["kind"], "drop");
  EXPECT_EQ(j["verdict"], "drop");
  EXPECT_EQ(j["src"], "10.0.0.1");
  EXPECT_EQ(j["dst"], "10.0.0.2");
  EXPECT_EQ(j["proto"], "udp");
  EXPECT_EQ(j["dport"], 53);
  EXPECT_EQ(j["rule"], "no-dns");
  EXPECT_EQ(j["rule_id"], 3);
  EXPECT_EQ(j["identity"], "lab \"west\"") << "escaped";
  EXPECT_EQ(j["reason"], "default-deny");
}

TEST(JsonFileSink, WritesEveryEventAndRotatesBySize) {
  const fs::path dir = fs::temp_directory_path() / fmt::format("ew-sink-{}", ::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  EventBus bus;
  {
    auto sink = JsonFileSink::start(bus, {.file = {(dir / "ev.jsonl").string(), 4096, 2}});
    ASSERT_TRUE(sink) << sink.error().str();
    std::vector<Event> batch;
    for (uint16_t p = 1; p <= 200; p++) batch.push_back(drop(p));
    bus.publish(batch);
    for (int i = 0; i < 100 && (*sink)->written() < 200; i++) std::this_thread::sleep_for(10ms);
    EXPECT_EQ((*sink)->written(), 200u);
    EXPECT_GT((*sink)->rotations(), 2u);
    EXPECT_EQ((*sink)->lost(), 0u);
  }
  // Current + 2 kept; each below the limit; the newest lines are in the current file.
  EXPECT_TRUE(fs::exists(dir / "ev.jsonl"));
  EXPECT_TRUE(fs::exists(dir / "ev.jsonl.1"));
  EXPECT_TRUE(fs::exists(dir / "ev.jsonl.2"));
  EXPECT_FALSE(fs::exists(dir / "ev.jsonl.3"));
  for (auto f : {"ev.jsonl", "ev.jsonl.1", "ev.jsonl.2"}) EXPECT_LE(fs::file_size(dir / f), 4096u);
  std::ifstream in(dir / "ev.jsonl");
  std::string line, lastLine;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);  // every line is one JSON object
    EXPECT_EQ(j["kind"], "drop");
    lastLine = line;
  }
  EXPECT_EQ(nlohmann::json::parse(lastLine)["dport"], 200);
  fs::remove_all(dir);
}

TEST(JsonFileSink, BadOptionsAreOneClearError) {
  EventBus bus;
  auto r = JsonFileSink::start(bus, {.file = {"/proc/ew-sink/ev.jsonl"}});  // cannot be created
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().str().find("/proc/ew-sink/ev.jsonl"), std::string::npos);
  auto small = JsonFileSink::start(bus, {.file = {"/tmp/x.jsonl", 10}});
  ASSERT_FALSE(small);
  EXPECT_NE(small.error().str().find("maxBytes"), std::string::npos);
}

// Every message is acknowledged once it is in the file (one JSON line each, binary payloads in
// base64); a full queue refuses at once with a clear error.
TEST(FilePublisher, WritesAcknowledgesAndRefusesWhenFull) {
  const fs::path dir = fs::temp_directory_path() / fmt::format("ew-pub-{}", ::getpid());
  fs::remove_all(dir);
  const std::string path = (dir / "messages.jsonl").string();
  std::mutex mu;
  std::vector<std::string> acks;
  auto ack = [&](std::string what) {
    return [&, what](Result<void> r) {
      std::lock_guard l(mu);
      acks.push_back(what + (r ? " ok" : " failed: " + r.error().str()));
    };
  };
  {
    auto pub = FilePublisher::start({.file = {path, 4096, 1}});
    ASSERT_TRUE(pub) << pub.error().str();
    (*pub)->publish({"p1", "alerts", R"({"drops":100})", 1}, ack("a"));
    (*pub)->publish({"p2", "raw", std::string("\xff\x00\x01", 3), 2}, ack("b"));
    (*pub)->publish({"p1", "alerts", "three", 3}, nullptr);  // fire and forget
    for (int i = 0; i < 200 && (*pub)->stats().delivered < 3; i++) std::this_thread::sleep_for(5ms);
    auto st = (*pub)->stats();
    EXPECT_EQ(st.accepted, 3u);
    EXPECT_EQ(st.delivered, 3u);
    EXPECT_EQ(st.failed, 0u);
  }
  EXPECT_EQ(acks, (std::vector<std::string>{"a ok", "b ok"}));
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["source"], "p1");
  EXPECT_EQ(lines[0]["topic"], "alerts");
  EXPECT_EQ(lines[0]["payload"], R"({"drops":100})");
  EXPECT_EQ(lines[0]["timeNs"], 1);
  EXPECT_FALSE(lines[1].contains("payload"));
  EXPECT_EQ(lines[1]["payloadBase64"], "/wAB");
  EXPECT_EQ(lines[2]["payload"], "three");

  acks.clear();
  {
    auto pub = FilePublisher::start({.file = {path, 4096, 1}, .queueLimit = 0});
    ASSERT_TRUE(pub);
    (*pub)->publish({"p1", "alerts", "x", 4}, ack("c"));
    EXPECT_EQ((*pub)->stats().failed, 1u);
  }
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_NE(acks[0].find("c failed: "), std::string::npos);
  EXPECT_NE(acks[0].find("messages already waiting"), std::string::npos) << acks[0];

  auto bad = FilePublisher::start({.file = {"/proc/ew-pub/m.jsonl"}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().str().find("/proc/ew-pub/m.jsonl"), std::string::npos);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace edgeward::pipeline
