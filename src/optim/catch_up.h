// CatchUp: whether a peer must download the swarm's state before it trains on, as
// one state machine (torch-free; DecentralizedOptimizer drives it at every Step).
//
// Two facts make its state: `missed_round` (a round of this peer failed while the
// swarm had other trainers: it stepped alone, its parameters left theirs) and
// `reload_at` (a download failed, or brought a state older than the swarm's epoch:
// the peer jumped to the swarm's epoch with what it had, and tries again once the
// swarm reaches this epoch; 0 = none due).
//
//   at a Step (Next), with lag = the epochs a peer may trail and still meet the swarm:
//     swarm > local + lag, or reload_at due   -> kCatchUp: load, the full timeout,
//                                                 any epoch
//     else missed_round, no round in flight   -> kResync: load for one round's time,
//                                                 the missed epoch or later
//     else                                    -> kNone: train
//     (Next clears missed_round in every case: a missed round is acted on at the
//      next step or not at all - with a delayed round in flight, that round's
//      average, applied by all of its members, is what pulls the peer back)
//   after the download (Loaded):
//     kCatchUp, failed                        -> jump to the swarm's epoch,
//                                                 reload_at = swarm + 1
//     kCatchUp, loaded but still behind       -> the same (the donors are behind too)
//     kCatchUp, loaded and level              -> reload_at = 0
//     kResync, loaded                         -> reload_at = 0
//     kResync, failed                         -> unchanged (train on, local values)
//   RoundFailed (a round failed while others trained) -> missed_round, and
//     last_epoch_failed until EpochEnded (read by DecentralizedOptimizer::Finish)
#ifndef HIVEMIND_SRC_OPTIM_CATCH_UP_H_
#define HIVEMIND_SRC_OPTIM_CATCH_UP_H_

#include <cstdint>
#include <limits>
#include <optional>

namespace hivemind {
namespace internal {

class CatchUp {
 public:
  enum class Load {
    kNone,     // in step with the swarm: train
    kCatchUp,  // behind the swarm (or a reload is due): download, long timeout
    kResync,   // missed a round: download briefly, train on if none comes
  };
  struct Plan {
    Load load = Load::kNone;
    // The oldest acceptable state: the missed round's epoch for kResync.
    int64_t min_epoch = std::numeric_limits<int64_t>::min();
  };

  Plan Next(uint64_t swarm_epoch, int64_t local_epoch, uint64_t allowed_lag,
            bool round_in_flight);
  // The outcome of `plan`'s download: `local_epoch` is the epoch after it (the
  // loaded state's when it succeeded). Returns the epoch to jump to, if any.
  std::optional<int64_t> Loaded(const Plan& plan, bool ok, uint64_t swarm_epoch,
                                int64_t local_epoch, uint64_t allowed_lag);
  void RoundFailed() { missed_round_ = last_epoch_failed_ = true; }
  void EpochEnded() { last_epoch_failed_ = false; }

  bool missed_round() const { return missed_round_; }
  uint64_t reload_at() const { return reload_at_; }
  bool last_epoch_failed() const { return last_epoch_failed_; }

 private:
  bool missed_round_ = false;
  uint64_t reload_at_ = 0;
  bool last_epoch_failed_ = false;
};

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_SRC_OPTIM_CATCH_UP_H_
