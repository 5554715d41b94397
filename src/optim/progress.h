// The pieces of ProgressTracker that need no DHT and no threads: the progress record
// codec (docs/wire_format.md, "Progress records"), the throughput EMA and the
// global-progress estimate. Pure functions, unit-tested on their own.
#ifndef HIVEMIND_OPTIM_PROGRESS_H_
#define HIVEMIND_OPTIM_PROGRESS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "hivemind/dht/dht.h"
#include "hivemind/optim/progress_tracker.h"

namespace hivemind {
namespace internal {

inline constexpr uint8_t kProgressRecordVersion = 1;
// Flag bits of a progress record. Wire values: do not renumber.
inline constexpr uint8_t kProgressClientMode = 1;
inline constexpr uint8_t kProgressDeparted = 2;
// Largest epoch, sample count and samples/s a record may carry: sums over many peers
// stay exact in a u64 and a double.
inline constexpr uint64_t kMaxProgressEpoch = uint64_t{1} << 62;
inline constexpr uint64_t kMaxProgressSamples = uint64_t{1} << 53;
inline constexpr double kMaxSamplesPerSecond = 1e12;

// "{prefix}.progress".
std::string ProgressKey(absl::string_view prefix);

// The record's value; the peer id travels as the subkey. `departed` marks the last
// record of a peer that left.
std::string EncodeProgressRecord(const PeerProgress& progress, bool departed);

struct ParsedProgress {
  PeerProgress progress;
  bool departed = false;
};

// Parses a value stored under subkey `peer_id`. kDataLoss for anything malformed:
// another version, unknown flag bits, a field out of range, a non-finite or negative
// samples/s, truncation or trailing bytes.
absl::StatusOr<ParsedProgress> ParseProgressRecord(absl::string_view peer_id,
                                                   absl::string_view value);

// The live peers among DHT records: records whose subkey is not their writer,
// malformed records and departure records are dropped.
std::vector<PeerProgress> LiveProgress(const std::vector<DhtRecord>& records);

// hivemind's PerformanceEMA: an exponential moving average of seconds per sample,
// bias-corrected for its first updates, reported as samples per second (0 before
// the first update). Not thread-safe.
class PerformanceEma {
 public:
  PerformanceEma(double alpha, absl::Time now) : alpha_(alpha), timestamp_(now) {}

  // `task_size` (> 0) more samples were done since the last update or reset.
  void Update(double task_size, absl::Time now);
  // Restarts the interval (after a pause or a reset of the count).
  void ResetTimer(absl::Time now) { timestamp_ = now; }
  double samples_per_second() const { return samples_per_second_; }

 private:
  double alpha_;
  absl::Time timestamp_;
  double ema_seconds_per_sample_ = 0.0;
  int updates_ = 0;
  double samples_per_second_ = 0.0;
};

struct EstimateParams {
  uint64_t target_batch_size = 0;
  absl::Duration min_refresh_period;
  absl::Duration max_refresh_period;
  absl::Duration default_refresh_period;
  double expected_drift_peers = 0.0;
  double expected_drift_rate = 0.0;
};

// The samples `peer` has probably accumulated by `now`: its last report plus its rate
// since then.
double ExtrapolatedSamples(const PeerProgress& peer, absl::Time now);

// The swarm's progress at `now` from the other peers' records (`others`, without this
// peer) and this peer's own (`local`). next_fetch_time is now + the refresh period.
GlobalProgress EstimateGlobalProgress(const std::vector<PeerProgress>& others,
                                      const PeerProgress& local,
                                      const EstimateParams& params, absl::Time now);

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_OPTIM_PROGRESS_H_
