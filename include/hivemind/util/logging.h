// The library's log: one process-wide facility with levels and a settable sink, so
// an application (or the Python module, which routes it into Python's `logging`)
// decides where the library's lines go and how many it wants.
//
// Levels: kDebug (every round: "Finished averaging round with 4 peers"), kInfo
// (epochs, state loads, once-only notes), kWarning (a failed round, a refused
// connection: the run goes on), kError (something the application should act on).
// Default: kWarning and above, to stderr, as "[hivemind] W message".
//
// Thread safety: every function may be called from any thread. The sink is called on
// the thread that logs (the library's I/O and worker threads among them), one line
// at a time (calls are serialized); it must not block for long and must not log
// through this facility itself.
#ifndef HIVEMIND_UTIL_LOGGING_H_
#define HIVEMIND_UTIL_LOGGING_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "hivemind/export.h"

namespace hivemind {

// Fixed values: the Python module maps them onto logging's levels.
enum class LogLevel : int {
  kDebug = 0,
  kInfo = 1,
  kWarning = 2,
  kError = 3,
  kOff = 4,  // only as a threshold: nothing is logged
};

// "debug", "info", "warning", "error", "off".
HIVEMIND_EXPORT const char* LogLevelName(LogLevel level);

// The level named by LogLevelName; kInvalidArgument for any other name.
HIVEMIND_EXPORT absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name);

// Receives one line (without a trailing newline) of `level`.
using LogSink = std::function<void(LogLevel level, absl::string_view line)>;

// Routes every line from now on to `sink`; an empty sink restores stderr. Lines being
// written by other threads may still reach the previous sink.
HIVEMIND_EXPORT void SetLogSink(LogSink sink);

// Lines below `level` are dropped before they are formatted. Default: kWarning.
HIVEMIND_EXPORT void SetLogLevel(LogLevel level);
HIVEMIND_EXPORT LogLevel GetLogLevel();

// Whether a line of `level` would be written now.
HIVEMIND_EXPORT bool LogEnabled(LogLevel level);

// Writes one line of `level` (if enabled).
HIVEMIND_EXPORT void LogLine(LogLevel level, absl::string_view line);

}  // namespace hivemind

// HIVEMIND_LOG(kInfo, "epoch ", epoch, " done"): the pieces are joined with
// absl::StrCat, and only when the level is enabled.
#define HIVEMIND_LOG(level, ...)                                                     \
  do {                                                                               \
    if (::hivemind::LogEnabled(::hivemind::LogLevel::level)) {                       \
      ::hivemind::LogLine(::hivemind::LogLevel::level, ::absl::StrCat(__VA_ARGS__)); \
    }                                                                                \
  } while (0)

#endif  // HIVEMIND_UTIL_LOGGING_H_
