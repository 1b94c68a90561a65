#!/usr/bin/env bash
# Installs every Debian package that edgeward's build, tests, demo and benchmarks need.
# Idempotent: when everything is present it only checks and returns (well under a second).
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git
  # eBPF: clang for -target bpf, bpftool for skeletons and vmlinux.h
  clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev
  # libraries
  libyaml-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev libpcap-dev
  # agent API: gRPC with mutual TLS; openssl makes the test CAs and certificates
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc libssl-dev openssl
  # observability: Prometheus client, promtool to check the metrics; the HTTP listener
  # (libmicrohttpd with GnuTLS) and an HTTP client for tests (cpp-httplib) and benchmarks (wrk)
  prometheus-cpp-dev prometheus libmicrohttpd-dev libgnutls28-dev libcpp-httplib-dev wrk
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # network namespaces, nftables for the side-by-side benchmark
  iproute2 nftables
  # WebAssembly guests (plugins, functions, test guests): clang-19 --target=wasm32-wasi
  clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32 wabt
  # what libnode108 (V8, see install_v8 below) needs at run time
  libicu72 libuv1 libc-ares2 libnghttp2-14 libbrotli1 libssl3
)

# V8 for the WebAssembly runtime comes from Debian's libnode108 (V8 10.2). On a plain bookworm
# `apt-get install libnode-dev` provides it. Where another nodejs owns /usr/include/node (this
# machine kind ships one), that install would conflict or remove it, so the two .debs are
# unpacked into .deps/libnode (git-ignored) instead; CMake looks there first, then in /usr.
LIBNODE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.deps/libnode"
install_v8() {
  [[ -f "$LIBNODE_DIR/usr/include/node/v8.h" && -f "$LIBNODE_DIR/usr/lib/x86_64-linux-gnu/libnode.so" ]] && return 0
  [[ "$(dpkg-query -W -f='${Status}' libnode-dev 2>/dev/null || true)" == "install ok installed" ]] && return 0
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup-deps: V8 (libnode-dev) is missing (run as root to install)" >&2
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  [[ -n "${APT_UPDATED:-}" ]] || apt-get update -q
  # Install directly only when apt would neither fail nor remove anything (such as a nodejs).
  local plan
  if plan=$(apt-get install -s -q --no-install-recommends libnode-dev 2>&1) && ! grep -q '^Remv' <<<"$plan"; then
    echo "setup-deps: installing libnode-dev"
    apt-get install -y -q --no-install-recommends libnode-dev
    return 0
  fi
  echo "setup-deps: libnode-dev conflicts with the installed nodejs; unpacking libnode108 and libnode-dev into $LIBNODE_DIR"
  local tmp
  tmp=$(mktemp -d)
  chmod 755 "$tmp"  # apt downloads as _apt
  (cd "$tmp" && apt-get download -q libnode108 libnode-dev)
  rm -rf "$LIBNODE_DIR.partial"
  mkdir -p "$LIBNODE_DIR.partial"
  for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$LIBNODE_DIR.partial"; done
  rm -rf "$tmp"
  # The .so symlink ships in libnode-dev; make sure it points at the versioned library.
  ln -sf libnode.so.108 "$LIBNODE_DIR.partial/usr/lib/x86_64-linux-gnu/libnode.so"
  rm -rf "$LIBNODE_DIR"
  mv "$LIBNODE_DIR.partial" "$LIBNODE_DIR"
}

# One dpkg-query for all packages: fast, and needs no package lists.
declare -A installed=()
while read -r name status; do
  [[ "$status" == "install ok installed" ]] && installed[${name%%:*}]=1
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)
missing=()
for p in "${PACKAGES[@]}"; do
  [[ -n "${installed[$p]:-}" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup-deps: missing packages: ${missing[*]} (run as root to install)" >&2
    exit 1
  fi
  echo "setup-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  APT_UPDATED=1
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
install_v8

# bpffs is needed for pinning; mount it if this machine has not.
if [[ $(id -u) -eq 0 ]] && ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
  mount -t bpf bpf /sys/fs/bpf || true
fi
exit 0
