// The library's log lines into Python's `logging`: the sink only queues a line (the
// library's threads never call into Python, and a sink that waited for the GIL could
// deadlock against a Python thread that holds it while joining those threads); a
// Python thread (hivemind_cpp._log) drains the queue into the logger.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "hivemind/util/logging.h"

namespace py = pybind11;

namespace hivemind {
namespace python {
namespace {

// Lines waiting for the Python thread; beyond this, the oldest are dropped (a
// counted note says how many) rather than grow without bound.
constexpr size_t kMaxQueuedLines = 10000;

class LogQueue {
 public:
  void Push(LogLevel level, absl::string_view line) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (lines_.size() >= kMaxQueuedLines) {
        lines_.pop_front();
        ++dropped_;
      }
      lines_.emplace_back(static_cast<int>(level), std::string(line));
    }
    cv_.notify_one();
  }

  // Waits up to `timeout` for lines, then takes all of them.
  std::vector<std::pair<int, std::string>> Drain(double timeout_s) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::duration<double>(timeout_s),
                 [this] { return !lines_.empty() || dropped_ > 0; });
    std::vector<std::pair<int, std::string>> out;
    if (dropped_ > 0) {
      out.emplace_back(static_cast<int>(LogLevel::kWarning),
                       absl::StrCat(dropped_, " log lines dropped (the queue was full)"));
      dropped_ = 0;
    }
    out.insert(out.end(), std::make_move_iterator(lines_.begin()),
               std::make_move_iterator(lines_.end()));
    lines_.clear();
    return out;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<int, std::string>> lines_;
  uint64_t dropped_ = 0;
};

// Never destroyed: library threads may log during interpreter shutdown.
LogQueue& Queue() {
  static LogQueue* queue = new LogQueue;
  return *queue;
}

LogLevel ParseLevel(const std::string& name) {
  absl::StatusOr<LogLevel> level = ParseLogLevel(name);
  if (!level.ok()) throw py::value_error(std::string(level.status().message()));
  return *level;
}

}  // namespace

void BindLogging(py::module_& m) {
  m.def(
      "_route_log",
      [](bool to_python) {
        if (to_python) {
          SetLogSink(
              [](LogLevel level, absl::string_view line) { Queue().Push(level, line); });
        } else {
          SetLogSink(nullptr);
        }
      },
      py::arg("to_python"),
      "Routes the library's log lines into the queue that _drain_log empties (True) "
      "or back to stderr (False).");
  m.def(
      "_drain_log",
      [](double timeout) {
        py::gil_scoped_release release;
        return Queue().Drain(timeout);
      },
      py::arg("timeout"),
      "Waits up to `timeout` seconds for queued log lines; returns them as a list of "
      "(level, line), level 0 debug .. 3 error.");
  m.def(
      "set_log_level", [](const std::string& name) { SetLogLevel(ParseLevel(name)); },
      py::arg("level"),
      "The library's log threshold: 'debug' (every round and matchmaking step), "
      "'info' (every averaging round: \"finished averaging gradients with N "
      "peer(s)\", state loads), 'warning' (the default), 'error' or 'off'. Lines "
      "reach the Python logger 'hivemind_cpp'.");
  m.def(
      "get_log_level", [] { return std::string(LogLevelName(GetLogLevel())); },
      "The library's log threshold (see set_log_level).");
}

}  // namespace python
}  // namespace hivemind
