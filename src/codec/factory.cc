#include "hivemind/codec/factory.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "codec/kernel_codec.h"
#include "codec/payload.h"
#include "util/status_macros.h"

namespace hivemind {
namespace {

absl::StatusOr<CodecId> CodecIdFromName(absl::string_view name) {
  for (int i = 0; i < kNumCodecIds; ++i) {
    const CodecId id = static_cast<CodecId>(i);
    if (CodecName(id) == name) return id;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown codec name '", name, "'"));
}

absl::Status ApplyParameter(absl::string_view parameter, CodecOptions* options) {
  std::vector<absl::string_view> kv = absl::StrSplit(parameter, absl::MaxSplits('=', 1));
  uint32_t value = 0;
  if (kv.size() != 2 || !absl::SimpleAtoi(kv[1], &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("codec parameter '", parameter, "' is not KEY=NUMBER"));
  }
  if (kv[0] == "block") {
    options->block_size = value;
  } else if (kv[0] == "stochastic" && value <= 1) {
    options->stochastic_rounding = value == 1;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown codec parameter '", parameter, "'"));
  }
  return absl::OkStatus();
}

absl::Status ApplyZstd(absl::string_view stage, CodecOptions* options) {
  std::vector<absl::string_view> kv = absl::StrSplit(stage, absl::MaxSplits('=', 1));
  if (kv[0] != "zstd" ||
      (kv.size() == 2 && !absl::SimpleAtoi(kv[1], &options->zstd_level))) {
    return absl::InvalidArgumentError(
        absl::StrCat("codec stage '", stage, "' is not zstd[=LEVEL]"));
  }
  options->zstd = true;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Codec>> CreateCodec(const CodecOptions& options) {
  const internal::CodecKernels* kernels = internal::KernelsFor(options.id);
  if (kernels == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown codec id ", static_cast<int>(static_cast<uint8_t>(options.id))));
  }
  if (kernels->uses_blocks) {
    HIVEMIND_RETURN_IF_ERROR(internal::ValidateBlockSize(options.block_size));
  }
  if (options.zstd && (options.zstd_level < 1 || options.zstd_level > 19)) {
    return absl::InvalidArgumentError(
        absl::StrCat("zstd level ", options.zstd_level, " is outside [1, 19]"));
  }
  return internal::MakeKernelCodec(options);
}

absl::StatusOr<CodecOptions> ParseCodecSpec(absl::string_view spec) {
  std::vector<absl::string_view> stages = absl::StrSplit(spec, '+');
  if (stages.size() > 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("codec spec '", spec, "' has more than one '+' stage"));
  }
  std::vector<absl::string_view> head =
      absl::StrSplit(stages[0], absl::MaxSplits(':', 1));
  CodecOptions options;
  HIVEMIND_ASSIGN_OR_RETURN(options.id, CodecIdFromName(head[0]));
  if (head.size() == 2) {
    for (absl::string_view parameter : absl::StrSplit(head[1], ',')) {
      HIVEMIND_RETURN_IF_ERROR(ApplyParameter(parameter, &options));
    }
  }
  if (stages.size() == 2) HIVEMIND_RETURN_IF_ERROR(ApplyZstd(stages[1], &options));
  return options;
}

std::string CodecSpec(const CodecOptions& options) {
  std::string spec(CodecName(options.id));
  const internal::CodecKernels* kernels = internal::KernelsFor(options.id);
  if (kernels != nullptr && kernels->uses_blocks) {
    absl::StrAppend(&spec, ":block=", options.block_size);
    if (options.id != CodecId::kScaledFloat16) {
      absl::StrAppend(&spec, ",stochastic=", options.stochastic_rounding ? 1 : 0);
    }
  }
  if (options.zstd) absl::StrAppend(&spec, "+zstd=", options.zstd_level);
  return spec;
}

absl::StatusOr<std::unique_ptr<Codec>> CreateCodecFromSpec(absl::string_view spec) {
  HIVEMIND_ASSIGN_OR_RETURN(CodecOptions options, ParseCodecSpec(spec));
  return CreateCodec(options);
}

}  // namespace hivemind
