#include "hivemind/averaging/load_balancing.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace hivemind {
namespace {

std::vector<double> EffectiveBandwidths(const std::vector<GroupMember>& members) {
  double known_sum = 0;
  int known = 0;
  for (const GroupMember& m : members) {
    if (m.bandwidth > 0 && std::isfinite(m.bandwidth)) {
      known_sum += m.bandwidth;
      ++known;
    }
  }
  const double fallback = known > 0 ? known_sum / known : 1.0;
  std::vector<double> bw;
  for (const GroupMember& m : members) {
    bw.push_back(m.bandwidth > 0 && std::isfinite(m.bandwidth) ? m.bandwidth : fallback);
  }
  return bw;
}

// Fractions w (summing to 1 over reducers) minimizing max (1 + (n-2) w_i) / bw_i:
// w_i = max(0, (xi * bw_i - 1) / (n - 2)) with xi found by bisection.
std::vector<double> WaterFill(const std::vector<double>& bw,
                              const std::vector<bool>& reduces) {
  const double n = static_cast<double>(bw.size());
  auto fraction = [&](size_t i, double xi) {
    return reduces[i] ? std::max(0.0, (xi * bw[i] - 1.0) / (n - 2.0)) : 0.0;
  };
  auto fractions = [&](double xi) {
    std::vector<double> w(bw.size());
    for (size_t i = 0; i < bw.size(); ++i) w[i] = fraction(i, xi);
    return w;
  };
  // Summed without a vector per step (gcc 13 also misreads that one's free as
  // -Wfree-nonheap-object).
  auto total = [&](double xi) {
    double sum = 0.0;
    for (size_t i = 0; i < bw.size(); ++i) sum += fraction(i, xi);
    return sum;
  };
  double lo = 0.0, hi = 1.0;
  while (total(hi) < 1.0) hi *= 2.0;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (total(mid) < 1.0 ? lo : hi) = mid;
  }
  return fractions(hi);
}

// Integer split of `total` by fractions, largest remainder first (ties to the
// lower index), so that the counts sum to `total`.
std::vector<uint64_t> Apportion(uint64_t total, const std::vector<double>& w) {
  const double sum = std::accumulate(w.begin(), w.end(), 0.0);
  std::vector<uint64_t> counts(w.size(), 0);
  std::vector<std::pair<double, size_t>> remainders;
  uint64_t assigned = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    const double exact = static_cast<double>(total) * w[i] / sum;
    counts[i] = static_cast<uint64_t>(std::floor(exact));
    assigned += counts[i];
    if (w[i] > 0) remainders.push_back({exact - std::floor(exact), i});
  }
  std::stable_sort(remainders.begin(), remainders.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t k = 0; assigned < total; ++k, ++assigned) {
    ++counts[remainders[k % remainders.size()].second];
  }
  return counts;
}

}  // namespace

std::vector<uint64_t> SplitIntoSpans(uint64_t total,
                                     const std::vector<GroupMember>& members) {
  std::vector<bool> reduces;
  for (const GroupMember& m : members) reduces.push_back(m.mode != MemberMode::kClient);
  if (std::find(reduces.begin(), reduces.end(), true) == reduces.end()) {
    return std::vector<uint64_t>(members.size(), 0);  // nobody can reduce
  }
  const std::vector<double> bw = EffectiveBandwidths(members);
  std::vector<double> w(members.size(), 0.0);
  if (members.size() <= 2) {
    for (size_t i = 0; i < members.size(); ++i) w[i] = reduces[i] ? bw[i] : 0.0;
  } else {
    w = WaterFill(bw, reduces);
  }
  return Apportion(total, w);
}

}  // namespace hivemind
