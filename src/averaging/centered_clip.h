// CenteredClip (Karimireddy, He and Jaggi 2021; hivemind's BTARD): a robust
// weighted centre of a few vectors, the math behind Aggregation::kCenteredClip
// (hivemind/averaging/allreduce.h). Pure functions over float buffers.
#ifndef HIVEMIND_AVERAGING_CENTERED_CLIP_H_
#define HIVEMIND_AVERAGING_CENTERED_CLIP_H_

#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace hivemind {
namespace internal {

struct CenteredClipParams {
  // Clipping radius as an RMS distance per element; 0: the median of the inputs'
  // RMS distances from the starting centre.
  double tau = 0.0;
  int max_iterations = 20;
  // Stop when a step moves the centre by less than this x tau (RMS).
  double tolerance = 1e-4;
  // Inputs farther than this x the median distance from the starting centre are
  // left out entirely (outliers); 0: none. 0 or >= 1.
  double reject_ratio = 0.0;
};

struct CenteredClipStats {
  int iterations = 0;  // steps taken
  double tau = 0.0;    // the radius used (RMS per element)
  int clipped = 0;     // inputs farther than tau from the final centre
  // Indices (into `inputs`) of the inputs left out as outliers, ascending.
  std::vector<size_t> rejected;
};

// OK, or kInvalidArgument naming the rule when `params` break one: tau finite and
// >= 0, max_iterations >= 1, tolerance finite and >= 0, reject_ratio 0 or finite and
// >= 1 (AggregationOptions' clip_* fields hold the same parameters).
absl::Status ValidateCenteredClipParams(const CenteredClipParams& params);

// The weighted median of (value, weight) pairs (weights > 0, at least one pair):
// the smallest value whose cumulative weight reaches half the total, averaged with
// the next one when it reaches exactly half (the usual median for equal weights).
// Sorts `value_weight`.
double WeightedMedian(std::vector<std::pair<double, double>>& value_weight);

// Writes the CenteredClip centre of `inputs` (each of out.size() elements, weights
// >= 0 and finite, at least one > 0) into `out`, starting from the coordinate-wise
// median c0 of the inputs of weight > 0 (one vote each: a weight is a claim, and
// one input claiming most of the weight must not become the median):
//   c <- c + sum_i w_i (x_i - c) min(1, tau / d_i) / sum_i w_i,
//   d_i = ||x_i - c||_2 / sqrt(n).
// With reject_ratio > 0, inputs whose distance from c0 exceeds reject_ratio x the
// median of those distances take no part (nor in the automatic tau, the median of
// the remaining distances).
// Computes in double. kInvalidArgument on inputs of the wrong size, negative or
// non-finite weights, a zero total weight, or invalid params.
absl::StatusOr<CenteredClipStats> CenteredClip(
    absl::Span<const absl::Span<const float>> inputs, absl::Span<const float> weights,
    const CenteredClipParams& params, absl::Span<float> out);

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_AVERAGING_CENTERED_CLIP_H_
