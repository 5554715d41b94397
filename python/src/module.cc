// The extension module hivemind_cpp._core: status translation and the bindings of
// each area (dht_codec.cc, averager.cc, optimizer.cc).
#include <cmath>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common.h"

namespace hivemind {
namespace python {
namespace {

// hivemind_cpp.errors._from_status; a leaked reference so that it stays valid
// until the interpreter exits (a static py::object would be released after it).
PyObject* g_from_status = nullptr;

}  // namespace

void InitErrors() {
  py::object errors = py::module_::import("hivemind_cpp.errors");
  py::object from_status = errors.attr("_from_status");
  g_from_status = from_status.release().ptr();
}

void RaiseStatus(const absl::Status& status) {
  const std::string name = absl::StatusCodeToString(status.code());
  py::object error = py::reinterpret_borrow<py::object>(g_from_status)(
      static_cast<int>(status.code()), name, std::string(status.message()));
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
  throw py::error_already_set();
}

absl::Duration Seconds(double seconds, const char* what, bool allow_zero) {
  if (std::isnan(seconds) || seconds < 0 || (seconds == 0 && !allow_zero)) {
    RaiseStatus(absl::InvalidArgumentError(absl::StrCat(
        what, " must be ", allow_zero ? ">= 0" : "> 0", " seconds, got ", seconds)));
  }
  if (std::isinf(seconds)) return absl::InfiniteDuration();
  return absl::Seconds(seconds);
}

double UnixSeconds(absl::Time time) {
  if (time == absl::InfiniteFuture()) return std::numeric_limits<double>::infinity();
  if (time == absl::InfinitePast()) return -std::numeric_limits<double>::infinity();
  return absl::ToUnixMicros(time) / 1e6;
}

}  // namespace python
}  // namespace hivemind

PYBIND11_MODULE(_core, m) {
  namespace hp = hivemind::python;
  m.doc() =
      "hivemind_cpp._core: the C++ extension behind hivemind_cpp (import hivemind_cpp "
      "instead).";
  hp::InitErrors();
  hp::BindDht(m);
  hp::BindCodec(m);
  hp::BindAverager(m);
  hp::BindOptimizer(m);
  hp::BindLogging(m);
}
