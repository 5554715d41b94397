// One all-reduce round as seen by one member: the sender side (streaming parts to
// every reducer and applying the results) and the reducer side (accumulating the
// parts of this member's span and answering each with the averaged part). Runs on
// the thread that called AllReducer::Run; the endpoint's I/O thread only queues
// events into the round's inbox.
#ifndef HIVEMIND_AVERAGING_ROUND_H_
#define HIVEMIND_AVERAGING_ROUND_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "averaging/messages.h"
#include "hivemind/averaging/allreduce.h"
#include "util/buffer_pool.h"
#include "util/mutex.h"

namespace hivemind {
namespace internal {

struct PartEvent {
  Message message;
  Responder responder;
};

struct ResultEvent {
  int reducer = 0;
  uint32_t part = 0;
  absl::StatusOr<Message> reply;
};

// Where the I/O thread drops events for a round. Shared with reply callbacks, which
// may outlive the round.
class RoundInbox {
 public:
  void PushPart(PartEvent event);
  void PushResult(ResultEvent event);
  // Waits until an event is queued or `deadline` passes, then moves every queued
  // event into the outputs.
  void WaitAndTake(absl::Time deadline, std::vector<PartEvent>* parts,
                   std::vector<ResultEvent>* results);

 private:
  Mutex mu_;
  CondVar cv_;
  std::vector<PartEvent> parts_ ABSL_GUARDED_BY(mu_);
  std::vector<ResultEvent> results_ ABSL_GUARDED_BY(mu_);
};

class Round {
 public:
  // Arguments are validated by AllReducer::Run. `codec` is never null here.
  Round(Endpoint* endpoint, const GroupInfo& group, int my_index,
        absl::Span<float> values, const AllReduceOptions& options, const Codec* codec,
        std::shared_ptr<RoundInbox> inbox, std::shared_ptr<BufferPool> pool);

  // Runs the round to its end; kCancelled if the endpoint shut down.
  absl::StatusOr<AllReduceReport> Run();

 private:
  struct SpanLayout {
    uint64_t begin = 0;
    uint64_t end = 0;
    uint32_t parts = 0;
    uint64_t part_size = 0;  // elements
  };
  struct Outgoing {  // this member's parts of one reducer's span
    bool active = false;
    bool delta = false;  // both hold the same reference
    uint32_t next_part = 0;
    int in_flight = 0;
    uint32_t averaged = 0;
    absl::Status status;
  };
  struct Waiting {
    Responder responder;
    PayloadKind kind;
  };
  struct Sender {           // a member, as the reducer of this member's span sees it
    bool expected = false;  // this reducer waits for its parts
    uint32_t delivered = 0;
    // A contribution of theirs to this member's span was left out as an outlier
    // (CenteredClip's reject ratio).
    bool outlier = false;
    // Parts it delivered that this reducer has not answered yet: while it has any,
    // the sender may be waiting on us (its window is full), so it is not late.
    uint32_t unanswered = 0;
    absl::Time last_progress;
  };
  struct ReducedPart {  // one part of this member's own span
    double weight_sum = 0.0;
    double delta_weight = 0.0;   // weight of parts that came as deltas
    std::vector<bool> received;  // by sender
    // CenteredClip keeps every sender's contribution (full values) until the part
    // is complete; by sender, empty for those that have not delivered.
    std::vector<std::vector<float>> inputs;
    std::vector<float> input_weights;
    std::vector<Waiting> waiting;
    bool finalized = false;
    bool averaged = false;
  };

  void Layout();
  uint64_t PartBegin(int reducer, uint32_t part) const;
  uint64_t PartEnd(int reducer, uint32_t part) const;
  bool Contributes() const;
  uint64_t SeedFor(uint32_t part) const;

  void SendMore();
  void SendPart(int reducer, uint32_t part);
  void OnResult(ResultEvent& event);

  void OnPart(PartEvent& event);
  absl::Status AcceptPart(PartEvent& event);
  // Checks a part's decoded values and adds them to the part: into the accumulator
  // (mean) or kept (CenteredClip). On error nothing was added.
  absl::Status Contribute(const PartHeader& header, absl::string_view payload,
                          ReducedPart& p);
  bool Clipping() const {
    return options_.aggregation.method == Aggregation::kCenteredClip;
  }
  // CenteredClip of part k's contributions (this member's own included) into `out`.
  absl::Status CombineClipped(uint32_t k, absl::Span<float> out);
  void ExcludeLateSenders(absl::Time now);
  void Exclude(int sender, absl::Status why);
  void FinalizeReady();
  void Finalize(uint32_t part);
  // Encodes `averaged` (minus the reference for kDelta) as a result body; `residual`
  // (may be null) is added first and receives what the encoding lost.
  absl::StatusOr<SharedBytes> EncodeResult(uint32_t part, PayloadKind kind,
                                           absl::Span<const float> averaged,
                                           float* residual);
  // `header` then the codec payload of values (minus the reference at global index
  // `begin` when `delta`, plus `residual` when set), in a pooled buffer; what the
  // encoding lost goes to `residual`.
  absl::StatusOr<SharedBytes> EncodeBody(absl::string_view header,
                                         absl::Span<const float> values, uint64_t begin,
                                         bool delta, uint32_t part, float* residual);
  // Writes the values a result payload stands for into values_[begin, end).
  absl::Status ApplyResult(absl::string_view payload, PayloadKind kind, uint64_t begin,
                           uint64_t end);
  bool Finished() const;
  AllReduceReport MakeReport();

  Endpoint* endpoint_;
  const GroupInfo& group_;
  const int me_;
  absl::Span<float> values_;
  const AllReduceOptions& options_;
  const Codec* codec_;
  std::shared_ptr<RoundInbox> inbox_;
  std::shared_ptr<BufferPool> pool_;  // message bodies, reused across rounds
  absl::Time start_;
  absl::Time deadline_;

  std::vector<SpanLayout> spans_;
  std::vector<Outgoing> out_;

  std::unique_ptr<std::string> acc_storage_;  // from the pool
  absl::Span<float> acc_;                     // this member's span, accumulated in fp32
  std::vector<ReducedPart> reduced_;
  std::vector<Sender> senders_;  // by member

  const std::vector<float>* reference_;  // null unless this member holds one
  std::vector<float> scratch_;           // part + residual, while encoding
  std::vector<float> decoded_;           // a delta result, before the reference is added
  std::vector<float> part_scratch_;      // a received part, checked before it is added
  bool cancelled_ = false;
  AllReduceReport report_;
};

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_AVERAGING_ROUND_H_
