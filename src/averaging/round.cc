#include "averaging/round.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "averaging/centered_clip.h"
#include "averaging/messages.h"
#include "codec/simd.h"
#include "hivemind/averaging/load_balancing.h"

namespace hivemind {
namespace internal {
namespace {

// Longest the round thread sleeps between checks of the senders' deadlines.
constexpr absl::Duration kTick = absl::Milliseconds(50);

}  // namespace

void RoundInbox::PushPart(PartEvent event) {
  MutexLock lock(&mu_);
  parts_.push_back(std::move(event));
  cv_.SignalAll();
}

void RoundInbox::PushResult(ResultEvent event) {
  MutexLock lock(&mu_);
  results_.push_back(std::move(event));
  cv_.SignalAll();
}

void RoundInbox::WaitAndTake(absl::Time deadline, std::vector<PartEvent>* parts,
                             std::vector<ResultEvent>* results) {
  MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !parts_.empty() || !results_.empty();
  };
  cv_.WaitUntil(&mu_, deadline, ready);
  parts->swap(parts_);
  results->swap(results_);
  parts_.clear();
  results_.clear();
}

Round::Round(Endpoint* endpoint, const GroupInfo& group, int my_index,
             absl::Span<float> values, const AllReduceOptions& options,
             const Codec* codec, std::shared_ptr<RoundInbox> inbox,
             std::shared_ptr<BufferPool> pool)
    : endpoint_(endpoint),
      group_(group),
      me_(my_index),
      values_(values),
      options_(options),
      codec_(codec),
      inbox_(std::move(inbox)),
      pool_(std::move(pool)),
      reference_(options.reference) {}

uint64_t Round::SeedFor(uint32_t part) const {
  // Stochastic rounding noise differs per round (group id), member and part.
  return std::hash<std::string>()(group_.group_id) ^
         (uint64_t{part} << 20 ^ static_cast<uint64_t>(me_)) * 0x9e3779b97f4a7c15ull;
}

bool Round::Contributes() const {
  return group_.members[me_].mode != MemberMode::kAuxiliary;
}

uint64_t AutoPartSize(uint64_t span) {
  // About 32 parts per span: small enough that reducers start answering early and
  // the pipeline fills and drains quickly on slow links (measured: 94% of the link
  // bound with 8 hosts at 100 Mbit/s, against 82% with 128 KiB parts), large enough
  // that per-message costs stay small on fast ones.
  constexpr uint64_t kPartsPerSpan = 32;
  constexpr uint64_t kMin = 4096, kMax = uint64_t{256} * 1024;
  return std::min(kMax, std::max(kMin, (span + kPartsPerSpan - 1) / kPartsPerSpan));
}

void Round::Layout() {
  const std::vector<uint64_t> sizes = SplitIntoSpans(values_.size(), group_.members);
  uint64_t begin = 0;
  for (uint64_t size : sizes) {
    const uint64_t part_size =
        options_.part_size ? options_.part_size : AutoPartSize(size);
    const uint32_t parts = static_cast<uint32_t>((size + part_size - 1) / part_size);
    spans_.push_back({begin, begin + size, parts, part_size});
    begin += size;
  }
}

uint64_t Round::PartBegin(int reducer, uint32_t part) const {
  return spans_[reducer].begin + uint64_t{part} * spans_[reducer].part_size;
}

uint64_t Round::PartEnd(int reducer, uint32_t part) const {
  return std::min(spans_[reducer].end,
                  PartBegin(reducer, part) + spans_[reducer].part_size);
}

absl::StatusOr<AllReduceReport> Round::Run() {
  start_ = absl::Now();
  deadline_ = start_ + options_.timeout;
  Layout();
  const size_t n = group_.members.size();
  out_.resize(n);
  const uint64_t my_hash = group_.members[me_].reference_hash;
  for (size_t j = 0; j < n; ++j) {
    out_[j].active = Contributes() && static_cast<int>(j) != me_ && spans_[j].parts > 0;
    out_[j].delta = reference_ != nullptr && my_hash != 0 &&
                    group_.members[j].reference_hash == my_hash;
  }
  const SpanLayout& mine = spans_[me_];
  // The accumulator's memory comes from the pool: a fresh 100 MB vector per round
  // would be faulted in page by page every time.
  acc_storage_ = pool_->Take((mine.end - mine.begin) * sizeof(float));
  acc_ = absl::MakeSpan(reinterpret_cast<float*>(acc_storage_->data()),
                        mine.end - mine.begin);
  const float my_weight = Contributes() ? options_.weight : 0.0f;
  for (uint64_t i = 0; i < acc_.size(); ++i) {
    acc_[i] = my_weight * values_[mine.begin + i];
  }
  reduced_.resize(mine.parts);
  for (ReducedPart& p : reduced_) {
    p.weight_sum = my_weight;
    p.received.assign(n, false);
    if (Clipping()) {
      p.inputs.resize(n);
      p.input_weights.assign(n, 0.0f);
    }
  }
  senders_.assign(n, Sender{});
  for (size_t s = 0; s < n; ++s) {
    senders_[s].expected = static_cast<int>(s) != me_ && mine.parts > 0 &&
                           group_.members[s].mode != MemberMode::kAuxiliary;
    senders_[s].last_progress = start_;
  }

  std::vector<PartEvent> parts;
  std::vector<ResultEvent> results;
  FinalizeReady();  // a span nobody else contributes to is ready at once
  while (!Finished() && !cancelled_) {
    SendMore();
    const absl::Time now = absl::Now();
    if (now >= deadline_) break;
    inbox_->WaitAndTake(std::min(deadline_, now + kTick), &parts, &results);
    for (PartEvent& e : parts) OnPart(e);
    for (ResultEvent& e : results) OnResult(e);
    ExcludeLateSenders(absl::Now());
    FinalizeReady();
  }
  // Out of time: finish this member's span with whatever arrived.
  for (size_t s = 0; s < n; ++s) {
    if (senders_[s].expected && senders_[s].delivered < mine.parts) {
      Exclude(static_cast<int>(s), absl::DeadlineExceededError("round timed out"));
    }
  }
  FinalizeReady();
  pool_->Give(std::move(acc_storage_));
  acc_ = {};
  if (cancelled_) return absl::CancelledError("endpoint shut down during the round");
  return MakeReport();
}

void Round::SendMore() {
  for (size_t j = 0; j < out_.size(); ++j) {
    Outgoing& o = out_[j];
    while (o.active && o.next_part < spans_[j].parts &&
           o.in_flight < options_.max_parts_in_flight) {
      SendPart(static_cast<int>(j), o.next_part++);
      ++o.in_flight;
    }
  }
}

void Round::SendPart(int reducer, uint32_t part) {
  const absl::Time t0 = absl::Now();
  const uint64_t begin = PartBegin(reducer, part), end = PartEnd(reducer, part);
  const bool delta = out_[reducer].delta;
  std::string header;
  WritePartHeader(
      {group_.group_id, static_cast<uint32_t>(me_), static_cast<uint32_t>(reducer), part,
       options_.weight, delta ? PayloadKind::kDelta : PayloadKind::kValues,
       delta ? group_.members[me_].reference_hash : 0, options_.aggregation.method},
      &header);
  // Inputs were checked for NaN/Inf before the round; only a garbage residual or
  // reference could make them non-finite, and then the part goes out empty and the
  // reducer rejects it.
  absl::StatusOr<SharedBytes> body =
      EncodeBody(header, values_.subspan(begin, end - begin), begin, delta, part,
                 options_.residual ? options_.residual->data() + begin : nullptr);
  SharedBytes bytes = body.ok() ? *body : MakeSharedBytes(header);
  report_.encode_time += absl::Now() - t0;
  report_.bytes_sent += bytes->size();
  std::shared_ptr<RoundInbox> inbox = inbox_;
  endpoint_->Request(group_.members[reducer].address, wire::MessageType::kAllReducePart,
                     std::move(bytes),
                     std::min(deadline_, absl::Now() + 3 * options_.sender_timeout),
                     [inbox, reducer, part](absl::StatusOr<Message> reply) {
                       inbox->PushResult({reducer, part, std::move(reply)});
                     });
}

absl::Status Round::ApplyResult(absl::string_view payload, PayloadKind kind,
                                uint64_t begin, uint64_t end) {
  absl::Span<float> out = values_.subspan(begin, end - begin);
  if (kind == PayloadKind::kValues) return Decode(payload, out);
  if (reference_ == nullptr) {
    return absl::DataLossError("a delta result for a member without a reference");
  }
  decoded_.resize(end - begin);
  absl::Status decoded = Decode(payload, absl::MakeSpan(decoded_));
  if (!decoded.ok()) return decoded;
  // The same float additions on every member that holds the reference.
  for (uint64_t i = begin; i < end; ++i)
    values_[i] = (*reference_)[i] + decoded_[i - begin];
  return absl::OkStatus();
}

void Round::OnResult(ResultEvent& event) {
  Outgoing& o = out_[event.reducer];
  --o.in_flight;
  absl::Status status = event.reply.status();
  if (status.ok()) {
    report_.bytes_received += event.reply->body.size();
    ResultHeader header;
    absl::string_view payload;
    status = ParseResult(event.reply->body, &header, &payload);
    if (status.ok() && (header.group_id != group_.group_id ||
                        header.reducer != static_cast<uint32_t>(event.reducer) ||
                        header.part != event.part)) {
      status = absl::DataLossError("result does not answer the part that was sent");
    }
    const PayloadKind expected = o.delta ? PayloadKind::kDelta : PayloadKind::kValues;
    if (status.ok() && header.kind != expected) {
      status = absl::DataLossError("result kind does not match the part's");
    }
    if (status.ok()) {
      status = ApplyResult(payload, header.kind, PartBegin(event.reducer, event.part),
                           PartEnd(event.reducer, event.part));
    }
  }
  if (status.ok()) {
    ++o.averaged;
    return;
  }
  if (status.code() == absl::StatusCode::kCancelled) cancelled_ = true;
  if (o.status.ok()) {
    o.status = absl::Status(
        status.code(), absl::StrCat("reducer ", event.reducer, ": ", status.message()));
  }
  o.active = false;  // keep local values for the rest of this span
}

void Round::OnPart(PartEvent& event) {
  absl::Status status = AcceptPart(event);
  if (!status.ok()) event.responder.ReplyError(status);
}

absl::Status Round::AcceptPart(PartEvent& event) {
  PartHeader header;
  absl::string_view payload;
  absl::Status parsed = ParsePart(event.message.body, &header, &payload);
  if (!parsed.ok()) return parsed;  // cannot tell who sent it: nobody to exclude
  const uint32_t s = header.sender;
  if (s >= senders_.size() || !senders_[s].expected ||
      header.reducer != static_cast<uint32_t>(me_) || header.part >= reduced_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("unexpected part ", header.part,
                                                   " from member ", s, " for reducer ",
                                                   header.reducer));
  }
  ReducedPart& p = reduced_[header.part];
  if (p.finalized || p.received[s]) {
    return absl::DeadlineExceededError(absl::StrCat(
        "part ", header.part, " from member ", s, " came after the part was reduced"));
  }
  const bool delta = header.kind == PayloadKind::kDelta;
  if (delta && (reference_ == nullptr ||
                header.reference_hash != group_.members[me_].reference_hash ||
                header.reference_hash != group_.members[s].reference_hash)) {
    Exclude(static_cast<int>(s),
            absl::FailedPreconditionError("delta part against a reference not shared"));
    return absl::FailedPreconditionError(
        "delta part against a reference this reducer does not hold");
  }
  if (header.aggregation != options_.aggregation.method) {
    absl::Status why = absl::FailedPreconditionError(absl::StrCat(
        "member ", s, " aggregates with ", AggregationName(header.aggregation),
        ", this reducer with ", AggregationName(options_.aggregation.method)));
    Exclude(static_cast<int>(s), why);
    return why;
  }
  report_.bytes_received += event.message.body.size();
  const absl::Time t0 = absl::Now();
  absl::Status added = Contribute(header, payload, p);
  report_.reduce_time += absl::Now() - t0;
  if (!added.ok()) {
    Exclude(static_cast<int>(s), added);
    return added;
  }
  p.weight_sum += header.weight;
  if (delta) p.delta_weight += header.weight;
  p.received[s] = true;
  p.waiting.push_back({std::move(event.responder), header.kind});
  Sender& sender = senders_[s];
  ++sender.delivered;
  ++sender.unanswered;
  sender.last_progress = absl::Now();
  return absl::OkStatus();
}

