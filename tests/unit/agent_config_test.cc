// The agent config parser: every field, defaults, and one clear error per bad input.
#include <gtest/gtest.h>

#include "agent/config.h"

namespace edgeward::agent {
namespace {

constexpr const char* kFull = R"(apiVersion: edgeward.io/v1
kind: AgentConfig
interfaces:
  - name: eth1
    mode: xdp
  - name: veth0
    netns: lab
    mode: tcx
policy:
  file: /etc/edgeward/policy.yaml
  keepVersions: 5
stateDir: /var/lib/ew
bpffs: /sys/fs/bpf/ew
api:
  unixSocket: /run/ew.sock
  tcp:
    address: 127.0.0.1:7443
    ca: ca.pem
    cert: s.pem
    key: s.key
    roles:
      alice: admin
      "spiffe://example.org/mon": viewer
upstream:
  address: ctl:7444
  group: edge
capacity:
  ipv4Intervals: 4096
  conntrack: 1024
logging:
  level: debug
)";

TEST(AgentConfig, ParsesEveryField) {
  auto c = parseAgentConfig(kFull, "agent.yaml");
  ASSERT_TRUE(c) << c.error().str();
  ASSERT_EQ(c->interfaces.size(), 2u);
  EXPECT_EQ(c->interfaces[0].name, "eth1");
  EXPECT_EQ(c->interfaces[0].mode, AttachMode::Xdp);
  EXPECT_EQ(c->interfaces[1].netns, "lab");
  EXPECT_EQ(c->interfaces[1].mode, AttachMode::Tcx);
  EXPECT_EQ(c->policyFile, "/etc/edgeward/policy.yaml");
  EXPECT_EQ(c->keepVersions, 5u);
  EXPECT_EQ(c->stateDir, "/var/lib/ew");
  EXPECT_EQ(c->bpffs, "/sys/fs/bpf/ew");
  EXPECT_EQ(c->unixSocket, "/run/ew.sock");
  ASSERT_TRUE(c->tcp);
  EXPECT_EQ(c->tcp->address, "127.0.0.1:7443");
  EXPECT_EQ(c->tcp->roles.at("alice"), api::Role::Admin);
  EXPECT_EQ(c->tcp->roles.at("spiffe://example.org/mon"), api::Role::Viewer);
  ASSERT_TRUE(c->upstream);
  EXPECT_EQ(c->upstream->group, "edge");
  EXPECT_EQ(c->capacity.ipv4Intervals, 4096u);
  EXPECT_EQ(c->capacity.conntrack, 1024u);
  EXPECT_EQ(c->capacity.rules, Capacity{}.rules);
  EXPECT_EQ(c->logLevel, "debug");
}

TEST(AgentConfig, Defaults) {
  auto c = parseAgentConfig("apiVersion: edgeward.io/v1\nkind: AgentConfig\n", "a.yaml");
  ASSERT_TRUE(c) << c.error().str();
  EXPECT_TRUE(c->interfaces.empty());
  EXPECT_EQ(c->stateDir, "/var/lib/edgeward");
  EXPECT_EQ(c->bpffs, "/sys/fs/bpf/edgeward");
  EXPECT_EQ(c->unixSocket, "/run/edgeward/agent.sock");
  EXPECT_EQ(c->keepVersions, 20u);
  EXPECT_FALSE(c->tcp);
  EXPECT_FALSE(c->upstream);
}

std::string errorOf(const std::string& body) {
  auto c = parseAgentConfig("apiVersion: edgeward.io/v1\nkind: AgentConfig\n" + body, "a.yaml");
  return c ? "(no error)" : c.error().str();
}

TEST(AgentConfig, ErrorsNameLineAndField) {
  EXPECT_EQ(errorOf("interfaces:\n  - name: eth0\n    mode: xpd\n"),
            "a.yaml:5: interfaces[0].mode: unknown mode \"xpd\" (expected xdp or tcx)");
  EXPECT_EQ(errorOf("interfaces:\n  - nmae: eth0\n"),
            "a.yaml:4: interfaces[0].nmae: unknown field \"nmae\" (did you mean \"name\"?)");
  EXPECT_EQ(errorOf("interfaces:\n  - mode: xdp\n"),
            "a.yaml:4: interfaces[0].name: required field is missing");
  EXPECT_EQ(errorOf("interfaces:\n  - name: a-very-long-interface\n"),
            "a.yaml:4: interfaces[0].name: interface names have at most 15 characters");
  EXPECT_EQ(errorOf("interfaces:\n  - name: eth0\n  - name: eth0\n"),
            "a.yaml:5: interfaces[1].name: interface \"eth0\" is listed twice");
  EXPECT_EQ(errorOf("stateDir: relative/dir\n"), "a.yaml:3: stateDir: must be an absolute path");
  EXPECT_EQ(errorOf("bpffs: /tmp/x\n"), "a.yaml:3: bpffs: must be a directory under /sys/fs/bpf/");
  EXPECT_EQ(errorOf("policy:\n  keepVersions: 0\n"),
            "a.yaml:4: policy.keepVersions: \"0\" is not a number in 1-10000");
  EXPECT_EQ(errorOf("api:\n  tcp:\n    address: nope\n"),
            "a.yaml:5: api.tcp.address: \"nope\" is not host:port");
  EXPECT_EQ(errorOf("api:\n  tcp:\n    address: h:1\n    ca: a\n    cert: b\n    key: c\n"),
            "a.yaml:5: api.tcp.roles: required field is missing");
  EXPECT_EQ(errorOf("api:\n  tcp:\n    address: h:1\n    ca: a\n    cert: b\n    key: c\n"
                    "    roles: {bob: root}\n"),
            "a.yaml:9: api.tcp.roles.bob: unknown role \"root\" (expected viewer or admin)");
  EXPECT_EQ(errorOf("upstream:\n  address: h:1\n  group: g\n  ca: x\n"),
            "a.yaml:4: upstream: ca, cert and key go together: give all three or none");
  EXPECT_EQ(errorOf("capacity:\n  rules: 1\n"),
            "a.yaml:4: capacity.rules: \"1\" is not a number in 16-67108864");
  EXPECT_EQ(
      errorOf("logging:\n  level: loud\n"),
      "a.yaml:4: logging.level: unknown level \"loud\" (expected debug, info, warn or error)");
  EXPECT_EQ(errorOf("extra: 1\n"), "a.yaml:3: extra: unknown field \"extra\"");
}

TEST(AgentConfig, WrongDocument) {
  auto c = parseAgentConfig("apiVersion: edgeward.io/v1\nkind: Policy\n", "a.yaml");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().str(), "a.yaml:2: kind: unsupported value \"Policy\" (expected AgentConfig)");
  auto m = loadAgentConfig("/nonexistent/agent.yaml");
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().str(), "/nonexistent/agent.yaml: No such file or directory");
}

