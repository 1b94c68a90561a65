// The firewall BPF program: load, map access, attach, pin, replace, BPF_PROG_TEST_RUN.
// The only code that talks libbpf for the firewall; knows map layouts, not policy types.
//
// Pinned state (FirewallOptions::pinDir, e.g. /sys/fs/bpf/edgeward):
//   <pinDir>/maps/<ew_*>              every map of the program except per-load scratch
//                                     (ew_verdict) and libbpf's internal .rodata/.bss maps
//   <pinDir>/links/<linkPinName()>    one BPF link per interface and hook
//   <pinDir>/progs/<ew_*>             the programs the links run (informational: a link holds
//                                     its program; these say which build is current)
// Pinned maps and links keep filtering after the process exits. A later load with the same
// pinDir reuses the maps (policy generations, counters, conntrack survive) and does not
// re-initialise them; links are reopened with adoptLink() and moved to the new program with
// updateLink() (bpf_link_update: no packet sees "no program").
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "firewall.h"

struct bpf_object;
struct bpf_map;
struct bpf_program;

namespace edgeward::bpf {

// Capacities are per generation; the arrays hold EW_GENERATIONS times as many entries.
struct FirewallOptions {
  uint32_t capIntervals4 = 1u << 16;
  uint32_t capIntervals6 = 1u << 16;
  uint32_t capGroups = 1u << 14;
  uint32_t capPortEntries = 1u << 16;
  uint32_t capRules = 1u << 14;
  uint32_t conntrackEntries = 1u << 18;
  uint32_t eventRingBytes = 1u << 22;  // ew_events ring buffer: a power of two, >= one page
  bool recordVerdict = false;  // load-time switch: per-packet verdict record (`edgeward verdict`)
  // Empty: nothing is pinned, maps live as long as this process. Otherwise a directory on a
  // bpffs (created if missing) holding maps/, links/ and progs/ as described above.
  std::string pinDir;
  // Empty: the object built into this binary. Otherwise a firewall .bpf.o file (another build);
  // it must define the same maps and programs (by name) with the same value layouts.
  std::string objectPath;
};

inline constexpr char kDefaultPinDir[] = "/sys/fs/bpf/edgeward";
inline constexpr uint32_t kDefaultDropEventsPerPeer = 100;
// A pin is replaced by pinning "<path>~new" and renaming it over <path>; a leftover of a crash
// in between carries this suffix.
inline constexpr char kPinTempSuffix[] = "~new";

enum class FirewallMap {
  Config,
  Policy,
  Bkt4,
  Bkt6,
  Iv4,
  Iv6,
  Grp,
  Piv,
  RuleStats,
  ReasonStats,
  Ct4,
  Ct6,
  Syn,
  Events,   // ring buffer of ew_fw_event
  EvStats,  // per-CPU __u64 [EW_EVS_COUNT]
  EvLimit,  // per-peer drop event limiter
};
inline constexpr size_t kFirewallMapCount = 16;

enum class Hook { XdpIngress, TcIngress, TcEgress };
inline constexpr std::array<Hook, 3> kAllHooks = {Hook::XdpIngress, Hook::TcIngress,
                                                  Hook::TcEgress};

enum class XdpMode { Auto, Native, Generic };

struct TestRunResult {
  int retval = 0;
  bool pass = false;
  ew_verdict_rec verdict{};  // valid when loaded with recordVerdict
  uint32_t nsPerRun = 0;     // kernel-measured duration per repetition
};

// A loaded program as the kernel reports it.
struct ProgramInfo {
  uint32_t id = 0;
  std::string name;        // "ew_xdp_ingress" ...
  std::string tag;         // 16 hex digits: hash of the instructions (not of .rodata)
  int64_t loadedAtMs = 0;  // when the kernel loaded it: wall clock, ms since the epoch
};

// A BPF link as the kernel reports it.
struct LinkInfo {
  uint32_t id = 0;
  uint32_t progId = 0;       // the program the link runs now
  uint32_t type = 0;         // BPF_LINK_TYPE_* (6 xdp, 11 tcx)
  int ifindex = 0;           // 0: the interface is gone and the link is defunct
  std::optional<Hook> hook;  // nullopt: not a kind of link edgeward creates
};

// One object resetPins() removed.
struct RemovedPin {
  std::string path;
  std::string what;  // "link xdp-ingress ifindex 3 (detached)", "map", "program", "directory"
};

class FirewallProgram {
 public:
  // Opens the object (built-in or opts.objectPath), sizes the maps, and loads it. With
  // opts.pinDir, maps already pinned there are reused; their capacities must equal the
  // options' (else an error names the map and both sizes: see pinnedOptions()). Freshly
  // created maps get an empty deny-all policy in both generations and the default config;
  // reused ones are left exactly as they are (adoptedMaps()).
  static Result<std::unique_ptr<FirewallProgram>> load(const FirewallOptions& opts);

