// The GPU path: NcclLocalReducer (one rank per GPU, as threads of this process) and
// PinnedStaging (device values averaged with a swarm through pinned memory). Every
// test skips with the reason where no CUDA device is present (GTEST_SKIP); run them
// on a GPU machine with scripts/gpu_tests.sh.
#include <cuda_runtime.h>  // the typed cudaMalloc overloads

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "hivemind/averaging/averager.h"
#include "hivemind/dht/opendht_node.h"
#include "hivemind/local/nccl_local_reducer.h"
#include "hivemind/local/pinned_staging.h"
#include "hivemind/local/swarm_step.h"

namespace hivemind {
namespace {

constexpr size_t kNumel = 1 << 16;

// Skips the test unless at least `needed` CUDA devices are present; returns their
// number (at most 4).
#define HIVEMIND_REQUIRE_GPUS(needed, devices)                                   \
  do {                                                                           \
    absl::StatusOr<int> count = CudaDeviceCount();                               \
    if (!count.ok()) GTEST_SKIP() << count.status().message();                   \
    if (*count < (needed)) {                                                     \
      GTEST_SKIP() << "needs " << (needed) << " CUDA devices, found " << *count; \
    }                                                                            \
    (devices) = std::min(*count, 4);                                             \
  } while (false)

float Input(int rank, size_t k) {
  return std::sin(0.001f * static_cast<float>(k) + static_cast<float>(rank));
}

// One rank's device buffer holding `host`.
struct DeviceBuffer {
  explicit DeviceBuffer(int device, const std::vector<float>& host) : device(device) {
    cudaSetDevice(device);
    EXPECT_EQ(cudaMalloc(&data, sizeof(float) * host.size()), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(data, host.data(), sizeof(float) * host.size(),
                         cudaMemcpyHostToDevice),
              cudaSuccess);
    size = host.size();
  }
  ~DeviceBuffer() {
    cudaSetDevice(device);
    cudaFree(data);
  }
  std::vector<float> Read() const {
    std::vector<float> host(size);
    cudaSetDevice(device);
    EXPECT_EQ(cudaMemcpy(host.data(), data, sizeof(float) * size, cudaMemcpyDeviceToHost),
              cudaSuccess);
    return host;
  }
  int device;
  float* data = nullptr;
  size_t size = 0;
};

// Forms a group of `world` ranks (rank r on device r) and runs fn(rank, reducer) on
// every rank at once; returns the statuses.
std::vector<absl::Status> OnEveryGpu(
    int world, const std::function<absl::Status(int, NcclLocalReducer*)>& fn) {
  absl::StatusOr<std::string> id = NewNcclUniqueId();
  EXPECT_TRUE(id.ok()) << id.status();
  std::vector<absl::Status> statuses(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      NcclLocalReducerOptions options;
      options.rank = r;
      options.world_size = world;
      options.device = r;
      options.unique_id = id.value_or("");
      options.capacity = kNumel;
      auto reducer = NcclLocalReducer::Create(options);
      statuses[r] = reducer.ok() ? fn(r, reducer->get()) : reducer.status();
    });
  }
  for (std::thread& t : threads) t.join();
  return statuses;
}

TEST(NcclLocalReducer, GpusReachTheWeightedMeanAndTheLeaderRunsTheSwarmStep) {
  int world = 0;
  HIVEMIND_REQUIRE_GPUS(1, world);
  std::vector<std::vector<float>> results(world);
  float seen_weight = -1.0f;
  auto statuses = OnEveryGpu(world, [&](int r, NcclLocalReducer* reducer) {
    std::vector<float> host(kNumel);
    for (size_t k = 0; k < kNumel; ++k) host[k] = Input(r, k);
    DeviceBuffer values(r, host);
    LocalReduceOptions call;
    call.weight = static_cast<float>(r + 1);
    absl::Status status = reducer->AllReduce({values.data, values.size}, call,
                                             [&](absl::Span<float> average, float total) {
                                               seen_weight = total;
                                               for (float& v : average) v += 100.0f;
                                               return absl::OkStatus();
                                             });
    results[r] = values.Read();
    return status;
  });
  for (const absl::Status& s : statuses) ASSERT_TRUE(s.ok()) << s;
  EXPECT_FLOAT_EQ(seen_weight, static_cast<float>(world * (world + 1) / 2));
  for (size_t k = 0; k < kNumel; ++k) {
    double mean = 0.0;
    for (int r = 0; r < world; ++r) mean += (r + 1) * Input(r, k);
    mean = mean / (world * (world + 1) / 2) + 100.0;
    ASSERT_NEAR(results[0][k], mean, 1e-4) << "element " << k;
  }
  for (int r = 1; r < world; ++r) EXPECT_EQ(results[r], results[0]) << "rank " << r;
}

