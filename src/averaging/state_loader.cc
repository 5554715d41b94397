// LoadStateFromPeers: choose donors from the DHT, download stripes from several at
// once with failover, verify and parse.
#include <algorithm>
#include <cstring>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "averaging/state_messages.h"
#include "hivemind/averaging/state_sharing.h"
#include "util/mutex.h"
#include "util/status_macros.h"

namespace hivemind {
namespace internal {
namespace {

struct Donor {
  PeerId peer_id;
  StateAdvert advert;
};

// Adverts grouped by the state they describe: one epoch, one layout.
std::vector<std::vector<Donor>> GroupByState(std::vector<Donor> all) {
  std::vector<std::vector<Donor>> sets;
  for (Donor& d : all) {
    auto same = std::find_if(sets.begin(), sets.end(), [&](const std::vector<Donor>& s) {
      return s[0].advert.epoch == d.advert.epoch && s[0].advert.SameLayout(d.advert);
    });
    if (same == sets.end()) {
      sets.push_back({std::move(d)});
    } else {
      same->push_back(std::move(d));
    }
  }
  return sets;
}

// The donors to load from: of the states with at least `min_agreeing` donors, the
// most advanced epoch, then the largest set (ties: the smaller state hash, so
// loaders agree), in random order.
absl::StatusOr<std::vector<Donor>> ChooseDonors(const std::vector<DhtRecord>& records,
                                                const Endpoint& self, int64_t min_epoch,
                                                int min_agreeing) {
  std::vector<Donor> all;
  for (const DhtRecord& record : records) {
    // An advert is its donor's own (the writer signed it) or ignored.
    if (record.subkey != record.writer || record.subkey == self.id()) continue;
    auto advert = ParseStateAdvert(record.value);
    if (!advert.ok() || advert->address.empty() || advert->epoch < min_epoch) continue;
    if (advert->address == self.address()) continue;
    all.push_back({record.subkey, *std::move(advert)});
  }
  if (all.empty()) return absl::NotFoundError("no peer advertises a state");
  std::vector<std::vector<Donor>> sets = GroupByState(std::move(all));
  size_t largest = 0;
  for (const auto& set : sets) largest = std::max(largest, set.size());
  sets.erase(std::remove_if(sets.begin(), sets.end(),
                            [&](const std::vector<Donor>& set) {
                              return set.size() < static_cast<size_t>(min_agreeing);
                            }),
             sets.end());
  if (sets.empty()) {
    return absl::NotFoundError(absl::StrCat("no state is advertised by ", min_agreeing,
                                            " donors (at most ", largest,
                                            " advertise the same one)"));
  }
  auto best =
      std::max_element(sets.begin(), sets.end(), [](const auto& a, const auto& b) {
        if (a[0].advert.epoch != b[0].advert.epoch) {
          return a[0].advert.epoch < b[0].advert.epoch;
        }
        if (a.size() != b.size()) return a.size() < b.size();
        return a[0].advert.state_hash > b[0].advert.state_hash;
      });
  std::shuffle(best->begin(), best->end(), std::mt19937_64(std::random_device()()));
  return std::move(*best);
}

// A stripe reply (or failure), handed from the I/O thread to the loading thread.
struct StripeEvent {
  size_t donor = 0;
  uint32_t stripe = 0;
  absl::StatusOr<Message> reply;
};

class Inbox {
 public:
  void Push(StripeEvent event) {
    MutexLock lock(&mu_);
    events_.push_back(std::move(event));
    cv_.SignalAll();
  }

  // Moves the next event into *out; false if none came by `deadline`.
  bool Pop(absl::Time deadline, StripeEvent* out) {
    MutexLock lock(&mu_);
    if (!cv_.WaitUntil(&mu_, deadline, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return !events_.empty();
        })) {
      return false;
    }
    *out = std::move(events_.front());
    events_.pop_front();
    return true;
  }

 private:
  Mutex mu_;
  CondVar cv_;
  std::deque<StripeEvent> events_ ABSL_GUARDED_BY(mu_);
};

// One download of one state: a queue of stripes shared by the donors.
class Download {
 public:
  Download(Endpoint* endpoint, std::vector<Donor> donors, const LoadStateOptions& options,
           LoadStateReport* report)
      : endpoint_(endpoint),
        options_(options),
        layout_(donors[0].advert),
        donors_(std::move(donors)),
        report_(report),
        stripes_(static_cast<uint32_t>(layout_.stripe_hashes.size())),
        done_(stripes_, false),
        in_flight_(donors_.size()),
        inbox_(std::make_shared<Inbox>()) {
    for (uint32_t i = 0; i < stripes_; ++i) queue_.push_back(i);
  }

