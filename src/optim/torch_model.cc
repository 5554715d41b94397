#include "optim/torch_model.h"

#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>
#include <utility>

namespace hivemind {
namespace internal {

TorchModel::TorchModel(std::vector<torch::Tensor> params, bool accumulate)
    : params_(std::move(params)) {
  for (const torch::Tensor& p : params_) sizes_.push_back(static_cast<size_t>(p.numel()));
  for (size_t s : sizes_) total_ += s;
  if (!accumulate) return;
  // Gradients of a model on a device (CUDA) are summed there: a step then costs a
  // few kernels and one wait, and they reach host memory once an epoch.
  if (!params_.empty() && !params_.front().device().is_cpu()) {
    for (const torch::Tensor& p : params_) device_acc_.push_back(torch::zeros_like(p));
  } else {
    host_acc_.assign(total_, 0.0f);
  }
}

absl::StatusOr<std::vector<torch::Tensor>> TorchModel::FiniteGradients() const {
  std::vector<torch::Tensor> grads;
  std::vector<torch::Tensor> finite;
  for (const torch::Tensor& p : params_) {
    torch::Tensor g = p.grad();
    if (!g.defined()) g = torch::zeros_like(p);
    grads.push_back(g.contiguous());
    finite.push_back(torch::isfinite(grads.back()).all());
  }
  if (!torch::stack(finite).all().item<bool>()) {
    return absl::InvalidArgumentError("a gradient holds NaN or Inf; batch skipped");
  }
  return grads;
}

void TorchModel::Accumulate(const std::vector<torch::Tensor>& grads, int64_t batch_size) {
  if (!device_acc_.empty()) {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < grads.size(); ++i) {
      device_acc_[i].add_(grads[i], static_cast<double>(batch_size));
    }
    return;
  }
  const float scale = static_cast<float>(batch_size);
  float* acc = host_acc_.data();
  for (const torch::Tensor& device_grad : grads) {
    const torch::Tensor g =
        device_grad.device().is_cpu() ? device_grad : device_grad.to(torch::kCPU);
    const float* src = g.data_ptr<float>();
    for (int64_t i = 0; i < g.numel(); ++i) acc[i] += src[i] * scale;
    acc += g.numel();
  }
}

absl::Span<float> TorchModel::MeanGradients(int64_t samples) {
  std::vector<float>& mean = device_acc_.empty() ? host_acc_ : host_mean_;
  mean.resize(total_, 0.0f);  // (an accumulator-less model: zeros)
  if (!device_acc_.empty()) staging_.Download(device_acc_, mean.data());
  const float inv = samples > 0 ? 1.0f / static_cast<float>(samples) : 0.0f;
  for (float& g : mean) g *= inv;
  return absl::MakeSpan(mean);
}

void TorchModel::ResetAccumulator() {
  std::fill(host_acc_.begin(), host_acc_.end(), 0.0f);
  torch::NoGradGuard no_grad;
  for (torch::Tensor& t : device_acc_) t.zero_();
}

void TorchModel::SetGradients(absl::Span<const float> grads) {
  std::vector<torch::Tensor> targets;
  for (torch::Tensor& p : params_) {
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    targets.push_back(p.mutable_grad());
  }
  staging_.Upload(grads.data(), targets);
}

std::vector<float> TorchModel::FlatParameters() const {
  std::vector<float> flat(total_);
  staging_.Download(params_, flat.data());
  return flat;
}

void TorchModel::SetParameters(const std::vector<float>& flat) {
  staging_.Upload(flat.data(), params_);
}

}  // namespace internal
}  // namespace hivemind
