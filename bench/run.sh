#!/usr/bin/env bash
# Builds the benchmark targets in BUILD_DIR, runs the five benchmarks and prints their tables.
# Results: bench/results/{lookup,drop,apply,events,wasm}.md. Needs root (sudo is used if
# available). Extra arguments per benchmark: EW_BENCH_LOOKUP_ARGS, EW_BENCH_DROP_ARGS,
# EW_BENCH_APPLY_ARGS, EW_BENCH_EVENTS_ARGS, EW_BENCH_WASM_ARGS, e.g.
#   EW_BENCH_LOOKUP_ARGS="--cells 100000x10000 --rounds 3" bash bench/run.sh build
# The drop benchmark creates the namespaces ewb-gen and ewb-fw; the apply benchmark creates
# ewb-apply-<this script's pid> (nft rulesets are loaded only there) and /tmp files named after
# it. They (with their veth pair, XDP links and nft tables) are removed when each benchmark ends,
# and again here on any exit, even on failure. The events benchmark creates no interface, pin or
# namespace (BPF_PROG_TEST_RUN only); its programs and maps go with its process.
set -uo pipefail

BUILD=${1:-build}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "bench/run.sh: needs root" >&2; exit 1
  fi
fi

APPLY_NS="ewb-apply-$$"
NAMESPACES=(ewb-gen ewb-fw "$APPLY_NS")
for ns in "${NAMESPACES[@]}"; do
  if [ -e "/var/run/netns/$ns" ]; then
    echo "bench/run.sh: namespace $ns exists (another run, or a stale one: ip netns del $ns)" >&2
    exit 1
  fi
done

cleanup() {
  for ns in "${NAMESPACES[@]}"; do
    [ -e "/var/run/netns/$ns" ] && $SUDO ip netns del "$ns" 2>/dev/null
  done
  $SUDO rm -f /tmp/ewb-exact-*.nft /tmp/ewb-saddr-*.nft /tmp/ewb-floor-*.nft 2>/dev/null
  $SUDO rm -f "/tmp/$APPLY_NS"-*.nft 2>/dev/null
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

if [ ! -f "$BUILD/build.ninja" ] && [ ! -f "$BUILD/Makefile" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo || exit 1
fi
cmake --build "$BUILD" --target ew_bench_lookup ew_bench_drop ew_bench_apply ew_bench_events \
  ew_bench_wasm || exit 1

mkdir -p bench/results
status=0
echo "== ew_bench_lookup"
# shellcheck disable=SC2086
$SUDO "$BUILD/bench/ew_bench_lookup" --out bench/results/lookup.md ${EW_BENCH_LOOKUP_ARGS:-} || status=1
echo
echo "== ew_bench_drop"
# shellcheck disable=SC2086
$SUDO "$BUILD/bench/ew_bench_drop" --out bench/results/drop.md ${EW_BENCH_DROP_ARGS:-} || status=1
echo
echo "== ew_bench_apply"
# shellcheck disable=SC2086
$SUDO "$BUILD/bench/ew_bench_apply" --netns "$APPLY_NS" --out bench/results/apply.md \
  ${EW_BENCH_APPLY_ARGS:-} || status=1
echo
echo "== ew_bench_events"
# shellcheck disable=SC2086
$SUDO "$BUILD/bench/ew_bench_events" --out bench/results/events.md ${EW_BENCH_EVENTS_ARGS:-} ||
  status=1
echo "== ew_bench_wasm"
# shellcheck disable=SC2086
"$BUILD/bench/ew_bench_wasm" --out bench/results/wasm.md ${EW_BENCH_WASM_ARGS:-} || status=1
exit $status
