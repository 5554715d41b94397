// libFuzzer target for what a state loader and a state donor parse from peers: the
// DHT advert, the kStateRequest body and the state blob. Anything that parses
// re-encodes to the same bytes, and an advert's layout is self-consistent.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "averaging/state_messages.h"
#include "hivemind/averaging/state_sharing.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace internal = hivemind::internal;
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto advert = internal::ParseStateAdvert(bytes);
  if (advert.ok()) {
    if (internal::StripeCount(advert->state_bytes, advert->stripe_bytes) !=
        advert->stripe_hashes.size()) {
      std::abort();
    }
    if (advert->stripe_hashes.size() > internal::kMaxStripes) std::abort();
    if (internal::EncodeStateAdvert(*advert) != bytes) std::abort();
  }
  auto request = internal::ParseStateRequest(bytes);
  if (request.ok() && internal::EncodeStateRequest(*request) != bytes) std::abort();
  auto state = hivemind::ParsePeerState(bytes);
  if (state.ok() && hivemind::SerializePeerState(*state) != bytes) std::abort();
  return 0;
}
