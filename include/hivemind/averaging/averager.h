// DecentralizedAverager: a set of tensors that a peer averages with the swarm in the
// background. Each Step finds a group through the DHT (matchmaking, Moshpit group
// bits), runs the butterfly all-reduce over the averager's own endpoint, and writes
// the average back into the tensors.
//
// Example:
//   AveragerOptions options;
//   options.prefix = "my_run.grads";
//   options.target_group_size = 4;
//   auto averager = DecentralizedAverager::Create(dht, {784 * 128, 128}, options);
//   { auto tensors = (*averager)->LockTensors(); Fill(tensors.flat()); }
//   StepHandle step = (*averager)->Step({.round = "epoch-7"});
//   absl::StatusOr<StepResult> result = step.Wait();
//
// Rounds. Peers meet under the DHT key "{prefix}.group.{bits}", declaring their
// round: peers that should average together must pass the same StepOptions::round
// (an epoch number, a time slot). Declarations of a round stay in the DHT until they
// expire (matchmaking.h), so do not reuse a round name.
#ifndef HIVEMIND_AVERAGING_AVERAGER_H_
#define HIVEMIND_AVERAGING_AVERAGER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "hivemind/averaging/allreduce.h"
#include "hivemind/averaging/group.h"
#include "hivemind/codec/codec.h"
#include "hivemind/dht/dht.h"
#include "hivemind/export.h"
#include "hivemind/net/endpoint.h"

namespace hivemind {

struct HIVEMIND_EXPORT AveragerOptions {
  // DHT key prefix of this averager (for example "{run}.grads"); peers averaging the
  // same tensors use the same prefix. Required.
  std::string prefix;

  // The averager's own endpoint (listen address, identity, limits). For client
  // mode set endpoint.client_mode and mode = MemberMode::kClient. Default: defaults
  // of EndpointOptions (127.0.0.1, a free port).
  EndpointOptions endpoint;

  // kNode: contributes and reduces. kClient (behind NAT, needs
  // endpoint.client_mode): contributes, reduces nothing. kAuxiliary: reduces,
  // contributes nothing (weight 0) and its tensors are never written. Default: kNode.
  MemberMode mode = MemberMode::kNode;

  // This peer's bandwidth, announced to its groups (load balancing), in any unit the
  // swarm agrees on; 0 = unknown. Default: 0.
  double bandwidth = 0.0;

  int target_group_size = 16;  // Default: 16.
  int min_group_size = 2;      // Default: 2.

  // One matchmaking attempt. Default: 5 s.
  absl::Duration matchmaking_time = absl::Seconds(5);

  // MatchmakingOptions::assemble_early: leaders do not wait for a full group once
  // everyone they heard declaring has joined. Default: false.
  bool assemble_early = false;

  // Moshpit: the length of the group bits ("0"/"1" characters). Peers start with
  // random bits and, after each round, draw new ones from their place in the group
  // (moshpit.h), so that successive rounds mix different peers. With g^d peers,
  // groups of g and d = log2(peers / g) bits, d + 1 rounds reach the global mean.
  // 0: one key for all, every round. Default: 0.
  int group_bits_length = 0;

  // The group bits of the first step (group_bits_length '0'/'1' characters); empty
  // draws them at random. Default: empty.
  std::string initial_group_bits;

  // Codec of what this peer sends. Not owned; must outlive the averager. Null: raw
  // float32. Default: null.
  const Codec* codec = nullptr;

  // Keep what the codec loses and add it to the next round's values (error
  // feedback). Default: false.
  bool error_feedback = false;

  // Send the change against the previous round's result when the group members
  // hold the same one (AllReduceOptions::reference): for averaging parameters,
  // which change slowly. Default: false.
  bool delta_mode = false;

  // All-reduce settings (see AllReduceOptions). Defaults: part_size 0 (automatic),
  // 4 parts in flight, sender timeout 10 s, round timeout 60 s.
  uint32_t part_size = 0;
  int max_parts_in_flight = 4;
  absl::Duration sender_timeout = absl::Seconds(10);
  absl::Duration allreduce_timeout = absl::Seconds(60);

  // How reducers combine contributions (mean or CenteredClip) and which they reject
  // (AllReduceOptions::aggregation). Every peer under `prefix` must use the same.
  // Default: the mean, max_abs_value 1e15.
  AggregationOptions aggregation;
};

struct HIVEMIND_EXPORT StepOptions {
  // This peer's weight in the average (for example its number of samples). Finite,
  // >= 0. Ignored by auxiliary peers. Default: 1.
  float weight = 1.0f;

  // Names the round; peers meet only within a round (see the file comment).
  // Empty: the number of steps this averager has started ("0", "1", ...), which
  // only suits peers that start together and step in lockstep. Default: empty.
  std::string round;

  // The whole step: matchmaking (with retries) and the all-reduce, which gets what
  // is left of it (at most AveragerOptions::allreduce_timeout). Zero: matchmaking
  // time plus the all-reduce timeout. Default: zero.
  absl::Duration timeout = absl::ZeroDuration();

  // When no group forms within one matchmaking attempt, try again while a whole
  // attempt still fits in `timeout`. Default: true.
  bool allow_retries = true;

  // A small payload (at most kMaxUserDataSize bytes) given to every member of the
  // group; StepResult::group holds every member's. Default: empty.
  std::string gather;

