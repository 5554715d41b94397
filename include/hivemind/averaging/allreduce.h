// The butterfly all-reduce: a group averages a flat float vector. The vector is split
// into one span per member (SplitIntoSpans); every member streams its parts of span j
// to member j, which accumulates the weighted average in fp32 as parts arrive, encodes
// each averaged part once and sends the same bytes back to every member, so all
// survivors end with bit-identical values. Encoding, network and reduction overlap
// part by part.
//
// Delta mode (AQ-SGD's idea, for averaging parameters). After a round every member
// holds the same bit-identical average; passed back as AllReduceOptions::reference,
// it lets two members whose GroupMember::reference_hash match exchange the change
// values - reference instead of full values, so slowly changing values cost few bits
// for the same error. Members without the reference (newcomers) exchange full
// values. Members holding the reference end bit-identical; a newcomer ends within
// the codec's bound of them.
//
// Faults. A sender that does not deliver its next part within `sender_timeout` (of
// the round's start, its previous part, or the reducer's last answer to it, whichever
// is latest; a sender still waiting for an answer is never late), or that sends an
// invalid part, is excluded by that reducer for the rest of the round;
// the average is over those who delivered (parts already received stay in). An
// excluded sender keeps its local values for that span. A reducer that dies (or
// misses the reply deadline) leaves the parts it owed at their local values. Every
// wait has a deadline; Run returns by options.timeout (plus one poll period).
//
// Byzantine robustness (AggregationOptions). Before a contribution touches the
// average, its reducer rejects it if it decodes to NaN or Inf (kDataLoss) or holds a
// value beyond max_abs_value (kInvalidArgument), and excludes its sender as above
// (AllReduceReport::excluded says why). With Aggregation::kCenteredClip the reducer
// keeps every contribution to a part and combines them with CenteredClip (Karimireddy
// et al. 2021, hivemind's BTARD): from the coordinate-wise median c (one vote per
// member), repeat
//   c <- c + sum_i w_i * (x_i - c) * min(1, tau / d_i) / sum_i w_i,
//   d_i = ||x_i - c||_2 / sqrt(elements of the part)  (the RMS distance),
// until the step is below clip_tolerance x tau or clip_iterations ran. At the fixed
// point, if every honest contribution lies within tau of c, c lies within
// tau x (Byzantine weight / honest weight) of the honest weighted mean, however far
// the others are; the plain mean moves by (Byzantine weight / total) x their offset.
// It needs an honest majority in the group (of 2 members, it is their mean). Far
// outliers are left out before clipping (clip_reject_ratio x the median distance
// from the median, 10 by default): they move the centre not at all; one that stays
// inside that ratio can still pull it by up to the bound above. Weights are the
// senders' own claims: the median, the distance scale and the outlier test count
// members, not weights, so an inflated weight buys no vote there, but it scales
// the pull in the clipping steps. A Byzantine reducer can still corrupt its own span.
#ifndef HIVEMIND_AVERAGING_ALLREDUCE_H_
#define HIVEMIND_AVERAGING_ALLREDUCE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "hivemind/averaging/group.h"
#include "hivemind/codec/codec.h"
#include "hivemind/export.h"
#include "hivemind/net/endpoint.h"

namespace hivemind {
namespace internal {
class BufferPool;
}  // namespace internal

// How a reducer combines the contributions to a part. Wire values (the part header
// carries the sender's): do not renumber.
enum class Aggregation : uint8_t {
  kMean = 0,          // the weighted mean
  kCenteredClip = 1,  // CenteredClip (see "Byzantine robustness" above)
};

// "mean", "centered_clip": the names flags and bindings use. kInvalidArgument for any
// other name, with the accepted ones.
HIVEMIND_EXPORT absl::StatusOr<Aggregation> ParseAggregation(absl::string_view name);
HIVEMIND_EXPORT absl::string_view AggregationName(Aggregation method);

// Every member of a group must use the same method and parameters: a reducer
// excludes a sender whose parts name another method (kFailedPrecondition); tau,
// iterations and tolerance are not checked.
struct HIVEMIND_EXPORT AggregationOptions {
  // Default: kMean.
  Aggregation method = Aggregation::kMean;

  // CenteredClip's clipping radius tau, as an RMS distance per element (so it does
  // not depend on the part size). 0: automatic, per part: the median of
  // the contributions' RMS distances from the coordinate-wise median (scale
  // free, so it follows gradients as they shrink; about half the honest
  // contributions are clipped a little). Must be finite and >= 0. Default: 0.
  float clip_tau = 0.0f;

  // CenteredClip's iteration limit, >= 1. Default: 20.
  int clip_iterations = 20;

  // CenteredClip stops when a step moves the centre by less than this x tau (RMS
  // per element). Must be finite and >= 0. Default: 1e-4.
  float clip_tolerance = 1e-4f;

  // CenteredClip leaves out a part's contributions that lie farther than this x the
  // median of the contributions' RMS distances from the coordinate-wise
  // median (before tau is chosen): far outliers then move the centre not
  // at all, where clipped they still pull it by tau x their weight / the honest
  // weight. Their senders are listed in AllReduceReport::outliers and get this
  // part's result. Contributions within the ratio are only clipped, as before. 0:
  // none left out. Must be 0 or >= 1. Default: 10.
  float clip_reject_ratio = 10.0f;

  // A reducer rejects (and excludes the sender of) a decoded contribution holding a
  // value whose absolute value exceeds this (the payload as sent: values, or their
  // change against the reference in delta mode), in both methods; Run refuses
  // values beyond it with kInvalidArgument. 0: no bound (NaN and Inf are always
  // rejected). Must be finite and >= 0. Default: 1e15, far beyond any gradient or
  // parameter and low enough that no weighted sum of a group overflows float32.
  float max_abs_value = 1e15f;
};

struct HIVEMIND_EXPORT AllReduceOptions {
  // Codec for the parts this member sends and the results it sends back as a
  // reducer. Not owned; must outlive Run. Null: raw float32. Default: null.
  const Codec* codec = nullptr;

