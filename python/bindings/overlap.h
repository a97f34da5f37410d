// The aliasing rule of the in-place list functions (optimizer steps, clip_grad_norm), for
// the CPU module's numpy arrays and the CUDA module's device pointers alike: arrays are
// byte ranges [begin, end) in one address space (host, or CUDA's unified virtual one).
#pragma once

#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

#include "adlk/common.h"

namespace adlk_bind {

namespace py = pybind11;
using adlk::index_t;

// The bytes [begin, end) of one array of a call, which argument it is (list name and
// index, or index -1 for an argument that is not a list) and whether the call writes it.
struct Extent {
  std::uintptr_t begin, end;
  const char* list;
  index_t index;
  bool written;
};

inline std::string extent_name(const Extent& e) {
  return e.index < 0 ? std::string(e.list) : std::string(e.list) + "[" + std::to_string(e.index) + "]";
}

[[noreturn]] inline void overlap_error(const char* fn, const Extent& a, const Extent& b) {
  // name the later argument first: "exp_avg_sqs[0] overlaps exp_avgs[0]"
  const bool a_later = &a > &b;
  throw py::value_error(std::string(fn) + ": " + extent_name(a_later ? a : b) + " overlaps " +
                        extent_name(a_later ? b : a));
}

// The aliasing rule of the in-place functions: no array that the call writes may share a
// byte with any other array of the call (the kernels' pointers are __restrict, and an
// array updated twice or read after its update gives order-dependent results); arrays
// that are only read may overlap each other. `all` lists every array in argument order
// (the arrays are C-contiguous, so [begin, end) is exactly their memory). Sorting the
// written extents makes this O(n log n): a thousand tensors cost tens of microseconds.
inline void check_no_overlap(const char* fn, const std::vector<Extent>& all) {
  struct Span {  // a written extent, compact for the sort
    std::uintptr_t begin, end;
    std::size_t at;  // its index in `all`
  };
  std::vector<Span> w;
  w.reserve(all.size());
  for (std::size_t i = 0; i < all.size(); ++i)
    if (all[i].written && all[i].end > all[i].begin) w.push_back({all[i].begin, all[i].end, i});
  const auto less = [](const Span& a, const Span& b) {
    return a.begin < b.begin || (a.begin == b.begin && a.at < b.at);
  };
  // The sort is the cost of this check. Arrays allocated one after another mostly lie in
  // address order, so w is usually a few dozen ascending runs: merging them in pairs
  // (n log(runs)) takes about half the time of a full sort.
  std::vector<std::size_t> runs{0};
  for (std::size_t i = 1; i < w.size(); ++i)
    if (less(w[i], w[i - 1])) runs.push_back(i);
  if (runs.size() > 64) {
    std::sort(w.begin(), w.end(), less);
  } else {
    runs.push_back(w.size());
    for (std::size_t step = 1; step + 1 < runs.size(); step *= 2)
      for (std::size_t k = 0; k + step + 1 < runs.size(); k += 2 * step)
        std::inplace_merge(w.begin() + runs[k], w.begin() + runs[k + step],
                           w.begin() + runs[std::min(k + 2 * step, runs.size() - 1)], less);
  }
  // written vs written: sorted by start, each must start at or after every earlier end
  const Span* reach = nullptr;  // the written extent that ends last so far
  for (const Span& e : w) {
    if (reach && e.begin < reach->end) overlap_error(fn, all[e.at], all[reach->at]);
    if (!reach || e.end > reach->end) reach = &e;
  }
  // read-only vs written: the written extents are now disjoint and sorted, so the last
  // one starting before r ends is the only candidate
  for (const Extent& r : all) {
    if (r.written || r.end == r.begin) continue;
    auto it = std::upper_bound(w.begin(), w.end(), r.end,
                               [](std::uintptr_t v, const Span& e) { return v <= e.begin; });
    if (it != w.begin() && std::prev(it)->end > r.begin) overlap_error(fn, r, all[std::prev(it)->at]);
  }
}

}  // namespace adlk_bind
