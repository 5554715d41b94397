// Status propagation helpers. Debian's abseil (20220623) ships no status macros.
#ifndef HIVEMIND_UTIL_STATUS_MACROS_H_
#define HIVEMIND_UTIL_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define HIVEMIND_STATUS_CONCAT_INNER_(a, b) a##b
#define HIVEMIND_STATUS_CONCAT_(a, b) HIVEMIND_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status) and returns it from the enclosing function if it
// is not OK.
#define HIVEMIND_RETURN_IF_ERROR(expr)        \
  do {                                        \
    ::absl::Status hivemind_status_ = (expr); \
    if (!hivemind_status_.ok()) {             \
      return hivemind_status_;                \
    }                                         \
  } while (false)

// HIVEMIND_ASSIGN_OR_RETURN(auto x, Foo()); evaluates `rexpr` (an absl::StatusOr<T>),
// returns its status if not OK, else moves its value into `lhs`.
#define HIVEMIND_ASSIGN_OR_RETURN(lhs, rexpr)                                            \
  HIVEMIND_ASSIGN_OR_RETURN_IMPL_(HIVEMIND_STATUS_CONCAT_(hivemind_statusor_, __LINE__), \
                                  lhs, rexpr)

// `lhs` may be a declaration ("auto x"), so it cannot be parenthesized.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define HIVEMIND_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                    \
  if (!statusor.ok()) {                                       \
    return std::move(statusor).status();                      \
  }                                                           \
  lhs = std::move(statusor).value()
// NOLINTEND(bugprone-macro-parentheses)

#endif  // HIVEMIND_UTIL_STATUS_MACROS_H_