absl::Status Round::Contribute(const PartHeader& header, absl::string_view payload,
                               ReducedPart& p) {
  const uint64_t begin = PartBegin(me_, header.part), end = PartEnd(me_, header.part);
  float* acc = acc_.data() + (begin - spans_[me_].begin);
  const float bound = options_.aggregation.max_abs_value;
  if (!Clipping() && bound == 0.0f) {  // nothing to check first: the fused hot path
    return DecodeAdd(payload, header.weight, absl::MakeSpan(acc, end - begin));
  }
  // Decoding rejects NaN and Inf; the bound is checked before anything is added.
  std::vector<float>& decoded = Clipping() ? p.inputs[header.sender] : part_scratch_;
  decoded.resize(end - begin);
  absl::Status status = Decode(payload, absl::MakeSpan(decoded));
  if (status.ok() && bound > 0.0f) {
    const uint32_t bits = MaxAbsBits(decoded.data(), decoded.size());
    float largest = 0.0f;
    std::memcpy(&largest, &bits, sizeof(largest));
    if (largest > bound) {
      status = absl::InvalidArgumentError(
          absl::StrCat("part ", header.part, " holds a value of magnitude ", largest,
                       ", over max_abs_value ", bound));
    }
  }
  if (!status.ok()) {
    if (Clipping()) std::vector<float>().swap(decoded);
    return status;
  }
  if (Clipping()) {  // kept as full values
    if (header.kind == PayloadKind::kDelta) {
      for (uint64_t i = begin; i < end; ++i) decoded[i - begin] += (*reference_)[i];
    }
    p.input_weights[header.sender] = header.weight;
    return absl::OkStatus();
  }
  for (uint64_t i = 0; i < end - begin; ++i) acc[i] += header.weight * decoded[i];
  return absl::OkStatus();
}

