// Prefix patches: add prefixes to and remove prefixes from identities of a policy already in
// memory, without reading the whole policy file again (the agent's PatchPolicy).
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "policy/diff.h"
#include "policy/policy.h"

namespace edgeward::policy {

struct IdentityPatch {
  std::string identity;
  std::vector<std::string> add;  // as a policy file writes them: "10.0.0.0/24", "2001:db8::/48"
  std::vector<std::string> remove;
};

// Checks `patches` against `p` and returns the changes they make: per identity its removals,
// then its additions. The first problem is one error (ErrorCode::InvalidArgument) naming the
// identity and prefix, e.g. `patch: identity "web": remove 10.9.0.0/24: not one of its
// prefixes`; an identity must keep at least one prefix.
Result<std::vector<PrefixChange>> planPatch(const Policy& p,
                                            std::span<const IdentityPatch> patches);

// Applies changes from planPatch to `p`: removed prefixes leave their identity's list, added ones
// are appended to it. `text` is the source `p` was parsed from (or the result of an earlier
// applyPatch); returns the new source, in which only the patched identities' lists are rewritten
// (kept prefixes as written; comments inside those lists are not kept) and everything else is
// byte for byte the same. Without source positions (text read by yaml-cpp, aliases) the whole
// policy is rendered with renderPolicy. parsePolicy of the result gives `p`.
std::string applyPatch(Policy& p, std::string_view text, std::span<const PrefixChange> changes);

// `p` as a policy file that parsePolicy reads back to the same policy.
std::string renderPolicy(const Policy& p);

// The diff a patch makes (identity changes only).
PolicyDiff diffOf(std::span<const PrefixChange> changes);

}  // namespace edgeward::policy
