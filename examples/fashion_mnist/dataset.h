// Fashion-MNIST for the examples: reads the gzip-compressed IDX files that Debian's
// dataset-fashion-mnist installs, and splits the training set between peers.
//
// IDX layout (big-endian): u32 magic (0x00000803 for images: unsigned bytes, 3
// dimensions; 0x00000801 for labels: 1 dimension), one u32 per dimension, then the
// bytes. Fashion-MNIST images are 28 x 28; labels are classes 0..9.
//
// Torch-free: images come back as a flat float buffer the trainer wraps in a tensor.
#ifndef HIVEMIND_EXAMPLES_FASHION_MNIST_DATASET_H_
#define HIVEMIND_EXAMPLES_FASHION_MNIST_DATASET_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace hivemind {
namespace fashion_mnist {

inline constexpr int kRows = 28;
inline constexpr int kCols = 28;
inline constexpr int kImageSize = kRows * kCols;  // 784 pixels
inline constexpr int kNumClasses = 10;

// Pixels are normalised to (x / 255 - kMean) / kStd, the training set's statistics.
inline constexpr float kMean = 0.2860f;
inline constexpr float kStd = 0.3530f;

// Where dataset-fashion-mnist puts the files.
inline constexpr char kDefaultDir[] = "/usr/share/datasets/fashion-mnist";

struct Dataset {
  std::vector<float> images;    // size() * kImageSize, row-major, normalised
  std::vector<uint8_t> labels;  // size(), each in [0, kNumClasses)

  size_t size() const { return labels.size(); }
  // The kImageSize pixels of example i (i < size()).
  const float* image(size_t i) const { return images.data() + i * kImageSize; }
};

enum class Split { kTrain, kTest };

// Reads one images file and its labels file (gzip-compressed IDX; an uncompressed
// file is read as is). Returns kNotFound if a file cannot be opened, kDataLoss for
// a truncated or corrupt gzip stream, a wrong magic number, dimensions other than
// 28 x 28, counts that differ between the two files, a size that does not match
// the header (missing or trailing bytes) or a label outside 0..9.
absl::StatusOr<Dataset> LoadIdx(const std::string& images_path,
                                const std::string& labels_path);

// Reads the 60000-example training split (train-*-ubyte.gz) or the 10000-example
// test split (t10k-*-ubyte.gz) from `dir`. Codes as LoadIdx.
absl::StatusOr<Dataset> Load(Split split, const std::string& dir = kDefaultDir);

// The examples peer `peer` of `num_peers` trains on: a shuffle of 0..size-1 by
// `seed` (the same on every peer), of which the peer takes every num_peers-th
// position starting at `peer`. Shards of one seed are disjoint and together cover
// every example; their sizes differ by at most one. kInvalidArgument unless
// 0 <= peer < num_peers.
absl::StatusOr<std::vector<size_t>> ShardIndices(size_t size, int peer, int num_peers,
                                                 uint64_t seed);

// The examples of ShardIndices, copied in that (shuffled) order.
absl::StatusOr<Dataset> Shard(const Dataset& dataset, int peer, int num_peers,
                              uint64_t seed);

}  // namespace fashion_mnist
}  // namespace hivemind

#endif  // HIVEMIND_EXAMPLES_FASHION_MNIST_DATASET_H_