TEST(AgentConfig, EventsAndMetrics) {
  auto c = parseAgentConfig(R"(apiVersion: edgeward.io/v1
kind: AgentConfig
events:
  drops: true
  connections: false
  dropSample: 10
  dropsPerPeer: 0
  dropBurst: 50
  ringBytes: 1048576
  flowmon: false
  recent: 100
  file: {path: /var/log/ew/events.jsonl, maxBytes: 1000000, keep: 2}
metrics:
  address: 0.0.0.0:9100
)",
                            "a.yaml");
  ASSERT_TRUE(c) << c.error().str();
  EXPECT_TRUE(c->events.drops);
  EXPECT_FALSE(c->events.connections);
  EXPECT_EQ(c->events.dropSample, 10u);
  EXPECT_EQ(c->events.dropsPerPeer, 0u);
  EXPECT_EQ(c->events.dropBurst, 50u);
  EXPECT_EQ(c->events.ringBytes, 1048576u);
  EXPECT_FALSE(c->events.flowmon);
  EXPECT_EQ(c->events.recent, 100u);
  ASSERT_TRUE(c->events.file);
  EXPECT_EQ(c->events.file->path, "/var/log/ew/events.jsonl");
  EXPECT_EQ(c->events.file->maxBytes, 1000000u);
  EXPECT_EQ(c->events.file->keep, 2u);
  EXPECT_EQ(c->metricsAddress, "0.0.0.0:9100");

  auto d = parseAgentConfig("apiVersion: edgeward.io/v1\nkind: AgentConfig\n", "a.yaml");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->metricsAddress, "127.0.0.1:9479");
  EXPECT_TRUE(d->events.drops && d->events.connections && d->events.flowmon);
  EXPECT_EQ(d->events.dropsPerPeer, 100u);
  EXPECT_FALSE(d->events.file);

  auto off = parseAgentConfig(
      "apiVersion: edgeward.io/v1\nkind: AgentConfig\nmetrics: {address: off}\n", "a.yaml");
  ASSERT_TRUE(off) << off.error().str();
  EXPECT_EQ(off->metricsAddress, "");
}

