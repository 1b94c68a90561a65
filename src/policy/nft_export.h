// Exports a policy as an nftables ruleset with the same verdicts, for hosts without eBPF or for
// comparison. docs/policy.md ("Export to nftables") lists what is and is not equivalent.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"
#include "policy/policy.h"

namespace edgeward::policy {

struct NftOptions {
  // Empty: `table inet <table>` with chains on the input and output hooks (the host's own
  // traffic, with connection tracking). Set: `table netdev <table>` with chains on the ingress
  // and egress hooks of this device (every frame of the device, no connection tracking).
  std::string device;
  std::string table = "edgeward";
};

// Checks the table name ([A-Za-z_][A-Za-z0-9_]*, at most 64 characters) and device name (1-15
// characters of [A-Za-z0-9_.@+=-]). exportNft() does not check them: call this first.
Result<void> checkNftOptions(const NftOptions& options);

// The ruleset as an `nft -f` file. Loading it replaces the table atomically (it declares the
// table, deletes it and declares it again, in one transaction) and touches no other table.
//  - Per identity, sets `<id>_v4` (ipv4_addr) and `<id>_v6` (ipv6_addr) with flags interval,
//    prefixes merged into disjoint intervals; a set that would be empty is left out.
//  - Chains `input` and `output`, policy = defaultAction: established/related connections
//    (inet only), ARP (netdev only), fragments to `<chain>_fragment`, neighbour discovery and
//    MLD with their hop limits, then every deny rule, then every allow rule, each with a
//    counter and the rule name as comment.
// `policy` must be valid as parsePolicy() returns it: peers name defined identities, and
// protocol icmp, icmpv6 and any carry no port range (such a range is ignored).
std::string exportNft(const Policy& policy, const NftOptions& options = {});

// The name of an identity's set: letters and digits kept, '_' -> "__", '.' -> "_d",
// '-' -> "_h", "_" in front of a leading digit, then "_v4" or "_v6". Distinct identities get
// distinct names. Names that would exceed nftables' limit are cut and end in a hash.
std::string nftSetName(std::string_view identity, Family family);

}  // namespace edgeward::policy
