// State sharing: a peer serves its latest state (flattened tensors, optimizer state
// bytes, epoch and metadata), and a newcomer or a peer that fell behind downloads it
// from several peers at once.
//
// Protocol (docs/wire_format.md, "State sharing"):
//  1. A donor serializes its state into one blob (SerializePeerState), cuts it into
//     stripes of `stripe_bytes` (the last one shorter), hashes every stripe and the
//     whole blob (XXH3-64), and advertises in the DHT under `{prefix}.state` (subkey:
//     its peer id): its address, epoch, blob size, stripe size, the state hash and
//     every stripe hash. It stores the advert again before it expires.
//  2. A loader reads the adverts, keeps those of the most advanced epoch, and among
//     them the largest set of donors that advertise the same state (hash and layout);
//     it never mixes stripes of different states.
//  3. It asks up to `max_donors` of them for stripes (kStateRequest: state hash,
//     stripe index; kStateChunk: the stripe's bytes). Each donor keeps a few stripes
//     in flight and gets the next stripe from a shared queue as soon as one arrives,
//     so faster donors serve more. Every stripe is checked against its advertised
//     hash; a donor that fails (error reply, timeout, wrong bytes) is dropped and its
//     stripes go back to the queue for the others (or a spare donor of the same
//     state).
//  4. The blob is checked against the state hash and parsed.
//
// XXH3-64 detects corruption and mixed states, not a malicious donor: a donor can
// advertise any hashes it likes (records are not signed yet).
#ifndef HIVEMIND_AVERAGING_STATE_SHARING_H_
#define HIVEMIND_AVERAGING_STATE_SHARING_H_

#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "hivemind/dht/dht.h"
#include "hivemind/export.h"
#include "hivemind/net/endpoint.h"

namespace hivemind {

// What a peer shares. Torch-free: tensors are flattened into `values` in an order
// the application fixes (its parameter order); optimizer state travels as opaque
// bytes.
struct HIVEMIND_EXPORT PeerState {
  // The training epoch this state belongs to; loaders prefer the highest.
  int64_t epoch = 0;
  // Small application data (a schema description, the samples seen, ...).
  // At most kMaxStateMetadataSize bytes.
  std::string metadata;
  // Every parameter, flattened. Copied bit for bit (NaN payloads included).
  std::vector<float> values;
  // Optimizer state, serialized by the application.
  std::string extra;
};

// Largest PeerState::metadata.
inline constexpr size_t kMaxStateMetadataSize = size_t{16} << 20;

// Serializes `state` into one versioned blob (docs/wire_format.md, "State blob"),
// compressed with zstd at `zstd_level` when it is > 0 (lossless; ParsePeerState
// reads both forms). Precondition (checked, aborts): metadata is at most
// kMaxStateMetadataSize bytes.
HIVEMIND_EXPORT std::string SerializePeerState(const PeerState& state,
                                               int zstd_level = 0);

// Parses a blob written by SerializePeerState. Never reads outside `blob`. Returns
// kDataLoss for a truncated blob, trailing bytes, an unknown version or an
// oversized field (the message names the field). Another version is kDataLoss too:
// blobs are only exchanged between peers of one version.
HIVEMIND_EXPORT absl::StatusOr<PeerState> ParsePeerState(absl::string_view blob);

struct HIVEMIND_EXPORT StateServerOptions {
  // DHT key prefix of the run (for example the run id or "{run}.model"); adverts
  // live under `{prefix}.state`. Loaders must use the same prefix. Required.
  std::string prefix;

  // Bytes per stripe (the unit of download and of failover). Grown when the state
  // has so many stripes that the advert would not fit in kMaxDhtValueSize (about
  // 4000 stripes). At least 4 KiB, at most 32 MiB (the loader's endpoint must
  // accept bodies this large: EndpointOptions::max_body_size). Default: 1 MiB.
  uint32_t stripe_bytes = 1u << 20;

  // State-load compression: zstd level of the served blob (1-19; 0 = raw). Costs a
  // compression pass per Publish; pays off on slow donor uplinks. Default: 0.
  int zstd_level = 0;

