// The agent's counters: Status fields (per rule, per reason, events) and the Prometheus
// exposition built from the same reads (prometheus-cpp's data model and text serializer).
#include <bpf/bpf.h>
#include <unistd.h>

#include <array>
#include <fstream>
#include <limits>
#include <span>

#include <prometheus/text_serializer.h>

#include "agent/agent.h"

namespace edgeward::agent {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Upper bounds (seconds) of the apply-duration histogram.
constexpr double kApplyBuckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                    0.25,  0.5,    1,     2.5,  5,     10};

MetricFamily& family(std::vector<MetricFamily>& out, std::string name, std::string help,
                     MetricType type) {
  out.push_back({std::move(name), std::move(help), type, {}});
  return out.back();
}

void add(MetricFamily& f, double v, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  if (f.type == MetricType::Counter)
    m.counter.value = v;
  else
    m.gauge.value = v;
  f.metric.push_back(std::move(m));
}

// A histogram sample from counts per bucket (not cumulative): counts[i] for up to bounds[i]
// seconds, the one count after the bounds for everything longer.
ClientMetric histogram(std::vector<ClientMetric::Label> labels, std::span<const uint64_t> counts,
                       std::span<const double> bounds, double sumSeconds) {
  ClientMetric m;
  m.label = std::move(labels);
  uint64_t cum = 0;
  for (size_t b = 0; b < bounds.size(); b++) {
    cum += counts[b];
    m.histogram.bucket.push_back({cum, bounds[b]});
  }
  cum += counts[bounds.size()];
  m.histogram.bucket.push_back({cum, std::numeric_limits<double>::infinity()});
  m.histogram.sample_count = cum;
  m.histogram.sample_sum = sumSeconds;
  return m;
}

double residentBytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return double(resident) * double(::sysconf(_SC_PAGESIZE));
}

}  // namespace

void Agent::recordApply(double seconds, bool ok) {
  std::lock_guard lock(applyStatsMu_);
  if (applyBuckets_.empty()) applyBuckets_.assign(std::size(kApplyBuckets), 0);
  if (!ok) {
    appliesFailed_++;
    return;
  }
  appliesOk_++;
  applySeconds_ += seconds;
  for (size_t i = 0; i < std::size(kApplyBuckets); i++)
    if (seconds <= kApplyBuckets[i]) applyBuckets_[i]++;
}

Result<api::Status> Agent::status() { return status(nullptr); }

Result<api::Status> Agent::status(std::optional<FlowmonStats>* flowmonRaw) {
  std::lock_guard lock(mu_);
  api::Status s;
  if (activeVersion_) s.policy = info(*activeVersion_);
  for (const auto& l : pm_->links()) {
    api::InterfaceStatus is;
    is.name = l.ifname;
    is.netns = l.netns;
    is.mode = std::string(bpf::FirewallProgram::hookName(l.hook));
    is.attached = l.fd.valid();
    s.interfaces.push_back(is);
  }
  EW_TRY(reasons, fw_->readCounters(bpf::FirewallMap::ReasonStats, uint32_t{EW_DIRS} * EW_R_COUNT));
  for (uint32_t i = 0; i < reasons->size(); i++) {
    const uint32_t reason = i % EW_R_COUNT;
    const bool pass = reason <= EW_R_HOST_ESSENTIAL;
    (pass ? s.packetsPassed : s.packetsDropped) += (*reasons)[i].packets;
    s.reasons.push_back({i / EW_R_COUNT == EW_INGRESS ? "ingress" : "egress",
                         std::string(policy::reasonName(static_cast<uint8_t>(reason))), pass,
                         (*reasons)[i].packets, (*reasons)[i].bytes});
  }
  if (compiled_ && !compiled_->rules.empty()) {
    EW_TRY(rules, fw_->readCounters(bpf::FirewallMap::RuleStats,
                                    static_cast<uint32_t>(compiled_->rules.size())));
    for (uint32_t id = 0; id < rules->size(); id++) {
      const auto& r = compiled_->rules[id];
      s.rules.push_back({id, r.name, r.dir == EW_INGRESS ? "ingress" : "egress",
                         r.action == policy::Action::Allow ? "allow" : "deny", (*rules)[id].packets,
                         (*rules)[id].bytes});
    }
  }
  EW_TRY(ct, fw_->conntrackEntries());
  s.conntrackEntries = *ct;
  s.upstream = upstreamState_;
  s.startedAtMs = startedAtMs_;
  EW_TRY(cfg, fw_->readConfig());
  s.synLimit = cfg->flags & EW_F_SYN_LIMIT;
  if (auto pi = fw_->programInfo(bpf::Hook::XdpIngress)) {
    s.programTag = pi->tag;
    s.programLoadedAtMs = pi->loadedAtMs;
  }

  EW_TRY(ev, fw_->readEventStats());
  s.events.firewallSent = (*ev)[EW_EVS_DROP_SENT] + (*ev)[EW_EVS_CONN_SENT];
  s.events.firewallLost = (*ev)[EW_EVS_DROP_LOST] + (*ev)[EW_EVS_CONN_LOST];
  s.events.dropsSampledOut = (*ev)[EW_EVS_DROP_SAMPLED_OUT];
  s.events.dropsRateLimited = (*ev)[EW_EVS_DROP_RATE_LIMITED];
  if (flowmon_) {
    EW_TRY(fs, flowmon_->readStats());
    s.events.flowmonSent =
        (*fs)[FM_S_OPEN_SENT] + (*fs)[FM_S_CLOSE_SENT] + (*fs)[FM_S_RETRANS_SENT];
    s.events.flowmonLost =
        (*fs)[FM_S_OPEN_LOST] + (*fs)[FM_S_CLOSE_LOST] + (*fs)[FM_S_RETRANS_LOST];
    s.events.flowmon = true;
    if (flowmonRaw) *flowmonRaw = *fs;
  }
  if (bus_) {
    s.events.published = bus_->published();
    s.events.subscriberLost = bus_->subscriberLost();
  }
  return s;
}

