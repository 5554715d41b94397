// LocalReducer: several workers on one host (trainer processes, GPUs) that appear to
// the swarm as one peer. Each call averages the workers' values locally (weighted by
// their weights), hands the local average to one callback on the leader (rank 0),
// typically one DecentralizedAverager step with the summed weight (swarm_step.h), and
// gives the leader's result back to every worker:
//
//   worker values x_r, weights w_r  --reduce-->  leader: m = sum(w_r x_r) / sum(w_r)
//   leader: swarm_step(m, sum(w_r))  (m becomes the swarm's average)
//   leader  --broadcast-->  every worker holds the same m (bit-identical)
//
// Because the leader joins the swarm with weight sum(w_r), the swarm's weighted average
// equals that of a swarm in which every local worker were a peer of its own.
//
// Implementations: CpuLocalReducer (cpu_local_reducer.h: processes or threads on one
// host, over shared memory) and NcclLocalReducer (nccl_local_reducer.h, built with
// HIVEMIND_WITH_NCCL: GPUs, over NCCL, values in device memory).
//
// Calls are collective: every rank of the group calls AllReduce the same number of
// times, in the same order, with spans of the same size.
#ifndef HIVEMIND_LOCAL_LOCAL_REDUCER_H_
#define HIVEMIND_LOCAL_LOCAL_REDUCER_H_

#include <functional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace hivemind {

// The leader's step with the swarm. Gets the local weighted average (host memory,
// writable) and the group's summed weight; may overwrite the values with the swarm's
// average. Runs on the leader's calling thread. A non-OK status reaches every rank
// (see LocalReducer::AllReduce); the values it leaves are what every rank receives.
using SwarmStep =
    std::function<absl::Status(absl::Span<float> local_average, float total_weight)>;

// Per-call options.
struct LocalReduceOptions {
  // This worker's weight (for example its number of samples). Finite, >= 0. When every
  // weight of a call is 0 the local average is the plain mean and the swarm step gets
  // weight 0. Default: 1.
  float weight = 1.0f;

  // The whole call on this rank, including (for workers) the time the leader spends
  // in its swarm step: set it above the swarm step's own timeout. Default: 120 s.
  absl::Duration timeout = absl::Seconds(120);
};

// A group of `world_size()` local workers, of which this object is rank `rank()`.
//
// Thread safety: one call at a time per object (calls are collective and ordered).
// Distinct objects (ranks) may be used from distinct threads or processes.
class LocalReducer {
 public:
  virtual ~LocalReducer() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  bool is_leader() const { return rank() == 0; }

  // Averages `values` in place with the other ranks (see the file comment). On the
  // leader, runs `swarm_step` (if not null) on the local average before it is given
  // back; other ranks ignore `swarm_step`. Blocks until every rank has the result, or
  // an error: at the latest `options.timeout` after the call (plus a few ms).
  //
  // Errors that leave the group usable (every rank gets the same status in the same
  // call; the next call proceeds):
  //  - kInvalidArgument: some rank passed a span of another size than the leader (or
  //    larger than the group's capacity), NaN or Inf values, or a bad weight. The
  //    message names the rank. Every rank's values are left unchanged.
  //  - the swarm step's own error (its code, the message prefixed "swarm step: "):
  //    every rank's values hold what the step left (the local average if it did not
  //    write them).
  // Errors that break the group (this and every later call on this object fail; the
  // other ranks fail too, by their deadline at the latest):
  //  - kUnavailable: another rank died or left the group (the message names it);
  //  - kDeadlineExceeded: the call did not complete within options.timeout;
  //  - kFailedPrecondition: the group broke in an earlier call (with its reason).
  virtual absl::Status AllReduce(absl::Span<float> values,
                                 const LocalReduceOptions& options = {},
                                 const SwarmStep& swarm_step = nullptr) = 0;
};

}  // namespace hivemind

#endif  // HIVEMIND_LOCAL_LOCAL_REDUCER_H_
