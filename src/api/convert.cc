#include "api/convert.h"

#include "bpf/flowmon_program.h"
#include "policy/compiler.h"

namespace edgeward::api::convert {
namespace {

void toProto(const policy::RuleChange& in, v1::RuleChange* out) {
  out->set_name(in.name);
  out->set_direction(in.direction);
  out->set_before(in.before);
  out->set_after(in.after);
}

policy::RuleChange fromProto(const v1::RuleChange& in) {
  return {in.name(), in.direction(), in.before(), in.after()};
}

template <typename Proto, typename T>
void toProtoList(const std::vector<T>& in, google::protobuf::RepeatedPtrField<Proto>* out) {
  for (const auto& x : in) toProto(x, out->Add());
}

Result<std::vector<policy::Prefix>> prefixes(
    const google::protobuf::RepeatedPtrField<std::string>& in) {
  std::vector<policy::Prefix> out;
  for (const auto& s : in) {
    EW_TRY(p, policy::parsePrefix(s));
    out.push_back(*p);
  }
  return out;
}

}  // namespace

void toProto(const VersionInfo& in, v1::VersionInfo* out) {
  out->set_version(in.version);
  out->set_hash(in.hash);
  out->set_author(in.author);
  out->set_applied_at_ms(in.appliedAtMs);
  out->set_name(in.name);
  out->set_origin(in.origin);
}

VersionInfo fromProto(const v1::VersionInfo& in) {
  return {in.version(), in.hash(), in.author(), in.applied_at_ms(), in.name(), in.origin()};
}

void toProto(const policy::PolicyDiff& in, v1::PolicyDiff* out) {
  for (const auto& s : in.identitiesAdded) out->add_identities_added(s);
  for (const auto& s : in.identitiesRemoved) out->add_identities_removed(s);
  for (const auto& c : in.identityChanges) {
    auto* pc = out->add_identity_changes();
    pc->set_name(c.name);
    for (const auto& p : c.added) pc->add_added(p.str());
    for (const auto& p : c.removed) pc->add_removed(p.str());
  }
  toProtoList(in.rulesAdded, out->mutable_rules_added());
  toProtoList(in.rulesRemoved, out->mutable_rules_removed());
  toProtoList(in.rulesChanged, out->mutable_rules_changed());
  out->set_default_action_before(in.defaultActionBefore);
  out->set_default_action_after(in.defaultActionAfter);
  out->set_syn_flood_before(in.synFloodBefore);
  out->set_syn_flood_after(in.synFloodAfter);
}

Result<policy::PolicyDiff> fromProto(const v1::PolicyDiff& in) {
  policy::PolicyDiff d;
  d.identitiesAdded.assign(in.identities_added().begin(), in.identities_added().end());
  d.identitiesRemoved.assign(in.identities_removed().begin(), in.identities_removed().end());
  for (const auto& pc : in.identity_changes()) {
    EW_TRY(added, prefixes(pc.added()));
    EW_TRY(removed, prefixes(pc.removed()));
    d.identityChanges.push_back({pc.name(), std::move(*added), std::move(*removed)});
  }
  for (const auto& r : in.rules_added()) d.rulesAdded.push_back(fromProto(r));
  for (const auto& r : in.rules_removed()) d.rulesRemoved.push_back(fromProto(r));
  for (const auto& r : in.rules_changed()) d.rulesChanged.push_back(fromProto(r));
  d.defaultActionBefore = in.default_action_before();
  d.defaultActionAfter = in.default_action_after();
  d.synFloodBefore = in.syn_flood_before();
  d.synFloodAfter = in.syn_flood_after();
  return d;
}

void toProto(const ApplyResult& in, v1::ApplyPolicyResponse* out) {
  toProto(in.version, out->mutable_version());
  toProto(in.diff, out->mutable_diff());
  out->set_changed(in.changed);
  out->set_apply_ms(in.applyMs);
}

Result<ApplyResult> fromProto(const v1::ApplyPolicyResponse& in) {
  EW_TRY(d, fromProto(in.diff()));
  return ApplyResult{fromProto(in.version()), std::move(*d), in.changed(), in.apply_ms()};
}

void toProto(const Status& in, v1::Status* out) {
  toProto(in.policy, out->mutable_policy());
  for (const auto& i : in.interfaces) {
    auto* pi = out->add_interfaces();
    pi->set_name(i.name);
    pi->set_netns(i.netns);
    pi->set_mode(i.mode);
    pi->set_attached(i.attached);
  }
  out->set_program_tag(in.programTag);
  out->set_program_loaded_at_ms(in.programLoadedAtMs);
  out->set_packets_passed(in.packetsPassed);
  out->set_packets_dropped(in.packetsDropped);
  out->set_conntrack_entries(in.conntrackEntries);
  out->set_upstream(in.upstream);
  out->set_started_at_ms(in.startedAtMs);
  out->set_syn_limit(in.synLimit);
  for (const auto& r : in.rules) {
    auto* pr = out->add_rules();
    pr->set_id(r.id);
    pr->set_name(r.name);
    pr->set_direction(r.direction);
    pr->set_action(r.action);
    pr->set_packets(r.packets);
    pr->set_bytes(r.bytes);
  }
  for (const auto& r : in.reasons) {
    auto* pr = out->add_reasons();
    pr->set_direction(r.direction);
    pr->set_reason(r.reason);
    pr->set_pass(r.pass);
    pr->set_packets(r.packets);
    pr->set_bytes(r.bytes);
  }
  auto* ev = out->mutable_events();
  ev->set_published(in.events.published);
  ev->set_firewall_lost(in.events.firewallLost);
  ev->set_flowmon_lost(in.events.flowmonLost);
  ev->set_subscriber_lost(in.events.subscriberLost);
  ev->set_drops_sampled_out(in.events.dropsSampledOut);
  ev->set_drops_rate_limited(in.events.dropsRateLimited);
  ev->set_flowmon(in.events.flowmon);
  ev->set_firewall_sent(in.events.firewallSent);
  ev->set_flowmon_sent(in.events.flowmonSent);
}

Status fromProto(const v1::Status& in) {
  Status s;
  s.policy = fromProto(in.policy());
  for (const auto& i : in.interfaces())
    s.interfaces.push_back({i.name(), i.netns(), i.mode(), i.attached()});
  s.programTag = in.program_tag();
  s.programLoadedAtMs = in.program_loaded_at_ms();
  s.packetsPassed = in.packets_passed();
  s.packetsDropped = in.packets_dropped();
  s.conntrackEntries = in.conntrack_entries();
  s.upstream = in.upstream();
  s.startedAtMs = in.started_at_ms();
  for (const auto& r : in.rules())
    s.rules.push_back({r.id(), r.name(), r.direction(), r.action(), r.packets(), r.bytes()});
  for (const auto& r : in.reasons())
    s.reasons.push_back({r.direction(), r.reason(), r.pass(), r.packets(), r.bytes()});
  const auto& ev = in.events();
  s.events = {ev.firewall_sent(),     ev.flowmon_sent(),       ev.published(),
              ev.firewall_lost(),     ev.flowmon_lost(),       ev.subscriber_lost(),
              ev.drops_sampled_out(), ev.drops_rate_limited(), ev.flowmon()};
  s.synLimit = in.syn_limit();
  return s;
}

void toProto(const NamedEvent& in, v1::Event* out) {
  const pipeline::Event& e = in.event;
  auto kind = pipeline::kindName(e.kind);
  out->set_kind(kind ? std::string(*kind) : fmt::format("kind-{}", e.kind));
  out->set_time_ns(e.ts_ns);
  out->set_verdict(std::string(pipeline::verdictOf(e)));
  out->set_family(e.family);
  if (e.family == 4 || e.family == 6) {
    out->set_src(pipeline::srcAddr(e));
    out->set_dst(pipeline::dstAddr(e));
  }
  out->set_proto(e.proto);
  out->set_sport(e.sport);
  out->set_dport(e.dport);
  out->set_direction(e.direction == EW_DIR_EGRESS ? "egress" : "ingress");
  const bool firewall = e.kind == EW_EV_DROP || e.kind == EW_EV_CONN_NEW;
  out->set_reason(firewall ? std::string(policy::reasonName(e.reason))
                           : bpf::FlowmonProgram::stateName(e.reason));
  out->set_ifindex(e.ifindex);
  out->set_interface(in.interface);
  out->set_rule_id(firewall && e.rule != EW_RULE_NONE ? int64_t{e.rule} : -1);
  out->set_rule(in.rule);
  out->set_identity(in.identity);
  out->set_pkt_len(e.pkt_len);
  out->set_sampled_out(e.sampled_out);
  out->set_duration_ns(e.kind == EW_EV_TCP_CLOSE ? e.value : 0);
  out->set_netns(e.netns);
}

void toProto(const ModuleInfo& m, v1::ModuleInfo* out) {
  out->set_kind(m.kind);
  out->set_name(m.name);
  out->set_version(m.version);
  out->set_enabled(m.enabled);
  out->set_disabled_reason(m.disabledReason);
  out->set_failure_policy(m.failurePolicy);
  out->set_calls(m.calls);
  out->set_passed(m.passed);
  out->set_dropped(m.dropped);
  out->set_replaced(m.replaced);
  out->set_failures(m.failures);
  out->set_timeouts(m.timeouts);
  out->set_memory_errors(m.memoryErrors);
  out->set_traps(m.traps);
  out->set_rate_limited(m.rateLimited);
  out->set_busy(m.busy);
  out->set_emitted(m.emitted);
  out->set_published(m.published);
  out->set_completions(m.completions);
  out->set_call_ns_total(m.callNsTotal);
  out->set_reset(m.reset);
  out->set_instances_live(m.instancesLive);
  out->set_last_error(m.lastError);
}

ModuleInfo fromProto(const v1::ModuleInfo& in) {
  ModuleInfo m;
  m.kind = in.kind();
  m.name = in.name();
  m.version = in.version();
  m.enabled = in.enabled();
  m.disabledReason = in.disabled_reason();
  m.failurePolicy = in.failure_policy();
  m.calls = in.calls();
  m.passed = in.passed();
  m.dropped = in.dropped();
  m.replaced = in.replaced();
  m.failures = in.failures();
  m.timeouts = in.timeouts();
  m.memoryErrors = in.memory_errors();
  m.traps = in.traps();
  m.rateLimited = in.rate_limited();
  m.busy = in.busy();
  m.emitted = in.emitted();
  m.published = in.published();
  m.completions = in.completions();
  m.callNsTotal = in.call_ns_total();
  m.reset = in.reset();
  m.instancesLive = in.instances_live();
  m.lastError = in.last_error();
  return m;
}

void toProto(const WatchEvent& in, v1::WatchEvent* out) {
  switch (in.kind) {
    case WatchEvent::Kind::PolicyApplied:
      out->set_kind(v1::WatchEvent::POLICY_APPLIED);
      break;
    case WatchEvent::Kind::PolicyRolledBack:
      out->set_kind(v1::WatchEvent::POLICY_ROLLED_BACK);
      break;
    case WatchEvent::Kind::ProgramReplaced:
      out->set_kind(v1::WatchEvent::PROGRAM_REPLACED);
      break;
    case WatchEvent::Kind::UpstreamChanged:
      out->set_kind(v1::WatchEvent::UPSTREAM_CHANGED);
      break;
    case WatchEvent::Kind::PluginDisabled:
      out->set_kind(v1::WatchEvent::PLUGIN_DISABLED);
      break;
  }
  toProto(in.version, out->mutable_version());
  out->set_message(in.message);
  out->set_at_ms(in.atMs);
}

WatchEvent fromProto(const v1::WatchEvent& in) {
  WatchEvent e;
  switch (in.kind()) {
    case v1::WatchEvent::POLICY_ROLLED_BACK:
      e.kind = WatchEvent::Kind::PolicyRolledBack;
      break;
    case v1::WatchEvent::PROGRAM_REPLACED:
      e.kind = WatchEvent::Kind::ProgramReplaced;
      break;
    case v1::WatchEvent::UPSTREAM_CHANGED:
      e.kind = WatchEvent::Kind::UpstreamChanged;
      break;
    case v1::WatchEvent::PLUGIN_DISABLED:
      e.kind = WatchEvent::Kind::PluginDisabled;
      break;
    default:
      e.kind = WatchEvent::Kind::PolicyApplied;
      break;
  }
  e.version = fromProto(in.version());
  e.message = in.message();
  e.atMs = in.at_ms();
  return e;
}

grpc::StatusCode toGrpcCode(ErrorCode c) {
  switch (c) {
    case ErrorCode::InvalidArgument:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case ErrorCode::NotFound:
      return grpc::StatusCode::NOT_FOUND;
    case ErrorCode::Conflict:
      return grpc::StatusCode::ABORTED;
    case ErrorCode::PermissionDenied:
      return grpc::StatusCode::PERMISSION_DENIED;
    case ErrorCode::Unavailable:
      return grpc::StatusCode::UNAVAILABLE;
    default:
      return grpc::StatusCode::INTERNAL;
  }
}

grpc::Status toGrpcStatus(const Error& e) { return {toGrpcCode(e.code()), e.str()}; }

ErrorCode fromGrpcCode(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::INVALID_ARGUMENT:
      return ErrorCode::InvalidArgument;
    case grpc::StatusCode::NOT_FOUND:
      return ErrorCode::NotFound;
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::FAILED_PRECONDITION:
      return ErrorCode::Conflict;
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      return ErrorCode::PermissionDenied;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return ErrorCode::Unavailable;
    case grpc::StatusCode::INTERNAL:
      return ErrorCode::Internal;
    default:
      return ErrorCode::Unknown;
  }
}

}  // namespace edgeward::api::convert
