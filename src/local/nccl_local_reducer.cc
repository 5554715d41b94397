#include "hivemind/local/nccl_local_reducer.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "local/cuda_util.h"
#include "local/swarm_call.h"
#include "util/status_macros.h"

namespace hivemind {
namespace {

using internal::CudaStatus;
using internal::NcclStatus;

// What every rank tells the others before a round (all-gathered), and what the
// leader tells every rank after it (broadcast). Doubles: sizes stay exact to 2^53.
constexpr size_t kHeaderDoubles = 3;  // size, weight, invalid reason (below)
constexpr size_t kMessageSize = 200;

enum InputCheck { kInputOk = 0, kBadWeight = 1, kOverCapacity = 2 };

struct Outcome {
  double code = 0;        // absl::StatusCode
  double has_values = 0;  // 1: the values broadcast follows
  char message[kMessageSize] = {};
};

absl::Status ValidateOptions(const NcclLocalReducerOptions& o) {
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", o.rank, " is not in [0, world_size ", o.world_size, ")"));
  }
  if (o.capacity == 0) return absl::InvalidArgumentError("capacity must be positive");
  if (o.unique_id.size() != sizeof(ncclUniqueId)) {
    return absl::InvalidArgumentError(absl::StrCat("unique_id has ", o.unique_id.size(),
                                                   " bytes, not ", sizeof(ncclUniqueId)));
  }
  if (o.init_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("init_timeout must be positive");
  }
  return absl::OkStatus();
}

}  // namespace

class NcclLocalReducer::Impl {
 public:
  explicit Impl(NcclLocalReducerOptions options) : options_(std::move(options)) {}
  ~Impl();

  absl::Status Init();
  const NcclLocalReducerOptions& options() const { return options_; }
  absl::Status AllReduce(absl::Span<float> values, const LocalReduceOptions& options,
                         const SwarmStep& swarm_step);

 private:
  // Waits until the communicator has no call in progress (non-blocking mode).
  absl::Status WaitComm(absl::Time deadline, const char* what);
  // Waits until the stream's queued work is done (and NCCL reports no error).
  absl::Status WaitStream(absl::Time deadline, const char* what);
  absl::Status Break(absl::Status status);
  absl::Status ExchangeHeaders(size_t size, float weight, absl::Time deadline);
  absl::Status CheckHeaders(float* total_weight) const;
  absl::Status ReduceToLeader(absl::Span<float> values, float scale, absl::Time deadline);
  Outcome RunLeaderStep(size_t size, float total_weight, const SwarmStep& swarm_step,
                        absl::Time deadline, absl::Status* fatal);
  absl::Status BroadcastOutcome(Outcome* outcome, absl::Time deadline);

  const NcclLocalReducerOptions options_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  bool own_stream_ = false;
  double* host_headers_ = nullptr;    // pinned, world_size x kHeaderDoubles
  double* device_headers_ = nullptr;  // device, world_size x kHeaderDoubles
  Outcome* host_outcome_ = nullptr;   // pinned
  Outcome* device_outcome_ = nullptr;
  float* host_values_ = nullptr;     // pinned, capacity (leader only)
  float* device_scratch_ = nullptr;  // device, capacity (leader only)
  absl::Status broken_;
};