  // Loads `opts` (another build or other load-time switches) sharing every map of `current`,
  // pinned or not; nothing is pinned or initialised. Capacities must equal current's.
  static Result<std::unique_ptr<FirewallProgram>> loadSharing(const FirewallOptions& opts,
                                                              const FirewallProgram& current);

  ~FirewallProgram();
  FirewallProgram(const FirewallProgram&) = delete;
  FirewallProgram& operator=(const FirewallProgram&) = delete;

  // Exchanges the loaded objects, so references to a program object (Dataplane holds one) stay
  // valid when a manager replaces the program underneath.
  void swap(FirewallProgram& other) noexcept;

  const FirewallOptions& options() const { return opts_; }
  // True when the maps existed before this load (pinned, or shared by loadSharing).
  bool adoptedMaps() const { return adopted_; }
  int mapFd(FirewallMap m) const;
  int progFd(Hook h) const;

  // Writes values[i] at index first + i of an array map (batched).
  Result<void> writeArray(FirewallMap m, uint32_t first, const void* values, uint32_t count,
                          size_t valueSize);
  template <typename T>
  Result<void> writeArray(FirewallMap m, uint32_t first, std::span<const T> values) {
    return writeArray(m, first, values.data(), static_cast<uint32_t>(values.size()), sizeof(T));
  }
  // Writes values[i] at index keys[i] of an array map (batched).
  Result<void> writeArrayAt(FirewallMap m, const uint32_t* keys, const void* values, uint32_t count,
                            size_t valueSize);
  // Reads indexes [first, first + count) of a (not per-CPU) array map into out.
  Result<void> readArray(FirewallMap m, uint32_t first, void* out, uint32_t count,
                         size_t valueSize) const;
  // The config of freshly created maps: conntrack, SYN limiter, drop and connection events on,
  // every drop sampled, at most kDefaultDropEventsPerPeer drop events per second per peer.
  static ew_config defaultConfig();
  Result<ew_config> readConfig() const;
  Result<void> writeConfig(const ew_config& c);

  // Per-CPU counters summed over CPUs: indexes [0, count) of a per-CPU ew_counter array.
  Result<std::vector<ew_counter>> readCounters(FirewallMap m, uint32_t count) const;
  // One per-CPU counter, summed.
  Result<ew_counter> readCounter(FirewallMap m, uint32_t index) const;
  Result<void> clearCounters(FirewallMap m, uint32_t count);
  // ew_ev_stats summed over CPUs: what became of the events the program wanted to send.
  Result<std::array<uint64_t, EW_EVS_COUNT>> readEventStats() const;
  // Removes every connection tracking and SYN limiter entry.
  Result<void> clearState();
  // Number of live conntrack entries (IPv4 + IPv6).
  Result<size_t> conntrackEntries() const;

  // Copies the policy state packets read (config, both generations of the policy maps) from
  // another program's maps of equal capacities: a scratch copy that decides like `src`.
  Result<void> copyPolicyFrom(const FirewallProgram& src);

