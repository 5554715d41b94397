#!/usr/bin/env bash
# Builds with the NCCL local reducer (-DHIVEMIND_WITH_NCCL=ON) and runs the GPU tests
# (tests/local/nccl_local_reducer_test.cc: NcclLocalReducer with one rank per GPU,
# PinnedStaging with a real swarm; with TORCH_DIR, the optimizer's CUDA tests) plus
# the CPU local reducer's tests, on a machine with CUDA, NCCL and at least one GPU.
# Without a GPU the GPU tests skip, naming the reason ("no CUDA device: ..."); with
# one GPU the tests of two or more ranks skip ("needs 2 CUDA devices, found 1").
#
#   scripts/gpu_tests.sh [--deps TARBALL] [BUILD_DIR]     default BUILD_DIR: build-gpu
#
# --deps: a tarball of scripts/gpu_deps_bundle.sh, for a machine without the Debian
# packages (the GPU machines lent to this project: Ubuntu with a pip CUDA PyTorch).
# It is unpacked into BUILD_DIR/deps and the build finds everything there.
#
# Environment: CUDA_ROOT (default /usr/local/cuda), NCCL_ROOT (default: CUDA_ROOT;
# a pip install of nvidia-nccl has include/ and lib/ under .../nvidia/nccl), TORCH_DIR
# (a CUDA libtorch's share/cmake/Torch, for example the pip wheel's
# `python3 -c 'import torch; print(torch.utils.cmake_prefix_path)'`/Torch; without it
# torch is left out), GPU_TEST_FILTER (gtest filter of the optimizer's tests; default
# '*Cuda*'), GPU_BENCH_FLAGS (flags of bench/host_staging_bench).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
deps_tarball=""
if [[ "${1:-}" == --deps ]]; then
  deps_tarball="${2:?--deps needs a tarball}"
  shift 2
fi
build="${1:-build-gpu}"
cuda_root="${CUDA_ROOT:-/usr/local/cuda}"

flags=(-DHIVEMIND_WITH_NCCL=ON "-DCUDAToolkit_ROOT=${cuda_root}"
       "-DNCCL_ROOT=${NCCL_ROOT:-$cuda_root}"
       -DHIVEMIND_BUILD_BENCHMARKS=ON -DHIVEMIND_BUILD_EXAMPLES=OFF
       -DCMAKE_POLICY_VERSION_MINIMUM=3.5)
if [[ -n "${TORCH_DIR:-}" ]]; then
  flags+=(-DHIVEMIND_WITH_TORCH=ON "-DTorch_DIR=${TORCH_DIR}")
else
  flags+=(-DHIVEMIND_WITH_TORCH=OFF)
fi

if [[ -n "$deps_tarball" ]]; then
  mkdir -p "$build"
  deps="$(cd "$build" && pwd)/deps"
  rm -rf "$deps"
  tar -C "$build" -xzf "$deps_tarball"
  sed -i "s#@PREFIX@#${deps}#" "$deps"/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc
  libdir="$deps/usr/lib/x86_64-linux-gnu"
  export PKG_CONFIG_LIBDIR="$libdir/pkgconfig"
  export PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1 PKG_CONFIG_ALLOW_SYSTEM_LIBS=1
  flags+=("-DCMAKE_PREFIX_PATH=$deps/usr")
  # DT_RPATH (not RUNPATH): it also serves the libraries the bundled ones load.
  link="-L$libdir -Wl,-rpath-link,$libdir -Wl,-rpath,$libdir -Wl,--disable-new-dtags"
  flags+=("-DCMAKE_CXX_FLAGS=-isystem $deps/usr/include"
          "-DCMAKE_EXE_LINKER_FLAGS=$link" "-DCMAKE_SHARED_LINKER_FLAGS=$link")
fi

cmake -S . -B "$build" -G Ninja "${flags[@]}"
targets=(nccl_local_reducer_test cpu_local_reducer_test local_process_test)
# With a CUDA libtorch, also the optimizer's tests (CUDA parameters), HostStaging's,
# and the benchmark of host transfers.
[[ -n "${TORCH_DIR:-}" ]] && targets+=(optimizer_test host_staging_test host_staging_bench)
ninja -C "$build" "${targets[@]}"

export LD_LIBRARY_PATH="${cuda_root}/lib64:${cuda_root}/lib:${NCCL_ROOT:-$cuda_root}/lib:${LD_LIBRARY_PATH:-}"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi -L || true
else
  echo "gpu_tests: nvidia-smi not found; the GPU tests will skip if no device is visible"
fi
"$build/tests/local/nccl_local_reducer_test" --gtest_brief=0
"$build/tests/local/cpu_local_reducer_test"
"$build/tests/local/local_process_test"
if [[ -n "${TORCH_DIR:-}" ]]; then
  "$build/tests/optim/host_staging_test"
  "$build/tests/optim/optimizer_test" --gtest_filter="${GPU_TEST_FILTER:-*Cuda*}"
  "$build/bench/host_staging_bench" ${GPU_BENCH_FLAGS:-}
fi
