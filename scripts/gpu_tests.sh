#!/usr/bin/env bash
# Builds with the NCCL local reducer (-DHIVEMIND_WITH_NCCL=ON) and runs the GPU tests
# (tests/local/nccl_local_reducer_test.cc: NcclLocalReducer with one rank per GPU,
# PinnedStaging with a real swarm; with TORCH_DIR, OptimizerSwarm.CudaParameters...)
# plus the CPU local reducer's tests, on a machine
# with CUDA, NCCL and at least one GPU. Without a GPU the GPU tests skip, naming the
# reason ("no CUDA device: ..."), and the script says so.
#
#   scripts/gpu_tests.sh [BUILD_DIR]        default BUILD_DIR: build-gpu
#
# Environment: CUDA_ROOT (default /usr/local/cuda), NCCL_ROOT (default: CUDA_ROOT),
# TORCH_DIR (a CUDA libtorch's share/cmake/Torch; without it torch is left out).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
build="${1:-build-gpu}"
cuda_root="${CUDA_ROOT:-/usr/local/cuda}"

torch_flags=(-DHIVEMIND_WITH_TORCH=OFF)
if [[ -n "${TORCH_DIR:-}" ]]; then
  torch_flags=(-DHIVEMIND_WITH_TORCH=ON "-DTorch_DIR=${TORCH_DIR}")
fi

cmake -S . -B "$build" -G Ninja \
  -DHIVEMIND_WITH_NCCL=ON \
  "-DCUDAToolkit_ROOT=${cuda_root}" \
  "-DNCCL_ROOT=${NCCL_ROOT:-$cuda_root}" \
  -DHIVEMIND_BUILD_BENCHMARKS=OFF -DHIVEMIND_BUILD_EXAMPLES=OFF \
  "${torch_flags[@]}"
targets=(nccl_local_reducer_test cpu_local_reducer_test local_process_test)
# With a CUDA libtorch, also the optimizer's tests (CUDA parameters through host memory).
[[ -n "${TORCH_DIR:-}" ]] && targets+=(optimizer_test)
ninja -C "$build" "${targets[@]}"

export LD_LIBRARY_PATH="${cuda_root}/lib64:${cuda_root}/lib:${LD_LIBRARY_PATH:-}"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi -L || true
else
  echo "gpu_tests: nvidia-smi not found; the GPU tests will skip if no device is visible"
fi
"$build/tests/local/nccl_local_reducer_test" --gtest_brief=0
"$build/tests/local/cpu_local_reducer_test"
"$build/tests/local/local_process_test"
if [[ -n "${TORCH_DIR:-}" ]]; then
  "$build/tests/optim/optimizer_test" --gtest_filter='*Cuda*'
fi
