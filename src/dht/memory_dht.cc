// MemoryDhtSwarm: one locked table of records, a delivery thread for listeners, and
// nodes that are views of the table under a run id.
#include "hivemind/dht/memory_dht.h"

#include <cstdlib>
#include <deque>
#include <map>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "hivemind/util/logging.h"
#include "util/mutex.h"

namespace hivemind {
namespace internal {

class MemoryDhtTable {
 public:
  MemoryDhtTable() : thread_([this] { DeliverLoop(); }) {}

  void Stop() {
    {
      MutexLock lock(&mu_);
      stopped_ = true;
      cv_.SignalAll();
    }
    thread_.join();
  }

  // Waits out the latency or, partitioned, the whole timeout.
  absl::Status Travel(absl::Duration timeout) {
    absl::Duration latency;
    bool partitioned = false;
    {
      MutexLock lock(&mu_);
      latency = latency_;
      partitioned = partitioned_;
    }
    if (partitioned || latency > timeout) {
      absl::SleepFor(timeout);
      return absl::DeadlineExceededError("no DHT node answered in time");
    }
    absl::SleepFor(latency);
    return absl::OkStatus();
  }

  void Put(const std::string& key, DhtRecord record) {
    MutexLock lock(&mu_);
    ++stores_;
    DhtRecord& slot = records_[key][{record.writer, record.subkey}];
    if (record.stored_at < slot.stored_at) return;  // an older version arrived late
    slot = record;
    for (const auto& [token, listener] : listeners_) {
      if (listener.key == key) queue_.emplace_back(token, record);
    }
    cv_.SignalAll();
  }

  std::vector<DhtRecord> Get(const std::string& key) {
    MutexLock lock(&mu_);
    return Unexpired(key);
  }

  uint64_t Listen(const std::string& key, Dht::ListenCallback callback) {
    MutexLock lock(&mu_);
    const uint64_t token = next_token_++;
    listeners_[token] = {key, std::make_shared<Dht::ListenCallback>(std::move(callback))};
    for (DhtRecord& record : Unexpired(key))
      queue_.emplace_back(token, std::move(record));
    cv_.SignalAll();
    return token;
  }

  // Once it returns, the callback is not running and will not run (unless called
  // from the callback itself).
  void CancelListen(uint64_t token) {
    MutexLock lock(&mu_);
    listeners_.erase(token);
    if (std::this_thread::get_id() == thread_.get_id()) return;
    cv_.WaitUntil(&mu_, absl::InfiniteFuture(), [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return delivering_ != token;
    });
  }

  void SetLatency(absl::Duration latency) {
    MutexLock lock(&mu_);
    latency_ = latency;
  }
  void SetPartitioned(bool partitioned) {
    MutexLock lock(&mu_);
    partitioned_ = partitioned;
  }
  uint64_t stores() {
    MutexLock lock(&mu_);
    return stores_;
  }

 private:
  struct Listener {
    std::string key;
    std::shared_ptr<Dht::ListenCallback> callback;
  };

  std::vector<DhtRecord> Unexpired(const std::string& key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<DhtRecord> out;
    auto it = records_.find(key);
    if (it == records_.end()) return out;
    const absl::Time now = absl::Now();
    for (const auto& [writer_subkey, record] : it->second) {
      if (record.expiration > now) out.push_back(record);
    }
    return out;
  }

  void DeliverLoop() {
    MutexLock lock(&mu_);
    while (true) {
      cv_.WaitUntil(&mu_, absl::InfiniteFuture(),
                    [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                      return stopped_ || !queue_.empty();
                    });
      if (stopped_) return;
      auto [token, record] = std::move(queue_.front());
      queue_.pop_front();
      auto it = listeners_.find(token);
      if (it == listeners_.end()) continue;
      std::shared_ptr<Dht::ListenCallback> callback = it->second.callback;
      delivering_ = token;
      mu_.Unlock();
      (*callback)(record);
      mu_.Lock();
      delivering_ = 0;
      cv_.SignalAll();
    }
  }

