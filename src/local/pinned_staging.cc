#include "hivemind/local/pinned_staging.h"

#include <cuda_runtime_api.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "local/cuda_util.h"
#include "util/status_macros.h"

namespace hivemind {

class PinnedStaging::Impl {
 public:
  explicit Impl(PinnedStagingOptions options) : options_(options) {}
  ~Impl() {
    cudaSetDevice(options_.device);
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    if (ready_ != nullptr) cudaEventDestroy(ready_);
    if (done_ != nullptr) cudaEventDestroy(done_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    cudaFreeHost(host_);
  }

  absl::Status Init() {
    HIVEMIND_ASSIGN_OR_RETURN(const int devices, CudaDeviceCount());
    if (options_.device < 0 || options_.device >= devices) {
      return absl::UnavailableError(
          absl::StrCat("no CUDA device ", options_.device, " (", devices, " present)"));
    }
    HIVEMIND_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
    HIVEMIND_CUDA_RETURN_IF_ERROR(
        cudaMallocHost(&host_, sizeof(float) * options_.capacity));
    HIVEMIND_CUDA_RETURN_IF_ERROR(
        cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    HIVEMIND_CUDA_RETURN_IF_ERROR(
        cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    HIVEMIND_CUDA_RETURN_IF_ERROR(
        cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
    return absl::OkStatus();
  }

  absl::Span<float> host() const { return {host_, options_.capacity}; }

  // Queues a copy on the staging stream after the compute stream's queued work; with
  // `compute_waits`, the compute stream then waits for the copy.
  absl::Status Start(void* to, const void* from, size_t n, cudaMemcpyKind kind,
                     CudaStream compute, bool compute_waits) {
    if (n > options_.capacity) {
      return absl::InvalidArgumentError(
          absl::StrCat(n, " floats are more than the capacity ", options_.capacity));
    }
    if (in_flight_) return absl::FailedPreconditionError("a copy is already in flight");
    HIVEMIND_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
    HIVEMIND_CUDA_RETURN_IF_ERROR(cudaEventRecord(ready_, compute));
    HIVEMIND_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream_, ready_, 0));
    HIVEMIND_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(to, from, sizeof(float) * n, kind, stream_));
    HIVEMIND_CUDA_RETURN_IF_ERROR(cudaEventRecord(done_, stream_));
    if (compute_waits)
      HIVEMIND_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(compute, done_, 0));
    in_flight_ = true;
    size_ = n;
    return absl::OkStatus();
  }

  absl::Status Finish(absl::Duration timeout) {
    if (!in_flight_) return absl::FailedPreconditionError("no copy in flight");
    HIVEMIND_RETURN_IF_ERROR(internal::PollUntilDone(
        [this] { return cudaEventQuery(done_); }, absl::Now() + timeout, "staging copy"));
    in_flight_ = false;
    return absl::OkStatus();
  }

  size_t size() const { return size_; }

 private:
  const PinnedStagingOptions options_;
  float* host_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;  // recorded on the compute stream
  cudaEvent_t done_ = nullptr;   // recorded on the staging stream after the copy
  bool in_flight_ = false;
  size_t size_ = 0;
};

absl::StatusOr<std::unique_ptr<PinnedStaging>> PinnedStaging::Create(
    const PinnedStagingOptions& options) {
  if (options.capacity == 0)
    return absl::InvalidArgumentError("capacity must be positive");
  auto impl = std::make_unique<Impl>(options);
  HIVEMIND_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<PinnedStaging>(new PinnedStaging(std::move(impl)));
}

PinnedStaging::PinnedStaging(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PinnedStaging::~PinnedStaging() = default;

absl::Span<float> PinnedStaging::host() const { return impl_->host(); }

absl::Status PinnedStaging::StartDownload(const float* device_values, size_t n,
                                          CudaStream compute_stream) {
  return impl_->Start(impl_->host().data(), device_values, n, cudaMemcpyDeviceToHost,
                      compute_stream, /*compute_waits=*/false);
}

absl::StatusOr<absl::Span<float>> PinnedStaging::FinishDownload(absl::Duration timeout) {
  HIVEMIND_RETURN_IF_ERROR(impl_->Finish(timeout));
  return impl_->host().subspan(0, impl_->size());
}

absl::Status PinnedStaging::StartUpload(float* device_values, size_t n,
                                        CudaStream compute_stream) {
  return impl_->Start(device_values, impl_->host().data(), n, cudaMemcpyHostToDevice,
                      compute_stream, /*compute_waits=*/true);
}

absl::Status PinnedStaging::FinishUpload(absl::Duration timeout) {
  return impl_->Finish(timeout);
}

}  // namespace hivemind
