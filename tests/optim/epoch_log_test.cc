#include "hivemind/optim/epoch_log.h"

#include <cstdio>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "gtest/gtest.h"

namespace hivemind {
namespace {

EpochSummary Summary() {
  EpochSummary s;
  s.time = absl::FromUnixSeconds(1000);
  s.peer = "0a1b2c3d";
  s.epoch = 7;
  s.mean_loss = 0.25;
  s.samples_per_second = 123.5;
  s.num_peers = 3;
  s.group_size = 2;
  return s;
}

TEST(EpochLog, WritesEveryField) {
  const nlohmann::json j = nlohmann::json::parse(EpochSummaryToJson(Summary()));
  EXPECT_DOUBLE_EQ(j["time"].get<double>(), 1000.0);
  EXPECT_EQ(j["peer"], "0a1b2c3d");
  EXPECT_EQ(j["epoch"], 7);
  EXPECT_DOUBLE_EQ(j["loss"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(j["samples_per_second"].get<double>(), 123.5);
  EXPECT_EQ(j["peers"], 3);
  EXPECT_EQ(j["averaged"], true);
  EXPECT_EQ(j["group_size"], 2);
  EXPECT_FALSE(j.contains("error"));
}

TEST(EpochLog, NoLossIsNull) {
  EpochSummary s = Summary();
  s.mean_loss.reset();
  EXPECT_TRUE(nlohmann::json::parse(EpochSummaryToJson(s))["loss"].is_null());
}

TEST(EpochLog, EscapesTheErrorMessage) {
  EpochSummary s = Summary();
  const std::string message = "peer \"x\\y\" said:\nno\t\x01";
  s.averaging_status = absl::DeadlineExceededError(message);
  const std::string line = EpochSummaryToJson(s);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  const nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j["averaged"], false);
  EXPECT_EQ(j["error"], message);
}

TEST(EpochLog, InvalidUtf8IsReplacedNotThrown) {
  EpochSummary s = Summary();
  s.averaging_status = absl::DataLossError(std::string("bad \xff\xfe bytes"));
  const nlohmann::json j = nlohmann::json::parse(EpochSummaryToJson(s));
  EXPECT_NE(j["error"].get<std::string>().find("bad "), std::string::npos);
}

TEST(EpochLog, AppendsOneLinePerEpoch) {
  const std::string path = ::testing::TempDir() + "/epoch_log_test.jsonl";
  std::remove(path.c_str());
  EpochCallback log = AppendEpochJsonLines(path);
  EpochSummary s = Summary();
  log(s);
  s.epoch = 8;
  log(s);
  std::ifstream in(path);
  std::string line;
  int64_t expected = 7;
  int lines = 0;
  while (std::getline(in, line)) {
    EXPECT_EQ(nlohmann::json::parse(line)["epoch"], expected++);
    ++lines;
  }
  EXPECT_EQ(lines, 2);
  std::remove(path.c_str());
}

TEST(EpochLog, UnwritablePathDoesNotThrow) {
  EpochCallback log = AppendEpochJsonLines("/nonexistent-dir/x.jsonl");
  EXPECT_NO_THROW(log(Summary()));
}

}  // namespace
}  // namespace hivemind
