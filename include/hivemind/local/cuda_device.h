// CUDA basics of the GPU path (library hivemind_nccl), without the CUDA headers.
#ifndef HIVEMIND_LOCAL_CUDA_DEVICE_H_
#define HIVEMIND_LOCAL_CUDA_DEVICE_H_

#include "absl/status/statusor.h"

struct CUstream_st;

namespace hivemind {

// cudaStream_t (the same type; null is the legacy default stream).
using CudaStream = CUstream_st*;

// The number of CUDA devices: kUnavailable with the reason ("no CUDA device: " and
// cudaGetErrorString's text) when there is none or the runtime cannot tell (no
// driver, no GPU). Tests skip on it.
absl::StatusOr<int> CudaDeviceCount();

}  // namespace hivemind

#endif  // HIVEMIND_LOCAL_CUDA_DEVICE_H_
