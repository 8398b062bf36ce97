#!/usr/bin/env bash
# Installs the Debian packages NFVinc builds and tests with, only those that
# are missing, and mounts bpffs if it is not mounted. Idempotent; needs root.
set -euo pipefail

packages=(
  clang llvm libbpf-dev libelf-dev zlib1g-dev pkg-config m4  # XDP programs (ebpf/build.rs)
  iproute2 ethtool iputils-ping                              # network-namespace test topologies
  bpftool                                                    # inspecting attached programs in tests
  libdpdk-dev                                                # the DPDK backend (feature dpdk)
  dpdk-dev                                                   # dpdk-testpmd, perf's reference (nfvinc-perf echo --dpdk-null)
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

# Schemathesis (control/tests/schemathesis.rs fuzzes the REST API with it),
# pinned, in a virtual environment of its own so that it neither needs nor
# disturbs the system's Python packages. The test looks for it there.
schemathesis_version=4.32.5
schemathesis_venv=/opt/nfvinc-tools/schemathesis
if ! "$schemathesis_venv/bin/st" --version 2>/dev/null | grep -qF "$schemathesis_version"; then
  if ! python3 -m venv --help >/dev/null 2>&1; then
    echo "install-deps: installing python3-venv"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
  fi
  echo "install-deps: installing schemathesis $schemathesis_version in $schemathesis_venv"
  python3 -m venv "$schemathesis_venv"
  "$schemathesis_venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$schemathesis_version"
fi

if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf
fi
