#include "optim/host_staging.h"

#include <c10/core/Event.h>
#include <c10/core/Stream.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cstring>

namespace hivemind {
namespace internal {

struct HostStaging::Cuda {
  explicit Cuda(torch::Device d)
      : device(d),
        guard(c10::DeviceType::CUDA),
        copy_stream(guard.getStreamFromGlobalPool(d)) {}

  // The stream torch queues this device's work on now (the training's).
  c10::Stream Current() const { return guard.getStream(device); }

  // Makes `waiter` wait, on the GPU, for the work queued on `done` so far.
  static void Order(const c10::Stream& done, const c10::Stream& waiter) {
    c10::Event event(c10::DeviceType::CUDA);
    event.record(done);
    event.block(waiter);
  }

  torch::Device device;
  c10::impl::VirtualGuardImpl guard;
  c10::Stream copy_stream;
  torch::Tensor pinned;  // float32, pinned host memory
};

HostStaging::HostStaging() = default;
HostStaging::~HostStaging() {
  if (cuda_) cuda_->guard.synchronizeStream(cuda_->copy_stream);
}

std::optional<torch::Device> HostStaging::CommonCudaDevice(
    const std::vector<torch::Tensor>& tensors) {
  std::optional<torch::Device> device;
  for (const torch::Tensor& t : tensors) {
    if (!t.device().is_cuda()) return std::nullopt;
    if (device && *device != t.device()) return std::nullopt;
    device = t.device();
  }
  return device;
}

HostStaging::Cuda& HostStaging::Prepare(torch::Device device, size_t numel) {
  if (cuda_ && cuda_->device != device) {
    cuda_->guard.synchronizeStream(cuda_->copy_stream);
    cuda_.reset();
  }
  if (!cuda_) cuda_ = std::make_unique<Cuda>(device);
  cuda_->guard.synchronizeStream(cuda_->copy_stream);  // the last upload's copies
  if (!cuda_->pinned.defined() || static_cast<size_t>(cuda_->pinned.numel()) < numel) {
    cuda_->pinned =
        torch::empty({static_cast<int64_t>(numel)},
                     torch::TensorOptions().dtype(torch::kFloat).pinned_memory(true));
  }
  return *cuda_;
}

namespace {

size_t TotalNumel(const std::vector<torch::Tensor>& tensors) {
  size_t n = 0;
  for (const torch::Tensor& t : tensors) n += static_cast<size_t>(t.numel());
  return n;
}

torch::Tensor HostView(const float* data, int64_t numel) {
  return torch::from_blob(const_cast<float*>(data), {numel},
                          torch::TensorOptions().dtype(torch::kFloat));
}

}  // namespace

void HostStaging::Download(const std::vector<torch::Tensor>& tensors, float* out) {
  torch::NoGradGuard no_grad;
  const std::optional<torch::Device> device = CommonCudaDevice(tensors);
  if (!device) {
    for (const torch::Tensor& t : tensors) {
      if (t.device().is_cpu()) {
        std::memcpy(out, t.data_ptr<float>(),
                    static_cast<size_t>(t.numel()) * sizeof(float));
      } else {
        HostView(out, t.numel()).copy_(t.reshape({-1}));
      }
      out += t.numel();
    }
    return;
  }
  const size_t total = TotalNumel(tensors);
  Cuda& cuda = Prepare(*device, total);
  Cuda::Order(cuda.Current(), cuda.copy_stream);
  {
    c10::StreamGuard on_copy_stream(cuda.copy_stream);
    int64_t offset = 0;
    for (const torch::Tensor& t : tensors) {
      cuda.pinned.narrow(0, offset, t.numel())
          .copy_(t.reshape({-1}), /*non_blocking=*/true);
      offset += t.numel();
    }
  }
  cuda.guard.synchronizeStream(cuda.copy_stream);
  std::memcpy(out, cuda.pinned.data_ptr<float>(), total * sizeof(float));
  ++staged_copies_;
}

void HostStaging::Upload(const float* in, const std::vector<torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  const std::optional<torch::Device> device = CommonCudaDevice(tensors);
  if (!device) {
    for (const torch::Tensor& t : tensors) {
      if (t.device().is_cpu()) {
        std::memcpy(t.data_ptr<float>(), in,
                    static_cast<size_t>(t.numel()) * sizeof(float));
      } else {
        t.view({-1}).copy_(HostView(in, t.numel()));
      }
      in += t.numel();
    }
    return;
  }
  const size_t total = TotalNumel(tensors);
  Cuda& cuda = Prepare(*device, total);
  std::memcpy(cuda.pinned.data_ptr<float>(), in, total * sizeof(float));
  const c10::Stream current = cuda.Current();
  // The copies overwrite tensors that kernels queued before may still read.
  Cuda::Order(current, cuda.copy_stream);
  {
    c10::StreamGuard on_copy_stream(cuda.copy_stream);
    int64_t offset = 0;
    for (const torch::Tensor& t : tensors) {
      t.view({-1}).copy_(cuda.pinned.narrow(0, offset, t.numel()), /*non_blocking=*/true);
      offset += t.numel();
    }
  }
  Cuda::Order(cuda.copy_stream, current);
  ++staged_copies_;
}

}  // namespace internal
}  // namespace hivemind
