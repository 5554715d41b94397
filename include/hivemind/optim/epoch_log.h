// What a DecentralizedOptimizer reports at the end of every epoch
// (OptimizerOptions::on_epoch), and a ready-made writer of those reports as JSON
// lines. Torch-free: applications and bindings write them without libtorch headers.
//
//   options.on_epoch = hivemind::AppendEpochJsonLines("peer0.jsonl");
#ifndef HIVEMIND_OPTIM_EPOCH_LOG_H_
#define HIVEMIND_OPTIM_EPOCH_LOG_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "hivemind/export.h"

namespace hivemind {

struct HIVEMIND_EXPORT EpochSummary {
  absl::Time time;
  std::string peer;   // this peer's id, its first 8 hex digits
  int64_t epoch = 0;  // the local epoch the peer has just entered
  // The mean of the finite losses given to Step during the epoch; none when no
  // Step had one (auxiliary peers, callers that pass no loss).
  std::optional<double> mean_loss;
  double samples_per_second = 0.0;  // the swarm's, as the progress tracker sees it
  int num_peers = 0;                // the swarm's, likewise
  // The outcome of the epoch's averaging round (OK, or why the peer went on with
  // local values) and its group size (1 when alone).
  absl::Status averaging_status;
  int group_size = 1;
};

// Called on the training thread, inside the Step that ended the epoch: keep it short.
using EpochCallback = std::function<void(const EpochSummary&)>;

// One JSON object, no newline: {"time": seconds since the Unix epoch, "peer",
// "epoch", "loss" (null when none), "samples_per_second", "peers", "averaged"
// (bool), "group_size", and "error" (the status message) when averaging failed}.
// Strings are escaped (RFC 8259).
HIVEMIND_EXPORT std::string EpochSummaryToJson(const EpochSummary& summary);

// A callback that appends EpochSummaryToJson and a newline to `path` per epoch
// (opened, written and closed each time, so a reader or a crash never sees half a
// line of an earlier epoch). A failed write is logged (warning), never thrown.
HIVEMIND_EXPORT EpochCallback AppendEpochJsonLines(std::string path);

}  // namespace hivemind

#endif  // HIVEMIND_OPTIM_EPOCH_LOG_H_
