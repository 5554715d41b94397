// libFuzzer target for the all-reduce message bodies (parts and results) and the
// codec payload they carry, as a reducer and a sender parse them.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "averaging/messages.h"
#include "hivemind/codec/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view body(reinterpret_cast<const char*>(data), size);
  hivemind::internal::PartHeader part;
  absl::string_view payload;
  if (hivemind::internal::ParsePart(body, &part, &payload).ok()) {
    if (!(part.weight >= 0.0f)) std::abort();
    if (part.group_id.size() > hivemind::internal::kMaxGroupIdSize) std::abort();
    std::vector<float> acc(64, 0.0f);
    (void)hivemind::DecodeAdd(payload, part.weight, absl::MakeSpan(acc));
  }
  hivemind::internal::ResultHeader result;
  if (hivemind::internal::ParseResult(body, &result, &payload).ok()) {
    std::vector<float> out(64);
    (void)hivemind::Decode(payload, absl::MakeSpan(out));
  }
  (void)hivemind::internal::PeekGroupId(body);
  return 0;
}