TEST(AgentConfig, EventErrorsNameTheField) {
  EXPECT_EQ(errorOf("events:\n  ringBytes: 5000\n"),
            "a.yaml:4: events.ringBytes: must be a power of two");
  EXPECT_EQ(errorOf("events:\n  drops: yes\n"),
            "a.yaml:4: events.drops: \"yes\" is not true or false");
  EXPECT_EQ(errorOf("events:\n  dropSample: 0\n"),
            "a.yaml:4: events.dropSample: \"0\" is not a number in 1-1048576");
  EXPECT_EQ(errorOf("events:\n  file: {path: rel.jsonl}\n"),
            "a.yaml:4: events.file.path: must be an absolute path");
  EXPECT_EQ(errorOf("metrics:\n  address: 9479\n").find("a.yaml:4: metrics.address:"), 0u)
      << errorOf("metrics:\n  address: 9479\n");
  EXPECT_EQ(errorOf("events:\n  dropz: 1\n"),
            "a.yaml:4: events.dropz: unknown field \"dropz\" (did you mean \"drops\"?)");
}

TEST(AgentConfig, PublishAndFunctionThreads) {
  auto c = parseAgentConfig(R"(apiVersion: edgeward.io/v1
kind: AgentConfig
publish:
  file: {path: /var/log/ew/messages.jsonl, maxBytes: 100000, keep: 1, durable: false}
plugins:
  functions: {address: 127.0.0.1:9480, threads: 4}
)",
                            "a.yaml");
  ASSERT_TRUE(c) << c.error().str();
  ASSERT_TRUE(c->publish.file);
  EXPECT_EQ(c->publish.file->path, "/var/log/ew/messages.jsonl");
  EXPECT_EQ(c->publish.file->maxBytes, 100000u);
  EXPECT_EQ(c->publish.file->keep, 1u);
  EXPECT_FALSE(c->publish.durable);
  EXPECT_EQ(c->plugins.functionsThreads, 4u);
  auto d = parseAgentConfig("apiVersion: edgeward.io/v1\nkind: AgentConfig\n", "a.yaml");
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->publish.file);
  EXPECT_TRUE(d->publish.durable);
  EXPECT_EQ(d->plugins.functionsThreads, 0u) << "0: one event loop per CPU";

  EXPECT_EQ(errorOf("publish:\n  file: {path: m.jsonl}\n"),
            "a.yaml:4: publish.file.path: must be an absolute path");
  EXPECT_EQ(errorOf("publish:\n  mqtt: {}\n"), "a.yaml:4: publish.mqtt: unknown field \"mqtt\"");
  EXPECT_EQ(errorOf("plugins:\n  functions: {address: 127.0.0.1:1, threads: 0}\n"),
            "a.yaml:4: plugins.functions.threads: \"0\" is not a number in 1-256");
}

TEST(AgentConfig, TheExamplesParse) {
  for (const char* f : {"/examples/agent.yaml", "/examples/agent-local.yaml"}) {
    auto c = loadAgentConfig(std::string(EW_SOURCE_DIR) + f);
    EXPECT_TRUE(c) << f << ": " << c.error().str();
  }
}

}  // namespace
}  // namespace edgeward::agent
