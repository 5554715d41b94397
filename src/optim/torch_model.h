// TorchModel: the model's parameters as the optimizer averages them - flat float32
// vectors in host memory - and the gradient accumulator, on the host or (for a model
// on a CUDA device) on that device. The one place of the optimizer that copies
// between torch tensors and the flat vectors the averagers hold.
#ifndef HIVEMIND_SRC_OPTIM_TORCH_MODEL_H_
#define HIVEMIND_SRC_OPTIM_TORCH_MODEL_H_

#include <torch/types.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "optim/host_staging.h"

namespace hivemind {
namespace internal {

class TorchModel {
 public:
  // `params`: non-empty contiguous float32 tensors, all on one device. Without
  // `accumulate` (local updates, DiLoCo: the inner optimizer steps on every batch)
  // no accumulator is allocated.
  TorchModel(std::vector<torch::Tensor> params, bool accumulate);

  size_t total() const { return total_; }
  const std::vector<size_t>& sizes() const { return sizes_; }

  // The parameters' gradients (zeros for a parameter without one), contiguous.
  // kInvalidArgument when any holds NaN or Inf (one device wait for all).
  absl::StatusOr<std::vector<torch::Tensor>> FiniteGradients() const;
  // Adds `grads` x `batch_size` to the accumulator.
  void Accumulate(const std::vector<torch::Tensor>& grads, int64_t batch_size);
  // The accumulator divided by `samples` (zeros when none), in host memory: the
  // host accumulator itself, scaled in place (so the round averages it without a
  // copy), or for a model on a device a host buffer kept for it. Valid until the
  // next call; ResetAccumulator before accumulating again.
  absl::Span<float> MeanGradients(int64_t samples);
  void ResetAccumulator();
  // Writes `grads` into the parameters' .grad (made when missing).
  void SetGradients(absl::Span<const float> grads);

  std::vector<float> FlatParameters() const;
  void SetParameters(const std::vector<float>& flat);
  // Host <-> device copies of other tensors (the inner optimizer's statistics).
  void Download(const std::vector<torch::Tensor>& tensors, float* out) const {
    staging_.Download(tensors, out);
  }
  void Upload(const float* in, const std::vector<torch::Tensor>& tensors) const {
    staging_.Upload(in, tensors);
  }

 private:
  std::vector<torch::Tensor> params_;
  std::vector<size_t> sizes_;
  size_t total_ = 0;
  // The sum over batches of gradient x batch size: in host memory, or for a model
  // on a device, on that device (one tensor per parameter; host_acc_ stays empty).
  std::vector<float> host_acc_;
  std::vector<torch::Tensor> device_acc_;
  std::vector<float> host_mean_;  // a device model's mean gradients, downloaded
  mutable HostStaging staging_;
};

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_SRC_OPTIM_TORCH_MODEL_H_