  Mutex mu_;
  CondVar cv_;
  // key (run id included) -> (writer, subkey) -> the newest record.
  std::map<std::string, std::map<std::pair<PeerId, std::string>, DhtRecord>> records_
      ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Listener> listeners_ ABSL_GUARDED_BY(mu_);
  std::deque<std::pair<uint64_t, DhtRecord>> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t delivering_ ABSL_GUARDED_BY(mu_) = 0;  // the token being called back
  uint64_t next_token_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t stores_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration latency_ ABSL_GUARDED_BY(mu_);
  bool partitioned_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts once the fields above exist
};

namespace {

class MemoryDhtNode : public Dht {
 public:
  MemoryDhtNode(std::shared_ptr<MemoryDhtTable> table, std::string run_id,
                KeyPair identity)
      : table_(std::move(table)),
        run_id_(std::move(run_id)),
        identity_(std::move(identity)) {}

  ~MemoryDhtNode() override {
    std::set<uint64_t> tokens;
    {
      MutexLock lock(&mu_);
      tokens.swap(tokens_);
    }
    for (uint64_t token : tokens) table_->CancelListen(token);
  }

  const PeerId& id() const override { return identity_.public_key; }

  absl::Status Store(absl::string_view key, absl::string_view subkey,
                     absl::string_view value, absl::Time expiration,
                     absl::Duration timeout, const KeyPair* signer) override {
    if (signer == nullptr) signer = &identity_;
    const absl::Time now = absl::Now();
    if (value.size() > kMaxDhtValueSize) {
      return absl::InvalidArgumentError(
          absl::StrCat("a DHT value of ", value.size(), " bytes is over the limit"));
    }
    if (expiration <= now) return absl::InvalidArgumentError("expiration in the past");
    auto public_key = PublicKeyOf(signer->secret_key);
    if (!public_key.ok() || *public_key != signer->public_key) {
      return absl::InvalidArgumentError("malformed signer key pair");
    }
    DhtRecord record{std::string(subkey), std::string(value), signer->public_key, now,
                     expiration};
    absl::Status travelled = table_->Travel(timeout);
    if (!travelled.ok()) return travelled;
    table_->Put(Scoped(key), std::move(record));
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<DhtRecord>> Get(absl::string_view key,
                                             absl::Duration timeout) override {
    absl::Status travelled = table_->Travel(timeout);
    if (!travelled.ok()) return travelled;
    return table_->Get(Scoped(key));
  }

  absl::StatusOr<uint64_t> Listen(absl::string_view key,
                                  ListenCallback callback) override {
    const uint64_t token = table_->Listen(Scoped(key), std::move(callback));
    MutexLock lock(&mu_);
    tokens_.insert(token);
    return token;
  }

  void CancelListen(uint64_t token) override {
    {
      MutexLock lock(&mu_);
      if (tokens_.erase(token) == 0) return;
    }
    table_->CancelListen(token);
  }

 private:
  std::string Scoped(absl::string_view key) const {
    return absl::StrCat(run_id_, "/", key);
  }

  const std::shared_ptr<MemoryDhtTable> table_;
  const std::string run_id_;
  const KeyPair identity_;
  Mutex mu_;
  std::set<uint64_t> tokens_ ABSL_GUARDED_BY(mu_);
};

}  // namespace
}  // namespace internal

MemoryDhtSwarm::MemoryDhtSwarm() : table_(std::make_shared<internal::MemoryDhtTable>()) {}

MemoryDhtSwarm::~MemoryDhtSwarm() { table_->Stop(); }

std::unique_ptr<Dht> MemoryDhtSwarm::NewNode(const std::string& run_id) {
  absl::StatusOr<KeyPair> identity = GenerateKeyPair();
  if (!identity.ok()) {
    HIVEMIND_LOG(kError, "MemoryDhtSwarm: no key pair: ", identity.status().ToString());
    std::abort();
  }
  return std::make_unique<internal::MemoryDhtNode>(table_, run_id, *std::move(identity));
}

void MemoryDhtSwarm::SetLatency(absl::Duration latency) { table_->SetLatency(latency); }

void MemoryDhtSwarm::SetPartitioned(bool partitioned) {
  table_->SetPartitioned(partitioned);
}

uint64_t MemoryDhtSwarm::stores() const { return table_->stores(); }

}  // namespace hivemind
