#include "hivemind/dht/opendht_node.h"

#include <opendht/dhtrunner.h>

#include <atomic>
#include <future>
#include <map>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "dht/record.h"
#include "util/mutex.h"

namespace hivemind {
namespace {

// Splits "HOST:PORT" (IPv4 or a name).
absl::Status SplitHostPort(const std::string& address, std::string* host,
                           std::string* port) {
  const size_t colon = address.rfind(':');
  uint32_t number = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &number) || number > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", address, "' is not a HOST:PORT address"));
  }
  *host = address.substr(0, colon);
  *port = address.substr(colon + 1);
  return absl::OkStatus();
}

// Newest record per (writer, subkey), unexpired at `now`.
std::vector<DhtRecord> Latest(const std::vector<DhtRecord>& records, absl::Time now) {
  std::map<std::pair<std::string, std::string>, const DhtRecord*> newest;
  for (const DhtRecord& r : records) {
    if (r.expiration <= now) continue;
    const DhtRecord*& slot = newest[{r.writer, r.subkey}];
    if (slot == nullptr || slot->stored_at < r.stored_at) slot = &r;
  }
  std::vector<DhtRecord> out;
  for (const auto& [key, record] : newest) out.push_back(*record);
  return out;
}

}  // namespace

class OpenDhtNode::Impl {
 public:
  explicit Impl(DhtOptions options) : options_(std::move(options)) {}

  ~Impl() { Shutdown(); }

