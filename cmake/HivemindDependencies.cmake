# Third-party dependencies, all from Debian packages (scripts/install_deps.sh).
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(absl REQUIRED)
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)
pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)
# cppzmq is header-only; its pkg-config module pulls in libzmq.
pkg_check_modules(ZMQ REQUIRED IMPORTED_TARGET cppzmq)
# OpenDHT through pkg-config: its CMake config in Debian is broken.
pkg_check_modules(OPENDHT REQUIRED IMPORTED_TARGET opendht)

if(HIVEMIND_WITH_TORCH)
  # Debian's libtorch-dev (CPU). Its imported targets carry the include directories
  # (as system headers) and the C++ ABI definition.
  find_package(Torch REQUIRED)
endif()

if(HIVEMIND_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(HIVEMIND_BUILD_BENCHMARKS)
  find_package(benchmark REQUIRED)
endif()
if(HIVEMIND_WITH_NCCL)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS /usr/local/cuda/include)
  find_library(NCCL_LIBRARY nccl HINTS /usr/local/cuda/lib64)
  if(NOT NCCL_INCLUDE_DIR OR NOT NCCL_LIBRARY)
    message(FATAL_ERROR "HIVEMIND_WITH_NCCL=ON but nccl.h / libnccl were not found")
  endif()
  message(STATUS "NCCL: ${NCCL_LIBRARY} (the local reducer arrives with its issue)")
endif()
