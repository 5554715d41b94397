// Fashion-MNIST loading: the real files from dataset-fashion-mnist, and broken ones.
#include "fashion_mnist/dataset.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace hivemind {
namespace fashion_mnist {
namespace {

bool HaveDataset() {
  return std::ifstream(std::string(kDefaultDir) + "/train-images-idx3-ubyte.gz").good();
}

// A fresh directory for the test's files.
std::string TempDir() {
  std::string pattern = ::testing::TempDir() + "fashion_mnist_XXXXXX";
  EXPECT_NE(mkdtemp(pattern.data()), nullptr);
  return pattern;
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

void WriteGzip(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string BigEndian(const std::vector<uint32_t>& words) {
  std::string out;
  for (uint32_t w : words) {
    for (int shift = 24; shift >= 0; shift -= 8)
      out.push_back(static_cast<char>(w >> shift));
  }
  return out;
}

// A well-formed pair of `n` examples (pixel value = example index, label = i % 10).
void WriteSmallDataset(const std::string& dir, uint32_t n) {
  std::string images = BigEndian({0x803, n, 28, 28});
  std::string labels = BigEndian({0x801, n});
  for (uint32_t i = 0; i < n; ++i) {
    images.append(kImageSize, static_cast<char>(i));
    labels.push_back(static_cast<char>(i % 10));
  }
  WriteGzip(dir + "/images.gz", images);
  WriteGzip(dir + "/labels.gz", labels);
}

TEST(FashionMnist, LoadsTheRealFiles) {
  if (!HaveDataset()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  auto train = Load(Split::kTrain);
  ASSERT_TRUE(train.ok()) << train.status();
  auto test = Load(Split::kTest);
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_EQ(train->size(), 60000u);
  EXPECT_EQ(test->size(), 10000u);
  EXPECT_EQ(train->images.size(), 60000u * kImageSize);
  std::vector<int> per_class(kNumClasses);
  for (uint8_t label : train->labels) {
    ASSERT_LT(label, kNumClasses);
    ++per_class[label];
  }
  for (int count : per_class) EXPECT_EQ(count, 6000);  // Fashion-MNIST is balanced
  // Normalised with the training set's statistics: mean about 0, deviation about 1.
  double sum = 0, sum_sq = 0;
  for (float x : train->images) {
    sum += x;
    sum_sq += double{x} * x;
  }
  const double mean = sum / train->images.size();
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(std::sqrt(sum_sq / train->images.size() - mean * mean), 1.0, 0.01);
  EXPECT_FLOAT_EQ(*std::min_element(train->images.begin(), train->images.end()),
                  -kMean / kStd);
}

TEST(FashionMnist, LoadsAndNormalisesASmallFile) {
  const std::string dir = TempDir();
  WriteSmallDataset(dir, 12);
  auto data = LoadIdx(dir + "/images.gz", dir + "/labels.gz");
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_EQ(data->size(), 12u);
  EXPECT_EQ(data->labels[11], 1);
  EXPECT_FLOAT_EQ(data->image(3)[783], (3.0f / 255.0f - kMean) / kStd);
}

TEST(FashionMnist, RejectsBrokenFiles) {
  const std::string dir = TempDir();
  WriteSmallDataset(dir, 20);
  const std::string images = dir + "/images.gz", labels = dir + "/labels.gz";
  auto expect = [&](const std::string& image_path, const std::string& label_path,
                    absl::StatusCode code) {
    const absl::Status status = LoadIdx(image_path, label_path).status();
    EXPECT_EQ(status.code(), code) << status;
    EXPECT_FALSE(status.message().empty());
  };
  expect(dir + "/missing.gz", labels, absl::StatusCode::kNotFound);

  const std::string gz = ReadFile(images);
  WriteFile(dir + "/truncated.gz", gz.substr(0, gz.size() / 2));  // cut mid-stream
  expect(dir + "/truncated.gz", labels, absl::StatusCode::kDataLoss);
  std::string corrupt = gz;
  corrupt[corrupt.size() - 6] ^= 0x55;  // breaks the CRC-32 trailer
  WriteFile(dir + "/corrupt.gz", corrupt);
  expect(dir + "/corrupt.gz", labels, absl::StatusCode::kDataLoss);
  WriteFile(dir + "/garbage.gz", "this is not a gzip file, nor an IDX file");
  expect(dir + "/garbage.gz", labels, absl::StatusCode::kDataLoss);

  // Well-formed gzip, wrong content.
  WriteGzip(dir + "/short.gz", BigEndian({0x803, 20, 28, 28}) + std::string(100, 'x'));
  expect(dir + "/short.gz", labels, absl::StatusCode::kDataLoss);
  WriteGzip(dir + "/dims.gz",
            BigEndian({0x803, 20, 32, 32}) + std::string(size_t{20} * 1024, 0));
  expect(dir + "/dims.gz", labels, absl::StatusCode::kDataLoss);
  expect(labels, labels, absl::StatusCode::kDataLoss);  // labels' magic as images
  WriteGzip(dir + "/few_labels.gz", BigEndian({0x801, 19}) + std::string(19, 1));
  expect(images, dir + "/few_labels.gz", absl::StatusCode::kDataLoss);
  WriteGzip(dir + "/bad_label.gz", BigEndian({0x801, 20}) + std::string(20, 10));
  expect(images, dir + "/bad_label.gz", absl::StatusCode::kDataLoss);
  WriteGzip(dir + "/trailing.gz", BigEndian({0x801, 20}) + std::string(21, 1));
  expect(images, dir + "/trailing.gz", absl::StatusCode::kDataLoss);
}

TEST(FashionMnist, ShardsAreDisjointAndCoverEverything) {
  std::set<size_t> seen;
  for (int peer = 0; peer < 3; ++peer) {
    auto shard = ShardIndices(100, peer, 3, /*seed=*/7);
    ASSERT_TRUE(shard.ok());
    EXPECT_GE(shard->size(), 33u);
    for (size_t i : *shard) EXPECT_TRUE(seen.insert(i).second) << i;
  }
  EXPECT_EQ(seen.size(), 100u);
  EXPECT_EQ(*ShardIndices(100, 1, 3, 7), *ShardIndices(100, 1, 3, 7));  // deterministic
  EXPECT_NE(*ShardIndices(100, 1, 3, 7), *ShardIndices(100, 1, 3, 8));
  EXPECT_EQ(ShardIndices(100, 3, 3, 7).status().code(),
            absl::StatusCode::kInvalidArgument);

  const std::string dir = TempDir();
  WriteSmallDataset(dir, 10);
  auto data = LoadIdx(dir + "/images.gz", dir + "/labels.gz");
  ASSERT_TRUE(data.ok());
  auto shard = Shard(*data, 0, 2, 7);
  ASSERT_TRUE(shard.ok());
  ASSERT_EQ(shard->size(), 5u);
  const size_t first = ShardIndices(10, 0, 2, 7)->front();
  EXPECT_EQ(shard->labels[0], data->labels[first]);
  EXPECT_EQ(shard->image(0)[0], data->image(first)[0]);
}

}  // namespace
}  // namespace fashion_mnist
}  // namespace hivemind
