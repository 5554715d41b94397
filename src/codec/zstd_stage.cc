#include "codec/zstd_stage.h"

#include <zstd.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"

namespace hivemind {
namespace internal {
namespace {

struct CCtxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxDeleter {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

// One context per thread: contexts are expensive to create and not thread-safe.
ZSTD_CCtx* ThreadCCtx() {
  thread_local std::unique_ptr<ZSTD_CCtx, CCtxDeleter> ctx(ZSTD_createCCtx());
  return ctx.get();
}

ZSTD_DCtx* ThreadDCtx() {
  thread_local std::unique_ptr<ZSTD_DCtx, DCtxDeleter> ctx(ZSTD_createDCtx());
  return ctx.get();
}

}  // namespace

size_t ZstdBound(size_t size) { return ZSTD_compressBound(size); }

absl::StatusOr<size_t> ZstdCompress(absl::string_view src, int level, char* dst,
                                    size_t capacity) {
  const size_t n =
      ZSTD_compressCCtx(ThreadCCtx(), dst, capacity, src.data(), src.size(), level);
  if (ZSTD_isError(n)) {
    return absl::InvalidArgumentError(
        absl::StrCat("zstd compression failed: ", ZSTD_getErrorName(n)));
  }
  return n;
}

absl::Status ZstdExpand(absl::string_view frame, uint64_t expected_size,
                        std::string* out) {
  const size_t frame_size = ZSTD_findFrameCompressedSize(frame.data(), frame.size());
  if (ZSTD_isError(frame_size) || frame_size != frame.size()) {
    return absl::DataLossError(absl::StrCat("zstd body of ", frame.size(),
                                            " bytes is not exactly one zstd frame"));
  }
  const unsigned long long declared =
      ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (declared != expected_size) {
    return absl::DataLossError(absl::StrCat("zstd frame declares ", declared,
                                            " bytes, header implies ", expected_size));
  }
  out->resize(expected_size);
  const size_t n = ZSTD_decompressDCtx(ThreadDCtx(), out->data(), out->size(),
                                       frame.data(), frame.size());
  if (ZSTD_isError(n) || n != expected_size) {
    return absl::DataLossError(absl::StrCat(
        "zstd body does not decompress to ", expected_size,
        " bytes: ", ZSTD_isError(n) ? ZSTD_getErrorName(n) : "size mismatch"));
  }
  return absl::OkStatus();
}

}  // namespace internal
}  // namespace hivemind
