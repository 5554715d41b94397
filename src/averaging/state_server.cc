// StateServer: snapshots, the kStateRequest handler and the advert refresh thread.
#include <algorithm>
#include <deque>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "averaging/state_messages.h"
#include "hivemind/averaging/state_sharing.h"
#include "hivemind/util/logging.h"
#include "util/mutex.h"

namespace hivemind {
namespace internal {
namespace {

// One published state, immutable once built. Raw, it is the state itself (moved in,
// never serialized: a stripe is copied out of it per request, so the server holds
// one copy of the state and the stripes in flight); compressed, the zstd blob.
// Replies in flight hold their own stripe bytes.
struct Snapshot {
  explicit Snapshot(PeerState s) : state(std::move(s)), raw(state) {}

  uint64_t size() const { return compressed.empty() ? raw.size() : compressed.size(); }
  std::string Stripe(uint32_t i) const {
    const uint64_t begin = StripeBegin(i, advert.stripe_bytes);
    const uint64_t n = StripeSize(size(), advert.stripe_bytes, i);
    return compressed.empty() ? raw.Copy(begin, n) : compressed.substr(begin, n);
  }

  PeerState state;  // emptied when compressed
  RawBlobPieces raw;
  std::string compressed;  // SerializePeerState(state, zstd_level), when > 0
  StateAdvert advert;
  std::string advert_value;  // EncodeStateAdvert(advert)
};

absl::StatusOr<std::shared_ptr<const Snapshot>> BuildSnapshot(PeerState state,
                                                              const std::string& address,
                                                              uint32_t stripe_bytes,
                                                              int zstd_level) {
  if (state.metadata.size() > kMaxStateMetadataSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "state metadata of ", state.metadata.size(), " bytes is over the limit"));
  }
  std::string compressed;
  if (zstd_level > 0) compressed = SerializePeerState(state, zstd_level);
  auto snapshot = std::make_shared<Snapshot>(
      zstd_level > 0 ? PeerState{state.epoch, {}, {}, {}} : std::move(state));
  snapshot->compressed = std::move(compressed);
  const uint64_t stripe = ChooseStripeBytes(snapshot->size(), stripe_bytes);
  if (stripe > kMaxStripeBytes) {
    return absl::InvalidArgumentError(absl::StrCat("a state of ", snapshot->size(),
                                                   " bytes is too large to advertise"));
  }
  StateAdvert& a = snapshot->advert;
  a.address = address;
  a.epoch = snapshot->state.epoch;
  a.state_bytes = snapshot->size();
  a.stripe_bytes = static_cast<uint32_t>(stripe);
  if (snapshot->compressed.empty()) {
    a.state_hash = snapshot->raw.Hash(a.stripe_bytes, &a.stripe_hashes);
  } else {
    const absl::string_view blob = snapshot->compressed;
    a.state_hash = StateHash(blob);
    for (uint32_t i = 0; i < StripeCount(a.state_bytes, a.stripe_bytes); ++i) {
      // A view, not Stripe(i)'s copy (substr stops at the blob's end).
      a.stripe_hashes.push_back(
          StateHash(blob.substr(StripeBegin(i, a.stripe_bytes), a.stripe_bytes)));
    }
  }
  snapshot->advert_value = EncodeStateAdvert(a);
  return std::shared_ptr<const Snapshot>(std::move(snapshot));
}

}  // namespace

// Shared between the server, its thread and the endpoint's handler (through a
// weak_ptr, so a request racing with destruction finds nothing).
class StateServerCore {
 public:
  StateServerCore(Dht* dht, KeyPair identity, StateServerOptions options)
      : dht_(dht),
        options_(std::move(options)),
        key_(options_.prefix + ".state"),
        identity_(std::move(identity)) {}

  // Builds and installs a snapshot; the thread stores its advert. Snapshots are
  // built one at a time, so a slower Publish cannot install an older state over a
  // newer one.
  absl::Status Publish(PeerState state, const std::string& address) {
    MutexLock publishing(&publish_mu_);
    Withdraw();  // the previous state is freed before the new one is hashed
    auto snapshot = BuildSnapshot(std::move(state), address, options_.stripe_bytes,
                                  options_.zstd_level);
    if (!snapshot.ok()) return snapshot.status();
    MutexLock lock(&mu_);
    if (stopped_) return absl::CancelledError("state server shut down");
    snapshot_ = *std::move(snapshot);
    ++published_;
    Kick();
    return absl::OkStatus();
  }

  void Withdraw() {
    std::shared_ptr<const Snapshot> old;
    MutexLock lock(&mu_);
    old.swap(snapshot_);  // freed here unless a reply in flight still reads it
  }

  // Waits until the advert of the latest Publish (as of this call) was stored.
  const StateServerOptions& options() const { return options_; }

