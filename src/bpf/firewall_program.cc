#include "bpf/firewall_program.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>

#include <cstring>

#include "firewall.skel.h"

namespace edgeward::bpf {
namespace {

// Not in Debian's 6.1 uapi headers; stable kernel ABI values (see PLATFORM.md).
constexpr int kBpfTcxIngress = 46;
constexpr int kBpfTcxEgress = 47;

bpf_map* mapOf(::firewall* s, FirewallMap m) {
  switch (m) {
    case FirewallMap::Config:
      return s->maps.ew_config;
    case FirewallMap::Policy:
      return s->maps.ew_policy;
    case FirewallMap::Bkt4:
      return s->maps.ew_bkt4;
    case FirewallMap::Bkt6:
      return s->maps.ew_bkt6;
    case FirewallMap::Iv4:
      return s->maps.ew_iv4;
    case FirewallMap::Iv6:
      return s->maps.ew_iv6;
    case FirewallMap::Grp:
      return s->maps.ew_grp;
    case FirewallMap::Piv:
      return s->maps.ew_piv;
    case FirewallMap::RuleStats:
      return s->maps.ew_rule_stats;
    case FirewallMap::ReasonStats:
      return s->maps.ew_reason_stats;
    case FirewallMap::Ct4:
      return s->maps.ew_ct4;
    case FirewallMap::Ct6:
      return s->maps.ew_ct6;
    case FirewallMap::Syn:
      return s->maps.ew_syn;
  }
  return nullptr;
}

bpf_program* progOf(::firewall* s, Hook h) {
  switch (h) {
    case Hook::XdpIngress:
      return s->progs.ew_xdp_ingress;
    case Hook::TcIngress:
      return s->progs.ew_tc_ingress;
    case Hook::TcEgress:
      return s->progs.ew_tc_egress;
  }
  return nullptr;
}

// Deletes every key of a hash map.
Result<void> clearHash(int fd, size_t keySize) {
  std::vector<uint8_t> key(keySize), next(keySize);
  std::vector<std::vector<uint8_t>> keys;
  void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, next.data()) == 0) {
    keys.push_back(next);
    key = next;
    prev = key.data();
  }
  for (auto& k : keys)
    if (bpf_map_delete_elem(fd, k.data()) != 0 && errno != ENOENT)
      return failErrno("deleting a map entry");
  return {};
}

size_t countHash(int fd, size_t keySize) {
  std::vector<uint8_t> key(keySize), next(keySize);
  void* prev = nullptr;
  size_t n = 0;
  while (bpf_map_get_next_key(fd, prev, next.data()) == 0) {
    n++;
    key = next;
    prev = key.data();
  }
  return n;
}

}  // namespace

std::string_view FirewallProgram::hookName(Hook h) {
  switch (h) {
    case Hook::XdpIngress:
      return "xdp-ingress";
    case Hook::TcIngress:
      return "tcx-ingress";
    case Hook::TcEgress:
      return "tcx-egress";
  }
  return "?";
}

