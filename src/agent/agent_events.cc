// The agent's event pipeline: firewall and flowmon ring buffers -> bus -> API streams, the
// JSON-lines file sink (and plugins, which subscribe to the same bus).
#include <bpf/bpf.h>
#include <net/if.h>

#include "agent/agent.h"

namespace edgeward::agent {

std::string Agent::EventNameTable::identityOf(const pipeline::Event& e) const {
  if (!agent) return {};
  std::call_once(indexed, [&] {
    std::lock_guard lock(agent->mu_);
    if (agent->active_) identities = policy::IdentityIndex(*agent->active_);
  });
  // The peer: the sender of ingress packets, the receiver of egress ones.
  const uint8_t* peer = e.direction == EW_DIR_EGRESS ? e.daddr : e.saddr;
  return identities.lookup(e.family, peer);
}

Result<void> Agent::writeEventConfig() {
  const EventsConfig& ec = cfg_.events;
  EW_TRY(cur, fw_->readConfig());
  ew_config c = *cur;  // keeps the generation and the other switches
  c.flags &= ~(EW_F_EV_DROP | EW_F_EV_CONN);
  if (ec.drops) c.flags |= EW_F_EV_DROP;
  if (ec.connections) c.flags |= EW_F_EV_CONN;
  c.drop_sample = ec.dropSample;
  c.drop_interval_ns = ec.dropsPerPeer ? 1'000'000'000ull / ec.dropsPerPeer : 0;
  c.drop_burst = ec.dropBurst;
  return fw_->writeConfig(c);
}

Result<void> Agent::startEvents() {
  {
    std::lock_guard lock(mu_);
    EW_TRY(cfg, writeEventConfig());
  }
  bus_ = std::make_unique<pipeline::EventBus>(cfg_.events.recent);
  std::vector<pipeline::RingSource::Ring> rings{
      {pipeline::Source::Firewall, fw_->mapFd(bpf::FirewallMap::Events)}};
  if (cfg_.events.flowmon) {
    auto fm = bpf::FlowmonProgram::load({.eventRingBytes = cfg_.events.ringBytes});
    if (fm) {
      flowmon_ = std::move(*fm);
      rings.push_back({pipeline::Source::Flowmon, flowmon_->eventsFd()});
      notes_.push_back("flowmon: TCP lifecycle tracepoints attached");
    } else {
      // The firewall does not need it: run without, and say so in status and metrics.
      notes_.push_back("flowmon: not running: " + fm.error().str());
    }
  }
  EW_TRY(plugins, startPlugins());  // the plugin stage is in place before the first event
  EW_TRY(src, pipeline::RingSource::start(*bus_, rings));
  source_ = std::move(*src);
  if (cfg_.events.file) {
    pipeline::FileSinkOptions fo{.file = *cfg_.events.file};
    pipeline::EventNames n;
    n.rule = [this](uint32_t r) {
      auto t = names();
      return r < t->rules.size() ? t->rules[r] : std::string();
    };
    n.peerIdentity = [this](const pipeline::Event& e) { return names()->identityOf(e); };
    n.interface = [this](uint32_t i) {
      auto t = names();
      auto it = t->interfaces.find(i);
      return it == t->interfaces.end() ? std::string() : it->second;
    };
    EW_TRY(sink, pipeline::JsonFileSink::start(*bus_, fo, std::move(n)));
    fileSink_ = std::move(*sink);
    notes_.push_back("events: writing JSON lines to " + fo.file.path);
  }
  // Kernel BPF run-time statistics (bpf_prog_info.run_time_ns) for the metrics.
  bpfStatsFd_ = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (bpfStatsFd_ < 0) notes_.push_back("metrics: BPF run-time statistics unavailable");
  return {};
}

void Agent::refreshNames() {
  auto t = std::make_shared<EventNameTable>();
  if (compiled_)
    for (const auto& r : compiled_->rules) t->rules.push_back(r.name);
  t->agent = this;
  for (const auto& l : pm_->links())
    if (!l.ifname.empty())
      t->interfaces[static_cast<uint32_t>(l.ifindex)] =
          l.netns.empty() ? l.ifname : l.netns + "/" + l.ifname;
  std::lock_guard lock(namesMu_);
  names_ = std::move(t);
}

std::shared_ptr<const Agent::EventNameTable> Agent::names() const {
  std::lock_guard lock(namesMu_);
  if (names_) return names_;
  static const auto empty = std::make_shared<const EventNameTable>();
  return empty;
}

api::NamedEvent Agent::named(const pipeline::Event& e, const EventNameTable& t) const {
  api::NamedEvent n;
  n.event = e;
  if (e.kind == EW_EV_DROP || e.kind == EW_EV_CONN_NEW) {
    if (e.rule < t.rules.size()) n.rule = t.rules[e.rule];
    n.identity = t.identityOf(e);
    if (auto it = t.interfaces.find(e.ifindex); it != t.interfaces.end()) n.interface = it->second;
  }
  return n;
}

pipeline::Subscription::Filter Agent::filterOf(const api::EventFilter& f) const {
  const bool empty =
      f.kinds.empty() && f.rule.empty() && f.identity.empty() && !f.port && f.verdict.empty();
  if (empty) return {};
  return [this, f](const pipeline::Event& e) {
    if (!f.kinds.empty() && std::find(f.kinds.begin(), f.kinds.end(), e.kind) == f.kinds.end())
      return false;
    if (f.port && e.sport != *f.port && e.dport != *f.port) return false;
    if (!f.verdict.empty() && pipeline::verdictOf(e) != f.verdict) return false;
    if (f.rule.empty() && f.identity.empty()) return true;
    auto t = names();
    if (!f.rule.empty() && (e.rule >= t->rules.size() || t->rules[e.rule] != f.rule)) return false;
    return f.identity.empty() || t->identityOf(e) == f.identity;
  };
}

Result<std::vector<api::NamedEvent>> Agent::recentEvents(const api::EventFilter& f, size_t n) {
  auto t = names();
  std::vector<api::NamedEvent> out;
  for (const auto& e : bus_->recent(n, filterOf(f))) out.push_back(named(e, *t));
  return out;
}

class Agent::EventStreamImpl : public api::EventStream {
 public:
  EventStreamImpl(Agent* a, std::shared_ptr<pipeline::Subscription> s)
      : agent_(a), sub_(std::move(s)) {}
  ~EventStreamImpl() override { agent_->bus_->unsubscribe(sub_); }
  Batch next(std::chrono::milliseconds timeout) override {
    auto b = sub_->next(1024, timeout);
    Batch out;
    out.lost = b.lost;
    out.closed = b.closed;
    auto t = agent_->names();
    out.events.reserve(b.events.size());
    for (const auto& e : b.events) out.events.push_back(agent_->named(e, *t));
    return out;
  }

 private:
  Agent* agent_;
  std::shared_ptr<pipeline::Subscription> sub_;
};

Result<std::unique_ptr<api::EventStream>> Agent::subscribeEvents(const api::EventFilter& f) {
  constexpr size_t kStreamQueue = 65536;
  auto sub = bus_->subscribe("api stream", kStreamQueue, filterOf(f));
  return std::unique_ptr<api::EventStream>(new EventStreamImpl(this, std::move(sub)));
}

}  // namespace edgeward::agent
