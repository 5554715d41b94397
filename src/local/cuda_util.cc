#include "local/cuda_util.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "hivemind/local/cuda_device.h"

namespace hivemind {
namespace internal {

absl::Status CudaStatus(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(error)));
}

absl::Status NcclStatus(ncclResult_t result, const char* what, ncclComm_t comm) {
  if (result == ncclSuccess || result == ncclInProgress) return absl::OkStatus();
  const char* last = ncclGetLastError(comm);
  return absl::InternalError(absl::StrCat(what, ": ", ncclGetErrorString(result),
                                          last != nullptr && *last != '\0' ? " (" : "",
                                          last != nullptr ? last : "",
                                          last != nullptr && *last != '\0' ? ")" : ""));
}

absl::Status PollUntilDone(const std::function<cudaError_t()>& query, absl::Time deadline,
                           const char* what, const std::function<absl::Status()>& also) {
  absl::Duration nap = absl::Microseconds(5);
  for (;;) {
    const cudaError_t state = query();
    if (state == cudaSuccess) return absl::OkStatus();
    if (state != cudaErrorNotReady) return CudaStatus(state, what);
    if (also) {
      absl::Status status = also();
      if (!status.ok()) return status;
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(what, ": not done in time"));
    }
    absl::SleepFor(nap);
    nap = std::min(nap * 2, absl::Microseconds(200));
  }
}

}  // namespace internal

absl::StatusOr<int> CudaDeviceCount() {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    return absl::UnavailableError(
        absl::StrCat("no CUDA device: ", cudaGetErrorString(error)));
  }
  if (count == 0)
    return absl::UnavailableError("no CUDA device: the runtime found 0 devices");
  return count;
}

}  // namespace hivemind
