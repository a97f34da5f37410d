// Static work splitting shared by the kernels (internal header).
#pragma once

#include "adlk/common.h"

namespace adlk {

// a >= 0, b > 0.
inline index_t ceil_div(index_t a, index_t b) { return a / b + (a % b != 0); }

// A half-open range [begin, end) of indices.
struct Span {
  index_t begin = 0, end = 0;
  index_t size() const { return end - begin; }
};

// Part p of np of [0, n), boundaries rounded down to multiples of `align` (the last part
// ends at n). The same (n, np) always gives the same parts.
inline Span split(index_t n, int np, int p, index_t align = 1) {
  auto at = [&](int q) {
    if (q >= np) return n;
    const index_t v = n * q / np;
    return v - v % align;
  };
  return {at(p), at(p + 1)};
}

}  // namespace adlk