Result<std::unique_ptr<FirewallProgram>> FirewallProgram::load(const FirewallOptions& opts) {
  std::unique_ptr<FirewallProgram> fw(new FirewallProgram());
  fw->opts_ = opts;
  fw->ncpus_ = libbpf_num_possible_cpus();
  if (fw->ncpus_ <= 0) return failErrno("counting possible CPUs", fw->ncpus_);
  fw->skel_ = firewall__open();
  if (!fw->skel_) return failErrno("opening the firewall BPF object");
  auto* s = fw->skel_;
  s->rodata->record_verdict = opts.recordVerdict ? 1 : 0;
  struct Size {
    bpf_map* map;
    uint32_t entries;
  };
  const Size sizes[] = {
      {s->maps.ew_iv4, EW_GENERATIONS * opts.capIntervals4},
      {s->maps.ew_iv6, EW_GENERATIONS * opts.capIntervals6},
      {s->maps.ew_grp, EW_GENERATIONS * opts.capGroups * EW_P_COUNT},
      {s->maps.ew_piv, EW_GENERATIONS * opts.capPortEntries},
      {s->maps.ew_rule_stats, opts.capRules},
      {s->maps.ew_ct4, opts.conntrackEntries},
      {s->maps.ew_ct6, opts.conntrackEntries / 4 ? opts.conntrackEntries / 4 : 1},
  };
  for (const auto& sz : sizes) {
    int err = bpf_map__set_max_entries(sz.map, sz.entries ? sz.entries : 1);
    if (err) return failErrno(std::string("sizing map ") + bpf_map__name(sz.map), err);
  }
  if (int err = firewall__load(s); err)
    return failErrno("loading the firewall program (run as root; see the verifier log above)", err);

  // Empty policy in both generations: group tables are zero, so defaultAction decides.
  ew_policy_hdr hdr{};
  hdr.default_action = EW_ACT_DENY;
  hdr.n_groups = EW_GROUP_FIRST;
  for (uint32_t g = 0; g < EW_GENERATIONS; g++) {
    hdr.bkt_base = g * EW_BUCKETS;
    hdr.grp_base = g * opts.capGroups * EW_P_COUNT;
    if (bpf_map_update_elem(bpf_map__fd(s->maps.ew_policy), &g, &hdr, BPF_ANY))
      return failErrno("initialising the policy header");
  }
  ew_config cfg{};
  cfg.flags = EW_F_CONNTRACK | EW_F_SYN_LIMIT;
  if (auto r = fw->writeConfig(cfg); !r) return std::unexpected(r.error());
  return fw;
}

FirewallProgram::~FirewallProgram() {
  if (skel_) firewall__destroy(skel_);
}

int FirewallProgram::mapFd(FirewallMap m) const { return bpf_map__fd(mapOf(skel_, m)); }
int FirewallProgram::progFd(Hook h) const { return bpf_program__fd(progOf(skel_, h)); }

Result<void> FirewallProgram::writeArray(FirewallMap m, uint32_t first, const void* values,
                                         uint32_t count, size_t valueSize) {
  if (count == 0) return {};
  bpf_map* map = mapOf(skel_, m);
  if (valueSize != bpf_map__value_size(map))
    return failf("map {}: value size {} != {}", bpf_map__name(map), valueSize,
                 bpf_map__value_size(map));
  if (uint64_t{first} + count > bpf_map__max_entries(map))
    return failf("map {}: writing [{}, {}) beyond its {} entries", bpf_map__name(map), first,
                 uint64_t{first} + count, bpf_map__max_entries(map));
  std::vector<uint32_t> keys(count);
  for (uint32_t i = 0; i < count; i++) keys[i] = first + i;
  bpf_map_batch_opts o{};
  o.sz = sizeof(o);
  const auto* bytes = static_cast<const uint8_t*>(values);
  // Batches of at most 64k keys keep the kernel's temporary allocations small.
  constexpr uint32_t kChunk = 1u << 16;
  for (uint32_t done = 0; done < count;) {
    uint32_t n = std::min(kChunk, count - done);
    uint32_t want = n;
    if (bpf_map_update_batch(bpf_map__fd(map), keys.data() + done, bytes + size_t{done} * valueSize,
                             &n, &o))
      return failErrno(fmt::format("updating map {}", bpf_map__name(map)));
    if (n != want) return failf("map {}: batch wrote {} of {}", bpf_map__name(map), n, want);
    done += n;
  }
  return {};
}

Result<ew_config> FirewallProgram::readConfig() const {
  ew_config c{};
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(mapFd(FirewallMap::Config), &zero, &c))
    return failErrno("reading the firewall config");
  return c;
}

Result<void> FirewallProgram::writeConfig(const ew_config& c) {
  uint32_t zero = 0;
  if (bpf_map_update_elem(mapFd(FirewallMap::Config), &zero, &c, BPF_ANY))
    return failErrno("writing the firewall config");
  return {};
}

Result<std::vector<ew_counter>> FirewallProgram::readCounters(FirewallMap m, uint32_t count) const {
  std::vector<ew_counter> out(count), percpu(ncpus_);
  int fd = mapFd(m);
  for (uint32_t i = 0; i < count; i++) {
    if (bpf_map_lookup_elem(fd, &i, percpu.data()))
      return failErrno(fmt::format("reading counter {}", i));
    for (const auto& c : percpu) {
      out[i].packets += c.packets;
      out[i].bytes += c.bytes;
    }
  }
  return out;
}

