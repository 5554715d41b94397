#include <cmath>
#include <cstring>
#include <deque>
#include <map>
#include <string>
#include <utility>

#include <xxhash.h>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "averaging/centered_clip.h"
#include "averaging/messages.h"
#include "averaging/round.h"
#include "codec/simd.h"
#include "hivemind/averaging/allreduce.h"
#include "hivemind/codec/factory.h"

namespace hivemind {

// Routes incoming parts to the running round of their group, holding parts that
// arrive before their round starts.
class AllReducer::Registry {
 public:
  static constexpr size_t kMaxEarlyBytes = size_t{256} << 20;
  static constexpr absl::Duration kEarlyHold = absl::Seconds(30);
  static constexpr absl::Duration kRememberFinished = absl::Seconds(60);

  void OnPart(Message message, Responder responder) {
    absl::StatusOr<absl::string_view> group_id = internal::PeekGroupId(message.body);
    if (!group_id.ok()) {
      responder.ReplyError(group_id.status());
      return;
    }
    internal::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    ExpireEarly(now);
    auto it = rounds_.find(*group_id);
    if (it != rounds_.end()) {
      it->second->PushPart({std::move(message), std::move(responder)});
    } else if (finished_.count(*group_id) > 0) {
      responder.ReplyError(absl::AbortedError("the round of this group is over"));
    } else if (early_bytes_ + message.body.size() > kMaxEarlyBytes) {
      responder.ReplyError(absl::UnavailableError("too many parts for unknown rounds"));
    } else {
      early_bytes_ += message.body.size();
      early_.push_back(
          {std::string(*group_id), now, {std::move(message), std::move(responder)}});
    }
  }

  // Registers a round's inbox and hands it the parts that came early.
  absl::Status Register(const std::string& group_id,
                        const std::shared_ptr<internal::RoundInbox>& inbox) {
    internal::MutexLock lock(&mu_);
    if (rounds_.count(group_id) > 0) {
      return absl::FailedPreconditionError("a round with this group id is running");
    }
    rounds_[group_id] = inbox;
    for (auto it = early_.begin(); it != early_.end();) {
      if (it->group_id == group_id) {
        early_bytes_ -= it->event.message.body.size();
        inbox->PushPart(std::move(it->event));
        it = early_.erase(it);
      } else {
        ++it;
      }
    }
    return absl::OkStatus();
  }

  void Unregister(const std::string& group_id) {
    internal::MutexLock lock(&mu_);
    rounds_.erase(group_id);
    finished_[group_id] = absl::Now();
  }

 private:
  struct Early {
    std::string group_id;
    absl::Time arrived;
    internal::PartEvent event;
  };

  void ExpireEarly(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    while (!early_.empty() && now - early_.front().arrived > kEarlyHold) {
      early_bytes_ -= early_.front().event.message.body.size();
      early_.front().event.responder.ReplyError(
          absl::UnavailableError("no round of this group started here"));
      early_.pop_front();
    }
    for (auto it = finished_.begin(); it != finished_.end();) {
      it = now - it->second > kRememberFinished ? finished_.erase(it) : std::next(it);
    }
  }

