#include "optim/progress.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "hivemind/wire/buffer.h"
#include "util/status_macros.h"

namespace hivemind {
namespace internal {
namespace {

constexpr uint8_t kKnownFlags = kProgressClientMode | kProgressDeparted;
constexpr uint64_t kMaxTimeMicros = uint64_t{1} << 62;

absl::Status ReadBounded(wire::Reader& r, uint64_t limit, absl::string_view what,
                         uint64_t* out) {
  HIVEMIND_RETURN_IF_ERROR(r.ReadU64(out));
  if (*out >= limit) return absl::DataLossError(absl::StrCat(what, " out of range"));
  return absl::OkStatus();
}

absl::Status ReadSamplesPerSecond(wire::Reader& r, double* out) {
  uint64_t bits = 0;
  HIVEMIND_RETURN_IF_ERROR(r.ReadU64(&bits));
  double value;
  std::memcpy(&value, &bits, sizeof(value));
  if (!(value >= 0.0 && value <= kMaxSamplesPerSecond)) {
    return absl::DataLossError("samples_per_second is not a finite number in range");
  }
  *out = value;
  return absl::OkStatus();
}

// Seconds as a Duration; infinite (or NaN) becomes InfiniteDuration.
absl::Duration SecondsOrInfinite(double seconds) {
  if (!(seconds < 1e15)) return absl::InfiniteDuration();
  return absl::Seconds(seconds);
}

// The refresh period: sooner when the ETA is short and many peers may still join.
absl::Duration RefreshPeriod(const EstimateParams& p, int num_peers, absl::Duration eta) {
  const double n = num_peers;
  const double expected_max =
      std::max(n + p.expected_drift_peers, n * (1.0 + p.expected_drift_rate));
  const absl::Duration period =
      eta == absl::InfiniteDuration() ? p.max_refresh_period : eta * (n / expected_max);
  return std::clamp(period, p.min_refresh_period, p.max_refresh_period);
}

}  // namespace

std::string ProgressKey(absl::string_view prefix) {
  return absl::StrCat(prefix, ".progress");
}

std::string EncodeProgressRecord(const PeerProgress& progress, bool departed) {
  wire::Writer w;
  w.PutU8(kProgressRecordVersion);
  w.PutU8((progress.client_mode ? kProgressClientMode : 0) |
          (departed ? kProgressDeparted : 0));
  w.PutU64(std::min(progress.epoch, kMaxProgressEpoch - 1));
  w.PutU64(std::min(progress.samples_accumulated, kMaxProgressSamples - 1));
  const double sps = std::clamp(progress.samples_per_second, 0.0, kMaxSamplesPerSecond);
  uint64_t bits;
  std::memcpy(&bits, &sps, sizeof(bits));
  w.PutU64(bits);
  w.PutU64(
      static_cast<uint64_t>(std::max<int64_t>(0, absl::ToUnixMicros(progress.time))));
  return w.Release();
}

absl::StatusOr<ParsedProgress> ParseProgressRecord(absl::string_view peer_id,
                                                   absl::string_view value) {
  wire::Reader r(value);
  uint8_t version = 0, flags = 0;
  uint64_t time = 0;
  ParsedProgress parsed;
  PeerProgress& p = parsed.progress;
  HIVEMIND_RETURN_IF_ERROR(r.ReadU8(&version));
  if (version != kProgressRecordVersion) {
    return absl::DataLossError(absl::StrCat("unknown progress record version ", version));
  }
  HIVEMIND_RETURN_IF_ERROR(r.ReadU8(&flags));
  if ((flags & ~kKnownFlags) != 0) {
    return absl::DataLossError(absl::StrCat("unknown progress flags ", flags));
  }
  HIVEMIND_RETURN_IF_ERROR(ReadBounded(r, kMaxProgressEpoch, "epoch", &p.epoch));
  HIVEMIND_RETURN_IF_ERROR(
      ReadBounded(r, kMaxProgressSamples, "samples_accumulated", &p.samples_accumulated));
  HIVEMIND_RETURN_IF_ERROR(ReadSamplesPerSecond(r, &p.samples_per_second));
  HIVEMIND_RETURN_IF_ERROR(ReadBounded(r, kMaxTimeMicros, "time", &time));
  HIVEMIND_RETURN_IF_ERROR(r.ExpectEnd());
  p.peer_id = std::string(peer_id);
  p.time = absl::FromUnixMicros(static_cast<int64_t>(time));
  p.client_mode = (flags & kProgressClientMode) != 0;
  parsed.departed = (flags & kProgressDeparted) != 0;
  return parsed;
}

std::vector<PeerProgress> LiveProgress(const std::vector<DhtRecord>& records) {
  std::vector<PeerProgress> live;
  for (const DhtRecord& record : records) {
    // A peer publishes only its own progress (the DHT verified the writer's
    // signature, so no one else can publish in its name).
    if (record.subkey != record.writer) continue;
    auto parsed = ParseProgressRecord(record.subkey, record.value);
    if (parsed.ok() && !parsed->departed) live.push_back(std::move(parsed->progress));
  }
  return live;
}

void PerformanceEma::Update(double task_size, absl::Time now) {
  const double interval = std::max(0.0, absl::ToDoubleSeconds(now - timestamp_));
  timestamp_ = now;
  ema_seconds_per_sample_ =
      alpha_ * interval / task_size + (1.0 - alpha_) * ema_seconds_per_sample_;
  ++updates_;
  const double adjusted =
      ema_seconds_per_sample_ / (1.0 - std::pow(1.0 - alpha_, updates_));
  samples_per_second_ = 1.0 / std::max(adjusted, 1.0 / kMaxSamplesPerSecond);
}

double ExtrapolatedSamples(const PeerProgress& peer, absl::Time now) {
  const double since = std::max(0.0, absl::ToDoubleSeconds(now - peer.time));
  return static_cast<double>(peer.samples_accumulated) + since * peer.samples_per_second;
}

GlobalProgress EstimateGlobalProgress(const std::vector<PeerProgress>& others,
                                      const PeerProgress& local,
                                      const EstimateParams& params, absl::Time now) {
  std::vector<const PeerProgress*> peers = {&local};
  for (const PeerProgress& p : others) peers.push_back(&p);

  GlobalProgress g;
  g.target_batch_size = params.target_batch_size;
  g.epoch = local.epoch;
  g.num_peers = static_cast<int>(peers.size());
  for (const PeerProgress* p : peers) {
    g.num_clients += p->client_mode ? 1 : 0;
    if (!p->client_mode) g.epoch = std::max(g.epoch, p->epoch);
  }
  // Samples count at the global epoch only; throughput counts every peer, since
  // peers behind catch up and contribute shortly.
  double estimated_samples = 0.0;
  for (const PeerProgress* p : peers) {
    g.samples_per_second += p->samples_per_second;
    if (p->epoch != g.epoch) continue;
    g.samples_accumulated += p->samples_accumulated;
    estimated_samples += ExtrapolatedSamples(*p, now);
  }
  const double remaining =
      std::max(0.0, static_cast<double>(params.target_batch_size) - estimated_samples);
  const absl::Duration eta = remaining == 0.0
                                 ? absl::ZeroDuration()
                                 : SecondsOrInfinite(remaining / g.samples_per_second);
  g.eta_next_epoch = now + eta;
  g.next_fetch_time = now + (others.empty() ? params.default_refresh_period
                                            : RefreshPeriod(params, g.num_peers, eta));
  return g;
}

}  // namespace internal
}  // namespace hivemind
