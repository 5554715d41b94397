// ProgressTracker: how far the swarm is toward its next epoch.
//
// An epoch is a collaborative step: it ends when the peers together have gathered
// `target_batch_size` samples. Each peer publishes a progress record (its epoch, the
// samples it gathered at that epoch, its throughput, the time, whether it is a
// client) to the DHT under `{prefix}.progress`, subkey = its peer id, valid for
// `metadata_expiration` (docs/wire_format.md, "Progress records"). The tracker reads
// every peer's record in the background and computes the global view:
//  - the global epoch: the largest epoch of a live non-client record (or this peer's);
//  - the samples the swarm gathered at that epoch (peers at older epochs count
//    toward throughput only: they will catch up and contribute shortly);
//  - the swarm's samples/s and, extrapolating each record from its time, the
//    estimated time at which the swarm reaches the target;
//  - whether this peer may move to the next epoch now (ready_to_update_epoch).
// The semantics follow hivemind's Python ProgressTracker. Like it, the estimate
// compares record times taken on different peers, so peers' clocks should agree to
// well under a refresh period (NTP is enough).
//
// Rate limits: records are not stored on every report. A report wakes the publisher,
// which stores at most once per refresh period; the period adapts between
// min_refresh_period (swarm close to the target) and max_refresh_period (far from
// it). A new epoch is published at once, and an unchanged record is stored again
// every metadata_expiration / 2 so it does not expire while the peer lives. The
// swarm is read on the same adaptive schedule (default_refresh_period while this
// peer sees no other).
//
// Example:
//   ProgressTrackerOptions options;
//   options.prefix = "my_run";
//   options.target_batch_size = 4096;
//   HIVEMIND_ASSIGN_OR_RETURN(auto tracker, ProgressTracker::Create(dht, options));
//   uint64_t epoch = 0, samples = 0;
//   while (training) {
//     samples += TrainOneBatch();
//     tracker->ReportLocalProgress(epoch, samples);
//     if (tracker->ready_to_update_epoch()) {
//       AverageAndStep();
//       epoch = std::max(epoch + 1, tracker->global_progress().epoch);
//       tracker->UpdateEpoch(epoch);
//       samples = 0;
//     }
//   }
#ifndef HIVEMIND_OPTIM_PROGRESS_TRACKER_H_
#define HIVEMIND_OPTIM_PROGRESS_TRACKER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "hivemind/dht/dht.h"
#include "hivemind/export.h"
#include "hivemind/net/identity.h"

namespace hivemind {

// One peer's progress as it publishes it.
struct HIVEMIND_EXPORT PeerProgress {
  PeerId peer_id;                    // the record's subkey
  uint64_t epoch = 0;                // the peer's local epoch
  uint64_t samples_accumulated = 0;  // samples it gathered at `epoch`
  double samples_per_second = 0.0;   // an EMA of its throughput; finite, >= 0
  absl::Time time;                   // when it reported this, by its clock
  bool client_mode = false;          // a client peer (does not set the epoch)
};

// The swarm's progress toward the next epoch, as one peer sees it.
struct HIVEMIND_EXPORT GlobalProgress {
  uint64_t epoch = 0;                // the global epoch
  uint64_t samples_accumulated = 0;  // reported by the peers at `epoch`
  uint64_t target_batch_size = 0;
  int num_peers = 0;                // live records, this peer included
  int num_clients = 0;              // of which client-mode peers
  double samples_per_second = 0.0;  // the swarm's total throughput
  // When the swarm is estimated to reach the target; InfiniteFuture when nobody
  // has a measured throughput yet.
  absl::Time eta_next_epoch = absl::InfiniteFuture();
  absl::Time next_fetch_time;  // when the tracker reads the DHT next
};

struct HIVEMIND_EXPORT ProgressTrackerOptions {
  // DHT key prefix of the run; records go under "{prefix}.progress". Required.
  std::string prefix;

  // Samples the whole swarm gathers per epoch. Required (> 0).
  uint64_t target_batch_size = 0;

  // Publish and mark this peer as a client (it does not set the global epoch).
  // Default: false.
  bool client_mode = false;

  // Bounds of the adaptive refresh period (reading the swarm, publishing this
  // peer's progress). Default: 0.5 s and 10 s.
  absl::Duration min_refresh_period = absl::Milliseconds(500);
  absl::Duration max_refresh_period = absl::Seconds(10);

  // Refresh period while no other peer is seen. Default: 3 s.
  absl::Duration default_refresh_period = absl::Seconds(3);

