// HIVEMIND_SANITIZER_ALLOCATOR is defined when a sanitizer (ASan, TSan, MSan) replaces
// the C library's malloc, under clang (__has_feature) or gcc (__SANITIZE_*__).
#ifndef HIVEMIND_UTIL_SANITIZERS_H_
#define HIVEMIND_UTIL_SANITIZERS_H_

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define HIVEMIND_SANITIZER_ALLOCATOR 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define HIVEMIND_SANITIZER_ALLOCATOR 1
#endif

#endif  // HIVEMIND_UTIL_SANITIZERS_H_