  // Lifetime of an advert in the DHT. A donor that dies stays advertised this long
  // (loaders drop it after one failed request). Default: 60 s.
  absl::Duration advert_ttl = absl::Seconds(60);

  // How often the advert is stored again; must be shorter than advert_ttl.
  // Default: 20 s.
  absl::Duration refresh_period = absl::Seconds(20);

  // How long one DHT store may take. Default: 5 s.
  absl::Duration dht_timeout = absl::Seconds(5);

  // Test seam: the least time between two stripe replies, emulating a slow uplink
  // (replies wait on the server's thread, never on the I/O thread). Zero: reply at
  // once. Default: zero.
  absl::Duration serve_interval = absl::ZeroDuration();
};

namespace internal {
class StateServerCore;
}  // namespace internal

// Serves this peer's latest published state to loaders. Registers itself as the
// endpoint's kStateRequest handler (one StateServer per endpoint). Requests are
// answered on the endpoint's I/O thread, each stripe copied out of the published
// state (never serialized whole): the server holds the state that Publish moved in
// (or, with zstd_level, its compressed blob) and the stripes in flight.
//
// Threads: one background thread stores and refreshes the advert (and sends paced
// replies with serve_interval); Shutdown and the destructor join it (within
// dht_timeout, if a store is under way).
//
// Thread safety: every method may be called from any thread; Publish calls are
// serialized. The endpoint and the DHT must outlive the server.
class HIVEMIND_EXPORT StateServer {
 public:
  // Returns kInvalidArgument for an empty prefix, a stripe size out of range,
  // refresh_period not in (0, advert_ttl), or an endpoint in client mode (it
  // accepts no requests, so it cannot serve).
  static absl::StatusOr<std::unique_ptr<StateServer>> Create(Endpoint* endpoint, Dht* dht,
                                                             StateServerOptions options);
  ~StateServer();
  StateServer(const StateServer&) = delete;
  StateServer& operator=(const StateServer&) = delete;

  // Takes `state` (pass it with std::move: it is kept, not copied), hashes it (one
  // pass over its bytes; with zstd_level, a compression pass first) and serves it
  // in place of the previous one, which is freed first. Requests for the previous
  // state are refused from now on (kFailedPrecondition), so loaders move to donors
  // that still hold it. The advert is stored in the DHT by the server's
  // thread, never the caller's: a slow or unreachable DHT does not stall training
  // (a failed store is logged, counted in Stats::advert_failures and retried at the
  // next refresh). WaitForAdvert waits for it.
  //
  // Returns OK once the state is served. kInvalidArgument if it is too large to
  // advertise (over 125 GiB: 4000 stripes of 32 MiB) or its metadata is over
  // kMaxStateMetadataSize; kCancelled after Shutdown.
  absl::Status Publish(PeerState state);

  // Stops serving the published state and frees it (loaders get kFailedPrecondition
  // and move to other donors) until the next Publish; its advert stays in the DHT.
  // For a peer about to change its state: the old one is stale, and its memory is
  // free for the change.
  void Withdraw();

  // Waits up to `timeout` for the store of the latest Publish's advert (as of this
  // call) and returns how it ended: OK, or the DHT's error (kDeadlineExceeded, ...).
  // kDeadlineExceeded if it is still under way; kFailedPrecondition before any
  // Publish; kCancelled after Shutdown.
  absl::Status WaitForAdvert(absl::Duration timeout);
  // The same, for as long as one store may take (the options' dht_timeout).
  absl::Status WaitForAdvert();

  struct Stats {
    int64_t epoch = 0;          // of the state served now
    uint64_t state_hash = 0;    // 0 before the first Publish
    uint64_t state_bytes = 0;   // size of the serialized blob
    uint32_t stripe_bytes = 0;  // after growth
    uint32_t stripes = 0;
    uint64_t stripes_served = 0;  // replies with data, since creation
    uint64_t requests_refused = 0;
    uint64_t advert_failures = 0;  // DHT stores that failed
  };
  Stats stats() const;

  // Stops serving (requests get kUnavailable, or kUnimplemented once the handler is
  // removed) and joins the thread. The advert is not withdrawn: it expires after
  // advert_ttl. Idempotent; called by the destructor.
  void Shutdown();

