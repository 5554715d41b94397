#include "hivemind/util/logging.h"

#include <atomic>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "util/mutex.h"

namespace hivemind {
namespace {

// Restores the default sink and level after each test.
class Logging : public testing::Test {
 protected:
  void TearDown() override {
    SetLogSink(nullptr);
    SetLogLevel(LogLevel::kWarning);
  }
};

struct Captured {
  internal::Mutex mu;
  std::vector<std::pair<LogLevel, std::string>> lines;
};

LogSink CaptureInto(Captured* c) {
  return [c](LogLevel level, absl::string_view line) {
    internal::MutexLock lock(&c->mu);
    c->lines.emplace_back(level, std::string(line));
  };
}

TEST_F(Logging, TheDefaultLevelIsWarning) {
  EXPECT_EQ(GetLogLevel(), LogLevel::kWarning);
  EXPECT_FALSE(LogEnabled(LogLevel::kInfo));
  EXPECT_TRUE(LogEnabled(LogLevel::kWarning));
  EXPECT_FALSE(LogEnabled(LogLevel::kOff));
}

TEST_F(Logging, LinesBelowTheLevelAreDroppedUnformatted) {
  Captured c;
  SetLogSink(CaptureInto(&c));
  int formatted = 0;
  auto costly = [&formatted] {
    ++formatted;
    return std::string("x");
  };
  HIVEMIND_LOG(kInfo, "dropped ", costly());
  HIVEMIND_LOG(kWarning, "kept ", 42);
  EXPECT_EQ(formatted, 0);
  SetLogLevel(LogLevel::kDebug);
  HIVEMIND_LOG(kDebug, "now ", costly());
  SetLogLevel(LogLevel::kOff);
  HIVEMIND_LOG(kError, "off drops even errors");
  ASSERT_EQ(c.lines.size(), 2u);
  EXPECT_EQ(c.lines[0], std::make_pair(LogLevel::kWarning, std::string("kept 42")));
  EXPECT_EQ(c.lines[1], std::make_pair(LogLevel::kDebug, std::string("now x")));
  EXPECT_EQ(formatted, 1);
}

TEST_F(Logging, AnEmptySinkRestoresStderrWithLevelLetters) {
  Captured c;
  SetLogSink(CaptureInto(&c));
  SetLogSink(nullptr);
  testing::internal::CaptureStderr();
  HIVEMIND_LOG(kWarning, "to stderr");
  HIVEMIND_LOG(kError, "an error");
  EXPECT_EQ(testing::internal::GetCapturedStderr(),
            "[hivemind] W to stderr\n[hivemind] E an error\n");
  EXPECT_TRUE(c.lines.empty());
}

TEST_F(Logging, LinesFromManyThreadsAllArriveWhole) {
  Captured c;
  SetLogSink(CaptureInto(&c));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < 250; ++i) HIVEMIND_LOG(kError, "thread ", t, " line ", i);
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_EQ(c.lines.size(), 1000u);
  for (const auto& [level, line] : c.lines) {
    EXPECT_EQ(level, LogLevel::kError);
    EXPECT_EQ(line.rfind("thread ", 0), 0u) << line;
  }
}

TEST_F(Logging, LevelNamesParseBack) {
  for (LogLevel level : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarning,
                         LogLevel::kError, LogLevel::kOff}) {
    EXPECT_EQ(ParseLogLevel(LogLevelName(level)).value(), level);
  }
  absl::StatusOr<LogLevel> bad = ParseLogLevel("loud");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("'loud'"), absl::string_view::npos);
}

TEST_F(Logging, LevelNames) {
  EXPECT_STREQ(LogLevelName(LogLevel::kDebug), "debug");
  EXPECT_STREQ(LogLevelName(LogLevel::kInfo), "info");
  EXPECT_STREQ(LogLevelName(LogLevel::kWarning), "warning");
  EXPECT_STREQ(LogLevelName(LogLevel::kError), "error");
  EXPECT_STREQ(LogLevelName(LogLevel::kOff), "off");
}

}  // namespace
}  // namespace hivemind
