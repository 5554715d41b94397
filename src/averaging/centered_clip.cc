#include "averaging/centered_clip.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace hivemind {
namespace internal {
namespace {

double RmsDistance(absl::Span<const float> x, const std::vector<double>& c) {
  double sum = 0.0;
  for (size_t k = 0; k < c.size(); ++k) {
    const double d = x[k] - c[k];
    sum += d * d;
  }
  return std::sqrt(sum / static_cast<double>(c.size()));
}

absl::Status Validate(absl::Span<const absl::Span<const float>> inputs,
                      absl::Span<const float> weights, const CenteredClipParams& params,
                      size_t n) {
  if (inputs.size() != weights.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(inputs.size(), " inputs but ", weights.size(), " weights"));
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].size() != n) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input ", i, " has ", inputs[i].size(), " elements, the output ", n));
    }
    if (!std::isfinite(weights[i]) || weights[i] < 0.0f) {
      return absl::InvalidArgumentError(absl::StrCat("weight ", weights[i], " of input ",
                                                     i, " is not finite and >= 0"));
    }
  }
  return ValidateCenteredClipParams(params);
}

}  // namespace

absl::Status ValidateCenteredClipParams(const CenteredClipParams& params) {
  if (!std::isfinite(params.tau) || params.tau < 0.0 || params.max_iterations < 1 ||
      !std::isfinite(params.tolerance) || params.tolerance < 0.0 ||
      !std::isfinite(params.reject_ratio) ||
      (params.reject_ratio != 0.0 && params.reject_ratio < 1.0)) {
    return absl::InvalidArgumentError(
        "CenteredClip needs a finite tau (clip_tau) >= 0, iterations (clip_iterations) "
        ">= 1, a finite tolerance (clip_tolerance) >= 0 and a reject ratio "
        "(clip_reject_ratio) of 0 or >= 1");
  }
  return absl::OkStatus();
}

double WeightedMedian(std::vector<std::pair<double, double>>& value_weight) {
  std::sort(value_weight.begin(), value_weight.end());
  double total = 0.0;
  for (const auto& vw : value_weight) total += vw.second;
  const double half = total / 2.0;
  double cumulative = 0.0;
  for (size_t i = 0; i < value_weight.size(); ++i) {
    cumulative += value_weight[i].second;
    if (cumulative < half) continue;
    if (cumulative == half && i + 1 < value_weight.size()) {
      return (value_weight[i].first + value_weight[i + 1].first) / 2.0;
    }
    return value_weight[i].first;
  }
  return value_weight.back().first;
}

absl::StatusOr<CenteredClipStats> CenteredClip(
    absl::Span<const absl::Span<const float>> inputs, absl::Span<const float> weights,
    const CenteredClipParams& params, absl::Span<float> out) {
  const size_t n = out.size();
  absl::Status valid = Validate(inputs, weights, params, n);
  if (!valid.ok()) return valid;
  // Zero weights count nowhere, not even in the median.
  std::vector<absl::Span<const float>> x;
  std::vector<double> w;
  std::vector<size_t> index;  // into inputs
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (weights[i] > 0.0f) {
      x.push_back(inputs[i]);
      w.push_back(weights[i]);
      index.push_back(i);
    }
  }
  if (x.empty()) return absl::InvalidArgumentError("the total weight is zero");
  CenteredClipStats stats;
  if (n == 0) return stats;

  // The start, the distance scale and the outlier test give every input one vote:
  // weights are the senders' claims, and one claiming more than half the total
  // would otherwise be the median itself, with every honest input its outlier.
  // The clipping steps below weigh the inputs.
  std::vector<double> c(n);
  std::vector<std::pair<double, double>> column(x.size());
  for (size_t k = 0; k < n; ++k) {
    for (size_t i = 0; i < x.size(); ++i) column[i] = {x[i][k], 1.0};
    c[k] = WeightedMedian(column);
  }
  std::vector<double> dist(x.size());
  auto measure = [&] {
    for (size_t i = 0; i < x.size(); ++i) dist[i] = RmsDistance(x[i], c);
  };
  auto median_distance = [&] {
    column.resize(x.size());
    for (size_t i = 0; i < x.size(); ++i) column[i] = {dist[i], 1.0};
    return WeightedMedian(column);
  };
  measure();
  if (params.reject_ratio > 0.0) {
    // The input at the median distance always stays, so some weight remains.
    const double limit = params.reject_ratio * median_distance();
    size_t kept = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      if (dist[i] > limit) {
        stats.rejected.push_back(index[i]);
        continue;
      }
      x[kept] = x[i];
      w[kept] = w[i];
      dist[kept] = dist[i];
      ++kept;
    }
    x.resize(kept);
    w.resize(kept);
    dist.resize(kept);
  }
  double total = 0.0;
  for (double wi : w) total += wi;
  const double tau = params.tau == 0.0 ? median_distance() : params.tau;
  stats.tau = tau;

  std::vector<double> step(n);
  while (stats.iterations < params.max_iterations) {
    std::fill(step.begin(), step.end(), 0.0);
    for (size_t i = 0; i < x.size(); ++i) {
      // An input at the centre adds nothing whatever its factor.
      const double f = dist[i] > tau ? w[i] * tau / dist[i] : w[i];
      for (size_t k = 0; k < n; ++k) step[k] += f * (x[i][k] - c[k]);
    }
    double moved = 0.0;
    for (size_t k = 0; k < n; ++k) {
      const double s = step[k] / total;
      c[k] += s;
      moved += s * s;
    }
    ++stats.iterations;
    measure();
    if (std::sqrt(moved / static_cast<double>(n)) <= params.tolerance * tau) break;
  }
  for (size_t i = 0; i < x.size(); ++i) stats.clipped += dist[i] > tau ? 1 : 0;
  for (size_t k = 0; k < n; ++k) out[k] = static_cast<float>(c[k]);
  return stats;
}

}  // namespace internal
}  // namespace hivemind