 private:
  StateServer(Endpoint* endpoint, std::shared_ptr<internal::StateServerCore> core);
  Endpoint* endpoint_;
  std::shared_ptr<internal::StateServerCore> core_;
  std::thread thread_;
  std::once_flag shutdown_once_;
};

struct HIVEMIND_EXPORT LoadStateOptions {
  // The donors' StateServerOptions::prefix. Required.
  std::string prefix;

  // Donors downloaded from at once (more donors of the same state are kept as
  // spares for failover). At least 1. Default: 3.
  int max_donors = 3;

  // Stripes requested from one donor before it answers (hides the round-trip time;
  // raise on links with a long one). At least 1. Default: 4.
  int max_stripes_in_flight = 4;

  // The whole load, DHT lookup included. Default: 5 min.
  absl::Duration timeout = absl::Minutes(5);

  // A donor that has not answered a stripe request this long after it was sent is
  // dropped (and the stripe asked of another). Must allow for
  // max_stripes_in_flight stripes on the donor's uplink. Default: 30 s.
  absl::Duration stripe_timeout = absl::Seconds(30);

  // Adverts of an older epoch are ignored. Default: no limit.
  int64_t min_epoch = std::numeric_limits<int64_t>::min();

  // Only a state that at least this many donors advertise (one epoch, one state
  // hash) is loaded; of those, the most advanced epoch wins. 1 (the default) trusts
  // a single donor, so one peer that advertises a newer epoch than everyone feeds
  // every newcomer its own state; 2 or more makes it need accomplices. Keys are
  // free in an open swarm, so this is no defence against Sybils there (use a
  // private swarm). kNotFound when no state has that many donors.
  int min_agreeing_donors = 1;

  // How long the DHT lookup of the adverts may take. Default: 5 s.
  absl::Duration dht_timeout = absl::Seconds(5);
};

// How one donor did in a load.
struct HIVEMIND_EXPORT StateDonorReport {
  PeerId peer_id;
  std::string address;
  uint64_t stripes = 0;  // verified stripes it delivered
  uint64_t bytes = 0;
  // OK unless it was dropped: its error reply (kFailedPrecondition "state
  // changed", ...), kDeadlineExceeded (timeout) or kDataLoss (wrong bytes).
  absl::Status status;
};

struct HIVEMIND_EXPORT LoadStateReport {
  int64_t epoch = 0;
  uint64_t state_hash = 0;
  uint64_t state_bytes = 0;
  uint32_t stripes = 0;
  // Donors advertising the chosen state (this peer excluded).
  int candidates = 0;
  // Donors asked for stripes, in the order they were engaged (spares last).
  std::vector<StateDonorReport> donors;
  // Stripe requests sent again after a donor failed.
  uint64_t stripes_retried = 0;
  absl::Duration total_time;
};

// Downloads the most advanced state advertised under `{options.prefix}.state` (see
// the protocol above), through `endpoint` (which may be in client mode). Blocks until
// done, at most options.timeout. `report`, if not null, is filled in on success and
// on failure (as far as the load got). Adverts by this endpoint's own peer id are
// skipped.
//
// Returns the state, bit-identical to what the donors published, or:
//  - kInvalidArgument: bad options (empty prefix, max_donors or
//    max_stripes_in_flight below 1);
//  - kNotFound: no peer advertises a state (of at least min_epoch);
//  - kUnavailable: every donor of the chosen state failed (the message lists why);
//  - kDeadlineExceeded: options.timeout passed first;
//  - kDataLoss: the assembled blob does not match the state hash (donors agreed on
//    stripe hashes that do not make up the state) or does not parse;
//  - kCancelled: the endpoint or the DHT shut down.
HIVEMIND_EXPORT absl::StatusOr<PeerState> LoadStateFromPeers(
    Endpoint* endpoint, Dht* dht, const LoadStateOptions& options,
    LoadStateReport* report = nullptr);

}  // namespace hivemind

#endif  // HIVEMIND_AVERAGING_STATE_SHARING_H_