void Round::ExcludeLateSenders(absl::Time now) {
  for (size_t s = 0; s < senders_.size(); ++s) {
    const Sender& sender = senders_[s];
    if (sender.expected && sender.delivered < reduced_.size() && sender.unanswered == 0 &&
        now - sender.last_progress > options_.sender_timeout) {
      Exclude(static_cast<int>(s), absl::DeadlineExceededError(absl::StrCat(
                                       "no part ", sender.delivered, " within ",
                                       absl::FormatDuration(options_.sender_timeout))));
    }
  }
}

void Round::Exclude(int sender, absl::Status why) {
  if (!senders_[sender].expected) return;
  senders_[sender].expected = false;
  report_.excluded.emplace_back(sender, std::move(why));
}

void Round::FinalizeReady() {
  for (uint32_t k = 0; k < reduced_.size(); ++k) {
    ReducedPart& p = reduced_[k];
    if (p.finalized) continue;
    bool ready = true;
    for (size_t s = 0; s < senders_.size() && ready; ++s) {
      ready = !senders_[s].expected || p.received[s];
    }
    if (ready) Finalize(k);
  }
}

void Round::Finalize(uint32_t k) {
  ReducedPart& p = reduced_[k];
  p.finalized = true;
  // Answering unblocks the senders of this part: their clocks restart now.
  const absl::Time now = absl::Now();
  for (size_t s = 0; s < p.received.size(); ++s) {
    if (p.received[s]) {
      --senders_[s].unanswered;
      senders_[s].last_progress = now;
    }
  }
  std::vector<Waiting> waiting = std::move(p.waiting);
  if (!(p.weight_sum > 0.0)) {
    for (Waiting& w : waiting) {
      w.responder.ReplyError(
          absl::FailedPreconditionError("the part's total weight is zero"));
    }
    return;
  }
  const uint64_t begin = PartBegin(me_, k), end = PartEnd(me_, k);
  absl::Span<float> averaged = acc_.subspan(begin - spans_[me_].begin, end - begin);
  if (Clipping()) {
    absl::Status clipped = CombineClipped(k, averaged);
    if (!clipped.ok()) {
      for (Waiting& w : waiting) w.responder.ReplyError(clipped);
      return;
    }
  } else {
    // Deltas were accumulated without their reference: add it back, weighted.
    if (p.delta_weight > 0.0) {
      const float dw = static_cast<float>(p.delta_weight);
      for (uint64_t i = begin; i < end; ++i) averaged[i - begin] += dw * (*reference_)[i];
    }
    const float total = static_cast<float>(p.weight_sum);
    for (float& v : averaged) v /= total;
  }

  // This member's own output comes from the same bytes as everyone else's: the
  // delta result if it holds the reference, else the full one. Error feedback (the
  // residual slots of its own span) applies to that encoding.
  const PayloadKind own =
      reference_ != nullptr ? PayloadKind::kDelta : PayloadKind::kValues;
  float* residual = options_.residual ? options_.residual->data() + begin : nullptr;
  SharedBytes results[2];
  for (PayloadKind kind : {PayloadKind::kValues, PayloadKind::kDelta}) {
    bool needed = kind == own && Contributes();
    for (const Waiting& w : waiting) needed = needed || w.kind == kind;
    if (!needed) continue;
    absl::StatusOr<SharedBytes> body =
        EncodeResult(k, kind, averaged, kind == own ? residual : nullptr);
    if (!body.ok()) {  // an overflowing average: nobody gets this result
      for (Waiting& w : waiting) {
        if (w.kind == kind) w.responder.ReplyError(body.status());
      }
      continue;
    }
    results[static_cast<int>(kind)] = *body;
  }
  const SharedBytes& mine = results[static_cast<int>(own)];
  if (Contributes() && mine != nullptr) {
    (void)ApplyResult(absl::string_view(*mine).substr(ResultHeaderSize(group_.group_id)),
                      own, begin, end);
  }
  p.averaged = mine != nullptr || !Contributes();
  for (Waiting& w : waiting) {
    const SharedBytes& body = results[static_cast<int>(w.kind)];
    if (body == nullptr) continue;
    w.responder.Reply(wire::MessageType::kAllReduceResult, body);
    report_.bytes_sent += body->size();
  }
}