  // The refresh period is the ETA scaled by num_peers / expected_max_peers, where
  // expected_max_peers = max(num_peers + expected_drift_peers,
  // num_peers * (1 + expected_drift_rate)): the more peers may join before the
  // epoch ends, the sooner the tracker looks again. Default: 3 and 0.2.
  double expected_drift_peers = 3.0;
  double expected_drift_rate = 0.2;

  // Smoothing factor of this peer's samples/s EMA, in (0, 1]. Default: 0.1.
  double performance_ema_alpha = 0.1;

  // How long a published record stays valid. Default: 60 s.
  absl::Duration metadata_expiration = absl::Seconds(60);

  // Timeout of each DHT store and lookup; Shutdown may wait this long for one in
  // flight. Default: 5 s.
  absl::Duration dht_timeout = absl::Seconds(5);

  // On Shutdown, store a departure record so the others stop counting this peer at
  // once instead of after metadata_expiration. Tests turn it off to play a crash.
  // Default: true.
  bool announce_departure = true;

  // Source of the current time for records, expirations, estimates and
  // WaitUntilReady's deadline (a test seam: a clock that stands still makes the
  // estimates deterministic). Called from several threads: must be thread-safe.
  // The background schedules always run on real time. Default: absl::Now.
  std::function<absl::Time()> clock;
};

// Tracks this peer's progress and the swarm's.
//
// Thread safety: thread-safe; every method may be called from any thread. Two
// background threads (publisher and reader) start in Create and are joined by
// Shutdown or the destructor. The Dht is not owned and must outlive the tracker.
class HIVEMIND_EXPORT ProgressTracker {
 public:
  // Starts tracking at epoch 0 with no samples; reads the swarm once before
  // returning (so global_progress() reflects the swarm already there) and starts
  // the background threads. Nothing is published until the first
  // ReportLocalProgress or UpdateEpoch. Returns kInvalidArgument for a null dht,
  // an empty prefix, a zero target, a non-positive period or expiration, or
  // min_refresh_period > max_refresh_period.
  static absl::StatusOr<std::unique_ptr<ProgressTracker>> Create(
      Dht* dht, ProgressTrackerOptions options);

  // Calls Shutdown.
  ~ProgressTracker();
  ProgressTracker(const ProgressTracker&) = delete;
  ProgressTracker& operator=(const ProgressTracker&) = delete;

  // Records that this peer has gathered `samples_accumulated` samples (a running
  // total, not an increment) at `epoch`, updates its throughput estimate, and wakes
  // the publisher (which stores it when the rate limit allows). Never blocks on the
  // network. A total below the previous one (a reset) restarts the throughput timer.
  void ReportLocalProgress(uint64_t epoch, uint64_t samples_accumulated);

  // Moves this peer to `new_epoch` with no samples (after its optimizer step) and
  // publishes at once. If `new_epoch` is past the global epoch, the global view
  // moves there too, with this peer's (zero) samples, until the next read of the
  // swarm.
  void UpdateEpoch(uint64_t new_epoch);

  // This peer's current progress (what it publishes next).
  PeerProgress local_progress() const;

  // The swarm's progress as of the last read, with this peer's latest report in
  // place of its published record.
  GlobalProgress global_progress() const;

  // True when this peer may move to the next epoch now: the swarm is at a later
  // epoch than this peer, or it has gathered target_batch_size samples at the
  // current one, or the estimated time to reach it has passed.
  bool ready_to_update_epoch() const;

  // Time until the estimated end of the epoch: zero when ready_to_update_epoch(),
  // InfiniteDuration when there is no estimate yet.
  absl::Duration EstimatedTimeToNextEpoch() const;

  // Blocks until ready_to_update_epoch() or `deadline` (by the options' clock).
  // Returns OK when ready, kDeadlineExceeded at the deadline, kCancelled after
  // Shutdown (also when Shutdown is called while it waits).
  absl::Status WaitUntilReady(absl::Time deadline);

  // Stops the background threads (waiting up to dht_timeout for a DHT call in
  // flight), joins them and, with announce_departure, stores a departure record.
  // Idempotent. Afterwards the getters return the last view and WaitUntilReady
  // returns kCancelled.
  void Shutdown();

 private:
  class Impl;
  explicit ProgressTracker(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Reads every live peer's progress record under "{prefix}.progress" (for a swarm
// monitor). Malformed records and departure records are skipped. Returns the
// records in no particular order, kInvalidArgument for a null dht or empty prefix,
// or the Dht's error (kCancelled after its shutdown).
HIVEMIND_EXPORT absl::StatusOr<std::vector<PeerProgress>> ReadProgress(
    Dht* dht, absl::string_view prefix, absl::Duration timeout = absl::Seconds(10));

}  // namespace hivemind

#endif  // HIVEMIND_OPTIM_PROGRESS_TRACKER_H_
