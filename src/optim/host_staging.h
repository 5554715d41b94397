// HostStaging: moves a model's tensors (float32, contiguous) to one flat host array
// and back, for the averagers, which work on host memory.
//
// CPU tensors are copied with memcpy. When every tensor is on one CUDA device, the
// copies go through a pinned host buffer on a copy stream of its own:
//  - Download waits, on the GPU, for the work queued on the current stream (the one
//    that computed the values), copies, and returns once its copies are done; the
//    host does not wait for work queued after them.
//  - Upload queues its copies and makes the current stream wait for them, on the
//    GPU, and returns at once: later kernels on that stream see the new values, and
//    the host goes on with the next batch while the copy runs. The next Download or
//    Upload waits for it before reusing the pinned buffer.
// Tensors spread over several devices fall back to torch's own copies, one by one.
//
// Only torch's device-generic API (c10::Event, c10::Stream): it builds against a
// CPU-only libtorch, where the CUDA path is never taken.
//
// Thread safety: not thread-safe; the training thread's.
#ifndef HIVEMIND_OPTIM_HOST_STAGING_H_
#define HIVEMIND_OPTIM_HOST_STAGING_H_

#include <torch/types.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <vector>

namespace hivemind {
namespace internal {

class HostStaging {
 public:
  HostStaging();
  ~HostStaging();
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;

  // Writes the tensors' values, one after the other, to out[0, sum of numel).
  void Download(const std::vector<torch::Tensor>& tensors, float* out);
  // Writes in[0, sum of numel) into the tensors, one after the other.
  void Upload(const float* in, const std::vector<torch::Tensor>& tensors);

  // Uploads and downloads that went through pinned memory (for tests).
  int staged_copies() const { return staged_copies_; }

 private:
  struct Cuda;
  // The CUDA device all tensors are on, or none (CPU, or mixed devices).
  static std::optional<torch::Device> CommonCudaDevice(
      const std::vector<torch::Tensor>& tensors);
  // The copy stream and a pinned buffer of at least `numel` floats on `device`,
  // after the copies still in flight on it are done.
  Cuda& Prepare(torch::Device device, size_t numel);

  std::unique_ptr<Cuda> cuda_;
  int staged_copies_ = 0;
};

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_OPTIM_HOST_STAGING_H_
