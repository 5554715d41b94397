// HostStaging: the optimizer's copies between a model's tensors and host memory. The
// CPU path runs everywhere; the CUDA path skips (with the reason) without a GPU and a
// CUDA libtorch; scripts/gpu_tests.sh runs it on a GPU machine.
#include "optim/host_staging.h"

#include <torch/types.h>

#include <vector>

#include "gtest/gtest.h"
#include "tests/optim/cuda_skip.h"

namespace hivemind {
namespace internal {
namespace {

std::vector<float> Iota(size_t n, float start) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = start + static_cast<float>(i);
  return v;
}

std::vector<float> HostCopy(const std::vector<torch::Tensor>& tensors) {
  std::vector<float> out;
  for (const torch::Tensor& t : tensors) {
    const torch::Tensor h = t.to(torch::kCPU).contiguous();
    out.insert(out.end(), h.data_ptr<float>(), h.data_ptr<float>() + h.numel());
  }
  return out;
}

TEST(HostStaging, CpuTensorsRoundTripWithoutPinnedMemory) {
  std::vector<torch::Tensor> tensors = {torch::arange(3, torch::kFloat),
                                        torch::arange(5, torch::kFloat).add(10)};
  HostStaging staging;
  std::vector<float> host(8, -1.0f);
  staging.Download(tensors, host.data());
  EXPECT_EQ(host, HostCopy(tensors));
  const std::vector<float> in = Iota(8, 100.0f);
  staging.Upload(in.data(), tensors);
  EXPECT_EQ(HostCopy(tensors), in);
  EXPECT_EQ(staging.staged_copies(), 0);
}

// Large enough that an upload not ordered before later work on the stream, or a
// download not ordered after earlier work, would show.
TEST(HostStaging, CudaTensorsGoThroughPinnedMemoryInStreamOrder) {
  HIVEMIND_SKIP_WITHOUT_CUDA();
  torch::NoGradGuard no_grad;
  const int64_t n = 8 << 20;
  const auto on_gpu = torch::TensorOptions().dtype(torch::kFloat).device(torch::kCUDA);
  // Values written by kernels queued on the current stream just before the download.
  std::vector<torch::Tensor> tensors = {torch::zeros({n}, on_gpu),
                                        torch::zeros({7}, on_gpu)};
  for (int i = 0; i < 20; ++i) tensors[0].add_(1.0);
  tensors[1].fill_(3.0);
  HostStaging staging;
  std::vector<float> host(static_cast<size_t>(n + 7));
  staging.Download(tensors, host.data());
  EXPECT_EQ(staging.staged_copies(), 1);
  for (int64_t k = 0; k < n; k += 4099) ASSERT_EQ(host[k], 20.0f) << k;
  for (int64_t k = n; k < n + 7; ++k) ASSERT_EQ(host[k], 3.0f) << k;

  // An upload, then at once a kernel on the current stream: it must see the new values.
  const std::vector<float> in = Iota(host.size(), 0.5f);
  staging.Upload(in.data(), tensors);
  tensors[0].mul_(2.0);
  EXPECT_EQ(staging.staged_copies(), 2);
  const std::vector<float> got = HostCopy(tensors);
  for (int64_t k = 0; k < n; k += 4099) ASSERT_EQ(got[k], 2.0f * in[k]) << k;
  for (int64_t k = n; k < n + 7; ++k) ASSERT_EQ(got[k], in[k]) << k;

  // Tensors on the GPU and the CPU at once take torch's own copies.
  std::vector<torch::Tensor> mixed = {torch::ones({4}, on_gpu), torch::zeros({4})};
  std::vector<float> mixed_host(8);
  staging.Download(mixed, mixed_host.data());
  EXPECT_EQ(mixed_host, (std::vector<float>{1, 1, 1, 1, 0, 0, 0, 0}));
  EXPECT_EQ(staging.staged_copies(), 2);
}

}  // namespace
}  // namespace internal
}  // namespace hivemind
