#include "averaging/state_messages.h"

#include <xxhash.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "codec/zstd_stage.h"
#include "hivemind/averaging/state_sharing.h"
#include "hivemind/wire/buffer.h"
#include "util/status_macros.h"

namespace hivemind {
namespace {

// First byte of a state blob: the raw layout, or zstd over a raw blob.
constexpr uint8_t kStateBlobVersion = 1;
constexpr uint8_t kCompressedStateBlobVersion = 2;

// A compressed blob may not claim to expand beyond this (nor beyond zstd's largest
// ratio), so a hostile donor cannot make the loader allocate without bound.
constexpr uint64_t kMaxExpandedStateBytes = uint64_t{64} << 30;
constexpr uint64_t kMaxZstdRatio = 32768;

absl::StatusOr<PeerState> ParseRawPeerState(absl::string_view blob);

// Both times and sizes on the wire stay below 2^62, so sums never overflow.
constexpr uint64_t kMaxStateBytes = uint64_t{1} << 62;

}  // namespace

namespace {

std::string SerializeRawPeerState(const PeerState& state) {
  const internal::RawBlobPieces pieces(state);
  return pieces.Copy(0, pieces.size());
}

}  // namespace

std::string SerializePeerState(const PeerState& state, int zstd_level) {
  std::string raw = SerializeRawPeerState(state);
  if (zstd_level <= 0) return raw;
  std::string blob(1 + 8 + internal::ZstdBound(raw.size()), '\0');
  blob[0] = static_cast<char>(kCompressedStateBlobVersion);
  const uint64_t raw_size = raw.size();
  for (int i = 0; i < 8; ++i) blob[1 + i] = static_cast<char>(raw_size >> (8 * i));
  absl::StatusOr<size_t> size =
      internal::ZstdCompress(raw, zstd_level, blob.data() + 9, blob.size() - 9);
  if (!size.ok()) return raw;  // cannot happen (ZstdBound); serve it raw then
  blob.resize(9 + *size);
  return blob;
}

absl::StatusOr<PeerState> ParsePeerState(absl::string_view blob) {
  if (blob.empty() || static_cast<uint8_t>(blob[0]) != kCompressedStateBlobVersion) {
    return ParseRawPeerState(blob);
  }
  wire::Reader r(blob.substr(1));
  uint64_t raw_size = 0;
  HIVEMIND_RETURN_IF_ERROR(r.ReadU64(&raw_size));
  const absl::string_view frame = blob.substr(9);
  if (raw_size > kMaxExpandedStateBytes || raw_size > frame.size() * kMaxZstdRatio) {
    return absl::DataLossError(absl::StrCat("compressed state blob claims ", raw_size,
                                            " bytes from ", frame.size()));
  }
  std::string raw;
  HIVEMIND_RETURN_IF_ERROR(internal::ZstdExpand(frame, raw_size, &raw));
  return ParseRawPeerState(raw);
}

namespace {

absl::StatusOr<PeerState> ParseRawPeerState(absl::string_view blob) {
  wire::Reader r(blob);
  uint8_t version = 0;
  HIVEMIND_RETURN_IF_ERROR(r.ReadU8(&version));
  if (version != kStateBlobVersion) {
    return absl::DataLossError(absl::StrCat(
        "state blob version ", version, " (this build reads ", kStateBlobVersion, ")"));
  }
  PeerState state;
  uint64_t epoch = 0, count = 0, extra_size = 0;
  absl::string_view metadata, values, extra;
  HIVEMIND_RETURN_IF_ERROR(r.ReadU64(&epoch));
  HIVEMIND_RETURN_IF_ERROR(r.ReadBytes(&metadata, kMaxStateMetadataSize));
  HIVEMIND_RETURN_IF_ERROR(r.ReadU64(&count));
  if (count > r.remaining() / sizeof(float)) {
    return absl::DataLossError(absl::StrCat("state blob: ", count, " values but ",
                                            r.remaining(), " bytes left"));
  }
  HIVEMIND_RETURN_IF_ERROR(r.ReadRaw(count * sizeof(float), &values));
  HIVEMIND_RETURN_IF_ERROR(r.ReadU64(&extra_size));
  if (extra_size > r.remaining()) {
    return absl::DataLossError(absl::StrCat("state blob: ", extra_size,
                                            " bytes of extra state but ", r.remaining(),
                                            " left"));
  }
  HIVEMIND_RETURN_IF_ERROR(r.ReadRaw(extra_size, &extra));
  HIVEMIND_RETURN_IF_ERROR(r.ExpectEnd());
  state.epoch = static_cast<int64_t>(epoch);
  state.metadata = std::string(metadata);
  state.values.resize(count);
  if (count > 0) std::memcpy(state.values.data(), values.data(), values.size());
  state.extra = std::string(extra);
  return state;
}

}  // namespace

namespace internal {

std::string EncodeStateAdvert(const StateAdvert& a) {
  wire::Writer w;
  w.PutU8(kStateAdvertVersion);
  w.PutBytes(a.address);
  w.PutU64(static_cast<uint64_t>(a.epoch));
  w.PutU64(a.state_bytes);
  w.PutU32(a.stripe_bytes);
  w.PutU64(a.state_hash);
  w.PutU32(static_cast<uint32_t>(a.stripe_hashes.size()));
  for (uint64_t h : a.stripe_hashes) w.PutU64(h);
  return w.Release();
}

namespace {

absl::Status CheckLayout(const StateAdvert& a, uint32_t count) {
  if (a.state_bytes == 0 || a.state_bytes >= kMaxStateBytes) {
    return absl::DataLossError(absl::StrCat("advert: state size ", a.state_bytes));
  }
  if (a.stripe_bytes < kMinStripeBytes || a.stripe_bytes > kMaxStripeBytes) {
    return absl::DataLossError(absl::StrCat("advert: stripe size ", a.stripe_bytes));
  }
  if (count > kMaxStripes || count != StripeCount(a.state_bytes, a.stripe_bytes)) {
    return absl::DataLossError(absl::StrCat("advert: ", count, " stripes for ",
                                            a.state_bytes, " bytes in stripes of ",
                                            a.stripe_bytes));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<StateAdvert> ParseStateAdvert(absl::string_view value) {
  wire::Reader r(value);
  uint8_t version = 0;
  HIVEMIND_RETURN_IF_ERROR(r.ReadU8(&version));
  if (version != kStateAdvertVersion) {
    return absl::DataLossError(absl::StrCat("advert version ", version));
  }
  StateAdvert a;
  absl::string_view address;
  uint64_t epoch = 0;
  uint32_t count = 0;
  HIVEMIND_RETURN_IF_ERROR(r.ReadBytes(&address, kMaxStateAddressSize));
  HIVEMIND_RETURN_IF_ERROR(r.ReadU64(&epoch));
  HIVEMIND_RETURN_IF_ERROR(r.ReadU64(&a.state_bytes));
  HIVEMIND_RETURN_IF_ERROR(r.ReadU32(&a.stripe_bytes));
  HIVEMIND_RETURN_IF_ERROR(r.ReadU64(&a.state_hash));
  HIVEMIND_RETURN_IF_ERROR(r.ReadU32(&count));
  HIVEMIND_RETURN_IF_ERROR(CheckLayout(a, count));
  if (r.remaining() != uint64_t{count} * 8) {
    return absl::DataLossError(absl::StrCat("advert: ", count, " stripe hashes need ",
                                            count * 8, " bytes, ", r.remaining(),
                                            " left"));
  }
  a.stripe_hashes.resize(count);
  for (uint64_t& h : a.stripe_hashes) HIVEMIND_RETURN_IF_ERROR(r.ReadU64(&h));
  a.address = std::string(address);
  a.epoch = static_cast<int64_t>(epoch);
  return a;
}

std::string EncodeStateRequest(const StateRequest& request) {
  wire::Writer w;
  w.PutU64(request.state_hash);
  w.PutU32(request.stripe);
  return w.Release();
}

absl::StatusOr<StateRequest> ParseStateRequest(absl::string_view body) {
  wire::Reader r(body);
  StateRequest request;
  HIVEMIND_RETURN_IF_ERROR(r.ReadU64(&request.state_hash));
  HIVEMIND_RETURN_IF_ERROR(r.ReadU32(&request.stripe));
  HIVEMIND_RETURN_IF_ERROR(r.ExpectEnd());
  return request;
}

uint64_t StateHash(absl::string_view bytes) {
  return XXH3_64bits(bytes.data(), bytes.size());
}

RawBlobPieces::RawBlobPieces(const PeerState& state) {
  if (state.metadata.size() > kMaxStateMetadataSize) std::abort();
  wire::Writer head(&head_);
  head.PutU8(kStateBlobVersion);
  head.PutU64(static_cast<uint64_t>(state.epoch));
  head.PutBytes(state.metadata);
  head.PutU64(state.values.size());
  wire::Writer(&mid_).PutU64(state.extra.size());
  pieces_ = {head_,
             absl::string_view(reinterpret_cast<const char*>(state.values.data()),
                               state.values.size() * sizeof(float)),
             mid_, state.extra};
  for (absl::string_view piece : pieces_) size_ += piece.size();
}

std::string RawBlobPieces::Copy(uint64_t begin, uint64_t n) const {
  std::string out;
  out.reserve(n);
  for (absl::string_view piece : pieces_) {
    if (n == 0) break;
    if (begin >= piece.size()) {
      begin -= piece.size();
      continue;
    }
    const absl::string_view part = piece.substr(begin, n);
    out.append(part.data(), part.size());
    n -= part.size();
    begin = 0;
  }
  return out;
}

uint64_t RawBlobPieces::Hash(uint32_t stripe_bytes,
                             std::vector<uint64_t>* stripe_hashes) const {
  XXH3_state_t* whole = XXH3_createState();
  XXH3_state_t* stripe = XXH3_createState();
  XXH3_64bits_reset(whole);
  XXH3_64bits_reset(stripe);
  stripe_hashes->clear();
  uint64_t in_stripe = 0;
  for (absl::string_view piece : pieces_) {
    XXH3_64bits_update(whole, piece.data(), piece.size());
    while (!piece.empty()) {
      const absl::string_view part = piece.substr(0, stripe_bytes - in_stripe);
      XXH3_64bits_update(stripe, part.data(), part.size());
      in_stripe += part.size();
      piece.remove_prefix(part.size());
      if (in_stripe == stripe_bytes) {
        stripe_hashes->push_back(XXH3_64bits_digest(stripe));
        XXH3_64bits_reset(stripe);
        in_stripe = 0;
      }
    }
  }
  if (in_stripe > 0) stripe_hashes->push_back(XXH3_64bits_digest(stripe));
  const uint64_t hash = XXH3_64bits_digest(whole);
  XXH3_freeState(stripe);
  XXH3_freeState(whole);
  return hash;
}

uint64_t ChooseStripeBytes(uint64_t state_bytes, uint32_t requested) {
  const uint64_t least = (state_bytes + kMaxStripes - 1) / kMaxStripes;
  if (least <= requested) return requested;
  // Round up to whole 4 KiB pages.
  return (least + kMinStripeBytes - 1) / kMinStripeBytes * kMinStripeBytes;
}

}  // namespace internal
}  // namespace hivemind
