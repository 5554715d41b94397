#include "fashion_mnist/dataset.h"

#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"

namespace hivemind {
namespace fashion_mnist {
namespace {

constexpr uint32_t kImagesMagic = 0x00000803;  // unsigned bytes, 3 dimensions
constexpr uint32_t kLabelsMagic = 0x00000801;  // unsigned bytes, 1 dimension
// Fashion-MNIST's training images take 47 MB uncompressed; refuse anything far
// larger (a gzip bomb, or the wrong file).
constexpr size_t kMaxFileSize = size_t{256} << 20;

struct GzCloser {
  void operator()(gzFile f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// The whole decompressed content of `path`.
absl::StatusOr<std::string> ReadGzip(const std::string& path) {
  GzFile file(gzopen(path.c_str(), "rb"));
  if (file == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  std::string data;
  char chunk[1 << 16];
  while (true) {
    const int n = gzread(file.get(), chunk, sizeof(chunk));
    if (n < 0) {
      int code = 0;
      return absl::DataLossError(gzerror(file.get(), &code));  // names the path
    }
    if (n == 0) break;
    data.append(chunk, static_cast<size_t>(n));
    if (data.size() > kMaxFileSize) {
      return absl::DataLossError(absl::StrCat(path, ": larger than ", kMaxFileSize));
    }
  }
  // gzread reports a stream cut short only through the error state.
  int code = Z_OK;
  const char* message = gzerror(file.get(), &code);
  if (code != Z_OK) return absl::DataLossError(message);
  return data;
}

uint32_t BigEndian32(const std::string& data, size_t offset) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data()) + offset;
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// Checks the IDX header (magic, then `dims.size()` dimensions) and that exactly the
// announced bytes follow; fills `dims` and returns the header size.
absl::StatusOr<size_t> ParseHeader(const std::string& data, const std::string& path,
                                   uint32_t magic, std::vector<uint32_t>* dims) {
  const size_t header = 4 * (1 + dims->size());
  if (data.size() < header) {
    return absl::DataLossError(
        absl::StrCat(path, ": ", data.size(), " bytes, shorter than the IDX header"));
  }
  if (BigEndian32(data, 0) != magic) {
    return absl::DataLossError(
        absl::StrCat(path, ": magic ", BigEndian32(data, 0), ", expected ", magic));
  }
  uint64_t expected = 1;
  for (size_t i = 0; i < dims->size(); ++i) {
    (*dims)[i] = BigEndian32(data, 4 * (1 + i));
    expected *= (*dims)[i];
  }
  if (data.size() - header != expected) {
    return absl::DataLossError(absl::StrCat(path, ": ", data.size() - header,
                                            " data bytes, the header says ", expected));
  }
  return header;
}

absl::StatusOr<std::vector<float>> ParseImages(const std::string& data,
                                               const std::string& path, size_t* count) {
  std::vector<uint32_t> dims(3);
  auto header = ParseHeader(data, path, kImagesMagic, &dims);
  if (!header.ok()) return header.status();
  if (dims[1] != kRows || dims[2] != kCols) {
    return absl::DataLossError(absl::StrCat(path, ": images of ", dims[1], " x ", dims[2],
                                            ", expected 28 x 28"));
  }
  *count = dims[0];
  std::vector<float> images(data.size() - *header);
  const auto* pixels = reinterpret_cast<const unsigned char*>(data.data()) + *header;
  for (size_t i = 0; i < images.size(); ++i) {
    images[i] = (static_cast<float>(pixels[i]) / 255.0f - kMean) / kStd;
  }
  return images;
}

absl::StatusOr<std::vector<uint8_t>> ParseLabels(const std::string& data,
                                                 const std::string& path) {
  std::vector<uint32_t> dims(1);
  auto header = ParseHeader(data, path, kLabelsMagic, &dims);
  if (!header.ok()) return header.status();
  std::vector<uint8_t> labels(data.begin() + static_cast<std::ptrdiff_t>(*header),
                              data.end());
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= kNumClasses) {
      return absl::DataLossError(absl::StrCat(path, ": label ", int{labels[i]},
                                              " at index ", i, " is not a class"));
    }
  }
  return labels;
}

}  // namespace

absl::StatusOr<Dataset> LoadIdx(const std::string& images_path,
                                const std::string& labels_path) {
  auto image_bytes = ReadGzip(images_path);
  if (!image_bytes.ok()) return image_bytes.status();
  auto label_bytes = ReadGzip(labels_path);
  if (!label_bytes.ok()) return label_bytes.status();
  Dataset dataset;
  size_t count = 0;
  auto images = ParseImages(*image_bytes, images_path, &count);
  if (!images.ok()) return images.status();
  auto labels = ParseLabels(*label_bytes, labels_path);
  if (!labels.ok()) return labels.status();
  if (labels->size() != count) {
    return absl::DataLossError(absl::StrCat(images_path, " holds ", count, " images but ",
                                            labels_path, " ", labels->size(), " labels"));
  }
  dataset.images = std::move(images).value();
  dataset.labels = std::move(labels).value();
  return dataset;
}

absl::StatusOr<Dataset> Load(Split split, const std::string& dir) {
  const std::string prefix =
      absl::StrCat(dir, "/", split == Split::kTrain ? "train" : "t10k");
  return LoadIdx(prefix + "-images-idx3-ubyte.gz", prefix + "-labels-idx1-ubyte.gz");
}

absl::StatusOr<std::vector<size_t>> ShardIndices(size_t size, int peer, int num_peers,
                                                 uint64_t seed) {
  if (num_peers <= 0 || peer < 0 || peer >= num_peers) {
    return absl::InvalidArgumentError(
        absl::StrCat("peer ", peer, " is not in [0, ", num_peers, ")"));
  }
  std::vector<size_t> order(size);
  std::iota(order.begin(), order.end(), size_t{0});
  // Fisher-Yates with our own draw: std::shuffle's sequence is not specified, and
  // every peer must compute the same permutation.
  std::mt19937_64 rng(seed);
  for (size_t i = size; i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  std::vector<size_t> shard;
  for (size_t i = static_cast<size_t>(peer); i < size; i += num_peers) {
    shard.push_back(order[i]);
  }
  return shard;
}

absl::StatusOr<Dataset> Shard(const Dataset& dataset, int peer, int num_peers,
                              uint64_t seed) {
  auto indices = ShardIndices(dataset.size(), peer, num_peers, seed);
  if (!indices.ok()) return indices.status();
  Dataset shard;
  shard.images.reserve(indices->size() * kImageSize);
  shard.labels.reserve(indices->size());
  for (size_t i : *indices) {
    shard.images.insert(shard.images.end(), dataset.image(i),
                        dataset.image(i) + kImageSize);
    shard.labels.push_back(dataset.labels[i]);
  }
  return shard;
}

}  // namespace fashion_mnist
}  // namespace hivemind
