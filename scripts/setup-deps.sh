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
  # observability: Prometheus client, the HTTP listener, promtool to check the metrics
  prometheus-cpp-dev libcpp-httplib-dev prometheus
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # network namespaces, nftables for the side-by-side benchmark
  iproute2 nftables
)

missing=()
for p in "${PACKAGES[@]}"; do
  # dpkg-query is fast and needs no package lists
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup-deps: missing packages: ${missing[*]} (run as root to install)" >&2
    exit 1
  fi
  echo "setup-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# bpffs is needed for pinning; mount it if this machine has not.
if [[ $(id -u) -eq 0 ]] && ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
  mount -t bpf bpf /sys/fs/bpf || true
fi
exit 0