  absl::Status WaitForAdvert(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    MutexLock lock(&mu_);
    if (published_ == 0) return absl::FailedPreconditionError("nothing published");
    const uint64_t wanted = published_;
    cv_.WaitUntil(&mu_, deadline, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stored_ >= wanted || stopped_;
    });
    if (stored_ >= wanted) return store_status_;
    if (stopped_) return absl::CancelledError("state server shut down");
    return absl::DeadlineExceededError("the advert is not stored yet");
  }
  void OnRequest(const Message& message, Responder responder) {
    auto request = ParseStateRequest(message.body);
    if (!request.ok()) {
      Refuse(responder, request.status());
      return;
    }
    std::shared_ptr<const Snapshot> snapshot;
    bool stopped = false;
    {
      MutexLock lock(&mu_);
      snapshot = snapshot_;
      stopped = stopped_;
    }
    if (stopped) {
      Refuse(responder, absl::UnavailableError("state server shut down"));
      return;
    }
    if (snapshot == nullptr || snapshot->advert.state_hash != request->state_hash) {
      Refuse(responder,
             absl::FailedPreconditionError(snapshot == nullptr ? "no state published"
                                                               : "state changed"));
      return;
    }
    if (request->stripe >= snapshot->advert.stripe_hashes.size()) {
      Refuse(responder, absl::InvalidArgumentError(
                            absl::StrCat("stripe ", request->stripe, " of ",
                                         snapshot->advert.stripe_hashes.size())));
      return;
    }
    SharedBytes stripe = MakeSharedBytes(snapshot->Stripe(request->stripe));
    if (options_.serve_interval > absl::ZeroDuration()) {
      Defer(std::move(responder), std::move(stripe));
      return;
    }
    Count();
    responder.Reply(wire::MessageType::kStateChunk, std::move(stripe));
  }

  // The background thread: paced replies, advert stores and refreshes until Stop.
  void Loop() {
    while (true) {
      std::vector<std::pair<Responder, SharedBytes>> due;
      bool store = false;
      if (!NextWork(&due, &store)) return;
      for (auto& [responder, stripe] : due) {
        responder.Reply(wire::MessageType::kStateChunk, std::move(stripe));
      }
      if (store) StoreLatestAdvert();
    }
  }

  // Stops the thread; pending paced replies get kUnavailable.
  void Stop() {
    std::deque<Deferred> pending;
    {
      MutexLock lock(&mu_);
      stopped_ = true;
      pending.swap(deferred_);
      Kick();
    }
    for (Deferred& d : pending) {
      d.responder.ReplyError(absl::UnavailableError("state server shut down"));
    }
  }

  StateServer::Stats stats() {
    MutexLock lock(&mu_);
    StateServer::Stats s = stats_;
    if (snapshot_ != nullptr) {
      s.epoch = snapshot_->advert.epoch;
      s.state_hash = snapshot_->advert.state_hash;
      s.state_bytes = snapshot_->advert.state_bytes;
      s.stripe_bytes = snapshot_->advert.stripe_bytes;
      s.stripes = static_cast<uint32_t>(snapshot_->advert.stripe_hashes.size());
    }
    return s;
  }

 private:
  struct Deferred {
    absl::Time due;
    Responder responder;
    SharedBytes stripe;
  };

  void Refuse(const Responder& responder, const absl::Status& status) {
    {
      MutexLock lock(&mu_);
      ++stats_.requests_refused;
    }
    responder.ReplyError(status);
  }

  // Wakes the thread to look at its work again.
  void Kick() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    kicked_ = true;
    cv_.SignalAll();
  }

  void Count() {
    MutexLock lock(&mu_);
    ++stats_.stripes_served;
  }

  // Queues a reply at the pace of serve_interval (the test seam).
  void Defer(Responder responder, SharedBytes stripe) {
    MutexLock lock(&mu_);
    if (stopped_) {
      responder.ReplyError(absl::UnavailableError("state server shut down"));
      return;
    }
    const absl::Time due = std::max(absl::Now(), next_paced_);
    next_paced_ = due + options_.serve_interval;
    deferred_.push_back({due, std::move(responder), std::move(stripe)});
    Kick();
  }

  // Stores the advert of the snapshot served now (the latest Publish's). Only the
  // thread stores, so an older advert can never land after a newer one.
  void StoreLatestAdvert() {
    std::string advert;
    uint64_t generation = 0;
    int64_t epoch = 0;
    {
      MutexLock lock(&mu_);
      if (stopped_ || snapshot_ == nullptr) return;
      advert = snapshot_->advert_value;
      generation = published_;
      epoch = snapshot_->advert.epoch;
    }
    absl::Status status =
        dht_->Store(key_, identity_.public_key, advert, absl::Now() + options_.advert_ttl,
                    options_.dht_timeout, &identity_);
    if (!status.ok()) {
      HIVEMIND_LOG(kWarning, "could not advertise the state of epoch ", epoch,
                   " (retried in ", absl::FormatDuration(options_.refresh_period),
                   "): ", status.ToString());
    }
    MutexLock lock(&mu_);
    if (!status.ok()) ++stats_.advert_failures;
    if (generation > stored_) {
      stored_ = generation;
      store_status_ = std::move(status);
    }
    cv_.SignalAll();
  }

  // Waits for due replies, or an advert to store (new or due for refresh); false
  // once stopped.
  bool NextWork(std::vector<std::pair<Responder, SharedBytes>>* due, bool* store) {
    MutexLock lock(&mu_);
    while (!stopped_) {
      const absl::Time now = absl::Now();
      while (!deferred_.empty() && deferred_.front().due <= now) {
        due->emplace_back(std::move(deferred_.front().responder),
                          std::move(deferred_.front().stripe));
        deferred_.pop_front();
        ++stats_.stripes_served;
      }
      if (snapshot_ != nullptr && (attempted_ < published_ || next_refresh_ <= now)) {
        *store = true;
        attempted_ = published_;
        next_refresh_ = now + options_.refresh_period;
      }
      if (!due->empty() || *store) return true;
      absl::Time wake = now + absl::Hours(1);
      if (snapshot_ != nullptr) wake = std::min(wake, next_refresh_);
      if (!deferred_.empty()) wake = std::min(wake, deferred_.front().due);
      kicked_ = false;
      cv_.WaitUntil(&mu_, wake,
                    [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return kicked_; });
    }
    return false;
  }

  Dht* const dht_;
  const StateServerOptions options_;
  const std::string key_;
  // The endpoint's: its id is the advert's subkey, and it signs the advert, so
  // loaders can check the subkey is the writer.
  const KeyPair identity_;
  Mutex publish_mu_;  // held while a Publish builds and installs its snapshot
  Mutex mu_;
  CondVar cv_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool kicked_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<const Snapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  // Publish calls so far; the latest whose advert store the thread began and
  // finished, and how that store ended.
  uint64_t published_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t attempted_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t stored_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status store_status_ ABSL_GUARDED_BY(mu_);
  absl::Time next_refresh_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  absl::Time next_paced_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::deque<Deferred> deferred_ ABSL_GUARDED_BY(mu_);
  StateServer::Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace internal

