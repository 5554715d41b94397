// NcclLocalReducer: the LocalReducer of GPUs on one host (built with
// -DHIVEMIND_WITH_NCCL=ON, library hivemind_nccl). One object per GPU, each in its
// own thread or process; `values` spans are DEVICE memory of that rank's GPU.
//
// One call, on every rank:
//  1. the ranks all-gather (size, weight, validity), so every rank takes the same
//     decision (a size mismatch or bad weight fails every rank, naming the rank);
//  2. ncclReduce to the leader with a pre-multiplied sum (each rank scales its own
//     values by weight / total weight inside NCCL: no kernel of ours), into a device
//     scratch buffer of the leader;
//  3. the leader copies the local average to a pinned host buffer, checks it is
//     finite, runs the swarm step on it and copies the result back;
//  4. the leader broadcasts the outcome, then (if there are values) ncclBroadcast
//     writes the result into every rank's `values`.
//
// Deadlines. The communicator is non-blocking: every wait polls the stream and
// ncclCommGetAsyncError against the call's deadline, and on expiry aborts the
// communicator (ncclCommAbort) so nothing stays blocked. NCCL has no liveness check:
// a dead rank is reported as kDeadlineExceeded at the deadline (the CPU reducer
// reports it at once), and breaks the group (as in local_reducer.h).
//
// Torch-free: raw device pointers and CUDA streams, so it builds against any CUDA
// libtorch or none. With torch: values = {tensor.data_ptr<float>(), tensor.numel()},
// stream = at::cuda::getCurrentCUDAStream().stream().
#ifndef HIVEMIND_LOCAL_NCCL_LOCAL_REDUCER_H_
#define HIVEMIND_LOCAL_NCCL_LOCAL_REDUCER_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "hivemind/local/cuda_device.h"
#include "hivemind/local/local_reducer.h"

namespace hivemind {

// A fresh NCCL unique id (ncclGetUniqueId) as bytes: rank 0 makes it and every rank
// passes it as NcclLocalReducerOptions::unique_id (through a file, a pipe, the CPU
// group...). kInternal with NCCL's reason on failure.
absl::StatusOr<std::string> NewNcclUniqueId();

struct NcclLocalReducerOptions {
  int rank = 0;        // in [0, world_size); rank 0 is the leader. Default: 0.
  int world_size = 1;  // GPUs in the group. Default: 1.
  int device = 0;      // this rank's CUDA device ordinal. Default: 0.

  // NewNcclUniqueId() of rank 0, the same for every rank. Required.
  std::string unique_id;

  // The largest span AllReduce accepts, in floats (the leader's device scratch and
  // pinned host buffer). Required (> 0).
  size_t capacity = 0;

  // The stream the collectives are queued on: AllReduce runs after the work queued
  // on it before the call. Not owned. Null: a non-blocking stream of the reducer's
  // own (then the caller must have finished writing `values`). Default: null.
  CudaStream stream = nullptr;

  // How long Create waits for every rank to join the communicator. Default: 60 s.
  absl::Duration init_timeout = absl::Seconds(60);
};

// Thread safety: as LocalReducer. Every call sets this thread's current device to
// options.device.
class NcclLocalReducer : public LocalReducer {
 public:
  // Joins the communicator; blocks until every rank has joined. Returns
  // kInvalidArgument (bad rank, world size, capacity or unique id), kUnavailable (no
  // such CUDA device), kDeadlineExceeded (not every rank joined within
  // init_timeout), kInternal (CUDA or NCCL failed, with its reason).
  static absl::StatusOr<std::unique_ptr<NcclLocalReducer>> Create(
      const NcclLocalReducerOptions& options);

  ~NcclLocalReducer() override;
  NcclLocalReducer(const NcclLocalReducer&) = delete;
  NcclLocalReducer& operator=(const NcclLocalReducer&) = delete;

  int rank() const override;
  int world_size() const override;

  // See LocalReducer::AllReduce; `values` is device memory of options.device. A
  // non-finite local average fails every rank with kInvalidArgument (NCCL cannot say
  // whose values held NaN or Inf). CUDA or NCCL errors: kInternal (breaks the group).
  absl::Status AllReduce(absl::Span<float> values, const LocalReduceOptions& options = {},
                         const SwarmStep& swarm_step = nullptr) override;

 private:
  class Impl;
  explicit NcclLocalReducer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hivemind

#endif  // HIVEMIND_LOCAL_NCCL_LOCAL_REDUCER_H_
