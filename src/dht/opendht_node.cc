#include "hivemind/dht/opendht_node.h"

#include <opendht/dhtrunner.h>

#include <atomic>
#include <cstring>
#include <future>
#include <map>
#include <optional>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "dht/record.h"
#include "hivemind/util/logging.h"
#include "util/mutex.h"

namespace hivemind {
namespace {

// How often a node that seems cut off may ask OpenDHT to reconnect.
constexpr absl::Duration kReconnectInterval = absl::Seconds(5);
// How often a node in use refreshes its view anyway. Islands that formed while
// links were cut (each side's routing table and searches holding only its own
// nodes) work fine inside, so no store fails to trigger a reconnect, and they
// would stay apart: the chaos test saw 8 peers split 5 + 3 for 15 epochs.
constexpr absl::Duration kRefreshInterval = absl::Seconds(20);

// OpenDHT keeps a value (in the storage of the nodes near its key, and in searches'
// caches) for its type's expiration - 10 minutes for plain values - whatever the
// record inside says. A value goes out with the shortest of these types that covers
// its record's lifetime, so a matchmaking declaration that lives seconds is dropped
// within 30 s, not 10 minutes: what piles up under a busy key stays bounded. Every
// node registers them; a node that does not keeps such values 10 minutes.
struct LifetimeType {
  dht::ValueType::Id id;
  absl::Duration expiration;
};
constexpr LifetimeType kLifetimeTypes[] = {
    {0x4801, absl::Seconds(30)}, {0x4802, absl::Minutes(2)}, {0x4803, absl::Minutes(10)}};

// What a record is bound to (internal::SignDhtRecord's key id): the OpenDHT hash of
// its key, all a storing node sees of the key.
std::string KeyId(const dht::InfoHash& hash) {
  return std::string(reinterpret_cast<const char*>(hash.data()), hash.size());
}

// 16 random bytes.
std::string RandomSalt() {
  std::random_device device;
  std::string salt;
  for (int i = 0; i < 4; ++i) {
    const uint32_t word = device();
    salt.append(reinterpret_cast<const char*>(&word), sizeof(word));
  }
  return salt;
}

absl::string_view DataOf(const dht::Value& v) {
  return absl::string_view(reinterpret_cast<const char*>(v.data.data()), v.data.size());
}

// Storing nodes (every node registers the types below with these policies) keep only
// records that verify for the key they are stored under: garbage of these types is
// dropped where it lands, not just by every reader.
bool MayStore(dht::InfoHash key, std::shared_ptr<dht::Value>& value,
              const dht::InfoHash& from, const dht::SockAddr& addr) {
  return dht::ValueType::DEFAULT_STORE_POLICY(key, value, from, addr) &&
         internal::ReadDhtRecord(KeyId(key), DataOf(*value)).ok();
}

// ...and let a record replace the one under the same value id only if it verifies,
// is by the same writer for the same subkey, and is newer (what Replace relies on).
bool MayEdit(dht::InfoHash key, const std::shared_ptr<dht::Value>& current,
             std::shared_ptr<dht::Value>& replacement, const dht::InfoHash& from,
             const dht::SockAddr& addr) {
  return dht::ValueType::DEFAULT_STORE_POLICY(key, replacement, from, addr) &&
         internal::MayReplaceDhtRecord(KeyId(key), DataOf(*current),
                                       DataOf(*replacement));
}

// The type for a record valid for `lifetime` (0, plain data, beyond the longest).
dht::ValueType::Id TypeFor(absl::Duration lifetime) {
  for (const LifetimeType& type : kLifetimeTypes) {
    if (lifetime <= type.expiration) return type.id;
  }
  return 0;
}

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
  out.reserve(newest.size());
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
    absl::Status identity = CompleteIdentity(&options_.identity);
    if (!identity.ok()) return identity;
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
    for (const LifetimeType& type : kLifetimeTypes) {
      runner_.registerType(dht::ValueType(
          type.id, absl::StrCat("hivemind-", absl::ToInt64Seconds(type.expiration), "s"),
          absl::ToChronoSeconds(type.expiration), MayStore, MayEdit));
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
        (void)Get(absl::StrCat("bootstrap/", id()), deadline - absl::Now());
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

  // The key records are stored (and signed) under: scoped by the run id.
  std::string FullKey(absl::string_view key) const {
    return absl::StrCat(options_.run_id, "/", key);
  }

  // Store and Replace (`replace`: the value id is this node's for (key, writer,
  // subkey), so storing nodes take the record as an edit of the previous one).
  absl::Status Store(absl::string_view key, absl::string_view subkey,
                     absl::string_view value, absl::Time expiration,
                     absl::Duration timeout, const KeyPair* signer, bool replace) {
    if (!running_) return absl::CancelledError("DHT node shut down");
    if (signer == nullptr) signer = &options_.identity;
    const absl::Time now = absl::Now();
    if (value.size() > kMaxDhtValueSize || subkey.size() > internal::kMaxSubkeySize) {
      return absl::InvalidArgumentError("DHT value or subkey too large");
    }
    if (expiration <= now) {
      return absl::InvalidArgumentError("DHT record would be expired already");
    }
    Reconnect(kRefreshInterval);
    const dht::InfoHash hash = dht::InfoHash::get(FullKey(key));
    DhtRecord record{std::string(subkey), std::string(value), signer->public_key, now,
                     expiration};
    absl::StatusOr<std::string> data =
        internal::SignDhtRecord(KeyId(hash), record, *signer);
    if (!data.ok()) return data.status();
    auto v = std::make_shared<dht::Value>(reinterpret_cast<const uint8_t*>(data->data()),
                                          data->size());
    v->type = TypeFor(expiration - now);
    if (replace) {
      v->id = ValueId(hash, record.writer, record.subkey);
      v->seq = static_cast<uint16_t>(next_seq_.fetch_add(1));
    }
    auto promise = std::make_shared<std::promise<bool>>();
    std::future<bool> stored = promise->get_future();
    runner_.put(hash, v, [promise](bool ok) { promise->set_value(ok); });
    if (stored.wait_for(absl::ToChronoNanoseconds(timeout)) !=
        std::future_status::ready) {
      Reconnect(kReconnectInterval);
      return absl::DeadlineExceededError("no DHT node confirmed the store in time");
    }
    if (!stored.get()) {
      Reconnect(kReconnectInterval);
      return absl::UnavailableError("no DHT node accepted the store");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<DhtRecord>> Get(absl::string_view key,
                                             absl::Duration timeout) {
    if (!running_) return absl::CancelledError("DHT node shut down");
    struct State {
      internal::Mutex mu;
      std::vector<DhtRecord> records ABSL_GUARDED_BY(mu);
      std::atomic<bool> answered{false};
      std::promise<void> done;
    };
    auto state = std::make_shared<State>();
    std::future<void> done = state->done.get_future();
    const std::string full_key = FullKey(key);
    const dht::InfoHash hash = dht::InfoHash::get(full_key);
    runner_.get(
        hash,
        [this, state, full_key,
         hash](const std::vector<std::shared_ptr<dht::Value>>& values) {
          for (const auto& v : values) {
            std::optional<DhtRecord> record = Open(full_key, hash, *v);
            if (!record) continue;
            internal::MutexLock lock(&state->mu);
            state->records.push_back(*std::move(record));
          }
          return true;
        },
        [state](bool ok) {
          state->answered = ok;
          state->done.set_value();
        });
    const bool finished =
        done.wait_for(absl::ToChronoNanoseconds(timeout)) == std::future_status::ready;
    // A lookup no node answered returned this node's own storage only, which may be
    // long stale: look for the swarm again soon.
    const bool cut_off = KnownNodes() == 0 || (finished && !state->answered.load());
    Reconnect(cut_off ? kReconnectInterval : kRefreshInterval);
    internal::MutexLock lock(&state->mu);
    return Latest(state->records, absl::Now());
  }

  absl::StatusOr<uint64_t> Listen(absl::string_view key, ListenCallback callback) {
    if (!running_) return absl::CancelledError("DHT node shut down");
    const std::string full_key = FullKey(key);
    const dht::InfoHash hash = dht::InfoHash::get(full_key);
    std::future<size_t> token = runner_.listen(
        hash, [this, callback = std::move(callback), full_key, hash](
                  const std::vector<std::shared_ptr<dht::Value>>& values, bool expired) {
          if (expired) return true;
          const absl::Time now = absl::Now();
          for (const auto& v : values) {
            std::optional<DhtRecord> record = Open(full_key, hash, *v);
            if (record && record->expiration > now) callback(*record);
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

  // After a store no node confirmed, or with no node known (a link that was cut, a
  // machine that slept), the routing table may hold only nodes OpenDHT has given up
  // on, and it would stay cut off: tell OpenDHT the connectivity changed (it
  // refreshes its buckets, which finds nodes it lost, re-checks its nodes and renews
  // its listens) and ping the initial peers again. Also every kRefreshInterval of
  // use (see there). At most once per `min_interval`; never blocks.
  void Reconnect(absl::Duration min_interval) {
    const absl::Time now = absl::Now();
    {
      internal::MutexLock lock(&mu_);
      if (!running_ || now < last_reconnect_ + min_interval) return;
      last_reconnect_ = now;
    }
    runner_.connectivityChanged();
    for (const std::string& peer : options_.initial_peers) {
      std::string host, port;
      if (SplitHostPort(peer, &host, &port).ok()) runner_.bootstrap(host, port);
    }
  }

  const std::string& address() const { return address_; }
  const PeerId& id() const { return options_.identity.public_key; }
  uint64_t rejected_records() const { return rejected_.load(); }

 private:
  // Fills in a missing identity: a fresh key pair when empty, the public half when
  // only the secret one is given; checks that a given pair is one.
  static absl::Status CompleteIdentity(KeyPair* identity) {
    if (identity->public_key.empty() && identity->secret_key.empty()) {
      auto keys = GenerateKeyPair();
      if (!keys.ok()) return keys.status();
      *identity = *std::move(keys);
      return absl::OkStatus();
    }
    auto derived = PublicKeyOf(identity->secret_key);
    if (!derived.ok()) return derived.status();
    if (identity->public_key.empty()) identity->public_key = *derived;
    if (identity->public_key != *derived) {
      return absl::InvalidArgumentError(
          "DHT identity: public key is not the secret key's");
    }
    return absl::OkStatus();
  }

  // The value id of this node's records of `writer` for `subkey` under `hash`: one
  // per (key, writer, subkey), salted per process so no one can predict it and put
  // something of another type under it first.
  dht::Value::Id ValueId(const dht::InfoHash& hash, absl::string_view writer,
                         absl::string_view subkey) const {
    const dht::InfoHash h =
        dht::InfoHash::get(absl::StrCat(id_salt_, KeyId(hash), writer, "/", subkey));
    dht::Value::Id id = 0;
    std::memcpy(&id, h.data(), sizeof(id));
    return id == dht::Value::INVALID_ID ? 1 : id;
  }

  // The record in an OpenDHT value found under `full_key` (of hash `hash`), if it
  // parses and is signed by its writer for that key. Anything else is dropped and
  // counted: any node can put any bytes under any key.
  std::optional<DhtRecord> Open(const std::string& full_key, const dht::InfoHash& hash,
                                const dht::Value& v) {
    auto record = internal::ReadDhtRecord(KeyId(hash), DataOf(v));
    if (record.ok()) return *std::move(record);
    rejected_.fetch_add(1);
    const LogLevel level =
        options_.log_rejected_records ? LogLevel::kWarning : LogLevel::kDebug;
    if (LogEnabled(level)) {
      LogLine(level, absl::StrCat("DHT: dropped a record under '", full_key,
                                  "': ", record.status().message()));
    }
    return std::nullopt;
  }

  DhtOptions options_;
  mutable dht::DhtRunner runner_;
  std::atomic<bool> running_{false};
  std::string address_;
  std::atomic<uint64_t> rejected_{0};
  std::atomic<uint32_t> next_seq_{1};
  const std::string id_salt_ = RandomSalt();
  internal::Mutex mu_;
  absl::Time last_reconnect_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
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

uint64_t OpenDhtNode::rejected_records() const { return impl_->rejected_records(); }

const PeerId& OpenDhtNode::id() const { return impl_->id(); }

absl::Status OpenDhtNode::Store(absl::string_view key, absl::string_view subkey,
                                absl::string_view value, absl::Time expiration,
                                absl::Duration timeout, const KeyPair* signer) {
  return impl_->Store(key, subkey, value, expiration, timeout, signer, /*replace=*/false);
}

absl::Status OpenDhtNode::Replace(absl::string_view key, absl::string_view subkey,
                                  absl::string_view value, absl::Time expiration,
                                  absl::Duration timeout, const KeyPair* signer) {
  return impl_->Store(key, subkey, value, expiration, timeout, signer, /*replace=*/true);
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
