// The distributed hash table peers use to find each other: a store of small records
// under string keys, scoped by a run id, with expiration. Records say who wrote them
// and until when they are valid; readers ignore expired records.
//
// Every record is signed by its writer (net/identity.h) over its key, subkey,
// value, times and writer; readers verify the signature and drop records that fail,
// so `DhtRecord::writer` is proven, not claimed, and a record cannot be replayed
// under another key. A peer can still re-store its own older records until they
// expire (docs/security.md).
//
// Keys are namespaced by the run id ("{run_id}/{key}"), so swarms of different runs
// sharing a DHT never see each other's records. Under one key each writer may keep
// several records, one per subkey (a peer's progress, a peer's group declaration,
// ...); storing again under the same (writer, subkey) replaces the older record.
#ifndef HIVEMIND_DHT_DHT_H_
#define HIVEMIND_DHT_DHT_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "hivemind/export.h"
#include "hivemind/net/identity.h"

namespace hivemind {

struct HIVEMIND_EXPORT DhtRecord {
  std::string subkey;
  std::string value;
  PeerId writer;          // who signed the record (verified by readers)
  absl::Time stored_at;   // by the writer's clock; the newest wins per (writer, subkey)
  absl::Time expiration;  // after this the record is ignored
};

// Largest value a record may hold.
inline constexpr size_t kMaxDhtValueSize = size_t{32} * 1024;

// Thread safety: implementations are thread-safe. Listen callbacks run on the
// implementation's thread and must not block.
class HIVEMIND_EXPORT Dht {
 public:
  using ListenCallback = std::function<void(const DhtRecord& record)>;

  virtual ~Dht() = default;

  // This node's id.
  virtual const PeerId& id() const = 0;

  // Stores `value` under (key, subkey) until `expiration`, and waits until the DHT
  // confirms it or `timeout` passes. The record is signed by `signer`, which becomes
  // its writer; nullptr signs with this node's own identity. A peer whose endpoint
  // has its own key (an averager, a state server) passes it to publish records in
  // its endpoint's name through a shared node. `signer` is not owned and only used
  // during the call. Returns kInvalidArgument for a value over kMaxDhtValueSize, an
  // expiration in the past or a malformed signer, kDeadlineExceeded when no node
  // confirmed the store in time (the store may still go on and land later),
  // kUnavailable when the nodes refused it, kCancelled after shutdown.
  virtual absl::Status Store(absl::string_view key, absl::string_view subkey,
                             absl::string_view value, absl::Time expiration,
                             absl::Duration timeout = absl::Seconds(10),
                             const KeyPair* signer = nullptr) = 0;

  // As Store, but the record takes the place of this writer's previous record for
  // (key, subkey) in the DHT's storage where the implementation can (OpenDhtNode:
  // in place on the storing nodes), instead of sitting beside it until it expires:
  // for a record stored again and again (progress, every second or so), whose key
  // would otherwise carry every version of the last minutes to every lookup.
  // Listeners may not hear a replacement (OpenDHT's do not): use it for keys that
  // are read with Get. Default: Store.
  virtual absl::Status Replace(absl::string_view key, absl::string_view subkey,
                               absl::string_view value, absl::Time expiration,
                               absl::Duration timeout = absl::Seconds(10),
                               const KeyPair* signer = nullptr) {
    return Store(key, subkey, value, expiration, timeout, signer);
  }

  // Returns the unexpired, correctly signed records under `key`: the newest per
  // (writer, subkey), in no particular order (possibly none). Waits for the lookup to
  // finish or `timeout` to pass (then returns what arrived). kCancelled after shutdown.
  virtual absl::StatusOr<std::vector<DhtRecord>> Get(
      absl::string_view key, absl::Duration timeout = absl::Seconds(10)) = 0;

  // Calls `callback` for every unexpired, correctly signed record stored under `key`
  // from now on (and those already there). Returns a token for CancelListen.
  virtual absl::StatusOr<uint64_t> Listen(absl::string_view key,
                                          ListenCallback callback) = 0;
  virtual void CancelListen(uint64_t token) = 0;
};

}  // namespace hivemind

#endif  // HIVEMIND_DHT_DHT_H_