absl::Status Round::CombineClipped(uint32_t k, absl::Span<float> out) {
  const absl::Time t0 = absl::Now();
  ReducedPart& p = reduced_[k];
  const uint64_t begin = PartBegin(me_, k), end = PartEnd(me_, k);
  std::vector<absl::Span<const float>> inputs;
  std::vector<float> weights;
  std::vector<int> member;  // of each input
  if (Contributes()) {
    inputs.push_back(values_.subspan(begin, end - begin));
    weights.push_back(options_.weight);
    member.push_back(me_);
  }
  for (size_t s = 0; s < p.received.size(); ++s) {
    if (p.received[s]) {
      inputs.push_back(p.inputs[s]);
      weights.push_back(p.input_weights[s]);
      member.push_back(static_cast<int>(s));
    }
  }
  const AggregationOptions& a = options_.aggregation;
  absl::StatusOr<CenteredClipStats> stats = CenteredClip(
      inputs, weights,
      {a.clip_tau, a.clip_iterations, a.clip_tolerance, a.clip_reject_ratio}, out);
  std::vector<std::vector<float>>().swap(p.inputs);  // done with them
  report_.reduce_time += absl::Now() - t0;
  if (!stats.ok()) return stats.status();
  for (size_t i : stats->rejected) senders_[member[i]].outlier = true;
  return absl::OkStatus();
}

