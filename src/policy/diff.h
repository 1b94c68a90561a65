// What changes between two policies: identities, prefixes and rules added, removed, changed.
#pragma once

#include <string>
#include <vector>

#include "policy/policy.h"

namespace edgeward::policy {

struct IdentityChange {
  std::string name;
  std::vector<Prefix> added;    // prefixes in the new policy only
  std::vector<Prefix> removed;  // prefixes in the old policy only
};

struct RuleChange {
  std::string name;
  std::string direction;  // "ingress" or "egress"
  std::string before;     // one-line rendering, e.g. "allow from [client] tcp/80,tcp/8000-8080"
  std::string after;
};

struct PolicyDiff {
  std::vector<std::string> identitiesAdded;     // with all their prefixes in identityChanges
  std::vector<std::string> identitiesRemoved;   // likewise
  std::vector<IdentityChange> identityChanges;  // every identity whose prefixes differ
  std::vector<RuleChange> rulesAdded;           // `before` empty
  std::vector<RuleChange> rulesRemoved;         // `after` empty
  std::vector<RuleChange> rulesChanged;
  std::string defaultActionBefore, defaultActionAfter;  // equal when unchanged
  std::string synFloodBefore, synFloodAfter;            // "off" or "100/s burst 20"

  bool empty() const;
  size_t prefixesAdded() const;
  size_t prefixesRemoved() const;
};

PolicyDiff diff(const Policy& before, const Policy& after);

// Human rendering: "+ identity web (2 prefixes)", "- rule ssh", "~ rule web: ...".
std::string renderDiff(const PolicyDiff& d);

// One-line rendering of a rule, as used in RuleChange.
std::string renderRule(const Rule& r, bool ingress);

}  // namespace edgeward::policy
