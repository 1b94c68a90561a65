#include "bpf/firewall_program.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <net/if.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <atomic>
#include <cstdarg>
#include <cstring>
#include <filesystem>
#include <mutex>

#include <fmt/ranges.h>

#include "bpf/libbpf_log.h"
#include "firewall.skel.h"

namespace edgeward::bpf {
namespace {

namespace fs = std::filesystem;

// Not in Debian's 6.1 uapi headers; stable kernel ABI values (see PLATFORM.md).
constexpr int kBpfTcxIngress = 46;
constexpr int kBpfTcxEgress = 47;
constexpr uint32_t kLinkTypeXdp = 6;
constexpr uint32_t kLinkTypeTcx = 11;

constexpr std::array<FirewallMap, kFirewallMapCount> kAllMaps = {
    FirewallMap::Config,    FirewallMap::Policy,      FirewallMap::Bkt4,    FirewallMap::Bkt6,
    FirewallMap::Iv4,       FirewallMap::Iv6,         FirewallMap::Grp,     FirewallMap::Piv,
    FirewallMap::RuleStats, FirewallMap::ReasonStats, FirewallMap::Ct4,     FirewallMap::Ct6,
    FirewallMap::Syn,       FirewallMap::Events,      FirewallMap::EvStats, FirewallMap::EvLimit};

// Key and value sizes user space relies on, checked for objects from files.
struct Layout {
  uint32_t key, value;
};
Layout layoutOf(FirewallMap m) {
  switch (m) {
    case FirewallMap::Config:
      return {4, sizeof(ew_config)};
    case FirewallMap::Policy:
      return {4, sizeof(ew_policy_hdr)};
    case FirewallMap::Bkt4:
    case FirewallMap::Bkt6:
      return {4, sizeof(ew_bucket)};
    case FirewallMap::Iv4:
      return {4, sizeof(ew_iv4)};
    case FirewallMap::Iv6:
      return {4, sizeof(ew_iv6)};
    case FirewallMap::Grp:
      return {4, sizeof(ew_grp)};
    case FirewallMap::Piv:
      return {4, sizeof(ew_piv)};
    case FirewallMap::RuleStats:
    case FirewallMap::ReasonStats:
      return {4, sizeof(ew_counter)};
    case FirewallMap::Ct4:
      return {sizeof(ew_ct4_key), sizeof(ew_ct_val)};
    case FirewallMap::Ct6:
      return {sizeof(ew_ct6_key), sizeof(ew_ct_val)};
    case FirewallMap::Syn:
      return {sizeof(ew_syn_key), sizeof(ew_syn_val)};
    case FirewallMap::Events:
      return {0, 0};
    case FirewallMap::EvStats:
      return {4, sizeof(uint64_t)};
    case FirewallMap::EvLimit:
      return {sizeof(ew_syn_key), sizeof(ew_ev_limit_val)};
  }
  return {0, 0};
}

// Maps whose contents must survive a restart or a program swap. ew_verdict is per-load scratch
// for `edgeward verdict`; .rodata holds load-time switches, which differ between loads.
bool shareable(const bpf_map* m) {
  return !bpf_map__is_internal(m) && std::string_view(bpf_map__name(m)) != "ew_verdict";
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

bool onBpffs(const std::string& path) {
  struct statfs s {};
  return ::statfs(path.c_str(), &s) == 0 && static_cast<uint64_t>(s.f_type) == BPF_FS_MAGIC;
}

// Creates dir (and parents) and checks it lies on a bpffs.
Result<void> makePinDir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return fail(fmt::format("creating pin directory {}: {}", dir, ec.message()));
  if (!onBpffs(dir))
    return failf("pin directory {} is not on a bpffs (mount -t bpf bpf /sys/fs/bpf)", dir);
  return {};
}

// The kind of BPF object an fd refers to: "bpf-link", "bpf-map", "bpf-prog".
std::string fdKind(int fd) {
  char buf[64];
  auto link = fmt::format("/proc/self/fd/{}", fd);
  ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  if (n <= 0) return {};
  std::string s(buf, static_cast<size_t>(n));
  if (s.starts_with("anon_inode:")) s.erase(0, 11);
  std::replace(s.begin(), s.end(), '_', '-');  // "bpf_link" when created, "bpf-link" when opened
  return s;
}

Result<bpf_map_info> mapInfo(int fd, const std::string& what) {
  bpf_map_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd, &info, &len)) return failErrno(fmt::format("inspecting {}", what));
  return info;
}

// Refuses to let `m` reuse a map of another shape. libbpf would also refuse, but only with a
// generic "parameter mismatch"; this names the map and both sizes.
Result<void> checkReusable(const bpf_map* m, const bpf_map_info& have, const std::string& where,
                           std::string_view hint) {
  const char* name = bpf_map__name(m);
  if (have.type != static_cast<uint32_t>(bpf_map__type(m)) ||
      have.key_size != bpf_map__key_size(m) || have.value_size != bpf_map__value_size(m))
    return failf(
        "map {} {} has another layout (type {}, key {} B, value {} B) than this program's "
        "(type {}, key {} B, value {} B){}",
        name, where, have.type, have.key_size, have.value_size,
        static_cast<uint32_t>(bpf_map__type(m)), bpf_map__key_size(m), bpf_map__value_size(m),
        hint);
  if (have.max_entries != bpf_map__max_entries(m))
    return failf("map {} {} holds {} entries but these options size it to {}{}", name, where,
                 have.max_entries, bpf_map__max_entries(m), hint);
  return {};
}

