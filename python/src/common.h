// Shared pieces of the hivemind_cpp extension: Status to Python exceptions, time
// conversions, the DHT holder the other classes keep alive, and the Bind* functions
// each translation unit defines.
//
// GIL rules of the whole extension:
//  - every call that may block (network, joins, waits, locks another thread holds,
//    codec passes over large buffers) runs with the GIL released;
//  - only the thread that called into the extension ever calls back into Python
//    (the optimizer's InnerOptimizer, from inside DecentralizedOptimizer::Step, with
//    py::gil_scoped_acquire); the library's own threads never touch Python objects.
#ifndef HIVEMIND_PYTHON_SRC_COMMON_H_
#define HIVEMIND_PYTHON_SRC_COMMON_H_

#include <torch/extension.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hivemind/dht/opendht_node.h"

namespace hivemind {
namespace python {

namespace py = pybind11;

// Raises the hivemind_cpp.errors exception for `status`'s code, carrying its message
// (and `.code`, the code's name). Requires the GIL and a non-OK status.
[[noreturn]] void RaiseStatus(const absl::Status& status);

inline void ThrowIfError(const absl::Status& status) {
  if (!status.ok()) RaiseStatus(status);
}

template <typename T>
T ValueOrRaise(absl::StatusOr<T> value) {
  if (!value.ok()) RaiseStatus(value.status());
  return std::move(value).value();
}

// Loads the exception classes of hivemind_cpp.errors (called once at import).
void InitErrors();

// Seconds (a Python float) as a Duration; None-like negatives are refused.
// Raises InvalidArgumentError for NaN, negatives or (unless allow_zero) zero.
absl::Duration Seconds(double seconds, const char* what, bool allow_zero = false);

// Unix time in seconds (inf for InfiniteFuture).
double UnixSeconds(absl::Time time);

// Runs `fn` without the GIL when this thread holds it (destructors may run with or
// without it).
template <typename Fn>
void WithoutGil(Fn&& fn) {
  if (PyGILState_Check()) {
    py::gil_scoped_release release;
    fn();
  } else {
    fn();
  }
}

// The DHT node as Python sees it. Averagers and optimizers keep a shared_ptr to it,
// so the node outlives them whatever order Python drops its references in.
class DhtHolder {
 public:
  explicit DhtHolder(std::unique_ptr<OpenDhtNode> node) : node_(std::move(node)) {}
  ~DhtHolder() {
    WithoutGil([this] { node_.reset(); });
  }
  OpenDhtNode* node() const { return node_.get(); }
  // Leaves the DHT and joins its threads (GIL released). Idempotent.
  void Shutdown() {
    py::gil_scoped_release release;
    node_->Shutdown();
    shut_down_ = true;
  }
  bool shut_down() const { return shut_down_; }

 private:
  std::unique_ptr<OpenDhtNode> node_;
  bool shut_down_ = false;
};

void BindDht(py::module_& m);
void BindCodec(py::module_& m);
void BindAverager(py::module_& m);
void BindOptimizer(py::module_& m);
void BindLogging(py::module_& m);

}  // namespace python
}  // namespace hivemind

#endif  // HIVEMIND_PYTHON_SRC_COMMON_H_
