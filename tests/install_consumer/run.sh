#!/usr/bin/env bash
# Installs a built hivemind tree into a scratch prefix, then configures, builds and
# runs tests/install_consumer/project against that prefix only. Fails if any step
# fails, or if the consumer picked up hivemind from anywhere but the prefix.
#
#   run.sh BUILD_DIR WORK_DIR GENERATOR MAKE_PROGRAM CXX_COMPILER [CONFIG]
#
# Registered with ctest by tests/install_consumer/CMakeLists.txt.
set -euo pipefail

if (($# < 5 || $# > 6)); then
  echo "usage: $0 BUILD_DIR WORK_DIR GENERATOR MAKE_PROGRAM CXX_COMPILER [CONFIG]" >&2
  exit 2
fi
build_dir="$1" work_dir="$2" generator="$3" make_program="$4" cxx="$5"
config="${6:-}"
config_args=()
[[ -n "$config" ]] && config_args=(--config "$config")
project_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/project" && pwd)"
prefix="$work_dir/prefix"
consumer_build="$work_dir/build"

step() { echo "== install_consumer: $*"; }

rm -rf "$work_dir"
mkdir -p "$work_dir"

step "cmake --install $build_dir --prefix $prefix"
cmake --install "$build_dir" --prefix "$prefix" "${config_args[@]}"

step "configure the consumer in $consumer_build"
cmake -S "$project_dir" -B "$consumer_build" -G "$generator" \
  -DCMAKE_MAKE_PROGRAM="$make_program" \
  -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_BUILD_TYPE="$config" \
  -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
  -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF

found="$(sed -n 's/^hivemind_DIR:[A-Z]*=//p' "$consumer_build/CMakeCache.txt")"
case "$found" in
  "$prefix"/*) ;;
  *)
    echo "install_consumer: find_package found hivemind in '$found', not under $prefix" >&2
    exit 1
    ;;
esac

step "build the consumer"
cmake --build "$consumer_build" "${config_args[@]}"

consumer="$consumer_build/consumer"
if command -v ldd >/dev/null 2>&1; then
  lib="$(ldd "$consumer" | awk '/libhivemind\.so/ {print $3}')"
  case "$lib" in
    "$prefix"/*) ;;
    *)
      echo "install_consumer: consumer loads libhivemind from '$lib', not $prefix" >&2
      exit 1
      ;;
  esac
fi

step "run $consumer"
"$consumer"