Result<std::string> Agent::metricsText() {
  std::optional<FlowmonStats> fms;
  EW_TRY(st, status(&fms));
  std::vector<MetricFamily> out;
  out.reserve(64);  // families are filled through references: no reallocation
  using L = std::vector<ClientMetric::Label>;

  auto& rp =
      family(out, "edgeward_rule_packets_total", "Packets each rule decided.", MetricType::Counter);
  auto& rb = family(out, "edgeward_rule_bytes_total", "Bytes of the packets each rule decided.",
                    MetricType::Counter);
  for (const auto& r : st->rules) {
    L l{{"action", r.action}, {"direction", r.direction}, {"rule", r.name}};
    add(rp, double(r.packets), l);
    add(rb, double(r.bytes), l);
  }
  auto& pp = family(out, "edgeward_packets_total", "Packets by direction, verdict and reason.",
                    MetricType::Counter);
  auto& pb = family(out, "edgeward_bytes_total", "Bytes by direction, verdict and reason.",
                    MetricType::Counter);
  for (const auto& r : st->reasons) {
    L l{{"direction", r.direction}, {"reason", r.reason}, {"verdict", r.pass ? "pass" : "drop"}};
    add(pp, double(r.packets), l);
    add(pb, double(r.bytes), l);
  }
  add(family(out, "edgeward_conntrack_entries", "Live connection tracking entries.",
             MetricType::Gauge),
      double(st->conntrackEntries));
  add(family(out, "edgeward_policy_version", "Version of the active policy (0: none).",
             MetricType::Gauge),
      double(st->policy.version));
  add(family(out, "edgeward_policy_applied_timestamp_seconds",
             "When the active policy was applied (unix time).", MetricType::Gauge),
      double(st->policy.appliedAtMs) / 1000);
  {
    std::lock_guard lock(applyStatsMu_);
    auto& h = family(out, "edgeward_policy_apply_duration_seconds",
                     "Policy applies that changed the data plane: parse, compile, write, switch.",
                     MetricType::Histogram);
    ClientMetric m;
    m.histogram.sample_count = appliesOk_;
    m.histogram.sample_sum = applySeconds_;
    for (size_t i = 0; i < std::size(kApplyBuckets); i++)
      m.histogram.bucket.push_back(
          {applyBuckets_.empty() ? 0 : applyBuckets_[i], kApplyBuckets[i]});
    m.histogram.bucket.push_back({appliesOk_, std::numeric_limits<double>::infinity()});
    h.metric.push_back(std::move(m));
    auto& a = family(out, "edgeward_policy_applies_total", "Policy applies by result.",
                     MetricType::Counter);
    add(a, double(appliesOk_), {{"result", "ok"}});
    add(a, double(appliesFailed_), {{"result", "error"}});
  }

  // Events: what was sent, and everything that was not, by cause.
  auto& sent =
      family(out, "edgeward_events_total", "Events written by each source.", MetricType::Counter);
  add(sent, double(st->events.firewallSent), {{"source", "firewall"}});
  if (st->events.flowmon) add(sent, double(st->events.flowmonSent), {{"source", "flowmon"}});
  auto& lost = family(out, "edgeward_events_lost_total",
                      "Events lost: a full ring buffer (firewall, flowmon) or a subscriber "
                      "that fell behind (subscriber).",
                      MetricType::Counter);
  add(lost, double(st->events.firewallLost), {{"source", "firewall"}});
  add(lost, double(st->events.flowmonLost), {{"source", "flowmon"}});
  add(lost, double(st->events.subscriberLost), {{"source", "subscriber"}});
  auto& sup = family(out, "edgeward_drop_events_suppressed_total",
                     "Drops not reported as events, by cause (sampling, per-peer rate limit).",
                     MetricType::Counter);
  add(sup, double(st->events.dropsSampledOut), {{"cause", "sampled"}});
  add(sup, double(st->events.dropsRateLimited), {{"cause", "rate_limited"}});
  add(family(out, "edgeward_events_published_total", "Events handed to subscribers.",
             MetricType::Counter),
      double(st->events.published));

  // Kernel BPF statistics of the firewall programs (enabled while the agent runs).
  auto& runs = family(out, "edgeward_bpf_program_runs_total", "Runs of each firewall program.",
                      MetricType::Counter);
  auto& runNs =
      family(out, "edgeward_bpf_program_run_seconds_total",
             "Time spent in each firewall program (kernel BPF statistics).", MetricType::Counter);
  for (bpf::Hook h : bpf::kAllHooks) {
    bpf_prog_info info{};
    uint32_t len = sizeof info;
    {
      std::lock_guard lock(mu_);
      if (bpf_obj_get_info_by_fd(fw_->progFd(h), &info, &len) != 0) continue;
    }
    L l{{"program", std::string(bpf::FirewallProgram::programName(h))}};
    add(runs, double(info.run_cnt), l);
    add(runNs, double(info.run_time_ns) / 1e9, l);
  }

  if (fms) {
    auto& states = family(out, "edgeward_tcp_state_transitions_total",
                          "TCP sockets entering each state (all namespaces).", MetricType::Counter);
    EW_TRY(tr, flowmon_->readStates());
    for (uint32_t i = 1; i <= 12; i++)
      add(states, double((*tr)[i]), {{"state", bpf::FlowmonProgram::stateName(i)}});
    add(family(out, "edgeward_tcp_retransmits_total", "Retransmitted TCP segments.",
               MetricType::Counter),
        double((*fms)[FM_S_RETRANSMITS]));
    add(family(out, "edgeward_tcp_untracked_closes_total",
               "Connections closed that opened before flowmon started (no duration).",
               MetricType::Counter),
        double((*fms)[FM_S_CLOSE_UNTRACKED]));
    EW_TRY(hist, flowmon_->readHistogram());
    auto& h = family(out, "edgeward_tcp_connection_duration_seconds",
                     "TCP connection durations (ESTABLISHED to CLOSE) by service port.",
                     MetricType::Histogram);
    std::array<double, FM_HIST_BUCKETS - 1> bounds;
    for (uint32_t b = 0; b < bounds.size(); b++)
      bounds[b] = double(bpf::FlowmonProgram::bucketBoundNs(b)) / 1e9;
    for (const auto& [port, d] : *hist)
      h.metric.push_back(
          histogram({{"port", std::to_string(port)}}, d.buckets, bounds, double(d.sumNs) / 1e9));
  }
  add(family(out, "edgeward_flowmon_up", "1 when TCP lifecycle monitoring runs.",
             MetricType::Gauge),
      fms ? 1 : 0);
  auto& up =
      family(out, "edgeward_upstream_connected",
             "1 while connected to the upstream controller (follow mode only).", MetricType::Gauge);
  if (cfg_.upstream)
    add(up, st->upstream.starts_with("connected") ? 1 : 0, {{"address", cfg_.upstream->address}});
  // WebAssembly plugins and functions.
  auto& pe = family(out, "edgeward_plugin_events_total", "Events each plugin decided, by verdict.",
                    MetricType::Counter);
  auto& pcalls = family(out, "edgeward_plugin_calls_total", "Calls into each plugin's ew_on_event.",
                        MetricType::Counter);
  auto& ptime = family(out, "edgeward_plugin_call_seconds_total",
                       "Time spent in each plugin's ew_on_event calls.", MetricType::Counter);
  auto& pf = family(out, "edgeward_plugin_failures_total",
                    "Failed plugin calls by kind: over the CPU limit (timeout), out of memory, "
                    "stack overflow, or another trap or refused host call.",
                    MetricType::Counter);
  auto& pskip = family(out, "edgeward_plugin_skipped_total",
                       "Events not given to a plugin (over its call rate, or every instance busy).",
                       MetricType::Counter);
  auto& pen =
      family(out, "edgeward_plugin_enabled", "1 while a plugin is enabled.", MetricType::Gauge);
  for (const auto& p : plugins()) {
    add(pe, double(p.passed), {{"plugin", p.name}, {"verdict", "pass"}});
    add(pe, double(p.dropped), {{"plugin", p.name}, {"verdict", "drop"}});
    add(pe, double(p.replaced), {{"plugin", p.name}, {"verdict", "replace"}});
    add(pcalls, double(p.calls), {{"plugin", p.name}});
    add(ptime, double(p.callNsTotal) / 1e9, {{"plugin", p.name}});
    add(pf, double(p.timeouts), {{"plugin", p.name}, {"kind", "timeout"}});
    add(pf, double(p.memoryErrors), {{"plugin", p.name}, {"kind", "memory"}});
    add(pf, double(p.stackOverflows), {{"plugin", p.name}, {"kind", "stack_overflow"}});
    add(pf, double(p.traps), {{"plugin", p.name}, {"kind", "trap"}});
    add(pskip, double(p.rateLimited), {{"plugin", p.name}, {"cause", "rate_limited"}});
    add(pskip, double(p.busy), {{"plugin", p.name}, {"cause", "busy"}});
    add(pen, p.enabled ? 1 : 0, {{"plugin", p.name}});
  }
  auto& fi = family(out, "edgeward_function_invocations_total", "Function invocations.",
                    MetricType::Counter);
  auto& ff = family(out, "edgeward_function_failures_total",
                    "Function invocations that failed (limits, traps).", MetricType::Counter);
  auto& fd = family(out, "edgeward_function_duration_seconds",
                    "Function invocations by duration, waiting for an instance included.",
                    MetricType::Histogram);
  auto& fr =
      family(out, "edgeward_function_rate_limited_total",
             "Function calls refused: over the function's calls per second.", MetricType::Counter);
  for (const auto& f : functions()) {
    add(fi, double(f.invocations), {{"function", f.name}});
    add(ff, double(f.failures), {{"function", f.name}});
    add(fr, double(f.rateLimited), {{"function", f.name}});
    fd.metric.push_back(histogram({{"function", f.name}}, f.callBuckets, wasm::kCallBuckets,
                                  double(f.callNsTotal) / 1e9));
  }
  auto& msg = family(out, "edgeward_plugin_messages_total",
                     "Messages plugins sent (ew_publish, ew_emit on a topic), by outcome: "
                     "delivered to the publish destination, failed there, or unsent (none "
                     "configured).",
                     MetricType::Counter);
  const auto ps = publisher_ ? publisher_->stats() : pipeline::PublisherStats{};
  add(msg, double(ps.delivered), {{"result", "delivered"}});
  add(msg, double(ps.failed), {{"result", "failed"}});
  add(msg, double(unsentMessages_.load(std::memory_order_relaxed)), {{"result", "unsent"}});
  add(family(out, "edgeward_plugin_messages_queued",
             "Messages waiting for the publish destination.", MetricType::Gauge),
      double(ps.queued));
  add(family(out, "edgeward_agent_start_time_seconds", "When the agent started (unix time).",
             MetricType::Gauge),
      double(startedAtMs_) / 1000);
  add(family(out, "process_resident_memory_bytes", "Resident memory of the agent process.",
             MetricType::Gauge),
      residentBytes());
  return prometheus::TextSerializer().Serialize(out);
}

}  // namespace edgeward::agent