// Reads entries [first, first + count) of an array map (batched) into out.
Result<void> readRange(int fd, uint32_t first, uint32_t count, uint32_t valueSize, void* out,
                       std::string_view name) {
  if (count == 0) return {};
  auto* values = static_cast<uint8_t*>(out);
  if (count <= 16) {
    for (uint32_t i = 0; i < count; i++) {
      uint32_t key = first + i;
      if (bpf_map_lookup_elem(fd, &key, values + size_t{i} * valueSize))
        return failErrno(fmt::format("reading map {} entry {}", name, key));
    }
    return {};
  }
  std::vector<uint32_t> keys(count);
  bpf_map_batch_opts o{};
  o.sz = sizeof(o);
  // The batch token of an array map is the key before the next one to read.
  uint32_t in = first - 1, next = 0, done = 0;
  bool fromStart = first == 0;
  while (done < count) {
    uint32_t n = std::min(count - done, 1u << 16);
    int err = bpf_map_lookup_batch(fd, fromStart ? nullptr : &in, &next, keys.data() + done,
                                   values + size_t{done} * valueSize, &n, &o);
    if (err && errno != ENOENT) return failErrno(fmt::format("reading map {}", name));
    done += n;
    if (err) break;  // ENOENT: the end of the map
    in = next;
    fromStart = false;
  }
  if (done < count) return failf("map {}: read {} of {} entries", name, done, count);
  return {};
}

std::string hexTag(const uint8_t (&tag)[8]) {
  std::string s;
  for (uint8_t b : tag) s += fmt::format("{:02x}", b);
  return s;
}

// Contents of the .rodata map of program `progFd` (empty when it has none).
Result<std::vector<uint8_t>> rodataOfProgram(int progFd) {
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(progFd, &info, &len)) return failErrno("inspecting a program");
  std::vector<uint32_t> ids(info.nr_map_ids);
  if (!ids.empty()) {
    bpf_prog_info again{};
    again.nr_map_ids = static_cast<uint32_t>(ids.size());
    again.map_ids = reinterpret_cast<uint64_t>(ids.data());
    len = sizeof again;
    if (bpf_obj_get_info_by_fd(progFd, &again, &len)) return failErrno("listing a program's maps");
    ids.resize(std::min<size_t>(ids.size(), again.nr_map_ids));
  }
  for (uint32_t id : ids) {
    UniqueFd fd(bpf_map_get_fd_by_id(id));
    if (!fd.valid()) continue;  // freed meanwhile
    EW_TRY(mi, mapInfo(fd.get(), fmt::format("map {}", id)));
    if (!std::string_view(mi->name).ends_with(".rodata")) continue;
    std::vector<uint8_t> value(mi->value_size);
    uint32_t zero = 0;
    if (bpf_map_lookup_elem(fd.get(), &zero, value.data()))
      return failErrno(fmt::format("reading map {}", mi->name));
    return value;
  }
  return std::vector<uint8_t>{};
}

