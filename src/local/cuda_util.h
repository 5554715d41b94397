// CUDA and NCCL helpers of the GPU path (hivemind_nccl): errors as absl::Status with
// the library's reason, and waits that poll against a deadline instead of blocking.
#ifndef HIVEMIND_LOCAL_CUDA_UTIL_H_
#define HIVEMIND_LOCAL_CUDA_UTIL_H_

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <functional>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace hivemind {
namespace internal {

// OK, or kInternal "<what>: <cudaGetErrorString>".
absl::Status CudaStatus(cudaError_t error, const char* what);
// OK (also for ncclInProgress: a call on a non-blocking communicator that is still
// being enqueued; wait for the communicator then), or kInternal
// "<what>: <ncclGetErrorString> (<ncclGetLastError>)".
absl::Status NcclStatus(ncclResult_t result, const char* what, ncclComm_t comm);

// Polls `query` (cudaSuccess: done, cudaErrorNotReady: not yet, else an error) every
// few tens of microseconds until done, an error, or `deadline` (kDeadlineExceeded).
// `also` (if set) is checked on every poll too (an NCCL communicator's async error).
absl::Status PollUntilDone(const std::function<cudaError_t()>& query, absl::Time deadline,
                           const char* what,
                           const std::function<absl::Status()>& also = nullptr);

}  // namespace internal
}  // namespace hivemind

#define HIVEMIND_CUDA_RETURN_IF_ERROR(expr)                        \
  do {                                                             \
    ::absl::Status hivemind_cuda_status_ =                         \
        ::hivemind::internal::CudaStatus(expr, #expr);             \
    if (!hivemind_cuda_status_.ok()) return hivemind_cuda_status_; \
  } while (false)

#endif  // HIVEMIND_LOCAL_CUDA_UTIL_H_