absl::StatusOr<SharedBytes> Round::EncodeResult(uint32_t part, PayloadKind kind,
                                                absl::Span<const float> averaged,
                                                float* residual) {
  const absl::Time t0 = absl::Now();
  std::string header;
  WriteResultHeader({group_.group_id, static_cast<uint32_t>(me_), part, kind}, &header);
  absl::StatusOr<SharedBytes> body =
      EncodeBody(header, averaged, PartBegin(me_, part), kind == PayloadKind::kDelta,
                 part, residual);
  report_.encode_time += absl::Now() - t0;
  return body;
}

absl::StatusOr<SharedBytes> Round::EncodeBody(absl::string_view header,
                                              absl::Span<const float> values,
                                              uint64_t begin, bool delta, uint32_t part,
                                              float* residual) {
  absl::Span<const float> input = values;
  if (delta || residual != nullptr) {
    scratch_.assign(values.begin(), values.end());
    for (size_t i = 0; i < scratch_.size(); ++i) {
      if (delta) scratch_[i] -= (*reference_)[begin + i];
      if (residual != nullptr) scratch_[i] += residual[i];
    }
    input = scratch_;
  }
  std::unique_ptr<std::string> body =
      pool_->Take(header.size() + codec_->MaxEncodedSize(input.size()));
  std::copy(header.begin(), header.end(), body->begin());
  absl::StatusOr<size_t> n = codec_->Encode(
      input, absl::MakeSpan(*body).subspan(header.size()), {SeedFor(part)});
  if (!n.ok()) return n.status();
  body->resize(header.size() + *n);
  if (residual != nullptr) {
    // residual = input - decoded, in place on the scratch copy.
    (void)DecodeAdd(absl::string_view(*body).substr(header.size()), -1.0f,
                    absl::MakeSpan(scratch_));
    std::copy(scratch_.begin(), scratch_.end(), residual);
  }
  return pool_->Share(std::move(body));
}