// Writes a variable of the .rodata section (a load-time switch) before load.
Result<void> setRodata(bpf_object* obj, bpf_map* rodata, std::string_view var, const void* value,
                       size_t size) {
  const btf* b = bpf_object__btf(obj);
  if (!b || !rodata) return failf("the BPF object has no .rodata variable {}", var);
  int id = btf__find_by_name_kind(b, ".rodata", BTF_KIND_DATASEC);
  if (id < 0) return failf("the BPF object has no .rodata variable {}", var);
  const btf_type* sec = btf__type_by_id(b, static_cast<uint32_t>(id));
  const btf_var_secinfo* vs = btf_var_secinfos(sec);
  for (uint16_t i = 0; i < btf_vlen(sec); i++, vs++) {
    const btf_type* v = btf__type_by_id(b, vs->type);
    if (var != btf__name_by_offset(b, v->name_off)) continue;
    if (vs->size != size)
      return failf(".rodata variable {} is {} bytes, not {}", var, vs->size, size);
    size_t total = 0;
    const void* cur = bpf_map__initial_value(rodata, &total);
    if (!cur || vs->offset + size > total) return failf("cannot set .rodata variable {}", var);
    std::vector<uint8_t> data(static_cast<const uint8_t*>(cur),
                              static_cast<const uint8_t*>(cur) + total);
    std::memcpy(data.data() + vs->offset, value, size);
    if (int err = bpf_map__set_initial_value(rodata, data.data(), total))
      return failErrno(fmt::format("setting .rodata variable {}", var), err);
    return {};
  }
  return failf("the BPF object has no .rodata variable {}", var);
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

std::string_view FirewallProgram::programName(Hook h) {
  switch (h) {
    case Hook::XdpIngress:
      return "ew_xdp_ingress";
    case Hook::TcIngress:
      return "ew_tc_ingress";
    case Hook::TcEgress:
      return "ew_tc_egress";
  }
  return "?";
}

std::string_view FirewallProgram::mapName(FirewallMap m) {
  switch (m) {
    case FirewallMap::Config:
      return "ew_config";
    case FirewallMap::Policy:
      return "ew_policy";
    case FirewallMap::Bkt4:
      return "ew_bkt4";
    case FirewallMap::Bkt6:
      return "ew_bkt6";
    case FirewallMap::Iv4:
      return "ew_iv4";
    case FirewallMap::Iv6:
      return "ew_iv6";
    case FirewallMap::Grp:
      return "ew_grp";
    case FirewallMap::Piv:
      return "ew_piv";
    case FirewallMap::RuleStats:
      return "ew_rule_stats";
    case FirewallMap::ReasonStats:
      return "ew_reason_stats";
    case FirewallMap::Ct4:
      return "ew_ct4";
    case FirewallMap::Ct6:
      return "ew_ct6";
    case FirewallMap::Syn:
      return "ew_syn";
    case FirewallMap::Events:
      return "ew_events";
    case FirewallMap::EvStats:
      return "ew_ev_stats";
    case FirewallMap::EvLimit:
      return "ew_ev_limit";
  }
  return "?";
}

// Opens the object, finds its maps and programs, sizes the maps and sets the load-time
// switches. Nothing is loaded yet.
Result<std::unique_ptr<FirewallProgram>> FirewallProgram::open(const FirewallOptions& opts) {
  std::unique_ptr<FirewallProgram> fw(new FirewallProgram());
  fw->opts_ = opts;
  fw->ncpus_ = libbpf_num_possible_cpus();
  if (fw->ncpus_ <= 0) return failErrno("counting possible CPUs", fw->ncpus_);

  const std::string source =
      opts.objectPath.empty() ? "the built-in firewall object" : "BPF object " + opts.objectPath;
  {
    LibbpfLog log;
    bpf_object_open_opts o{};
    o.sz = sizeof(o);
    o.object_name = "firewall";
    if (opts.objectPath.empty()) {
      size_t size = 0;
      const void* bytes = firewall__elf_bytes(&size);
      fw->obj_ = bpf_object__open_mem(bytes, size, &o);
    } else {
      fw->obj_ = bpf_object__open_file(opts.objectPath.c_str(), &o);
    }
    if (!fw->obj_) {
      int err = errno;
      return loadError("opening " + source, log, err);
    }
  }
  for (FirewallMap m : kAllMaps) {
    bpf_map* map = bpf_object__find_map_by_name(fw->obj_, std::string(mapName(m)).c_str());
    if (!map) return failf("{} has no map {}", source, mapName(m));
    auto want = layoutOf(m);
    if (bpf_map__key_size(map) != want.key || bpf_map__value_size(map) != want.value)
      return failf("{}: map {} has key/value sizes {}/{}, this edgeward expects {}/{}", source,
                   mapName(m), bpf_map__key_size(map), bpf_map__value_size(map), want.key,
                   want.value);
    fw->maps_[static_cast<size_t>(m)] = map;
  }
  for (Hook h : kAllHooks) {
    bpf_program* p =
        bpf_object__find_program_by_name(fw->obj_, std::string(programName(h)).c_str());
    if (!p) return failf("{} has no program {}", source, programName(h));
    fw->progs_[static_cast<size_t>(h)] = p;
  }
  fw->verdict_ = bpf_object__find_map_by_name(fw->obj_, "ew_verdict");
  bpf_map* m = nullptr;
  bpf_object__for_each_map(m, fw->obj_) {
    if (bpf_map__is_internal(m) && std::string_view(bpf_map__name(m)).ends_with(".rodata"))
      fw->rodata_ = m;
  }
  if (opts.recordVerdict) {
    if (!fw->verdict_) return failf("{} has no map ew_verdict (recordVerdict)", source);
    uint32_t one = 1;
    EW_TRY(set, setRodata(fw->obj_, fw->rodata_, "record_verdict", &one, sizeof one));
  }

  struct Size {
    FirewallMap map;
    uint32_t entries;
  };
  const Size sizes[] = {
      {FirewallMap::Iv4, EW_GENERATIONS * opts.capIntervals4},
      {FirewallMap::Iv6, EW_GENERATIONS * opts.capIntervals6},
      {FirewallMap::Grp, EW_GENERATIONS * opts.capGroups * EW_P_COUNT},
      {FirewallMap::Piv, EW_GENERATIONS * opts.capPortEntries},
      {FirewallMap::RuleStats, opts.capRules},
      {FirewallMap::Ct4, opts.conntrackEntries},
      {FirewallMap::Ct6, opts.conntrackEntries / 4 ? opts.conntrackEntries / 4 : 1},
      {FirewallMap::Events, opts.eventRingBytes},
  };
  if (opts.eventRingBytes < 4096 || (opts.eventRingBytes & (opts.eventRingBytes - 1)))
    return failf("event ring buffer size {} B: must be a power of two of at least 4096",
                 opts.eventRingBytes);
  for (const auto& sz : sizes) {
    int err = bpf_map__set_max_entries(fw->map(sz.map), sz.entries ? sz.entries : 1);
    if (err) return failErrno(fmt::format("sizing map {}", mapName(sz.map)), err);
  }
  return fw;
}

Result<std::unique_ptr<FirewallProgram>> FirewallProgram::load(const FirewallOptions& opts) {
  EW_TRY(fw, open(opts));
  FirewallProgram& f = **fw;

  // Pinned maps: reuse all of them or none. A partial set (a reset interrupted half way)
  // would pair an old policy with empty tables.
  std::vector<std::string> present, missing;
  if (!opts.pinDir.empty()) {
    const std::string dir = opts.pinDir + "/maps";
    EW_TRY(made, makePinDir(dir));
    bpf_map* m = nullptr;
    bpf_object__for_each_map(m, f.obj_) {
      if (!shareable(m)) continue;
      const std::string path = dir + "/" + bpf_map__name(m);
      bool known = std::ranges::any_of(
          kAllMaps, [&](FirewallMap k) { return mapName(k) == bpf_map__name(m); });
      if (::access(path.c_str(), F_OK) == 0) {
        UniqueFd pinned(bpf_obj_get(path.c_str()));
        if (!pinned.valid()) return failErrno(fmt::format("opening pinned map {}", path));
        EW_TRY(info, mapInfo(pinned.get(), path));
        EW_TRY(ok, checkReusable(m, *info, "pinned at " + path,
                                 "; load with the pinned capacities "
                                 "(FirewallProgram::pinnedOptions) or run `edgeward reset`"));
        if (known) present.push_back(bpf_map__name(m));
      } else if (known) {
        missing.push_back(bpf_map__name(m));
      }
      if (int err = bpf_map__set_pin_path(m, path.c_str()))
        return failErrno(fmt::format("setting pin path {}", path), err);
    }
    if (!present.empty() && !missing.empty())
      return failf(
          "incomplete pinned state in {}: {} pinned but {} missing; run `edgeward reset` to "
          "start over",
          dir, fmt::join(present, ", "), fmt::join(missing, ", "));
  }
  f.adopted_ = !present.empty();

  {
    LibbpfLog log;
    if (int err = bpf_object__load(f.obj_); err)
      return loadError("loading the firewall program (run as root)", log, err);
  }

  // Maps created now start with an empty policy. Adopted maps are left alone, unless they
  // never got initialised (a process died between pinning and initialising): n_groups is
  // never 0 in a written policy header.
  bool initialise = !f.adopted_;
  if (f.adopted_) {
    EW_TRY(cfg, f.readConfig());
    ew_policy_hdr hdr{};
    uint32_t gen = cfg->gen & 1;
    if (bpf_map_lookup_elem(f.mapFd(FirewallMap::Policy), &gen, &hdr))
      return failErrno("reading the pinned policy header");
    initialise = hdr.n_groups == 0;
  }
  if (initialise) {
    if (auto r = f.initialiseMaps(); !r) {
      if (!f.adopted_ && !opts.pinDir.empty()) bpf_object__unpin_maps(f.obj_, nullptr);
      return std::unexpected(r.error());
    }
  }
  return fw;
}

Result<std::unique_ptr<FirewallProgram>> FirewallProgram::loadSharing(
    const FirewallOptions& opts, const FirewallProgram& current) {
  EW_TRY(fw, open(opts));
  FirewallProgram& f = **fw;
  bpf_map* m = nullptr;
  bpf_object__for_each_map(m, f.obj_) {
    if (!shareable(m)) continue;
    const bpf_map* cur = bpf_object__find_map_by_name(current.obj_, bpf_map__name(m));
    if (!cur) {
      // A map only the new build has: new and, with a pin directory, pinned.
      if (!opts.pinDir.empty()) {
        EW_TRY(made, makePinDir(opts.pinDir + "/maps"));
        auto path = opts.pinDir + "/maps/" + bpf_map__name(m);
        if (int err = bpf_map__set_pin_path(m, path.c_str()))
          return failErrno(fmt::format("setting pin path {}", path), err);
      }
      continue;
    }
    EW_TRY(info, mapInfo(bpf_map__fd(cur), std::string("map ") + bpf_map__name(m)));
    EW_TRY(ok, checkReusable(m, *info, "of the running program",
                             "; a program swap keeps the maps, so capacities must not change"));
    if (int err = bpf_map__reuse_fd(m, bpf_map__fd(cur)))
      return failErrno(fmt::format("sharing map {}", bpf_map__name(m)), err);
  }
  f.adopted_ = true;
  LibbpfLog log;
  if (int err = bpf_object__load(f.obj_); err)
    return loadError("loading the new firewall program", log, err);
  return fw;
}

Result<void> FirewallProgram::initialiseMaps() {
  // Empty policy in both generations: group tables are zero, so defaultAction decides.
  ew_policy_hdr hdr{};
  hdr.default_action = EW_ACT_DENY;
  hdr.n_groups = EW_GROUP_FIRST;
  for (uint32_t g = 0; g < EW_GENERATIONS; g++) {
    hdr.bkt_base = g * EW_BUCKETS;
    hdr.grp_base = g * opts_.capGroups * EW_P_COUNT;
    if (bpf_map_update_elem(mapFd(FirewallMap::Policy), &g, &hdr, BPF_ANY))
      return failErrno("initialising the policy header");
  }
  return writeConfig(defaultConfig());
}

FirewallProgram::~FirewallProgram() {
  if (obj_) bpf_object__close(obj_);
}

void FirewallProgram::swap(FirewallProgram& o) noexcept {
  std::swap(obj_, o.obj_);
  std::swap(maps_, o.maps_);
  std::swap(progs_, o.progs_);
  std::swap(verdict_, o.verdict_);
  std::swap(rodata_, o.rodata_);
  std::swap(opts_, o.opts_);
  std::swap(ncpus_, o.ncpus_);
  std::swap(adopted_, o.adopted_);
}

int FirewallProgram::mapFd(FirewallMap m) const { return bpf_map__fd(map(m)); }
int FirewallProgram::progFd(Hook h) const {
  return bpf_program__fd(progs_[static_cast<size_t>(h)]);
}

Result<void> FirewallProgram::writeArray(FirewallMap m, uint32_t first, const void* values,
                                         uint32_t count, size_t valueSize) {
  if (count == 0) return {};
  bpf_map* mp = map(m);
  if (uint64_t{first} + count > bpf_map__max_entries(mp))
    return failf("map {}: writing [{}, {}) beyond its {} entries", bpf_map__name(mp), first,
                 uint64_t{first} + count, bpf_map__max_entries(mp));
  std::vector<uint32_t> keys(count);
  for (uint32_t i = 0; i < count; i++) keys[i] = first + i;
  return writeArrayAt(m, keys.data(), values, count, valueSize);
}

Result<void> FirewallProgram::writeArrayAt(FirewallMap m, const uint32_t* keys, const void* values,
                                           uint32_t count, size_t valueSize) {
  if (count == 0) return {};
  bpf_map* mp = map(m);
  if (valueSize != bpf_map__value_size(mp))
    return failf("map {}: value size {} != {}", bpf_map__name(mp), valueSize,
                 bpf_map__value_size(mp));
  const uint32_t entries = bpf_map__max_entries(mp);
  for (uint32_t i = 0; i < count; i++)
    if (keys[i] >= entries)
      return failf("map {}: writing entry {} beyond its {} entries", bpf_map__name(mp), keys[i],
                   entries);
  bpf_map_batch_opts o{};
  o.sz = sizeof(o);
  const auto* bytes = static_cast<const uint8_t*>(values);
  // Batches of at most 64k keys keep the kernel's temporary allocations small.
  constexpr uint32_t kChunk = 1u << 16;
  for (uint32_t done = 0; done < count;) {
    uint32_t n = std::min(kChunk, count - done);
    uint32_t want = n;
    if (bpf_map_update_batch(bpf_map__fd(mp), keys + done, bytes + size_t{done} * valueSize, &n,
                             &o))
      return failErrno(fmt::format("updating map {}", bpf_map__name(mp)));
    if (n != want) return failf("map {}: batch wrote {} of {}", bpf_map__name(mp), n, want);
    done += n;
  }
  return {};
}

Result<void> FirewallProgram::readArray(FirewallMap m, uint32_t first, void* out, uint32_t count,
                                        size_t valueSize) const {
  const bpf_map* mp = map(m);
  if (m == FirewallMap::RuleStats || m == FirewallMap::ReasonStats || m == FirewallMap::EvStats)
    return failf("map {} is per-CPU: read it with readCounters", bpf_map__name(mp));
  if (valueSize != bpf_map__value_size(mp))
    return failf("map {}: value size {} != {}", bpf_map__name(mp), valueSize,
                 bpf_map__value_size(mp));
  if (uint64_t{first} + count > bpf_map__max_entries(mp))
    return failf("map {}: reading [{}, {}) beyond its {} entries", bpf_map__name(mp), first,
                 uint64_t{first} + count, bpf_map__max_entries(mp));
  return readRange(bpf_map__fd(mp), first, count, bpf_map__value_size(mp), out, bpf_map__name(mp));
}

ew_config FirewallProgram::defaultConfig() {
  ew_config c{};
  c.flags = EW_F_CONNTRACK | EW_F_SYN_LIMIT | EW_F_EV_DROP | EW_F_EV_CONN;
  c.drop_sample = 1;
  c.drop_interval_ns = 1'000'000'000ull / kDefaultDropEventsPerPeer;
  c.drop_burst = kDefaultDropEventsPerPeer;
  return c;
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

Result<std::array<uint64_t, EW_EVS_COUNT>> FirewallProgram::readEventStats() const {
  std::array<uint64_t, EW_EVS_COUNT> out{};
  std::vector<uint64_t> percpu(ncpus_);
  for (uint32_t i = 0; i < EW_EVS_COUNT; i++) {
    if (bpf_map_lookup_elem(mapFd(FirewallMap::EvStats), &i, percpu.data()))
      return failErrno(fmt::format("reading event counter {}", i));
    for (uint64_t v : percpu) out[i] += v;
  }
  return out;
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

Result<ew_counter> FirewallProgram::readCounter(FirewallMap m, uint32_t index) const {
  std::vector<ew_counter> percpu(ncpus_);
  if (bpf_map_lookup_elem(mapFd(m), &index, percpu.data()))
    return failErrno(fmt::format("reading {} counter {}", mapName(m), index));
  ew_counter sum{};
  for (const auto& c : percpu) {
    sum.packets += c.packets;
    sum.bytes += c.bytes;
  }
  return sum;
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
  if (auto r = clearHash(mapFd(FirewallMap::EvLimit), sizeof(ew_syn_key)); !r) return r;
  return clearHash(mapFd(FirewallMap::Syn), sizeof(ew_syn_key));
}

Result<size_t> FirewallProgram::conntrackEntries() const {
  return countHash(mapFd(FirewallMap::Ct4), sizeof(ew_ct4_key)) +
         countHash(mapFd(FirewallMap::Ct6), sizeof(ew_ct6_key));
}

Result<void> FirewallProgram::copyPolicyFrom(const FirewallProgram& src) {
  // Tables before the config, so the copy never points at a generation not yet written.
  constexpr FirewallMap kPolicyMaps[] = {FirewallMap::Bkt4,   FirewallMap::Bkt6,  FirewallMap::Iv4,
                                         FirewallMap::Iv6,    FirewallMap::Grp,   FirewallMap::Piv,
                                         FirewallMap::Policy, FirewallMap::Config};
  for (FirewallMap m : kPolicyMaps) {
    const bpf_map *from = src.map(m), *to = map(m);
    const uint32_t n = bpf_map__max_entries(from), vs = bpf_map__value_size(from);
    if (n != bpf_map__max_entries(to) || vs != bpf_map__value_size(to))
      return failf("copying map {}: {} entries of {} B into {} entries of {} B", mapName(m), n, vs,
                   bpf_map__max_entries(to), bpf_map__value_size(to));
    std::vector<uint8_t> values(size_t{n} * vs);
    EW_TRY(read, readRange(bpf_map__fd(from), 0, n, vs, values.data(), bpf_map__name(from)));
    EW_TRY(written, writeArray(m, 0, values.data(), n, vs));
  }
  return {};
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
    if (bpf_map_lookup_elem(bpf_map__fd(verdict_), &zero, recs.data()))
      return failErrno("reading the verdict record");
    std::vector<ew_verdict_rec> zeroed(ncpus_);
    uint64_t best = 0;
    for (const auto& rec : recs)
      if (rec.seq > best) {
        best = rec.seq;
        r.verdict = rec;
      }
    bpf_map_update_elem(bpf_map__fd(verdict_), &zero, zeroed.data(), BPF_ANY);
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

namespace {
// bpffs refuses '.' in names (reserved for its own files), and VLAN interfaces have one
// ("eth0.100"): '%' and '.' are escaped so names stay distinct.
std::string pinEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '%')
      out += "%25";
    else if (c == '.')
      out += "%2e";
    else
      out += c;
  }
  return out;
}
}  // namespace

std::string FirewallProgram::linkPinName(std::string_view netns, std::string_view ifname, Hook h) {
  // An interface name cannot hold ':', so the last ':' separates the namespace.
  if (netns.empty()) return fmt::format("{}-{}", pinEscape(ifname), hookName(h));
  return fmt::format("{}:{}-{}", pinEscape(netns), pinEscape(ifname), hookName(h));
}

namespace {
// Pins fd at path, replacing what is there in one step (pin beside it, then rename over it).
Result<void> pinReplacing(int fd, const std::string& path) {
  if (fs::path(path).filename().string().find('.') != std::string::npos)
    return failf("pinning {}: bpffs refuses '.' in names (see FirewallProgram::linkPinName)", path);
  const std::string tmp = path + kPinTempSuffix;
  ::unlink(tmp.c_str());
  if (bpf_obj_pin(fd, tmp.c_str())) return failErrno(fmt::format("pinning {}", tmp));
  if (::rename(tmp.c_str(), path.c_str())) {
    int err = errno;
    ::unlink(tmp.c_str());
    return failErrno(fmt::format("pinning {}", path), err);
  }
  return {};
}
}  // namespace

Result<std::string> FirewallProgram::pinLink(int linkFd, std::string_view name) const {
  if (opts_.pinDir.empty() && !name.starts_with('/'))
    return fail("pinning a link: the program was loaded without a pinDir");
  std::string path;
  if (name.starts_with('/')) {
    path = std::string(name);
    EW_TRY(made, makePinDir(fs::path(path).parent_path().string()));
  } else {
    if (name.empty() || name.find('/') != std::string_view::npos)
      return failf("pinning a link: bad pin name \"{}\"", name);
    const std::string dir = opts_.pinDir + "/links";
    EW_TRY(made, makePinDir(dir));
    path = dir + "/" + std::string(name);
  }
  EW_TRY(pinned, pinReplacing(linkFd, path));
  return path;
}

Result<UniqueFd> FirewallProgram::adoptLink(const std::string& path) {
  UniqueFd fd(bpf_obj_get(path.c_str()));
  if (!fd.valid()) return failErrno(fmt::format("opening pinned link {}", path));
  if (auto kind = fdKind(fd.get()); kind != "bpf-link")
    return failf("{} is a {}, not a BPF link", path, kind.empty() ? "?" : kind);
  return fd;
}

Result<void> FirewallProgram::updateLinkTo(int linkFd, int newProgFd, int expectedOldProgFd) {
  bpf_link_update_opts o{};
  o.sz = sizeof(o);
  if (expectedOldProgFd >= 0) {
    o.flags = BPF_F_REPLACE;
    o.old_prog_fd = static_cast<uint32_t>(expectedOldProgFd);
  }
  if (int err = bpf_link_update(linkFd, newProgFd, &o); err) {
    auto info = linkInfo(linkFd);
    return failErrno(fmt::format("replacing the program of link {}{}", info ? info->id : 0,
                                 err == -EPERM && expectedOldProgFd >= 0
                                     ? " (it no longer runs the program it was expected to)"
                                     : ""),
                     err);
  }
  return {};
}

Result<void> FirewallProgram::updateLink(int linkFd, Hook h, int expectedOldProgFd) const {
  return updateLinkTo(linkFd, progFd(h), expectedOldProgFd);
}

Result<LinkInfo> FirewallProgram::linkInfo(int linkFd) {
  bpf_link_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(linkFd, &info, &len)) return failErrno("inspecting a BPF link");
  LinkInfo out;
  out.id = info.id;
  out.progId = info.prog_id;
  out.type = info.type;
  // xdp: {ifindex}; tcx (newer than these headers): {ifindex, attach_type}, same place.
  uint32_t words[2];
  std::memcpy(words, &info.xdp, sizeof words);
  if (info.type == kLinkTypeXdp) {
    out.ifindex = static_cast<int>(words[0]);
    out.hook = Hook::XdpIngress;
  } else if (info.type == kLinkTypeTcx) {
    out.ifindex = static_cast<int>(words[0]);
    if (words[1] == kBpfTcxIngress) out.hook = Hook::TcIngress;
    if (words[1] == kBpfTcxEgress) out.hook = Hook::TcEgress;
  }
  return out;
}