  // Averages the caller's buffer in place instead of the averager's tensors, with no
  // copy: `values` (the tensors' total size, in the same layout) is read and written
  // by the step's all-reduce and must be neither touched nor freed until the step is
  // done (Wait returned, or done() is true); the tensors are left as they are. An
  // auxiliary peer's buffer is never written (the step works on a copy). A size
  // other than the total is kInvalidArgument. Empty: the tensors. Default: empty.
  absl::Span<float> values;
};

enum class StepStage {
  kQueued = 0,           // waiting for an earlier step of this averager
  kLookingForGroup = 1,  // matchmaking
  kAveraging = 2,        // the all-reduce
  kDone = 3,             // the result is ready (success or failure)
};

struct HIVEMIND_EXPORT StepResult {
  // The group, in member order; group.members[i].user_data is member i's gather.
  GroupInfo group;
  int my_index = 0;
  // The all-reduce's report: spans that kept local values, excluded senders, bytes,
  // times (partial failures are here, not in the step's status).
  AllReduceReport report;
  // Matchmaking attempts made (1 when the first one found a group).
  int attempts = 0;
  // The group bits the step matched under.
  std::string group_bits;
};

namespace internal {
class StepState;
class AveragerCore;
}  // namespace internal

// The caller's view of one step. Cheap to copy (copies share the step).
//
// Thread safety: every method may be called from any thread.
class HIVEMIND_EXPORT StepHandle {
 public:
  StepStage stage() const;
  bool done() const { return stage() == StepStage::kDone; }

  // Blocks until the step is done and returns its result, or the step's error:
  //  - kInvalidArgument: a bad weight or an oversized gather, or tensors holding
  //    NaN or Inf (found at the all-reduce: nothing is sent);
  //  - kDeadlineExceeded: no group formed within the step's timeout;
  //  - kCancelled: cancelled, or the averager shut down before the all-reduce began
  //    (or during it).
  absl::StatusOr<StepResult> Wait() const;

  // Waits at most `timeout`; returns done().
  bool WaitFor(absl::Duration timeout) const;

  // Cancels the step if it has not reached the all-reduce: it then ends with
  // kCancelled as soon as its current matchmaking attempt ends. A running
  // all-reduce is not interrupted (its group depends on it).
  void Cancel() const;

 private:
  friend class internal::AveragerCore;
  explicit StepHandle(std::shared_ptr<internal::StepState> state);
  std::shared_ptr<internal::StepState> state_;
};

// Exclusive access to the averager's tensors: while it lives, no step reads or
// writes them. Movable, not copyable.
class HIVEMIND_EXPORT TensorLock {
 public:
  // Every tensor, back to back, in the order given to Create.
  absl::Span<float> flat() const { return flat_; }
  // Tensor `i` (i < sizes().size()).
  absl::Span<float> tensor(size_t i) const;
  const std::vector<size_t>& sizes() const { return *sizes_; }

 private:
  friend class internal::AveragerCore;
  TensorLock(std::unique_lock<std::mutex> lock, absl::Span<float> flat,
             const std::vector<size_t>* sizes);
  std::unique_lock<std::mutex> lock_;
  absl::Span<float> flat_;
  const std::vector<size_t>* sizes_;
};

// Owns the tensors (allocated at the first LockTensors or tensor step: an averager
// whose steps all bring their own StepOptions::values holds none), an endpoint, a
// matchmaker, an all-reducer and one background thread that runs the steps one after
// another. Memory per element of the tensors: the tensors and a working copy of
// them for tensor steps (none for in-place steps), one residual with error feedback,
// one reference in delta mode.
//
// Thread safety: every method may be called from any thread. The DHT must outlive
// the averager. Destroying the averager shuts it down.
class HIVEMIND_EXPORT DecentralizedAverager {
 public:
  // Creates an averager of (zero-filled) tensors with the given element counts.
  // Returns kInvalidArgument for an empty prefix, no tensors, a zero-sized
  // tensor, group sizes out of order (2 <= min <= target), client mode without
  // endpoint.client_mode (or the reverse), a group_bits_length over 64 or
  // initial_group_bits that do not fit it, non-positive timeouts, or the
  // endpoint's errors (endpoint.h).
  static absl::StatusOr<std::unique_ptr<DecentralizedAverager>> Create(
      Dht* dht, std::vector<size_t> tensor_sizes, AveragerOptions options);

  ~DecentralizedAverager();
  DecentralizedAverager(const DecentralizedAverager&) = delete;
  DecentralizedAverager& operator=(const DecentralizedAverager&) = delete;

  // Queues a step and returns at once. After Shutdown the handle is done with
  // kCancelled.
  StepHandle Step(const StepOptions& options = {});

  // Locks the tensors (blocks while a step reads or writes them: a copy in, a copy
  // out; never for a whole round).
  TensorLock LockTensors();

  // The element counts given to Create.
  const std::vector<size_t>& tensor_sizes() const;

  // The group bits the next step will match under.
  std::string group_bits() const;

  // This averager's endpoint (its id, its address); state sharing may serve over it.
  Endpoint* endpoint();

  // Cancels queued steps, ends the running one (a matchmaking attempt runs to its
  // end; an all-reduce ends with kCancelled) and joins the thread. Idempotent.
  void Shutdown();

 private:
  explicit DecentralizedAverager(std::unique_ptr<internal::AveragerCore> core);
  std::unique_ptr<internal::AveragerCore> core_;
};

// The schema hash averagers announce for tensors of these sizes: peers whose hashes
// differ never share a group.
HIVEMIND_EXPORT uint64_t TensorSchemaHash(const std::vector<size_t>& tensor_sizes);

}  // namespace hivemind

#endif  // HIVEMIND_AVERAGING_AVERAGER_H_