Result<void> FirewallProgram::clearCounters(FirewallMap m, uint32_t count) {
  std::vector<ew_counter> zero(ncpus_);
  int fd = mapFd(m);
  for (uint32_t i = 0; i < count; i++)
    if (bpf_map_update_elem(fd, &i, zero.data(), BPF_ANY))
      return failErrno(fmt::format("clearing counter {}", i));
  return {};
}

Result<void> FirewallProgram::clearState() {
  if (auto r = clearHash(mapFd(FirewallMap::Ct4), sizeof(ew_ct4_key)); !r) return r;
  if (auto r = clearHash(mapFd(FirewallMap::Ct6), sizeof(ew_ct6_key)); !r) return r;
  return clearHash(mapFd(FirewallMap::Syn), sizeof(ew_syn_key));
}

Result<size_t> FirewallProgram::conntrackEntries() const {
  return countHash(mapFd(FirewallMap::Ct4), sizeof(ew_ct4_key)) +
         countHash(mapFd(FirewallMap::Ct6), sizeof(ew_ct6_key));
}

Result<TestRunResult> FirewallProgram::testRun(Hook h, std::span<const uint8_t> frame,
                                               uint32_t repeat) {
  std::vector<uint8_t> out(frame.size() + 512);
  bpf_test_run_opts o{};
  o.sz = sizeof(o);
  o.data_in = frame.data();
  o.data_size_in = static_cast<uint32_t>(frame.size());
  o.data_out = out.data();
  o.data_size_out = static_cast<uint32_t>(out.size());
  o.repeat = static_cast<int>(repeat);
  if (bpf_prog_test_run_opts(progFd(h), &o))
    return failErrno(fmt::format("BPF_PROG_TEST_RUN on a {}-byte frame", frame.size()));
  TestRunResult r;
  r.retval = static_cast<int>(o.retval);
  r.pass = h == Hook::XdpIngress ? o.retval == XDP_PASS : r.retval == -1;
  r.nsPerRun = o.duration;
  if (opts_.recordVerdict) {
    // The run happened on one CPU; its record is the one with the highest sequence number.
    std::vector<ew_verdict_rec> recs(ncpus_);
    uint32_t zero = 0;
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.ew_verdict), &zero, recs.data()))
      return failErrno("reading the verdict record");
    std::vector<ew_verdict_rec> zeroed(ncpus_);
    uint64_t best = 0;
    for (const auto& rec : recs)
      if (rec.seq > best) {
        best = rec.seq;
        r.verdict = rec;
      }
    bpf_map_update_elem(bpf_map__fd(skel_->maps.ew_verdict), &zero, zeroed.data(), BPF_ANY);
    if (best == 0) return fail("the firewall program did not record a verdict");
  }
  return r;
}

Result<UniqueFd> FirewallProgram::attach(Hook h, int ifindex, XdpMode mode) {
  int fd = progFd(h);
  auto create = [&](int type, uint32_t flags) {
    bpf_link_create_opts o{};
    o.sz = sizeof(o);
    o.flags = flags;
    return bpf_link_create(fd, ifindex, static_cast<bpf_attach_type>(type), &o);
  };
  int link = -1;
  switch (h) {
    case Hook::XdpIngress:
      if (mode != XdpMode::Generic) link = create(BPF_XDP, XDP_FLAGS_DRV_MODE);
      if (link < 0 && mode != XdpMode::Native) link = create(BPF_XDP, XDP_FLAGS_SKB_MODE);
      break;
    case Hook::TcIngress:
      link = create(kBpfTcxIngress, 0);
      break;
    case Hook::TcEgress:
      link = create(kBpfTcxEgress, 0);
      break;
  }
  if (link < 0)
    return failErrno(fmt::format("attaching {} to ifindex {}", hookName(h), ifindex), link);
  return UniqueFd(link);
}

Result<int> ifindexOf(const std::string& name) {
  unsigned idx = if_nametoindex(name.c_str());
  if (idx == 0) return failErrno(fmt::format("interface \"{}\"", name));
  return static_cast<int>(idx);
}

}  // namespace edgeward::bpf