  // Fills the blob; OK when every stripe arrived and matched its hash.
  absl::Status Run(absl::Time deadline, std::string* blob) {
    blob->resize(layout_.state_bytes);
    const size_t engage =
        std::min(donors_.size(), static_cast<size_t>(options_.max_donors));
    while (engaged_ < engage) Engage();
    while (remaining_ > 0) {
      // Checked first: requests cut short by the load's deadline drop their donors.
      if (absl::Now() >= deadline) return TimedOut();
      if (active_ == 0) return AllFailed();
      for (size_t d = 0; d < engaged_; ++d) Fill(d, deadline);
      StripeEvent event{0, 0, absl::UnknownError("no event")};
      if (!inbox_->Pop(deadline, &event)) return TimedOut();
      HIVEMIND_RETURN_IF_ERROR(Handle(std::move(event), blob));
    }
    return absl::OkStatus();
  }

 private:
  void Engage() {
    const Donor& d = donors_[engaged_++];
    report_->donors.push_back({d.peer_id, d.advert.address, 0, 0, absl::OkStatus()});
    ++active_;
  }

  bool Active(size_t d) const { return report_->donors[d].status.ok(); }

  // Sends requests until donor `d` has its window of stripes in flight.
  void Fill(size_t d, absl::Time deadline) {
    while (Active(d) && !queue_.empty() &&
           in_flight_[d].size() < static_cast<size_t>(options_.max_stripes_in_flight)) {
      const uint32_t stripe = queue_.front();
      queue_.pop_front();
      if (done_[stripe]) continue;
      in_flight_[d].insert(stripe);
      std::shared_ptr<Inbox> inbox = inbox_;
      endpoint_->Request(
          donors_[d].advert.address, wire::MessageType::kStateRequest,
          MakeSharedBytes(EncodeStateRequest({layout_.state_hash, stripe})),
          std::min(deadline, absl::Now() + options_.stripe_timeout),
          [inbox, d, stripe](absl::StatusOr<Message> reply) {
            inbox->Push({d, stripe, std::move(reply)});
          });
    }
  }

  // Takes a stripe that matches its hash; drops the donor otherwise. Fails only when
  // the endpoint shut down.
  absl::Status Handle(StripeEvent event, std::string* blob) {
    // False for a late reply of a dropped donor (its stripes were requeued).
    const bool pending = in_flight_[event.donor].erase(event.stripe) > 0;
    if (event.reply.status().code() == absl::StatusCode::kCancelled) {
      return event.reply.status();
    }
    if (done_[event.stripe]) return absl::OkStatus();  // a duplicate after a failover
    absl::Status status = Verify(event.stripe, event.reply);
    if (!status.ok()) {
      if (pending) {
        Drop(event.donor, std::move(status));
        Requeue(event.stripe);
      }
      return absl::OkStatus();
    }
    const absl::string_view body = event.reply->body;
    std::memcpy(&(*blob)[StripeBegin(event.stripe, layout_.stripe_bytes)], body.data(),
                body.size());
    done_[event.stripe] = true;
    --remaining_;
    report_->donors[event.donor].stripes += 1;
    report_->donors[event.donor].bytes += body.size();
    return absl::OkStatus();
  }

  absl::Status Verify(uint32_t stripe, const absl::StatusOr<Message>& reply) const {
    if (!reply.ok()) return reply.status();
    const uint64_t size = StripeSize(layout_.state_bytes, layout_.stripe_bytes, stripe);
    if (reply->header.type != wire::MessageType::kStateChunk ||
        reply->body.size() != size) {
      return absl::DataLossError(absl::StrCat("stripe ", stripe, ": a ",
                                              reply->body.size(), "-byte ",
                                              wire::MessageTypeName(reply->header.type),
                                              " reply, expected ", size, " bytes"));
    }
    if (StateHash(reply->body) != layout_.stripe_hashes[stripe]) {
      return absl::DataLossError(
          absl::StrCat("stripe ", stripe, " does not match its hash"));
    }
    return absl::OkStatus();
  }

