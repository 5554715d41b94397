// Symbol visibility for the shared library. The library is built with hidden
// visibility; only declarations marked HIVEMIND_EXPORT are part of its ABI.
#ifndef HIVEMIND_EXPORT_H_
#define HIVEMIND_EXPORT_H_

#if defined(HIVEMIND_BUILDING_LIBRARY)
#define HIVEMIND_EXPORT __attribute__((visibility("default")))
#else
#define HIVEMIND_EXPORT
#endif

#endif  // HIVEMIND_EXPORT_H_
