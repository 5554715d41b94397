// PinnedStaging: moves a device buffer to pinned host memory and back on a stream of
// its own, so that averaging GPU values with the swarm (which works on host memory)
// overlaps with compute. Library hivemind_nccl (-DHIVEMIND_WITH_NCCL=ON).
//
//   staging->StartDownload(grads_ptr, n, compute_stream);   // returns at once
//   ... compute keeps running on compute_stream ...
//   auto host = staging->FinishDownload(timeout);            // waits for the copy only
//   averager / local reducer step on *host (host memory)
//   staging->StartUpload(grads_ptr, n, compute_stream);      // returns at once;
//   ... kernels queued on compute_stream from now on see the averaged values ...
//   staging->FinishUpload(timeout);                          // before the next download
//
// The download waits (on the GPU, through an event) for the work queued on the compute
// stream before the call, and the compute stream waits (on the GPU) for the upload:
// neither the host nor the compute stream blocks on the other side's copies.
#ifndef HIVEMIND_LOCAL_PINNED_STAGING_H_
#define HIVEMIND_LOCAL_PINNED_STAGING_H_

#include <cstddef>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "hivemind/local/cuda_device.h"

namespace hivemind {

struct PinnedStagingOptions {
  int device = 0;       // CUDA device of the buffers. Default: 0.
  size_t capacity = 0;  // floats of the pinned host buffer. Required (> 0).
};

// Thread safety: not thread-safe; one download/upload cycle at a time. The pinned
// buffer and the stream are owned and freed by the destructor (which waits for the
// copies in flight).
class PinnedStaging {
 public:
  // kInvalidArgument (capacity 0), kUnavailable (no such device), kInternal (CUDA's
  // reason: cudaMallocHost, cudaStreamCreate).
  static absl::StatusOr<std::unique_ptr<PinnedStaging>> Create(
      const PinnedStagingOptions& options);
  ~PinnedStaging();
  PinnedStaging(const PinnedStaging&) = delete;
  PinnedStaging& operator=(const PinnedStaging&) = delete;

  // The pinned host buffer (capacity floats).
  absl::Span<float> host() const;

  // Queues the copy of `n` floats from `device_values` to host(), after the work
  // queued on `compute_stream` so far. kInvalidArgument when n > capacity,
  // kInternal on CUDA errors.
  absl::Status StartDownload(const float* device_values, size_t n,
                             CudaStream compute_stream);
  // Waits for the download; returns host()'s first n floats. kDeadlineExceeded after
  // `timeout`, kFailedPrecondition without a download in flight.
  absl::StatusOr<absl::Span<float>> FinishDownload(absl::Duration timeout);

  // Queues the copy of host()'s first `n` floats to `device_values` and makes
  // `compute_stream` wait for it. Errors as StartDownload.
  absl::Status StartUpload(float* device_values, size_t n, CudaStream compute_stream);
  // Waits for the upload (host() may be reused afterwards). As FinishDownload.
  absl::Status FinishUpload(absl::Duration timeout);

 private:
  class Impl;
  explicit PinnedStaging(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hivemind

#endif  // HIVEMIND_LOCAL_PINNED_STAGING_H_
