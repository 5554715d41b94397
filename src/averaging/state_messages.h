// The DHT advert of a state donor and the bodies of the state download messages
// (docs/wire_format.md, "State sharing"). The state blob itself is public
// (SerializePeerState / ParsePeerState in hivemind/averaging/state_sharing.h).
#ifndef HIVEMIND_AVERAGING_STATE_MESSAGES_H_
#define HIVEMIND_AVERAGING_STATE_MESSAGES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hivemind/averaging/state_sharing.h"

namespace hivemind {
namespace internal {

// Layout version of the advert (its first byte).
inline constexpr uint8_t kStateAdvertVersion = 1;

// Stripe size limits. The upper one keeps a stripe under the endpoint's default
// body limit (64 MiB).
inline constexpr uint32_t kMinStripeBytes = 4u << 10;
inline constexpr uint32_t kMaxStripeBytes = 32u << 20;
// Most stripes one advert lists: 4000 hashes of 8 bytes, plus at most 293 bytes of
// other fields, fit in kMaxDhtValueSize (32 KiB).
inline constexpr uint32_t kMaxStripes = 4000;
inline constexpr uint32_t kMaxStateAddressSize = 256;

// What a donor stores under `{prefix}.state`, subkey = its peer id.
struct StateAdvert {
  std::string address;  // the donor's endpoint
  int64_t epoch = 0;
  uint64_t state_bytes = 0;  // size of the serialized blob, >= 1
  uint32_t stripe_bytes = 0;
  uint64_t state_hash = 0;              // XXH3-64 of the whole blob
  std::vector<uint64_t> stripe_hashes;  // XXH3-64 of each stripe, in order

  // Same state, cut the same way: stripes from both may be mixed.
  bool SameLayout(const StateAdvert& other) const {
    return state_hash == other.state_hash && state_bytes == other.state_bytes &&
           stripe_bytes == other.stripe_bytes && stripe_hashes == other.stripe_hashes;
  }
};

std::string EncodeStateAdvert(const StateAdvert& advert);
// kDataLoss on a malformed advert: a wrong version, sizes out of range, a stripe
// count that does not match state_bytes / stripe_bytes, trailing bytes.
absl::StatusOr<StateAdvert> ParseStateAdvert(absl::string_view value);

// kStateRequest body.
struct StateRequest {
  uint64_t state_hash = 0;
  uint32_t stripe = 0;
};

std::string EncodeStateRequest(const StateRequest& request);
absl::StatusOr<StateRequest> ParseStateRequest(absl::string_view body);

// XXH3-64 of `bytes`.
uint64_t StateHash(absl::string_view bytes);

// The raw blob of SerializePeerState(state, 0) without making it: the bytes around
// the state's own (a header before `values`, the extra's length between them), so
// a server can hash and serve stripes straight from the state's memory. The views
// point into `state` and this object: both must outlive them and stay unchanged.
class RawBlobPieces {
 public:
  // Precondition (checked, aborts): metadata of at most kMaxStateMetadataSize bytes.
  explicit RawBlobPieces(const PeerState& state);
  RawBlobPieces(const RawBlobPieces&) = delete;
  RawBlobPieces& operator=(const RawBlobPieces&) = delete;

  uint64_t size() const { return size_; }
  // The blob's bytes [begin, begin + n), n <= size() - begin.
  std::string Copy(uint64_t begin, uint64_t n) const;
  // StateHash of the blob and of each of its stripes of `stripe_bytes`, in one
  // pass over it.
  uint64_t Hash(uint32_t stripe_bytes, std::vector<uint64_t>* stripe_hashes) const;

 private:
  std::string head_;  // version, epoch, metadata, value count
  std::string mid_;   // the extra's length
  std::vector<absl::string_view> pieces_;
  uint64_t size_ = 0;
};

// The stripe size a donor uses for a blob of `state_bytes`: `requested`, grown until
// at most kMaxStripes stripes remain. Exceeds kMaxStripeBytes for a blob too large to
// advertise (the caller checks).
uint64_t ChooseStripeBytes(uint64_t state_bytes, uint32_t requested);

// Number of stripes of a blob; the last one may be shorter.
inline uint64_t StripeCount(uint64_t state_bytes, uint32_t stripe_bytes) {
  return (state_bytes + stripe_bytes - 1) / stripe_bytes;
}

// [begin, end) of stripe `index`.
inline uint64_t StripeBegin(uint32_t index, uint32_t stripe_bytes) {
  return uint64_t{index} * stripe_bytes;
}
inline uint64_t StripeSize(uint64_t state_bytes, uint32_t stripe_bytes, uint32_t index) {
  const uint64_t begin = StripeBegin(index, stripe_bytes);
  return state_bytes - begin < stripe_bytes ? state_bytes - begin : stripe_bytes;
}

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_AVERAGING_STATE_MESSAGES_H_
