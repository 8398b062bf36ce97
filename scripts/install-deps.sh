#!/usr/bin/env bash
# Installs the Debian packages NFVinc builds and tests with, only those that
# are missing, and mounts bpffs if it is not mounted. Idempotent; needs root.
set -euo pipefail

packages=(
  clang llvm libbpf-dev libelf-dev zlib1g-dev pkg-config m4  # XDP programs (ebpf/build.rs)
  iproute2 ethtool iputils-ping                              # network-namespace test topologies
  bpftool                                                    # inspecting attached programs in tests
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: must run as root (AF_XDP, BPF and network namespaces need it)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf
fi