  // This member's weight in the average (for example its number of samples).
  // Must be finite and >= 0. Ignored for auxiliary members. Default: 1.
  float weight = 1.0f;

  // Error feedback: if set, a residual buffer of the vector's size (zeros on first
  // use) kept by the caller across rounds. What the codec loses on this member's
  // parts is added to the next round's parts. Not owned. Default: null.
  std::vector<float>* residual = nullptr;

  // Delta mode: the reference (the previous round's result, as every member holding
  // it has it), of the vector's size. The group must list ReferenceHash(*reference)
  // as this member's reference_hash. Not owned. Default: null.
  const std::vector<float>* reference = nullptr;

  // Elements per part: the unit of streaming and pipelining. Every member of a group
  // must use the same value. 0 picks about 32 parts per span (at least 4 Ki, at most
  // 256 Ki elements): parts small enough that reducers answer early and the pipeline
  // fills and drains quickly on slow links. Default: 0.
  uint32_t part_size = 0;

  // Parts in flight to one reducer before waiting for its answers. Small windows let
  // results overtake parts on a shared uplink (best on the emulated 100 Mbit/s WAN:
  // 2 to 4); on links with a long round-trip time, raise it to about
  // bandwidth x RTT / (part bytes x members). Default: 4.
  int max_parts_in_flight = 4;

  // A reducer excludes a sender whose next part is this late (see Faults above).
  // A sender also gives up on a reducer that has not answered a part within 3x
  // this. Default: 10 s.
  absl::Duration sender_timeout = absl::Seconds(10);

  // The whole round. Default: 60 s.
  absl::Duration timeout = absl::Seconds(60);

  // How this member's reducer combines the parts of its span, and which parts it
  // rejects (see "Byzantine robustness" above). With kCenteredClip the reducer
  // holds every contribution to a part until the part is complete: about
  // (members x its span) floats at worst, and the clip costs about
  // 2 x clip_iterations passes over them. Default: mean, max_abs_value 1e15.
  AggregationOptions aggregation;
};

// What became of one member's span, from this member's point of view.
struct HIVEMIND_EXPORT SpanOutcome {
  int reducer = 0;
  uint64_t begin = 0;
  uint64_t end = 0;
  // OK: the span holds the group average. Otherwise why (some of) it kept local
  // values: the reducer failed (kDeadlineExceeded, kUnavailable, ...), or excluded
  // this member.
  absl::Status status;
  // Parts of the span that hold averaged values (all of them when status is OK).
  uint64_t parts_averaged = 0;
  uint64_t parts = 0;
};

struct HIVEMIND_EXPORT AllReduceReport {
  std::vector<SpanOutcome> spans;  // one per member, in member order
  // Senders this member's reducer excluded, with the reason.
  std::vector<std::pair<int, absl::Status>> excluded;
  // For this member's own span: members whose data is in every part of it.
  std::vector<int> contributors;
  // For this member's own span (CenteredClip): members whose contribution to some
  // part was left out as an outlier (AggregationOptions::clip_reject_ratio).
  std::vector<int> outliers;
  uint64_t bytes_sent = 0;  // bodies of this round's messages
  uint64_t bytes_received = 0;
  absl::Duration encode_time;  // encoding parts and results
  absl::Duration reduce_time;  // decoding and accumulating received parts
  absl::Duration total_time;
};

// The hash members announce as GroupMember::reference_hash for a reference: XXH3-64
// of its bytes, never 0.
HIVEMIND_EXPORT uint64_t ReferenceHash(absl::Span<const float> reference);

// Runs all-reduce rounds over one endpoint. Registers itself as the endpoint's
// handler for kAllReducePart; parts that arrive before the local round starts are
// held (up to 256 MiB, for 30 s) and handed over when it does.
//
// Thread safety: Run may be called concurrently for different groups. The
// endpoint must outlive this object.
class HIVEMIND_EXPORT AllReducer {
 public:
  explicit AllReducer(Endpoint* endpoint);
  ~AllReducer();
  AllReducer(const AllReducer&) = delete;
  AllReducer& operator=(const AllReducer&) = delete;

  // Averages `values` in place with the group, as member `my_index`. Blocks until
  // the round ends (at the latest options.timeout after the call).
  //
  // Returns the report (partial failures are in it, not in the status), or:
  //  - kInvalidArgument: my_index out of range, a group id not of 1 to 64 bytes, a
  //    non-finite or negative weight, a residual or reference of the wrong size, a
  //    reference whose hash is not this member's reference_hash, values holding
  //    NaN or Inf or a value beyond aggregation.max_abs_value, invalid
  //    aggregation options (nothing is sent then);
  //  - kFailedPrecondition: another round with this group id is running here;
  //  - kCancelled: the endpoint shut down during the round.
  // Auxiliary members pass a vector of the group's size; its values are ignored and
  // left unchanged.
  absl::StatusOr<AllReduceReport> Run(const GroupInfo& group, int my_index,
                                      absl::Span<float> values,
                                      const AllReduceOptions& options = {});

 private:
  class Registry;
  // Message buffers kept for reuse across rounds (see src/util/buffer_pool.h).
  static constexpr size_t kMaxPooledBytes = size_t{128} << 20;
  Endpoint* endpoint_;
  std::shared_ptr<Registry> registry_;
  std::shared_ptr<internal::BufferPool> pool_;
};

}  // namespace hivemind

#endif  // HIVEMIND_AVERAGING_ALLREDUCE_H_
