// An in-process Dht: nodes of one MemoryDhtSwarm share one table of records, with
// the contract of dht.h (run-id scoping, the newest record per (writer, subkey),
// expiration, limits) and no network. For tests and single-machine experiments;
// gloo's HashStore plays the same part for gloo.
//
// Faults can be injected: a latency on every Store and Get, and a partition that
// makes them fail with kDeadlineExceeded after their timeout, as an unreachable
// OpenDHT does.
//
//   MemoryDhtSwarm swarm;
//   std::unique_ptr<Dht> a = swarm.NewNode("run"), b = swarm.NewNode("run");
//   a->Store("key", "sub", "value", absl::Now() + absl::Seconds(60));
//   b->Get("key");  // the record a stored, writer a->id()
#ifndef HIVEMIND_DHT_MEMORY_DHT_H_
#define HIVEMIND_DHT_MEMORY_DHT_H_

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "hivemind/dht/dht.h"
#include "hivemind/export.h"

namespace hivemind {

namespace internal {
class MemoryDhtTable;
}  // namespace internal

// Thread safety: every method may be called from any thread. Listen callbacks run
// on the swarm's one delivery thread, in the order the records were stored.
class HIVEMIND_EXPORT MemoryDhtSwarm {
 public:
  MemoryDhtSwarm();
  // Stops delivering to listeners and joins the delivery thread. Nodes must be
  // destroyed first.
  ~MemoryDhtSwarm();
  MemoryDhtSwarm(const MemoryDhtSwarm&) = delete;
  MemoryDhtSwarm& operator=(const MemoryDhtSwarm&) = delete;

  // A node with a fresh identity whose keys live under `run_id` (as
  // DhtOptions::run_id). The swarm must outlive it; destroying it cancels its
  // listens. Aborts if the system has no randomness for a key pair.
  std::unique_ptr<Dht> NewNode(const std::string& run_id = "");

  // Every Store and Get of every node waits this long before it acts (a lookup's
  // round trips). If the latency is over the call's timeout, the call waits its
  // timeout and fails with kDeadlineExceeded without acting. Default: zero.
  void SetLatency(absl::Duration latency);

  // While partitioned, every Store and Get waits its timeout and returns
  // kDeadlineExceeded; records already stored stay. Default: false.
  void SetPartitioned(bool partitioned);

  // Stores (and Replaces) that took effect, for tests that count DHT traffic.
  uint64_t stores() const;

 private:
  std::shared_ptr<internal::MemoryDhtTable> table_;
};

}  // namespace hivemind

#endif  // HIVEMIND_DHT_MEMORY_DHT_H_