absl::Status NcclLocalReducer::Impl::Init() {
  HIVEMIND_ASSIGN_OR_RETURN(const int devices, CudaDeviceCount());
  if (options_.device < 0 || options_.device >= devices) {
    return absl::UnavailableError(
        absl::StrCat("no CUDA device ", options_.device, " (", devices, " present)"));
  }
  HIVEMIND_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  stream_ = options_.stream;
  if (stream_ == nullptr) {
    HIVEMIND_CUDA_RETURN_IF_ERROR(
        cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    own_stream_ = true;
  }
  const size_t header_bytes =
      sizeof(double) * kHeaderDoubles * static_cast<size_t>(options_.world_size);
  HIVEMIND_CUDA_RETURN_IF_ERROR(cudaMallocHost(&host_headers_, header_bytes));
  HIVEMIND_CUDA_RETURN_IF_ERROR(cudaMalloc(&device_headers_, header_bytes));
  HIVEMIND_CUDA_RETURN_IF_ERROR(cudaMallocHost(&host_outcome_, sizeof(Outcome)));
  HIVEMIND_CUDA_RETURN_IF_ERROR(cudaMalloc(&device_outcome_, sizeof(Outcome)));
  if (options_.rank == 0) {
    HIVEMIND_CUDA_RETURN_IF_ERROR(
        cudaMallocHost(&host_values_, sizeof(float) * options_.capacity));
    HIVEMIND_CUDA_RETURN_IF_ERROR(
        cudaMalloc(&device_scratch_, sizeof(float) * options_.capacity));
  }
  ncclUniqueId id;
  std::memcpy(&id, options_.unique_id.data(), sizeof(id));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // every wait below has a deadline
  const ncclResult_t result =
      ncclCommInitRankConfig(&comm_, options_.world_size, id, options_.rank, &config);
  if (!NcclStatus(result, "ncclCommInitRankConfig", nullptr).ok()) {
    comm_ = nullptr;
    return NcclStatus(result, "ncclCommInitRankConfig", nullptr);
  }
  absl::Status status =
      WaitComm(absl::Now() + options_.init_timeout, "joining the NCCL group");
  if (!status.ok()) {
    ncclCommAbort(comm_);
    comm_ = nullptr;
  }
  return status;
}

NcclLocalReducer::Impl::~Impl() {
  cudaSetDevice(options_.device);
  if (comm_ != nullptr) {
    bool finalized = false;
    if (broken_.ok()) {
      const ncclResult_t result = ncclCommFinalize(comm_);
      finalized = NcclStatus(result, "ncclCommFinalize", comm_).ok() &&
                  WaitComm(absl::Now() + absl::Seconds(10), "ncclCommFinalize").ok();
    }
    if (finalized) {
      ncclCommDestroy(comm_);
    } else {
      ncclCommAbort(comm_);
    }
  }
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  cudaFreeHost(host_headers_);
  cudaFree(device_headers_);
  cudaFreeHost(host_outcome_);
  cudaFree(device_outcome_);
  cudaFreeHost(host_values_);
  cudaFree(device_scratch_);
  if (own_stream_) cudaStreamDestroy(stream_);
}

absl::Status NcclLocalReducer::Impl::WaitComm(absl::Time deadline, const char* what) {
  for (;;) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t result = ncclCommGetAsyncError(comm_, &state);
    if (result != ncclSuccess) return NcclStatus(result, what, comm_);
    if (state == ncclSuccess) return absl::OkStatus();
    if (state != ncclInProgress) return NcclStatus(state, what, comm_);  // an error
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(what, ": not done in time (a rank is late or dead)"));
    }
    absl::SleepFor(absl::Microseconds(50));
  }
}

absl::Status NcclLocalReducer::Impl::WaitStream(absl::Time deadline, const char* what) {
  return internal::PollUntilDone(
      [this] { return cudaStreamQuery(stream_); }, deadline, what,
      [this, deadline, what] { return WaitComm(deadline, what); });
}

absl::Status NcclLocalReducer::Impl::Break(absl::Status status) {
  if (broken_.ok()) {
    broken_ = status;
    // Unblocks this rank's queued NCCL kernels; the other ranks fail by their deadline.
    if (comm_ != nullptr) ncclCommAbort(comm_);
    comm_ = nullptr;
  }
  return status;
}

// ---- The round ----

absl::Status NcclLocalReducer::Impl::ExchangeHeaders(size_t size, float weight,
                                                     absl::Time deadline) {
  const int rank = options_.rank;
  double* mine = host_headers_ + static_cast<size_t>(rank) * kHeaderDoubles;
  mine[0] = static_cast<double>(size);
  mine[1] = weight;
  mine[2] = !(std::isfinite(weight) && weight >= 0.0f) ? kBadWeight
            : size > options_.capacity                 ? kOverCapacity
                                                       : kInputOk;
  double* device_mine = device_headers_ + static_cast<size_t>(rank) * kHeaderDoubles;
  HIVEMIND_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(device_mine, mine,
                                                sizeof(double) * kHeaderDoubles,
                                                cudaMemcpyHostToDevice, stream_));
  HIVEMIND_RETURN_IF_ERROR(
      NcclStatus(ncclAllGather(device_mine, device_headers_, kHeaderDoubles, ncclFloat64,
                               comm_, stream_),
                 "ncclAllGather", comm_));
  HIVEMIND_RETURN_IF_ERROR(WaitComm(deadline, "ncclAllGather"));
  HIVEMIND_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
      host_headers_, device_headers_,
      sizeof(double) * kHeaderDoubles * static_cast<size_t>(options_.world_size),
      cudaMemcpyDeviceToHost, stream_));
  return WaitStream(deadline, "exchanging the round's sizes and weights");
}