Result<void> FirewallProgram::detachLink(int linkFd) {
  if (bpf_link_detach(linkFd) == 0) return {};
  int err = errno;
  auto info = linkInfo(linkFd);
  if (info && info->ifindex == 0) return {};
  return failErrno(fmt::format("detaching link {}", info ? info->id : 0), err);
}

Result<void> FirewallProgram::pinPrograms() const {
  if (opts_.pinDir.empty())
    return fail("pinning programs: the program was loaded without a pinDir");
  const std::string dir = opts_.pinDir + "/progs";
  EW_TRY(made, makePinDir(dir));
  for (Hook h : kAllHooks) {
    EW_TRY(pinned, pinReplacing(progFd(h), dir + "/" + std::string(programName(h))));
  }
  return {};
}

Result<ProgramInfo> FirewallProgram::programInfoOf(int progFd) {
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(progFd, &info, &len)) return failErrno("inspecting a BPF program");
  // load_time is boot-time nanoseconds; the wall clock at load is now minus the time since.
  timespec boot{}, wall{};
  clock_gettime(CLOCK_BOOTTIME, &boot);
  clock_gettime(CLOCK_REALTIME, &wall);
  const int64_t sinceLoadNs =
      int64_t{boot.tv_sec} * 1'000'000'000 + boot.tv_nsec - static_cast<int64_t>(info.load_time);
  const int64_t wallNs = int64_t{wall.tv_sec} * 1'000'000'000 + wall.tv_nsec;
  return ProgramInfo{info.id, info.name, hexTag(info.tag), (wallNs - sinceLoadNs) / 1'000'000};
}