TEST(NcclLocalReducer, SizeMismatchAndNanFailEveryRankAndLeaveTheValues) {
  int world = 0;
  HIVEMIND_REQUIRE_GPUS(2, world);
  auto statuses = OnEveryGpu(world, [&](int r, NcclLocalReducer* reducer) {
    // Rank 1 passes one value less.
    DeviceBuffer values(r, std::vector<float>(kNumel - (r == 1 ? 1 : 0), 1.0f));
    absl::Status first = reducer->AllReduce({values.data, values.size});
    EXPECT_EQ(first.code(), absl::StatusCode::kInvalidArgument) << first;
    EXPECT_TRUE(absl::StrContains(first.message(), "rank 1 passed")) << first;
    // Rank 0 holds a NaN.
    std::vector<float> host(kNumel, 2.0f);
    if (r == 0) host[7] = std::nanf("");
    DeviceBuffer nan_values(r, host);
    absl::Status second = reducer->AllReduce({nan_values.data, nan_values.size});
    EXPECT_EQ(second.code(), absl::StatusCode::kInvalidArgument) << second;
    EXPECT_TRUE(absl::StrContains(second.message(), "NaN or Inf")) << second;
    if (r != 0) {
      EXPECT_EQ(nan_values.Read(), host);
    }
    // The group is still in step.
    DeviceBuffer good(r, std::vector<float>(kNumel, static_cast<float>(r)));
    return reducer->AllReduce({good.data, good.size});
  });
  for (const absl::Status& s : statuses) EXPECT_TRUE(s.ok()) << s;
}

TEST(NcclLocalReducer, AMissingRankIsADeadlineNotAHang) {
  int world = 0;
  HIVEMIND_REQUIRE_GPUS(2, world);
  auto statuses = OnEveryGpu(world, [&](int r, NcclLocalReducer* reducer) {
    if (r != 0) return absl::OkStatus();  // the workers never call AllReduce
    DeviceBuffer values(r, std::vector<float>(kNumel, 1.0f));
    LocalReduceOptions call;
    call.timeout = absl::Seconds(2);
    absl::Status first = reducer->AllReduce({values.data, values.size}, call);
    EXPECT_EQ(first.code(), absl::StatusCode::kDeadlineExceeded) << first;
    absl::Status second = reducer->AllReduce({values.data, values.size}, call);
    EXPECT_EQ(second.code(), absl::StatusCode::kFailedPrecondition) << second;
    return absl::OkStatus();
  });
  for (const absl::Status& s : statuses) EXPECT_TRUE(s.ok()) << s;
}

// GPU values averaged with a CPU peer through a real swarm: download to pinned
// memory on the staging stream, one averager step, upload ordered before later work
// on the compute stream.
TEST(PinnedStaging, GpuValuesAverageWithTheSwarmThroughPinnedMemory) {
  int devices = 0;
  HIVEMIND_REQUIRE_GPUS(1, devices);
  ASSERT_GE(devices, 1);  // the GPU peer's values live on device 0
  DhtOptions dht_options;
  dht_options.run_id = "staging";
  auto bootstrap = OpenDhtNode::Create(dht_options);
  ASSERT_TRUE(bootstrap.ok()) << bootstrap.status();
  dht_options.initial_peers = {(*bootstrap)->address()};
  auto gpu_dht = OpenDhtNode::Create(dht_options);
  auto cpu_dht = OpenDhtNode::Create(dht_options);
  ASSERT_TRUE(gpu_dht.ok() && cpu_dht.ok());
  AveragerOptions options;
  options.prefix = "staging.grads";
  options.target_group_size = 2;
  options.matchmaking_time = absl::Seconds(8);
  auto gpu_peer = DecentralizedAverager::Create(gpu_dht->get(), {kNumel}, options);
  auto cpu_peer = DecentralizedAverager::Create(cpu_dht->get(), {kNumel}, options);
  ASSERT_TRUE(gpu_peer.ok() && cpu_peer.ok());
  {
    TensorLock tensors = (*cpu_peer)->LockTensors();
    for (size_t k = 0; k < kNumel; ++k) tensors.flat()[k] = Input(1, k);
  }
  std::vector<float> host(kNumel);
  for (size_t k = 0; k < kNumel; ++k) host[k] = Input(0, k);
  DeviceBuffer grads(0, host);
  cudaStream_t compute = nullptr;
  ASSERT_EQ(cudaStreamCreate(&compute), cudaSuccess);
  PinnedStagingOptions staging_options;
  staging_options.device = 0;
  staging_options.capacity = kNumel;
  auto staging = PinnedStaging::Create(staging_options);
  ASSERT_TRUE(staging.ok()) << staging.status();

  ASSERT_TRUE((*staging)->StartDownload(grads.data, kNumel, compute).ok());
  auto downloaded = (*staging)->FinishDownload(absl::Seconds(10));
  ASSERT_TRUE(downloaded.ok()) << downloaded.status();
  EXPECT_EQ(std::vector<float>(downloaded->begin(), downloaded->end()), host);
  StepOptions step;
  step.round = "r0";
  StepHandle cpu_step = (*cpu_peer)->Step(step);
  ASSERT_TRUE(AveragerSwarmStep(gpu_peer->get(), step)(*downloaded, 1.0f).ok());
  ASSERT_TRUE(cpu_step.Wait().ok());
  ASSERT_TRUE((*staging)->StartUpload(grads.data, kNumel, compute).ok());
  ASSERT_TRUE((*staging)->FinishUpload(absl::Seconds(10)).ok());
  ASSERT_EQ(cudaStreamSynchronize(compute), cudaSuccess);
  const std::vector<float> averaged = grads.Read();
  for (size_t k = 0; k < kNumel; ++k) {
    ASSERT_NEAR(averaged[k], 0.5f * (Input(0, k) + Input(1, k)), 1e-5) << "element " << k;
  }
  cudaStreamDestroy(compute);
}

}  // namespace
}  // namespace hivemind