  absl::Status Start() {
    if (options_.run_id.empty()) return absl::InvalidArgumentError("run_id is empty");
    if (options_.id.empty()) {
      auto keys = GenerateKeyPair();
      if (!keys.ok()) return keys.status();
      options_.id = keys->public_key;
    }
    std::string host, port;
    absl::Status parsed = SplitHostPort(options_.listen_address, &host, &port);
    if (!parsed.ok()) return parsed;
    dht::DhtRunner::Config config;
    config.threaded = true;
    try {
      runner_.run(host.c_str(), "", port.c_str(), config);
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat(
          "cannot start a DHT node on ", options_.listen_address, ": ", e.what()));
    }
    running_ = true;
    address_ = absl::StrCat(host, ":", runner_.getBoundPort(AF_INET));
    return Bootstrap();
  }

  absl::Status Bootstrap() {
    if (options_.initial_peers.empty()) return absl::OkStatus();
    for (const std::string& peer : options_.initial_peers) {
      std::string host, port;
      absl::Status parsed = SplitHostPort(peer, &host, &port);
      if (!parsed.ok()) return parsed;
      runner_.bootstrap(host, port);
    }
    const absl::Time deadline = absl::Now() + options_.bootstrap_timeout;
    while (absl::Now() < deadline) {
      if (KnownNodes() > 0) {
        // One answering peer is not a routing table: a lookup (of a key near this
        // node) fills it, as hivemind's DHTNode.create does. Records stored before
        // that can land where later lookups never look (measured with
        // bench/dht_benchmark: 2 of 256 lost with no node killed).
        (void)Get(absl::StrCat("bootstrap/", options_.id), deadline - absl::Now());
        return absl::OkStatus();
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return absl::UnavailableError(
        absl::StrCat("no initial peer answered within ",
                     absl::FormatDuration(options_.bootstrap_timeout)));
  }

  int KnownNodes() const {
    unsigned good = 0, dubious = 0;
    runner_.getNodesStats(AF_INET, &good, &dubious, nullptr, nullptr);
    return static_cast<int>(good + dubious);
  }

  void Shutdown() {
    if (!running_.exchange(false)) return;
    std::promise<void> done;
    runner_.shutdown([&done] { done.set_value(); }, /*stop=*/true);
    done.get_future().wait_for(std::chrono::seconds(1));
    runner_.join();
  }

  dht::InfoHash Hash(absl::string_view key) const {
    return dht::InfoHash::get(absl::StrCat(options_.run_id, "/", key));
  }

  absl::Status Store(absl::string_view key, absl::string_view subkey,
                     absl::string_view value, absl::Time expiration,
                     absl::Duration timeout) {
    if (!running_) return absl::CancelledError("DHT node shut down");
    const absl::Time now = absl::Now();
    if (value.size() > kMaxDhtValueSize || subkey.size() > internal::kMaxSubkeySize) {
      return absl::InvalidArgumentError("DHT value or subkey too large");
    }
    if (expiration <= now) {
      return absl::InvalidArgumentError("DHT record would be expired already");
    }
    DhtRecord record{std::string(subkey), std::string(value), options_.id, now,
                     expiration};
    const std::string data = internal::EncodeDhtRecord(record);
    auto v = std::make_shared<dht::Value>(reinterpret_cast<const uint8_t*>(data.data()),
                                          data.size());
    auto promise = std::make_shared<std::promise<bool>>();
    std::future<bool> stored = promise->get_future();
    runner_.put(Hash(key), v, [promise](bool ok) { promise->set_value(ok); });
    if (stored.wait_for(absl::ToChronoNanoseconds(timeout)) !=
        std::future_status::ready) {
      return absl::DeadlineExceededError("no DHT node confirmed the store in time");
    }
    if (!stored.get()) return absl::UnavailableError("no DHT node accepted the store");
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<DhtRecord>> Get(absl::string_view key,
                                             absl::Duration timeout) {
    if (!running_) return absl::CancelledError("DHT node shut down");
    struct State {
      internal::Mutex mu;
      std::vector<DhtRecord> records ABSL_GUARDED_BY(mu);
      std::promise<void> done;
    };
    auto state = std::make_shared<State>();
    std::future<void> done = state->done.get_future();
    runner_.get(
        Hash(key),
        [state](const std::vector<std::shared_ptr<dht::Value>>& values) {
          internal::MutexLock lock(&state->mu);
          for (const auto& v : values) {
            auto record = internal::ParseDhtRecord(absl::string_view(
                reinterpret_cast<const char*>(v->data.data()), v->data.size()));
            if (record.ok()) state->records.push_back(std::move(*record));
          }
          return true;
        },
        [state](bool) { state->done.set_value(); });
    done.wait_for(absl::ToChronoNanoseconds(timeout));
    internal::MutexLock lock(&state->mu);
    return Latest(state->records, absl::Now());
  }

  absl::StatusOr<uint64_t> Listen(absl::string_view key, ListenCallback callback) {
    if (!running_) return absl::CancelledError("DHT node shut down");
    const dht::InfoHash hash = Hash(key);
    std::future<size_t> token = runner_.listen(
        hash,
        [callback](const std::vector<std::shared_ptr<dht::Value>>& values, bool expired) {
          if (expired) return true;
          const absl::Time now = absl::Now();
          for (const auto& v : values) {
            auto record = internal::ParseDhtRecord(absl::string_view(
                reinterpret_cast<const char*>(v->data.data()), v->data.size()));
            if (record.ok() && record->expiration > now) callback(*record);
          }
          return true;
        });
    const size_t dht_token = token.get();
    internal::MutexLock lock(&mu_);
    const uint64_t ours = next_token_++;
    listens_[ours] = {hash, dht_token};
    return ours;
  }

  void CancelListen(uint64_t token) {
    std::pair<dht::InfoHash, size_t> entry;
    {
      internal::MutexLock lock(&mu_);
      auto it = listens_.find(token);
      if (it == listens_.end()) return;
      entry = it->second;
      listens_.erase(it);
    }
    if (running_) runner_.cancelListen(entry.first, entry.second);
  }

  const std::string& address() const { return address_; }
  const PeerId& id() const { return options_.id; }

 private:
  DhtOptions options_;
  mutable dht::DhtRunner runner_;
  std::atomic<bool> running_{false};
  std::string address_;
  internal::Mutex mu_;
  std::map<uint64_t, std::pair<dht::InfoHash, size_t>> listens_ ABSL_GUARDED_BY(mu_);
  uint64_t next_token_ ABSL_GUARDED_BY(mu_) = 1;
};

absl::StatusOr<std::unique_ptr<OpenDhtNode>> OpenDhtNode::Create(DhtOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  absl::Status started = impl->Start();
  if (!started.ok()) return started;
  return std::unique_ptr<OpenDhtNode>(new OpenDhtNode(std::move(impl)));
}

OpenDhtNode::OpenDhtNode(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

OpenDhtNode::~OpenDhtNode() { Shutdown(); }

std::string OpenDhtNode::address() const { return impl_->address(); }

int OpenDhtNode::known_nodes() const { return impl_->KnownNodes(); }

const PeerId& OpenDhtNode::id() const { return impl_->id(); }

absl::Status OpenDhtNode::Store(absl::string_view key, absl::string_view subkey,
                                absl::string_view value, absl::Time expiration,
                                absl::Duration timeout) {
  return impl_->Store(key, subkey, value, expiration, timeout);
}

absl::StatusOr<std::vector<DhtRecord>> OpenDhtNode::Get(absl::string_view key,
                                                        absl::Duration timeout) {
  return impl_->Get(key, timeout);
}

absl::StatusOr<uint64_t> OpenDhtNode::Listen(absl::string_view key,
                                             ListenCallback callback) {
  return impl_->Listen(key, std::move(callback));
}

void OpenDhtNode::CancelListen(uint64_t token) { impl_->CancelListen(token); }

void OpenDhtNode::Shutdown() { impl_->Shutdown(); }

}  // namespace hivemind