// The same verdict on every rank: they all read the same gathered headers.
absl::Status NcclLocalReducer::Impl::CheckHeaders(float* total_weight) const {
  const double leader_size = host_headers_[0];
  double total = 0.0;
  for (int r = 0; r < options_.world_size; ++r) {
    const double* h = host_headers_ + static_cast<size_t>(r) * kHeaderDoubles;
    if (h[2] == kBadWeight) {
      return absl::InvalidArgumentError(
          absl::StrCat("rank ", r, ": weight ", h[1], " is not finite and >= 0"));
    }
    if (h[2] == kOverCapacity) {
      return absl::InvalidArgumentError(absl::StrCat("rank ", r, ": passed ", h[0],
                                                     " values, more than the capacity ",
                                                     options_.capacity));
    }
    if (h[0] != leader_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rank ", r, " passed ", h[0], " values, the leader ", leader_size));
    }
    total += h[1];
  }
  *total_weight = static_cast<float>(total);
  return absl::OkStatus();
}

absl::Status NcclLocalReducer::Impl::ReduceToLeader(absl::Span<float> values, float scale,
                                                    absl::Time deadline) {
  ncclRedOp_t op;
  HIVEMIND_RETURN_IF_ERROR(NcclStatus(
      ncclRedOpCreatePreMulSum(&op, &scale, ncclFloat32, ncclScalarHostImmediate, comm_),
      "ncclRedOpCreatePreMulSum", comm_));
  HIVEMIND_RETURN_IF_ERROR(WaitComm(deadline, "ncclRedOpCreatePreMulSum"));
  float* receive = options_.rank == 0 ? device_scratch_ : values.data();
  absl::Status status = NcclStatus(ncclReduce(values.data(), receive, values.size(),
                                              ncclFloat32, op, 0, comm_, stream_),
                                   "ncclReduce", comm_);
  if (status.ok()) status = WaitComm(deadline, "ncclReduce");
  ncclRedOpDestroy(op, comm_);
  return status;
}

Outcome NcclLocalReducer::Impl::RunLeaderStep(size_t size, float total_weight,
                                              const SwarmStep& swarm_step,
                                              absl::Time deadline, absl::Status* fatal) {
  Outcome outcome;
  *fatal = CudaStatus(cudaMemcpyAsync(host_values_, device_scratch_, sizeof(float) * size,
                                      cudaMemcpyDeviceToHost, stream_),
                      "cudaMemcpyAsync");
  if (fatal->ok()) *fatal = WaitStream(deadline, "copying the local average to the host");
  if (!fatal->ok()) return outcome;
  absl::Span<float> average(host_values_, size);
  absl::Status status;
  if (!std::all_of(average.begin(), average.end(),
                   [](float v) { return std::isfinite(v); })) {
    status = absl::InvalidArgumentError(
        "the local average holds NaN or Inf (some rank's values do)");
  } else {
    if (swarm_step) status = internal::CallSwarmStep(swarm_step, average, total_weight);
    *fatal =
        CudaStatus(cudaMemcpyAsync(device_scratch_, host_values_, sizeof(float) * size,
                                   cudaMemcpyHostToDevice, stream_),
                   "cudaMemcpyAsync");
    outcome.has_values = 1;
  }
  outcome.code = static_cast<double>(status.code());
  const size_t n = std::min(status.message().size(), kMessageSize - 1);
  std::memcpy(outcome.message, status.message().data(), n);
  return outcome;
}

