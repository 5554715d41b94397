// CpuLocalReducer: the LocalReducer of workers on one host (processes or threads),
// over one POSIX shared-memory segment per group.
//
// Example (each worker process, rank 0 being the one that joins the swarm):
//   CpuLocalReducerOptions options;
//   options.key = "my_run.host7";
//   options.rank = rank;
//   options.world_size = 4;
//   options.capacity = num_params;
//   auto reducer = CpuLocalReducer::Create(options);  // blocks until the group forms
//   absl::Status s = (*reducer)->AllReduce(grads, {.weight = batch},
//                                          AveragerSwarmStep(averager, step_options));
//
// How it works. The leader creates the segment "/hivemind-local-<key>" (removing a
// stale one), every worker opens it, and the leader unlinks the name once everyone
// joined (nothing is left in /dev/shm, even after a crash). The segment holds one
// slot per worker (its values, weight, size and round number) and one result area.
// Workers copy their values into their slots; the leader reduces the slots into its
// own values in rank order, runs the swarm step and writes the result, which every
// worker copies back. Waits are futexes on words of the segment (no locks are shared
// between processes, so a process that dies holding one cannot block the others).
//
// Liveness. Each rank holds an open-file-description lock (F_OFD_SETLK) on byte
// `rank` of the segment for as long as it is a member; the kernel drops it when the
// process dies, however it dies. While waiting, the leader checks its workers' locks
// and workers check the leader's, every few milliseconds: a dead rank is reported as
// kUnavailable within about that time, not at the deadline. A rank whose call fails
// fatally (deadline, dead peer) leaves the group by dropping its lock, so the others
// learn at once.
#ifndef HIVEMIND_LOCAL_CPU_LOCAL_REDUCER_H_
#define HIVEMIND_LOCAL_CPU_LOCAL_REDUCER_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "hivemind/export.h"
#include "hivemind/local/local_reducer.h"

namespace hivemind {

struct HIVEMIND_EXPORT CpuLocalReducerOptions {
  // Names the group on this host: every rank passes the same key, and no two live
  // groups of the host share one. Letters, digits, '.', '_' and '-', at most 200
  // characters. Required.
  std::string key;

  // This worker's rank, in [0, world_size); rank 0 is the leader. Default: 0.
  int rank = 0;

  // Workers in the group, 1 to 64 (1: a group of one, AllReduce only runs the swarm
  // step). Default: 1.
  int world_size = 1;

  // The largest span AllReduce accepts, in floats; every rank passes the same value.
  // The segment takes (world_size) x capacity x 4 bytes. Required (> 0).
  size_t capacity = 0;

  // How long Create waits for the group to form: on the leader, for every worker to
  // join; on a worker, for the leader's segment to appear. Default: 60 s.
  absl::Duration join_timeout = absl::Seconds(60);

  // How often a waiting rank checks that the ranks it waits for are alive (test seam;
  // waits themselves wake at once when the awaited data arrives). Default: 10 ms.
  absl::Duration liveness_interval = absl::Milliseconds(10);
};

// Thread safety: as LocalReducer (one call at a time per object). The object owns the
// mapping; destroying it leaves the group (the other ranks' next calls fail with
// kUnavailable).
class HIVEMIND_EXPORT CpuLocalReducer : public LocalReducer {
 public:
  // Joins (workers) or creates (leader) the group and blocks until it is formed.
  // Returns:
  //  - kInvalidArgument: a bad key, rank, world size or capacity, or (worker) a
  //    segment whose world size or capacity differ from the options;
  //  - kAlreadyExists: another live object already holds this rank;
  //  - kDeadlineExceeded: the group did not form within join_timeout (the message
  //    says which ranks were missing);
  //  - kUnavailable: the leader died while a worker joined;
  //  - kInternal: shm_open, ftruncate or mmap failed (with errno's text).
  static absl::StatusOr<std::unique_ptr<CpuLocalReducer>> Create(
      const CpuLocalReducerOptions& options);

  ~CpuLocalReducer() override;
  CpuLocalReducer(const CpuLocalReducer&) = delete;
  CpuLocalReducer& operator=(const CpuLocalReducer&) = delete;

  int rank() const override;
  int world_size() const override;
  size_t capacity() const;

  // See LocalReducer::AllReduce. `values.size()` must be at most capacity().
  absl::Status AllReduce(absl::Span<float> values, const LocalReduceOptions& options = {},
                         const SwarmStep& swarm_step = nullptr) override;

 private:
  class Impl;
  explicit CpuLocalReducer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hivemind

#endif  // HIVEMIND_LOCAL_CPU_LOCAL_REDUCER_H_
