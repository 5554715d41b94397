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
# Ed25519 identities and DHT record signatures.
pkg_check_modules(SODIUM REQUIRED IMPORTED_TARGET libsodium)
# JSON (header-only): the epoch log's lines.
find_package(nlohmann_json 3 REQUIRED)

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
  # The CUDA runtime (no nvcc needed: the NCCL reducer is plain C++ against the runtime
  # API) and NCCL, by default from /usr/local/cuda; point elsewhere with
  # -DCUDAToolkit_ROOT=... and -DNCCL_ROOT=....
  if(NOT CUDAToolkit_ROOT AND EXISTS /usr/local/cuda)
    set(CUDAToolkit_ROOT /usr/local/cuda)
  endif()
  find_package(CUDAToolkit REQUIRED)
  find_path(NCCL_INCLUDE_DIR nccl.h
            HINTS ${NCCL_ROOT}/include ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include)
  find_library(NCCL_LIBRARY nccl
               HINTS ${NCCL_ROOT}/lib ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64)
  if(NOT NCCL_INCLUDE_DIR OR NOT NCCL_LIBRARY)
    message(FATAL_ERROR "HIVEMIND_WITH_NCCL=ON but nccl.h / libnccl were not found")
  endif()
  message(STATUS "NCCL: ${NCCL_LIBRARY}, CUDA runtime ${CUDAToolkit_VERSION}")
endif()
