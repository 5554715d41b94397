#include "hivemind/codec/codec.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "codec/kernel_codec.h"
#include "codec/payload.h"
#include "codec/zstd_stage.h"
#include "util/bytes.h"
#include "util/status_macros.h"

namespace hivemind {

absl::string_view CodecName(CodecId id) {
  switch (id) {
    case CodecId::kNone:
      return "none";
    case CodecId::kFloat16:
      return "fp16";
    case CodecId::kBFloat16:
      return "bf16";
    case CodecId::kScaledFloat16:
      return "scaled_fp16";
    case CodecId::kUniform8Bit:
      return "uniform8";
    case CodecId::kQuantile8Bit:
      return "quantile8";
    case CodecId::kBlockwise8Bit:
      return "blockwise8";
    case CodecId::kBlockwise4Bit:
      return "blockwise4";
    case CodecId::kBlockwise2Bit:
      return "blockwise2";
  }
  return "unknown";
}

absl::Status Codec::Encode(absl::Span<const float> values, std::string* out,
                           const EncodeOptions& options) const {
  out->resize(MaxEncodedSize(values.size()));
  HIVEMIND_ASSIGN_OR_RETURN(size_t n, Encode(values, absl::MakeSpan(*out), options));
  out->resize(n);
  return absl::OkStatus();
}

absl::StatusOr<PayloadInfo> ReadPayloadInfo(absl::string_view payload) {
  if (payload.size() < kPayloadHeaderSize) {
    return absl::DataLossError(absl::StrCat("codec payload of ", payload.size(),
                                            " bytes is shorter than its ",
                                            kPayloadHeaderSize, "-byte header"));
  }
  const char* p = payload.data();
  PayloadInfo info;
  info.codec = static_cast<CodecId>(static_cast<uint8_t>(p[0]));
  const internal::CodecKernels* kernels = internal::KernelsFor(info.codec);
  if (kernels == nullptr) {
    return absl::DataLossError(
        absl::StrCat("unknown codec id ", static_cast<uint8_t>(p[0])));
  }
  const uint8_t flags = static_cast<uint8_t>(p[1]);
  if ((flags & ~internal::kPayloadFlagZstd) != 0 ||
      internal::LoadLE<uint16_t>(p + 2) != 0) {
    return absl::DataLossError("codec payload has reserved header bits set");
  }
  info.zstd = (flags & internal::kPayloadFlagZstd) != 0;
  info.block_size = internal::LoadLE<uint32_t>(p + 4);
  info.count = internal::LoadLE<uint64_t>(p + 8);
  if (info.count > kMaxPayloadElements) {
    return absl::DataLossError(absl::StrCat("codec payload claims ", info.count,
                                            " elements, more than the limit ",
                                            kMaxPayloadElements));
  }
  if (kernels->uses_blocks) {
    absl::Status s = internal::ValidateBlockSize(info.block_size);
    if (!s.ok()) return absl::DataLossError(s.message());
  } else if (info.block_size != 0) {
    return absl::DataLossError(absl::StrCat(CodecName(info.codec),
                                            " payload has block size ", info.block_size,
                                            ", expected 0"));
  }
  return info;
}

namespace {

absl::Status DecodeInto(absl::string_view payload, const internal::DecodeTarget& target,
                        size_t target_size) {
  HIVEMIND_ASSIGN_OR_RETURN(PayloadInfo info, ReadPayloadInfo(payload));
  if (info.count != target_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "payload holds ", info.count, " elements, destination has ", target_size));
  }
  const internal::CodecKernels& kernels = *internal::KernelsFor(info.codec);
  const uint64_t body_size = kernels.body_size(info.count, info.block_size);
  absl::string_view body = payload.substr(kPayloadHeaderSize);
  std::string expanded;
  if (info.zstd) {
    HIVEMIND_RETURN_IF_ERROR(internal::ZstdExpand(body, body_size, &expanded));
    body = expanded;
  } else if (body.size() != body_size) {
    return absl::DataLossError(absl::StrCat(CodecName(info.codec), " body is ",
                                            body.size(), " bytes, header implies ",
                                            body_size));
  }
  HIVEMIND_RETURN_IF_ERROR(kernels.validate(info, body.data()));
  kernels.decode(info, body.data(), target);
  return absl::OkStatus();
}

}  // namespace

absl::Status Decode(absl::string_view payload, absl::Span<float> out) {
  return DecodeInto(payload, {out.data(), 1.0f, false}, out.size());
}

absl::Status DecodeAdd(absl::string_view payload, float weight, absl::Span<float> acc) {
  if (!std::isfinite(weight)) {
    return absl::InvalidArgumentError(absl::StrCat("weight ", weight, " is not finite"));
  }
  return DecodeInto(payload, {acc.data(), weight, true}, acc.size());
}

namespace internal {
namespace {

class KernelCodec final : public Codec {
 public:
  explicit KernelCodec(const CodecOptions& options)
      : options_(options), kernels_(*KernelsFor(options.id)) {
    if (!kernels_.uses_blocks) options_.block_size = 0;
  }

  const CodecOptions& options() const override { return options_; }

  size_t MaxEncodedSize(size_t count) const override {
    const size_t body = BodySize(count);
    return kPayloadHeaderSize + (options_.zstd ? ZstdBound(body) : body);
  }

  absl::StatusOr<size_t> Encode(absl::Span<const float> values, absl::Span<char> out,
                                const EncodeOptions& encode_options) const override;
  using Codec::Encode;

 private:
  size_t BodySize(size_t count) const {
    return static_cast<size_t>(kernels_.body_size(count, options_.block_size));
  }

  CodecOptions options_;
  const CodecKernels& kernels_;
};

absl::StatusOr<size_t> KernelCodec::Encode(absl::Span<const float> values,
                                           absl::Span<char> out,
                                           const EncodeOptions& encode_options) const {
  if (values.size() > kMaxPayloadElements) {
    return absl::InvalidArgumentError(absl::StrCat("cannot encode ", values.size(),
                                                   " elements in one payload (limit ",
                                                   kMaxPayloadElements, ")"));
  }
  const size_t body_size = BodySize(values.size());
  const size_t needed = kPayloadHeaderSize + (options_.zstd ? 0 : body_size);
  if (out.size() < needed) {
    return absl::InvalidArgumentError(
        absl::StrCat("output buffer of ", out.size(), " bytes is smaller than ", needed));
  }
  PayloadInfo info{options_.id, options_.zstd, options_.block_size, values.size()};
  WritePayloadHeader(info, out.data());
  char* body = out.data() + kPayloadHeaderSize;
  if (!options_.zstd) {
    HIVEMIND_RETURN_IF_ERROR(
        kernels_.encode(options_, values, encode_options.seed, body));
    return kPayloadHeaderSize + body_size;
  }
  std::string raw(body_size, '\0');
  HIVEMIND_RETURN_IF_ERROR(
      kernels_.encode(options_, values, encode_options.seed, raw.data()));
  HIVEMIND_ASSIGN_OR_RETURN(
      size_t compressed,
      ZstdCompress(raw, options_.zstd_level, body, out.size() - kPayloadHeaderSize));
  return kPayloadHeaderSize + compressed;
}

}  // namespace

std::unique_ptr<Codec> MakeKernelCodec(const CodecOptions& options) {
  return std::make_unique<KernelCodec>(options);
}

}  // namespace internal
}  // namespace hivemind