  // Runs one packet (an Ethernet frame) through the program with BPF_PROG_TEST_RUN.
  Result<TestRunResult> testRun(Hook h, std::span<const uint8_t> frame, uint32_t repeat = 1);

  // Attaches through a BPF link; returns the link fd (closing it detaches unless pinned).
  Result<UniqueFd> attach(Hook h, int ifindex, XdpMode mode = XdpMode::Auto);

  // Pins a link at <pinDir>/links/<name>, or at `name` itself when it is an absolute path
  // (replacing a pin there in one step), and returns the path. A pinned link stays attached
  // after its fds are closed, until resetPins() (or unlink + last fd closed).
  Result<std::string> pinLink(int linkFd, std::string_view name) const;
  // "<ifname>-<hook>", or "<netns>:<ifname>-<hook>" for an interface in a named namespace,
  // with '.' (which bpffs refuses in names) and '%' escaped as %2e and %25.
  static std::string linkPinName(std::string_view netns, std::string_view ifname, Hook h);
  // Opens a pinned link (bpf_obj_get).
  static Result<UniqueFd> adoptLink(const std::string& path);
  // Moves a link to this program's `h` (bpf_link_update). With expectedOldProgFd >= 0 the
  // kernel refuses (EPERM) unless the link still runs that program.
  Result<void> updateLink(int linkFd, Hook h, int expectedOldProgFd = -1) const;
  static Result<void> updateLinkTo(int linkFd, int newProgFd, int expectedOldProgFd = -1);
  static Result<LinkInfo> linkInfo(int linkFd);
  // Detaches a link from its hook now, whoever else holds it (bpf_link_detach). A link whose
  // interface is already gone counts as detached.
  static Result<void> detachLink(int linkFd);

  // (Re)pins this object's programs under <pinDir>/progs, each replaced atomically (rename).
  Result<void> pinPrograms() const;

  Result<ProgramInfo> programInfo(Hook h) const;
  static Result<ProgramInfo> programInfoOf(int progFd);
  // An fd for a loaded program by id (to keep it alive or name it in a link update).
  static Result<UniqueFd> programById(uint32_t id);
  // True when program `progId` runs exactly this object's `h`: same kernel tag (instructions)
  // and same load-time switches (.rodata contents).
  Result<bool> sameCode(Hook h, uint32_t progId) const;

  // Capacities of the maps pinned under pinDir (base's other fields kept, pinDir set), or
  // nullopt when nothing is pinned there. For a restart that must reuse what is pinned.
  static Result<std::optional<FirewallOptions>> pinnedOptions(const std::string& pinDir,
                                                              FirewallOptions base = {});

  // Detaches every link pinned under pinDir (bpf_link_detach: even if some process still holds
  // it), removes every pin and the directories. Nothing there is not an error. Refuses a
  // directory that is not on a bpffs. Errors name the path.
  static Result<std::vector<RemovedPin>> resetPins(const std::string& pinDir);

  // Loaded programs by name: "ew_xdp_ingress" ...
  static std::string_view hookName(Hook h);
  static std::string_view programName(Hook h);
  static std::string_view mapName(FirewallMap m);

 private:
  FirewallProgram() = default;
  static Result<std::unique_ptr<FirewallProgram>> open(const FirewallOptions& opts);
  Result<void> initialiseMaps();
  bpf_map* map(FirewallMap m) const { return maps_[static_cast<size_t>(m)]; }

  bpf_object* obj_ = nullptr;
  std::array<bpf_map*, kFirewallMapCount> maps_{};
  std::array<bpf_program*, 3> progs_{};
  bpf_map* verdict_ = nullptr;  // absent in objects built without it
  bpf_map* rodata_ = nullptr;
  FirewallOptions opts_;
  int ncpus_ = 1;
  bool adopted_ = false;
};

// Ifindex of an interface in the current network namespace, or an error naming it.
Result<int> ifindexOf(const std::string& name);

}  // namespace edgeward::bpf