  // Drops a donor: its stripes in flight go back to the queue, a spare steps in.
  void Drop(size_t d, absl::Status why) {
    report_->donors[d].status = std::move(why);
    --active_;
    for (uint32_t stripe : in_flight_[d]) Requeue(stripe);
    in_flight_[d].clear();
    if (engaged_ < donors_.size()) Engage();
  }

  void Requeue(uint32_t stripe) {
    if (done_[stripe]) return;
    queue_.push_front(stripe);
    ++report_->stripes_retried;
  }

  absl::Status TimedOut() const {
    return absl::DeadlineExceededError(absl::StrCat(
        "state load timed out with ", remaining_, " of ", stripes_, " stripes missing"));
  }

  absl::Status AllFailed() const {
    std::string why;
    for (const StateDonorReport& d : report_->donors) {
      absl::StrAppend(&why, why.empty() ? "" : "; ", d.address, ": ",
                      d.status.ToString());
    }
    return absl::UnavailableError(
        absl::StrCat("every donor of the state failed (", why, ")"));
  }

  Endpoint* const endpoint_;
  const LoadStateOptions& options_;
  const StateAdvert layout_;
  const std::vector<Donor> donors_;
  LoadStateReport* const report_;
  const uint32_t stripes_;
  std::vector<bool> done_;
  uint32_t remaining_ = stripes_;
  std::deque<uint32_t> queue_;
  std::vector<std::set<uint32_t>> in_flight_;  // per donor
  size_t engaged_ = 0;                         // donors_[0, engaged_) were engaged
  size_t active_ = 0;                          // engaged and not dropped
  std::shared_ptr<Inbox> inbox_;
};

absl::Status Validate(const LoadStateOptions& o) {
  if (o.prefix.empty()) return absl::InvalidArgumentError("prefix is required");
  if (o.max_donors < 1 || o.max_stripes_in_flight < 1 || o.min_agreeing_donors < 1) {
    return absl::InvalidArgumentError(
        "max_donors, max_stripes_in_flight and min_agreeing_donors must be at least 1");
  }
  return absl::OkStatus();
}

absl::StatusOr<PeerState> Load(Endpoint* endpoint, Dht* dht,
                               const LoadStateOptions& options, LoadStateReport* report) {
  HIVEMIND_RETURN_IF_ERROR(Validate(options));
  const absl::Time deadline = absl::Now() + options.timeout;
  HIVEMIND_ASSIGN_OR_RETURN(std::vector<DhtRecord> records,
                            dht->Get(options.prefix + ".state",
                                     std::min(options.dht_timeout, options.timeout)));
  HIVEMIND_ASSIGN_OR_RETURN(
      std::vector<Donor> donors,
      ChooseDonors(records, *endpoint, options.min_epoch, options.min_agreeing_donors));
  const StateAdvert layout = donors[0].advert;
  report->epoch = layout.epoch;
  report->state_hash = layout.state_hash;
  report->state_bytes = layout.state_bytes;
  report->stripes = static_cast<uint32_t>(layout.stripe_hashes.size());
  report->candidates = static_cast<int>(donors.size());
  std::string blob;
  HIVEMIND_RETURN_IF_ERROR(
      Download(endpoint, std::move(donors), options, report).Run(deadline, &blob));
  if (StateHash(blob) != layout.state_hash) {
    return absl::DataLossError("the assembled state does not match the state hash");
  }
  HIVEMIND_ASSIGN_OR_RETURN(PeerState state, ParsePeerState(blob));
  if (state.epoch != layout.epoch) {
    return absl::DataLossError(absl::StrCat("the state is of epoch ", state.epoch,
                                            ", advertised as ", layout.epoch));
  }
  return state;
}

}  // namespace
}  // namespace internal

absl::StatusOr<PeerState> LoadStateFromPeers(Endpoint* endpoint, Dht* dht,
                                             const LoadStateOptions& options,
                                             LoadStateReport* report) {
  LoadStateReport local;
  if (report == nullptr) report = &local;
  *report = LoadStateReport();
  const absl::Time start = absl::Now();
  absl::StatusOr<PeerState> state = internal::Load(endpoint, dht, options, report);
  report->total_time = absl::Now() - start;
  return state;
}

}  // namespace hivemind
