// Skips a test that needs a CUDA device, saying why (the optimizer's GPU tests).
#ifndef HIVEMIND_TESTS_OPTIM_CUDA_SKIP_H_
#define HIVEMIND_TESTS_OPTIM_CUDA_SKIP_H_

#include <torch/cuda.h>

#include "gtest/gtest.h"

#define HIVEMIND_SKIP_WITHOUT_CUDA()                                             \
  do {                                                                           \
    if (!torch::cuda::is_available()) {                                          \
      GTEST_SKIP()                                                               \
          << "no CUDA device (torch::cuda::is_available() is false: a "          \
             "CPU-only libtorch, as Debian's, or no GPU); scripts/gpu_tests.sh " \
             "runs this with a CUDA build of libtorch on a GPU machine";         \
    }                                                                            \
  } while (false)

#endif  // HIVEMIND_TESTS_OPTIM_CUDA_SKIP_H_
