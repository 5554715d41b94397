// The one concrete Codec: options plus the kernel table of its codec id.
#ifndef HIVEMIND_CODEC_KERNEL_CODEC_H_
#define HIVEMIND_CODEC_KERNEL_CODEC_H_

#include <memory>

#include "absl/status/statusor.h"
#include "hivemind/codec/codec.h"

namespace hivemind {
namespace internal {

// Builds a codec for validated options (see CreateCodec, which validates).
std::unique_ptr<Codec> MakeKernelCodec(const CodecOptions& options);

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_CODEC_KERNEL_CODEC_H_
