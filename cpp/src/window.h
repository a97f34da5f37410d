// Sliding-window index ranges shared by convolution and pooling (internal header).
//
// Output position o of a window with stride s reads input cell o*s + off for each kernel
// offset (off = k*d - p). These helpers give, with a few divisions and no loop, the
// outputs or the kernel taps whose cell lies inside the input, so that loops visit only
// cells that exist: the cost stays proportional to the work whatever the stride,
// padding or dilation.
#pragma once

#include <algorithm>

#include "adlk/common.h"
#include "adlk/tuning.h"
#include "partition.h"

namespace adlk {

// Output positions [lo, hi) (within [0, n_out)) whose cell o*s + off is in [0, n).
inline void outputs_in_range(index_t off, index_t s, index_t n, index_t n_out, index_t& lo,
                             index_t& hi) {
  lo = off >= 0 ? 0 : ceil_div(-off, s);
  hi = (n - 1 - off) < 0 ? 0 : std::min(n_out, (n - 1 - off) / s + 1);
  lo = std::min(lo, n_out);
  if (hi < lo) hi = lo;
}

// Kernel offsets [lo, hi) (in steps of the dilation d) whose cell start + k*d is in [0, n).
inline void taps_in_range(index_t start, index_t k, index_t d, index_t n, index_t& lo,
                          index_t& hi) {
  if (start >= 0 && start + (k - 1) * d < n) {  // the common case, without divisions
    lo = 0, hi = k;
    return;
  }
  if (d == 1) {  // no divisions (they cost more than a small window's scan)
    lo = start < 0 ? std::min(k, -start) : 0;
    hi = start >= n ? 0 : std::min(k, n - start);
  } else {
    lo = start < 0 ? ceil_div(-start, d) : 0;
    hi = start >= n ? 0 : std::min(k, (n - 1 - start) / d + 1);
  }
  if (hi < lo) hi = lo;
}

}  // namespace adlk