absl::Status NcclLocalReducer::Impl::BroadcastOutcome(Outcome* outcome,
                                                      absl::Time deadline) {
  if (options_.rank == 0) *host_outcome_ = *outcome;
  HIVEMIND_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
      device_outcome_, host_outcome_, sizeof(Outcome), cudaMemcpyHostToDevice, stream_));
  HIVEMIND_RETURN_IF_ERROR(
      NcclStatus(ncclBroadcast(device_outcome_, device_outcome_, sizeof(Outcome),
                               ncclChar, 0, comm_, stream_),
                 "ncclBroadcast", comm_));
  HIVEMIND_RETURN_IF_ERROR(WaitComm(deadline, "ncclBroadcast"));
  HIVEMIND_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
      host_outcome_, device_outcome_, sizeof(Outcome), cudaMemcpyDeviceToHost, stream_));
  HIVEMIND_RETURN_IF_ERROR(WaitStream(deadline, "receiving the leader's outcome"));
  *outcome = *host_outcome_;
  outcome->message[kMessageSize - 1] = '\0';
  return absl::OkStatus();
}

absl::Status NcclLocalReducer::Impl::AllReduce(absl::Span<float> values,
                                               const LocalReduceOptions& options,
                                               const SwarmStep& swarm_step) {
  if (!broken_.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the local group broke earlier: ", broken_.ToString()));
  }
  const absl::Time deadline = absl::Now() + options.timeout;
  absl::Status fatal = CudaStatus(cudaSetDevice(options_.device), "cudaSetDevice");
  if (fatal.ok()) fatal = ExchangeHeaders(values.size(), options.weight, deadline);
  if (!fatal.ok()) return Break(fatal);
  float total_weight = 0.0f;
  HIVEMIND_RETURN_IF_ERROR(CheckHeaders(&total_weight));  // the same on every rank

  const float scale = total_weight > 0.0f
                          ? options.weight / total_weight
                          : 1.0f / static_cast<float>(options_.world_size);
  fatal = ReduceToLeader(values, scale, deadline);
  if (!fatal.ok()) return Break(fatal);
  Outcome outcome;
  if (options_.rank == 0) {
    outcome = RunLeaderStep(values.size(), total_weight, swarm_step, deadline, &fatal);
    if (!fatal.ok()) return Break(fatal);
  }
  fatal = BroadcastOutcome(&outcome, deadline);
  if (fatal.ok() && outcome.has_values != 0) {
    const float* source = options_.rank == 0 ? device_scratch_ : values.data();
    fatal = NcclStatus(ncclBroadcast(source, values.data(), values.size(), ncclFloat32, 0,
                                     comm_, stream_),
                       "ncclBroadcast", comm_);
    if (fatal.ok()) fatal = WaitStream(deadline, "broadcasting the result");
  }
  if (!fatal.ok()) return Break(fatal);
  return absl::Status(static_cast<absl::StatusCode>(static_cast<int>(outcome.code)),
                      outcome.message);
}

// ---- The public class ----

absl::StatusOr<std::string> NewNcclUniqueId() {
  ncclUniqueId id;
  HIVEMIND_RETURN_IF_ERROR(NcclStatus(ncclGetUniqueId(&id), "ncclGetUniqueId", nullptr));
  return std::string(reinterpret_cast<const char*>(&id), sizeof(id));
}

absl::StatusOr<std::unique_ptr<NcclLocalReducer>> NcclLocalReducer::Create(
    const NcclLocalReducerOptions& options) {
  HIVEMIND_RETURN_IF_ERROR(ValidateOptions(options));
  auto impl = std::make_unique<Impl>(options);
  HIVEMIND_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<NcclLocalReducer>(new NcclLocalReducer(std::move(impl)));
}

NcclLocalReducer::NcclLocalReducer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NcclLocalReducer::~NcclLocalReducer() = default;

int NcclLocalReducer::rank() const { return impl_->options().rank; }
int NcclLocalReducer::world_size() const { return impl_->options().world_size; }

absl::Status NcclLocalReducer::AllReduce(absl::Span<float> values,
                                         const LocalReduceOptions& options,
                                         const SwarmStep& swarm_step) {
  return impl_->AllReduce(values, options, swarm_step);
}

}  // namespace hivemind