Result<ProgramInfo> FirewallProgram::programInfo(Hook h) const { return programInfoOf(progFd(h)); }

Result<UniqueFd> FirewallProgram::programById(uint32_t id) {
  UniqueFd fd(bpf_prog_get_fd_by_id(id));
  if (!fd.valid()) return failErrno(fmt::format("opening BPF program {}", id));
  return fd;
}

Result<bool> FirewallProgram::sameCode(Hook h, uint32_t progId) const {
  EW_TRY(other, programById(progId));
  EW_TRY(theirs, programInfoOf(other->get()));
  EW_TRY(ours, programInfo(h));
  if (theirs->id == ours->id) return true;
  if (theirs->tag != ours->tag || theirs->name != ours->name) return false;
  EW_TRY(theirRo, rodataOfProgram(other->get()));
  EW_TRY(ourRo, rodataOfProgram(progFd(h)));
  return *theirRo == *ourRo;
}

Result<std::optional<FirewallOptions>> FirewallProgram::pinnedOptions(const std::string& pinDir,
                                                                      FirewallOptions base) {
  const std::string dir = pinDir + "/maps";
  auto entries = [&](FirewallMap m) -> Result<std::optional<uint32_t>> {
    const std::string path = dir + "/" + std::string(mapName(m));
    if (::access(path.c_str(), F_OK) != 0) return std::optional<uint32_t>{};
    UniqueFd fd(bpf_obj_get(path.c_str()));
    if (!fd.valid()) return failErrno(fmt::format("opening pinned map {}", path));
    EW_TRY(info, mapInfo(fd.get(), path));
    return std::optional<uint32_t>(info->max_entries);
  };
  EW_TRY(cfg, entries(FirewallMap::Config));
  if (!*cfg) return std::optional<FirewallOptions>{};
  const std::pair<FirewallMap, uint32_t*> fields[] = {
      {FirewallMap::Iv4, &base.capIntervals4},    {FirewallMap::Iv6, &base.capIntervals6},
      {FirewallMap::Grp, &base.capGroups},        {FirewallMap::Piv, &base.capPortEntries},
      {FirewallMap::RuleStats, &base.capRules},   {FirewallMap::Ct4, &base.conntrackEntries},
      {FirewallMap::Events, &base.eventRingBytes}};
  for (auto [m, field] : fields) {
    EW_TRY(n, entries(m));
    if (!*n) return failf("incomplete pinned state in {}: {} missing", dir, mapName(m));
    uint32_t v = **n;
    switch (m) {
      case FirewallMap::Iv4:
      case FirewallMap::Iv6:
      case FirewallMap::Piv:
        v /= EW_GENERATIONS;
        break;
      case FirewallMap::Grp:
        v /= EW_GENERATIONS * EW_P_COUNT;
        break;
      default:
        break;
    }
    *field = v;
  }
  base.pinDir = pinDir;
  return std::optional<FirewallOptions>(std::move(base));
}