absl::StatusOr<std::unique_ptr<StateServer>> StateServer::Create(
    Endpoint* endpoint, Dht* dht, StateServerOptions options) {
  if (options.prefix.empty()) return absl::InvalidArgumentError("prefix is required");
  if (options.stripe_bytes < internal::kMinStripeBytes ||
      options.stripe_bytes > internal::kMaxStripeBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("stripe_bytes ", options.stripe_bytes, " out of range"));
  }
  if (options.refresh_period <= absl::ZeroDuration() ||
      options.refresh_period >= options.advert_ttl) {
    return absl::InvalidArgumentError("need 0 < refresh_period < advert_ttl");
  }
  if (endpoint->address().empty()) {
    return absl::InvalidArgumentError("a client-mode endpoint cannot serve state");
  }
  auto core = std::make_shared<internal::StateServerCore>(dht, endpoint->identity(),
                                                          std::move(options));
  return std::unique_ptr<StateServer>(new StateServer(endpoint, std::move(core)));
}

StateServer::StateServer(Endpoint* endpoint,
                         std::shared_ptr<internal::StateServerCore> core)
    : endpoint_(endpoint), core_(std::move(core)) {
  std::weak_ptr<internal::StateServerCore> weak = core_;
  endpoint_->SetHandler(wire::MessageType::kStateRequest, [weak](const Message& message,
                                                                 Responder responder) {
    if (auto core = weak.lock()) {
      core->OnRequest(message, std::move(responder));
    } else {
      responder.ReplyError(absl::UnavailableError("state server shut down"));
    }
  });
  thread_ = std::thread([core = core_] { core->Loop(); });
}

StateServer::~StateServer() { Shutdown(); }

absl::Status StateServer::Publish(PeerState state) {
  return core_->Publish(std::move(state), endpoint_->address());
}

void StateServer::Withdraw() { core_->Withdraw(); }

absl::Status StateServer::WaitForAdvert(absl::Duration timeout) {
  return core_->WaitForAdvert(timeout);
}

absl::Status StateServer::WaitForAdvert() {
  return core_->WaitForAdvert(core_->options().dht_timeout);
}

StateServer::Stats StateServer::stats() const { return core_->stats(); }

void StateServer::Shutdown() {
  std::call_once(shutdown_once_, [this] {
    core_->Stop();
    thread_.join();
    endpoint_->SetHandler(wire::MessageType::kStateRequest, nullptr);
  });
}

}  // namespace hivemind
