// What a model on a GPU costs the optimizer in host transfers, new path against the
// old one in the same run (docs/benchmarks.md, "GPU"):
//  - download: HostStaging (pinned buffer, copy stream, one wait) against one
//    pageable `.to(kCPU)` per tensor, the optimizer's path before it;
//  - upload: HostStaging (the host returns after queueing; timed to the end of the
//    copy) against torch's copy from pageable memory per tensor;
//  - a training step's gradient bookkeeping: summing on the device (now) against
//    copying every gradient to the host and summing there (before).
// Without a GPU it runs on the CPU (both paths are then memcpy). Last line:
// ratio_step_vs_host_sum=<now/before>.
#include <torch/cuda.h>
#include <torch/types.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "optim/host_staging.h"

ABSL_FLAG(int64_t, numel, 64 << 20, "floats in the model");
ABSL_FLAG(int, tensors, 16, "tensors the model is split into");
ABSL_FLAG(int, repeats, 10, "timed repeats of each measurement (median)");

namespace {

using Clock = std::chrono::steady_clock;

void Sync(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}

// Median seconds of `repeats` runs of fn (after one warm-up), device work included.
double Median(int repeats, const torch::Device& device, const std::function<void()>& fn) {
  fn();
  Sync(device);
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = Clock::now();
    fn();
    Sync(device);
    times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int64_t numel = absl::GetFlag(FLAGS_numel);
  const int count = absl::GetFlag(FLAGS_tensors);
  const int repeats = absl::GetFlag(FLAGS_repeats);
  const torch::Device device = torch::cuda::is_available() ? torch::kCUDA : torch::kCPU;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors, grads, acc;
  for (int i = 0; i < count; ++i) {
    const int64_t n = numel / count;
    tensors.push_back(torch::randn({n}, torch::TensorOptions().device(device)));
    grads.push_back(torch::randn({n}, torch::TensorOptions().device(device)));
    acc.push_back(torch::zeros({n}, torch::TensorOptions().device(device)));
  }
  const int64_t total = (numel / count) * count;
  std::vector<float> host(static_cast<size_t>(total));
  std::vector<float> host_acc(static_cast<size_t>(total));
  hivemind::internal::HostStaging staging;

  const double staged_down =
      Median(repeats, device, [&] { staging.Download(tensors, host.data()); });
  const double pageable_down = Median(repeats, device, [&] {
    float* out = host.data();
    for (const torch::Tensor& t : tensors) {
      const torch::Tensor h = t.to(torch::kCPU);
      std::copy(h.data_ptr<float>(), h.data_ptr<float>() + h.numel(), out);
      out += t.numel();
    }
  });
  const double staged_up =
      Median(repeats, device, [&] { staging.Upload(host.data(), tensors); });
  const double pageable_up = Median(repeats, device, [&] {
    const float* in = host.data();
    for (torch::Tensor& t : tensors) {
      t.copy_(torch::from_blob(const_cast<float*>(in), {t.numel()}));
      in += t.numel();
    }
  });
  const double device_sum = Median(repeats, device, [&] {
    std::vector<torch::Tensor> finite;
    for (const torch::Tensor& g : grads) finite.push_back(torch::isfinite(g).all());
    if (!torch::stack(finite).all().item<bool>()) std::abort();
    for (int i = 0; i < count; ++i) acc[i].add_(grads[i], 32.0);
  });
  const double host_sum = Median(repeats, device, [&] {
    float* out = host_acc.data();
    for (const torch::Tensor& g : grads) {
      if (!torch::isfinite(g).all().item<bool>()) std::abort();
      const torch::Tensor h = g.to(torch::kCPU);
      const float* src = h.data_ptr<float>();
      for (int64_t k = 0; k < h.numel(); ++k) out[k] += src[k] * 32.0f;
      out += h.numel();
    }
  });

  const double mb = static_cast<double>(total) * sizeof(float) / 1e6;
  std::printf("device=%s numel=%lld tensors=%d repeats=%d (%.0f MB)\n",
              device.is_cuda() ? "cuda" : "cpu", static_cast<long long>(total), count,
              repeats, mb);
  std::printf(
      "download: staged %.2f ms (%.1f GB/s), pageable per tensor %.2f ms (%.1f GB/s)\n",
      staged_down * 1e3, mb / 1e3 / staged_down, pageable_down * 1e3,
      mb / 1e3 / pageable_down);
  std::printf(
      "upload:   staged %.2f ms (%.1f GB/s), pageable per tensor %.2f ms (%.1f GB/s)\n",
      staged_up * 1e3, mb / 1e3 / staged_up, pageable_up * 1e3, mb / 1e3 / pageable_up);
  std::printf("step:     sum on the device %.3f ms, copy and sum on the host %.2f ms\n",
              device_sum * 1e3, host_sum * 1e3);
  std::printf("ratio_download_vs_pageable=%.3f\n", staged_down / pageable_down);
  std::printf("ratio_upload_vs_pageable=%.3f\n", staged_up / pageable_up);
  std::printf("ratio_step_vs_host_sum=%.4f\n", device_sum / host_sum);
  return 0;
}