Result<std::vector<RemovedPin>> FirewallProgram::resetPins(const std::string& pinDir) {
  std::vector<RemovedPin> removed;
  struct stat st {};
  if (::lstat(pinDir.c_str(), &st) != 0) {
    if (errno == ENOENT) return removed;
    return failErrno(fmt::format("inspecting {}", pinDir));
  }
  if (!S_ISDIR(st.st_mode)) return failf("{} is not a directory", pinDir);
  if (!onBpffs(pinDir)) return failf("{} is not on a bpffs; refusing to remove anything", pinDir);
  // The bpffs mount itself holds everything anyone pinned: never empty it.
  struct stat parent {};
  const std::string up = fs::path(pinDir).lexically_normal().parent_path().string();
  if (::stat(up.c_str(), &parent) == 0 && parent.st_dev != st.st_dev)
    return failf("{} is the root of a bpffs; refusing to remove everything pinned there", pinDir);

  // Everything below pinDir, deepest first.
  std::vector<fs::path> files, dirs;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(pinDir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_directory(ec))
      dirs.push_back(it->path());
    else
      files.push_back(it->path());
  }
  if (ec) return fail(fmt::format("listing {}: {}", pinDir, ec.message()));

  // Links first: once they are detached nothing edgeward loaded filters packets.
  std::vector<bool> isLink(files.size());
  for (size_t i = 0; i < files.size(); i++) {
    const std::string path = files[i].string();
    UniqueFd fd(bpf_obj_get(path.c_str()));
    if (!fd.valid() || fdKind(fd.get()) != "bpf-link") continue;
    isLink[i] = true;
    auto info = linkInfo(fd.get());
    std::string what = "link";
    if (info) {
      what += info->hook ? fmt::format(" {}", hookName(*info->hook))
                         : fmt::format(" type {}", info->type);
      what += info->ifindex ? fmt::format(" on ifindex {}", info->ifindex)
                            : std::string(" (interface gone)");
    }
    if (auto d = detachLink(fd.get()); !d) return std::unexpected(d.error().context(path));
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      return failErrno(fmt::format("removing {}", path));
    removed.push_back({path, what + ", detached"});
  }
  for (size_t i = 0; i < files.size(); i++) {
    if (isLink[i]) continue;
    const std::string path = files[i].string();
    std::string what = "pin";
    if (UniqueFd fd(bpf_obj_get(path.c_str())); fd.valid()) {
      auto kind = fdKind(fd.get());
      if (kind == "bpf-map") what = "map";
      if (kind == "bpf-prog") what = "program";
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      return failErrno(fmt::format("removing {}", path));
    removed.push_back({path, what});
  }
  std::sort(dirs.begin(), dirs.end(), [](const fs::path& a, const fs::path& b) {
    return a.string().size() > b.string().size();
  });
  dirs.push_back(pinDir);
  for (const auto& d : dirs) {
    if (::rmdir(d.c_str()) != 0 && errno != ENOENT)
      return failErrno(fmt::format("removing directory {}", d.string()));
    removed.push_back({d.string(), "directory"});
  }
  return removed;
}

Result<int> ifindexOf(const std::string& name) {
  unsigned idx = if_nametoindex(name.c_str());
  if (idx == 0) return failErrno(fmt::format("interface \"{}\"", name));
  return static_cast<int>(idx);
}

}  // namespace edgeward::bpf