  internal::Mutex mu_;
  std::map<std::string, std::shared_ptr<internal::RoundInbox>, std::less<>> rounds_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::Time, std::less<>> finished_ ABSL_GUARDED_BY(mu_);
  std::deque<Early> early_ ABSL_GUARDED_BY(mu_);
  size_t early_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

uint64_t ReferenceHash(absl::Span<const float> reference) {
  const uint64_t h = XXH3_64bits(reference.data(), reference.size() * sizeof(float));
  return h == 0 ? 1 : h;
}

AllReducer::AllReducer(Endpoint* endpoint)
    : endpoint_(endpoint),
      registry_(std::make_shared<Registry>()),
      pool_(internal::BufferPool::Create(kMaxPooledBytes)) {
  std::weak_ptr<Registry> weak = registry_;
  endpoint_->SetHandler(wire::MessageType::kAllReducePart,
                        [weak](Message message, Responder responder) {
                          if (auto registry = weak.lock()) {
                            registry->OnPart(std::move(message), std::move(responder));
                          } else {
                            responder.ReplyError(absl::UnavailableError("shutting down"));
                          }
                        });
}

AllReducer::~AllReducer() {
  endpoint_->SetHandler(wire::MessageType::kAllReducePart, nullptr);
}

namespace {

absl::Status ValidateAggregation(const AggregationOptions& a,
                                 absl::Span<const float> values) {
  if (a.method != Aggregation::kMean && a.method != Aggregation::kCenteredClip) {
    return absl::InvalidArgumentError("unknown aggregation method");
  }
  absl::Status clip = internal::ValidateCenteredClipParams(
      {a.clip_tau, a.clip_iterations, a.clip_tolerance, a.clip_reject_ratio});
  if (!clip.ok()) return clip;
  if (!std::isfinite(a.max_abs_value) || a.max_abs_value < 0.0f) {
    return absl::InvalidArgumentError("max_abs_value must be finite and >= 0");
  }
  if (a.max_abs_value > 0.0f && !values.empty()) {
    const uint32_t bits = internal::MaxAbsBits(values.data(), values.size());
    float largest = 0.0f;
    std::memcpy(&largest, &bits, sizeof(largest));
    if (largest > a.max_abs_value) {
      return absl::InvalidArgumentError(absl::StrCat(
          "values hold a value of magnitude ", largest, ", over max_abs_value ",
          a.max_abs_value, "; refusing to average"));
    }
  }
  return absl::OkStatus();
}

absl::Status Validate(const GroupInfo& group, int my_index,
                      absl::Span<const float> values, const AllReduceOptions& options) {
  if (my_index < 0 || static_cast<size_t>(my_index) >= group.members.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "member index ", my_index, " is outside a group of ", group.members.size()));
  }
  if (group.group_id.empty() || group.group_id.size() > internal::kMaxGroupIdSize) {
    return absl::InvalidArgumentError("group id must be 1 to 64 bytes");
  }
  if (!std::isfinite(options.weight) || options.weight < 0.0f) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight ", options.weight, " is not a finite non-negative number"));
  }
  if (options.max_parts_in_flight <= 0) {
    return absl::InvalidArgumentError("max_parts_in_flight must be > 0");
  }
  if (options.reference != nullptr &&
      (options.reference->size() != values.size() ||
       ReferenceHash(*options.reference) != group.members[my_index].reference_hash)) {
    return absl::InvalidArgumentError(
        "reference must have the vector's size and its hash must be this member's "
        "reference_hash");
  }
  if (options.reference != nullptr &&
      !internal::AllFinite(options.reference->data(), options.reference->size())) {
    return absl::InvalidArgumentError("reference holds NaN or Inf");
  }
  if (options.residual != nullptr && options.residual->size() != values.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("residual has ", options.residual->size(), " elements, values have ",
                     values.size()));
  }
  const bool auxiliary = group.members[my_index].mode == MemberMode::kAuxiliary;
  if (!auxiliary && !internal::AllFinite(values.data(), values.size())) {
    return absl::InvalidArgumentError("values hold NaN or Inf; refusing to average");
  }
  return ValidateAggregation(options.aggregation,
                             auxiliary ? absl::Span<const float>() : values);
}

}  // namespace

absl::StatusOr<AllReduceReport> AllReducer::Run(const GroupInfo& group, int my_index,
                                                absl::Span<float> values,
                                                const AllReduceOptions& options) {
  absl::Status valid = Validate(group, my_index, values, options);
  if (!valid.ok()) return valid;
  std::unique_ptr<Codec> raw;
  const Codec* codec = options.codec;
  if (codec == nullptr) {
    raw = std::move(CreateCodec(CodecOptions{})).value();
    codec = raw.get();
  }
  auto inbox = std::make_shared<internal::RoundInbox>();
  absl::Status registered = registry_->Register(group.group_id, inbox);
  if (!registered.ok()) return registered;
  internal::Round round(endpoint_, group, my_index, values, options, codec, inbox, pool_);
  absl::StatusOr<AllReduceReport> report = round.Run();
  registry_->Unregister(group.group_id);
  return report;
}

}  // namespace hivemind