bool Round::Finished() const {
  for (size_t j = 0; j < out_.size(); ++j) {
    const Outgoing& o = out_[j];
    if (o.in_flight > 0 || (o.active && o.next_part < spans_[j].parts)) return false;
  }
  for (const ReducedPart& p : reduced_) {
    if (!p.finalized) return false;
  }
  return true;
}

AllReduceReport Round::MakeReport() {
  const size_t n = group_.members.size();
  for (size_t j = 0; j < n; ++j) {
    SpanOutcome span;
    span.reducer = static_cast<int>(j);
    span.begin = spans_[j].begin;
    span.end = spans_[j].end;
    span.parts = spans_[j].parts;
    if (static_cast<int>(j) == me_) {
      for (const ReducedPart& p : reduced_) span.parts_averaged += p.averaged ? 1 : 0;
    } else if (Contributes()) {
      span.parts_averaged = out_[j].averaged;
      span.status = out_[j].status;
    }
    if (span.status.ok() && span.parts_averaged < span.parts && Contributes()) {
      span.status = absl::DeadlineExceededError(
          absl::StrCat(span.parts - span.parts_averaged, " of ", span.parts,
                       " parts were not averaged before the deadline"));
    }
    report_.spans.push_back(std::move(span));
  }
  for (size_t s = 0; s < n; ++s) {
    const bool me_contributing = static_cast<int>(s) == me_ && Contributes();
    const Sender& sender = senders_[s];
    if (sender.outlier) {
      report_.outliers.push_back(static_cast<int>(s));
    } else if (me_contributing ||
               (sender.expected && sender.delivered == reduced_.size())) {
      report_.contributors.push_back(static_cast<int>(s));
    }
  }
  report_.total_time = absl::Now() - start_;
  return std::move(report_);
}

}  // namespace internal
}  // namespace hivemind
