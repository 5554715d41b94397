// Shared, immutable bytes: what the endpoint sends and the buffer pools hand out.
#ifndef HIVEMIND_UTIL_SHARED_BYTES_H_
#define HIVEMIND_UTIL_SHARED_BYTES_H_

#include <memory>
#include <string>
#include <utility>

namespace hivemind {

// A body to send. Shared and immutable: the same bytes may be in flight to several
// peers at once, and ZeroMQ sends them without copying.
using SharedBytes = std::shared_ptr<const std::string>;

inline SharedBytes MakeSharedBytes(std::string bytes) {
  return std::make_shared<const std::string>(std::move(bytes));
}

}  // namespace hivemind

#endif  // HIVEMIND_UTIL_SHARED_BYTES_H_
