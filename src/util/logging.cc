#include "hivemind/util/logging.h"

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>

#include "util/mutex.h"

namespace hivemind {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kWarning)};

// The sink and the lock that serializes lines; never destroyed, so threads that log
// during static destruction still find them.
struct SinkSlot {
  internal::Mutex mu;
  LogSink sink ABSL_GUARDED_BY(mu);
};

SinkSlot& Slot() {
  static SinkSlot* slot = new SinkSlot;
  return *slot;
}

char LevelLetter(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return 'D';
    case LogLevel::kInfo:
      return 'I';
    case LogLevel::kWarning:
      return 'W';
    default:
      return 'E';
  }
}

}  // namespace

const char* LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
    case LogLevel::kOff:
      return "off";
  }
  return "unknown";
}

absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name) {
  for (LogLevel level : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarning,
                         LogLevel::kError, LogLevel::kOff}) {
    if (name == LogLevelName(level)) return level;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown log level '", name, "' (debug, info, warning, error or off)"));
}

void SetLogSink(LogSink sink) {
  SinkSlot& slot = Slot();
  internal::MutexLock lock(&slot.mu);
  slot.sink = std::move(sink);
}

void SetLogLevel(LogLevel level) { g_level = static_cast<int>(level); }

LogLevel GetLogLevel() { return static_cast<LogLevel>(g_level.load()); }

bool LogEnabled(LogLevel level) {
  return level != LogLevel::kOff && static_cast<int>(level) >= g_level.load();
}

void LogLine(LogLevel level, absl::string_view line) {
  if (!LogEnabled(level)) return;
  SinkSlot& slot = Slot();
  internal::MutexLock lock(&slot.mu);
  if (slot.sink) {
    slot.sink(level, line);
    return;
  }
  // The default sink, and the only place in the library that writes to stderr.
  std::fprintf(stderr, "[hivemind] %c %.*s\n", LevelLetter(level),
               static_cast<int>(line.size()), line.data());
}

}  // namespace hivemind
