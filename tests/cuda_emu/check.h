// The few lines of test bookkeeping shared by the tests/cuda_emu programs: each check
// prints its name when it fails; main() ends with report(), the plain closing line
// "N passed, N failed", and its exit status.
#pragma once

#include <cstdio>
#include <string>

namespace cuda_emu_test {

inline int g_passed = 0, g_failed = 0;

inline void check(bool ok, const std::string& what) {
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    std::printf("FAILED %s\n", what.c_str());
  }
}

inline int report() {
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}

}  // namespace cuda_emu_test
