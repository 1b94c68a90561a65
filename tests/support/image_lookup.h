// A C++ copy of the lookup of firewall.bpf.c over a compiled image: bucket -> binary search over
// the address intervals -> group -> binary search over the group's port intervals, the "any"
// group of the direction combined with the address group. Header-only; no kernel.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "firewall.h"
#include "policy/compiler.h"
#include "policy/policy.h"

namespace edgeward::policy::image {

// The group of an IPv4 address (host order) in direction dir; EW_GROUP_NONE when out of range.
inline uint32_t groupOfV4(const CompiledPolicy& c, uint32_t v, uint8_t dir) {
  const ew_bucket& b = c.bkt4.at(v >> (32 - EW_BUCKET_BITS));
  uint32_t lo = b.off, n = b.cnt;
  while (n > 1) {
    uint32_t half = n / 2, mid = lo + half;
    if (c.iv4.at(mid).start <= v) {
      lo = mid;
      n -= half;
    } else {
      n = half;
    }
  }
  const uint32_t g = c.iv4.at(lo).grp[dir];
  return g >= c.hdr.n_groups ? EW_GROUP_NONE : g;
}

// The group of an IPv6 address given as its high and low 64 bits.
inline uint32_t groupOfV6(const CompiledPolicy& c, uint64_t hi, uint64_t lo64, uint8_t dir) {
  const ew_bucket& b = c.bkt6.at(hi >> (64 - EW_BUCKET_BITS));
  uint32_t lo = b.off, n = b.cnt;
  while (n > 1) {
    uint32_t half = n / 2, mid = lo + half;
    const ew_iv6& iv = c.iv6.at(mid);
    if (iv.hi < hi || (iv.hi == hi && iv.lo <= lo64)) {
      lo = mid;
      n -= half;
    } else {
      n = half;
    }
  }
  const uint32_t g = c.iv6.at(lo).grp[dir];
  return g >= c.hdr.n_groups ? EW_GROUP_NONE : g;
}

// The group of an address in network byte order (the first 4 bytes for IPv4).
inline uint32_t groupOf(const CompiledPolicy& c, Family f, const std::array<uint8_t, 16>& a,
                        uint8_t dir) {
  if (f == Family::V4) {
    const uint32_t v = uint32_t(a[0]) << 24 | uint32_t(a[1]) << 16 | uint32_t(a[2]) << 8 | a[3];
    return groupOfV4(c, v, dir);
  }
  uint64_t hi = 0, lo64 = 0;
  for (int i = 0; i < 8; i++) hi = hi << 8 | a[i];
  for (int i = 8; i < 16; i++) lo64 = lo64 << 8 | a[i];
  return groupOfV6(c, hi, lo64, dir);
}

// A group's decision for one protocol slot and port. A fragment (frag) over a group whose
// table has more than one interval is indeterminate: off and cnt name that table.
struct Decision {
  uint8_t action = EW_ACT_NONE;
  uint32_t rule = EW_RULE_NONE;
  bool indeterminate = false;
  uint32_t off = 0, cnt = 0;
};

// ew_group_decide() of firewall.bpf.c.
inline Decision groupDecide(const CompiledPolicy& c, uint32_t group, uint8_t slot, uint16_t port,
                            bool frag = false) {
  Decision d;
  const ew_grp& g = c.grp.at(size_t{group} * EW_P_COUNT + slot);
  if (g.cnt == 0) return d;
  uint32_t lo = g.off, n = g.cnt;
  if (frag && n > 1) {
    d.indeterminate = true;
    d.off = lo;
    d.cnt = n;
    return d;
  }
  while (n > 1) {
    uint32_t half = n / 2, mid = lo + half;
    if (c.piv.at(mid).start <= port) {
      lo = mid;
      n -= half;
    } else {
      n = half;
    }
  }
  d.action = c.piv.at(lo).action;
  d.rule = c.piv.at(lo).rule;
  return d;
}

// ew_table_beaten() of firewall.bpf.c: every entry of piv[off, off + cnt) loses to d.
inline bool tableBeaten(const CompiledPolicy& c, uint32_t off, uint32_t cnt, const Decision& d) {
  for (uint32_t i = 0; i < cnt; i++) {
    const ew_piv& pv = c.piv.at(off + i);
    if (pv.action > d.action || (pv.action == d.action && pv.rule < d.rule)) return false;
  }
  return true;
}

// The "any" group's decision combined with the address group's: deny before allow, and of the
// deciding action the lower rule index. Only action and rule are set.
inline Decision combine(const Decision& any, const Decision& spec) {
  Decision d;
  for (uint8_t act : {uint8_t{EW_ACT_DENY}, uint8_t{EW_ACT_ALLOW}}) {
    if (any.action != act && spec.action != act) continue;
    d.action = act;
    d.rule = any.action == act ? any.rule : EW_RULE_NONE;
    if (spec.action == act && spec.rule < d.rule) d.rule = spec.rule;
    return d;
  }
  return d;
}

}  // namespace edgeward::policy::image
