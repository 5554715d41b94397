#!/usr/bin/env bash
# Installs every Debian package the project uses. Idempotent: when all packages are
# present it only checks and returns (no apt-get update).
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config ccache git
  clang clang-format clang-tidy libclang-rt-14-dev
  # core libraries
  libzstd-dev libxxhash-dev libzmq3-dev cppzmq-dev libsodium-dev libabsl-dev libopendht-dev
  nlohmann-json3-dev
  # torch (C++ and Python, same build)
  libtorch-dev python3-torch python3-dev pybind11-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev libgloo-dev python3-pytest
  python3-numpy python3-matplotlib
  # data (zlib reads its gzip files) and network emulation
  dataset-fashion-mnist zlib1g-dev iproute2
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install_deps: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
