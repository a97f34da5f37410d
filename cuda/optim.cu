// CUDA optimizer kernels and their host launchers (see adlk/cuda/optim.h).
//
// Multi-tensor launches: the tensors of a call go in chunks of kListTensors, each chunk's
// pointers and sizes passed by value as the kernel's TensorChunk argument (a few KiB,
// within the 4 KiB every CUDA version accepts). A chunk is cut into tiles of kTile
// elements, each tensor starting a new tile; a block takes tiles in a grid-stride loop and
// finds a tile's tensor by binary search over the chunk's tile counts. Inside a tile,
// thread t handles elements t, t + kThreads, ... (coalesced), kItems of them.
//
// Updates are elementwise (adlk/optim_update.h): no reduction, no atomics. The norm
// kernels write one double per tile, summed in a fixed shared-memory tree; a last
// one-block kernel adds the tile sums in a fixed order. Deterministic throughout.
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "adlk/cuda/common.cuh"
#include "adlk/cuda/optim.h"
#include "adlk/optim_update.h"

namespace adlk::cuda {

namespace {

// Tensors per launch, elements per thread and per tile.
constexpr int kListTensors = 48;
constexpr int kItems = 4;
constexpr index_t kTile = index_t(kThreads) * kItems;

// One launch's tensors: Slots pointer lists (params, grads, states...), sizes, and the
// running count of tiles through each tensor.
template <int Slots>
struct TensorChunk {
  void* ptr[Slots][kListTensors];
  index_t size[kListTensors];
  index_t tiles_through[kListTensors];
  index_t tiles;  // == tiles_through[count - 1]
  int count;
};

// The tensor of tile t (tiles_through is increasing) and t's first element in it.
template <int Slots>
__device__ __forceinline__ int tensor_of_tile(const TensorChunk<Slots>& c, index_t t,
                                              index_t& first) {
  int lo = 0, hi = c.count - 1;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (c.tiles_through[mid] > t)
      hi = mid;
    else
      lo = mid + 1;
  }
  first = (t - (lo > 0 ? c.tiles_through[lo - 1] : 0)) * kTile;
  return lo;
}

// op(i, ptrs) for every element i of every tensor of the chunk (ptrs: the tensor's Slots
// pointers).
template <int Slots, typename Op>
__global__ void __launch_bounds__(kThreads) multi_tensor_kernel(TensorChunk<Slots> c, Op op) {
  for (index_t t = blockIdx.x; t < c.tiles; t += gridDim.x) {
    index_t first;
    const int k = tensor_of_tile(c, t, first);
    void* ptrs[Slots];
    for (int s = 0; s < Slots; ++s) ptrs[s] = c.ptr[s][k];
    const index_t n = c.size[k];
    for (int j = 0; j < kItems; ++j) {
      const index_t i = first + threadIdx.x + index_t(j) * blockDim.x;
      if (i < n) op(i, ptrs);
    }
  }
}

// Calls chunk(c, tile_offset) for the non-empty tensors of the lists, kListTensors at a
// time; tile_offset counts the tiles of the earlier chunks.
template <int Slots, typename Chunk>
void for_each_chunk(index_t count, const index_t* sizes, void* const* const (&lists)[Slots],
                    const char* what, Chunk&& chunk) {
  check(count >= 0, "optimizer: negative tensor count");
  TensorChunk<Slots> c{};
  index_t offset = 0;
  const auto flush = [&] {
    if (c.count == 0) return;
    chunk(c, offset);
    offset += c.tiles;
    c = TensorChunk<Slots>{};
  };
  for (index_t k = 0; k < count; ++k) {
    if (sizes[k] < 0) fail(std::string(what) + ": negative tensor size");
    if (sizes[k] == 0) continue;
    for (int s = 0; s < Slots; ++s) c.ptr[s][c.count] = lists[s] ? lists[s][k] : nullptr;
    c.size[c.count] = sizes[k];
    c.tiles += sizes[k] / kTile + (sizes[k] % kTile != 0);
    c.tiles_through[c.count] = c.tiles;
    if (++c.count == kListTensors) flush();
  }
  flush();
}

// Blocks of a launch over `tiles` tiles (a block per tile up to the grid cap).
unsigned blocks_for(index_t tiles) { return unsigned(tiles < kMaxBlocks ? tiles : kMaxBlocks); }

// One launch of op per chunk.
template <int Slots, typename Op>
void launch_lists(index_t count, const index_t* sizes, void* const* const (&lists)[Slots],
                  const Op& op, const char* what, void* stream) {
  for_each_chunk<Slots>(count, sizes, lists, what, [&](const TensorChunk<Slots>& c, index_t) {
    ADLK_LAUNCH(blocks_for(c.tiles), kThreads, 0, as_stream(stream), multi_tensor_kernel<Slots, Op>)(c, op);
    ADLK_CUDA_LAUNCH_CHECK();
  });
}

template <typename T>
void* const* untyped(T* const* list) {
  return reinterpret_cast<void* const*>(list);
}

template <typename T>
void* const* untyped(const T* const* list) {
  return reinterpret_cast<void* const*>(const_cast<T* const*>(list));
}

#define ADLK_FLAG(f) decltype(f)::value

// ---- the update ops: adlk/optim_update.h's rules on one element -------------------------------

template <typename T, bool WD, bool MOM, bool FIRST, bool NESTEROV>
struct SgdOp {
  update::SgdScalars<T> s;
  __device__ void operator()(index_t i, void* const* p) const {
    update::sgd<T, WD, MOM, FIRST, NESTEROV>(i, static_cast<T*>(p[0]), static_cast<const T*>(p[1]),
                                             static_cast<T*>(p[2]), s);
  }
};

template <typename T, bool WD>
struct AdagradOp {
  update::AdagradScalars<T> s;
  __device__ void operator()(index_t i, void* const* p) const {
    update::adagrad<T, WD>(i, static_cast<T*>(p[0]), static_cast<const T*>(p[1]),
                           static_cast<T*>(p[2]), s);
  }
};

template <typename T, bool WD, bool CENTERED, bool MOM>
struct RmspropOp {
  update::RmspropScalars<T> s;
  __device__ void operator()(index_t i, void* const* p) const {
    update::rmsprop<T, WD, CENTERED, MOM>(i, static_cast<T*>(p[0]), static_cast<const T*>(p[1]),
                                          static_cast<T*>(p[2]), static_cast<T*>(p[3]),
                                          static_cast<T*>(p[4]), s);
  }
};

template <typename T, bool WD, bool DECOUPLED, bool AMSGRAD>
struct AdamOp {
  update::AdamScalars<T> s;
  __device__ void operator()(index_t i, void* const* p) const {
    update::adam<T, WD, DECOUPLED, AMSGRAD>(i, static_cast<T*>(p[0]), static_cast<const T*>(p[1]),
                                            static_cast<T*>(p[2]), static_cast<T*>(p[3]),
                                            static_cast<T*>(p[4]), s);
  }
};

template <typename T>
struct ClipScaleOp {
  const double* total;
  double max_norm;
  __device__ void operator()(index_t i, void* const* p) const {
    bool scale;
    const T coef = update::clip_coef<T>(*total, max_norm, scale);
    if (scale) static_cast<T*>(p[0])[i] *= coef;
  }
};

// ---- norms -------------------------------------------------------------------------------------

enum NormKind : int { kNormInf = 0, kNormL1 = 1, kNormL2 = 2 };

// Sum for L1 and (squares) L2; for inf the maximum, NaN winning.
template <int Kind>
using NormCombine = std::conditional_t<Kind == kNormInf, MaxOf, SumOf>;

template <int Kind>
__device__ __forceinline__ double norm_term(double v) {
  if (Kind == kNormL2) return v * v;
  return v < 0 ? -v : v;
}

// partials[t] = the combination of tile t's terms (thread-ordered, then the tree).
template <typename T, int Kind>
__global__ void __launch_bounds__(kThreads) norm_tiles_kernel(TensorChunk<1> c, double* partials) {
  __shared__ double red[kThreads];
  for (index_t t = blockIdx.x; t < c.tiles; t += gridDim.x) {
    index_t first;
    const int k = tensor_of_tile(c, t, first);
    const T* x = static_cast<const T*>(c.ptr[0][k]);
    const index_t n = c.size[k];
    double acc = 0;
    for (int j = 0; j < kItems; ++j) {
      const index_t i = first + threadIdx.x + index_t(j) * blockDim.x;
      if (i < n) acc = NormCombine<Kind>{}(acc, norm_term<Kind>(double(x[i])));
    }
    red[threadIdx.x] = acc;
    block_tree(red, NormCombine<Kind>{});
    if (threadIdx.x == 0) partials[t] = red[0];
    __syncthreads();  // red is reused by the next tile
  }
}

template <int Kind, typename T>
void total_norm_kind(index_t count, const index_t* sizes, const T* const* tensors,
                     double* partials, double* total, cudaStream_t s) {
  void* const* const lists[1] = {untyped(tensors)};
  index_t tiles = 0;
  for_each_chunk<1>(count, sizes, lists, "total_norm", [&](const TensorChunk<1>& c, index_t offset) {
    ADLK_LAUNCH(blocks_for(c.tiles), kThreads, 0, s, norm_tiles_kernel<T, Kind>)(c, partials + offset);
    ADLK_CUDA_LAUNCH_CHECK();
    tiles = offset + c.tiles;
  });
  ADLK_LAUNCH(1, kThreads, 0, s, fixed_total_kernel<NormCombine<Kind>>)(
      partials, tiles, NormCombine<Kind>{}, 1.0, Kind == kNormL2, total);
  ADLK_CUDA_LAUNCH_CHECK();
}

}  // namespace

// ---- host launchers -------------------------------------------------------------------------

template <typename T>
void sgd_step(index_t count, const index_t* sizes, T* const* params, const T* const* grads,
              T* const* momentum_buffers, const SgdHyper& h, void* stream) {
  check(h.step >= 1, "sgd_step: step must be >= 1");
  const bool mom = h.momentum != 0;
  check(!mom || momentum_buffers != nullptr, "sgd_step: momentum needs buffers");
  void* const* const lists[3] = {untyped(params), untyped(grads), mom ? untyped(momentum_buffers) : nullptr};
  const auto s = update::sgd_scalars<T>(h);
  with_flags([&](auto wd, auto mo, auto first, auto nest) {
    using Op = SgdOp<T, ADLK_FLAG(wd), ADLK_FLAG(mo), ADLK_FLAG(first), ADLK_FLAG(nest)>;
    launch_lists<3>(count, sizes, lists, Op{s}, "sgd_step", stream);
  }, h.weight_decay != 0, mom, mom && h.step == 1, mom && h.nesterov);
}

template <typename T>
void adagrad_step(index_t count, const index_t* sizes, T* const* params, const T* const* grads,
                  T* const* state_sums, const AdagradHyper& h, void* stream) {
  check(h.step >= 1, "adagrad_step: step must be >= 1");
  void* const* const lists[3] = {untyped(params), untyped(grads), untyped(state_sums)};
  const auto s = update::adagrad_scalars<T>(h);
  with_flags([&](auto wd) {
    launch_lists<3>(count, sizes, lists, AdagradOp<T, ADLK_FLAG(wd)>{s}, "adagrad_step", stream);
  }, h.weight_decay != 0);
}

template <typename T>
void rmsprop_step(index_t count, const index_t* sizes, T* const* params, const T* const* grads,
                  T* const* square_avgs, T* const* momentum_buffers, T* const* grad_avgs,
                  const RmspropHyper& h, void* stream) {
  check(h.step >= 1, "rmsprop_step: step must be >= 1");
  const bool mom = h.momentum > 0;
  check(!mom || momentum_buffers != nullptr, "rmsprop_step: momentum needs buffers");
  check(!h.centered || grad_avgs != nullptr, "rmsprop_step: centered needs grad_avgs");
  void* const* const lists[5] = {untyped(params), untyped(grads), untyped(square_avgs),
                                 mom ? untyped(momentum_buffers) : nullptr,
                                 h.centered ? untyped(grad_avgs) : nullptr};
  const auto s = update::rmsprop_scalars<T>(h);
  with_flags([&](auto wd, auto centered, auto mo) {
    using Op = RmspropOp<T, ADLK_FLAG(wd), ADLK_FLAG(centered), ADLK_FLAG(mo)>;
    launch_lists<5>(count, sizes, lists, Op{s}, "rmsprop_step", stream);
  }, h.weight_decay != 0, h.centered, mom);
}

template <typename T>
void adam_step(index_t count, const index_t* sizes, T* const* params, const T* const* grads,
               T* const* exp_avgs, T* const* exp_avg_sqs, T* const* max_exp_avg_sqs,
               const AdamHyper& h, void* stream) {
  check(h.step >= 1, "adam_step: step must be >= 1");
  check(!h.amsgrad || max_exp_avg_sqs != nullptr, "adam_step: amsgrad needs max_exp_avg_sqs");
  void* const* const lists[5] = {untyped(params), untyped(grads), untyped(exp_avgs),
                                 untyped(exp_avg_sqs), h.amsgrad ? untyped(max_exp_avg_sqs) : nullptr};
  const auto s = update::adam_scalars<T>(h);
  const bool wd = h.weight_decay != 0;
  with_flags([&](auto w, auto dec, auto ams) {
    using Op = AdamOp<T, ADLK_FLAG(w), ADLK_FLAG(dec), ADLK_FLAG(ams)>;
    launch_lists<5>(count, sizes, lists, Op{s}, "adam_step", stream);
  }, wd, wd && h.decoupled_weight_decay, h.amsgrad);
}

index_t total_norm_partials(index_t count, const index_t* sizes) {
  check(count >= 0, "total_norm: negative tensor count");
  index_t tiles = 0;
  for (index_t k = 0; k < count; ++k) {
    check(sizes[k] >= 0, "total_norm: negative tensor size");
    tiles += sizes[k] / kTile + (sizes[k] % kTile != 0);
  }
  return tiles > 0 ? tiles : 1;
}

template <typename T>
void total_norm(index_t count, const index_t* sizes, const T* const* tensors, double norm_type,
                double* partials, double* total, void* stream) {
  const cudaStream_t s = as_stream(stream);
  if (norm_type == 2.0)
    total_norm_kind<kNormL2>(count, sizes, tensors, partials, total, s);
  else if (norm_type == 1.0)
    total_norm_kind<kNormL1>(count, sizes, tensors, partials, total, s);
  else if (std::isinf(norm_type) && norm_type > 0)
    total_norm_kind<kNormInf>(count, sizes, tensors, partials, total, s);
  else
    fail("total_norm: norm_type must be 1, 2 or inf");
}

template <typename T>
void clip_scale(index_t count, const index_t* sizes, T* const* tensors, const double* total,
                double max_norm, void* stream) {
  void* const* const lists[1] = {untyped(tensors)};
  launch_lists<1>(count, sizes, lists, ClipScaleOp<T>{total, max_norm}, "clip_grad_norm", stream);
}

#undef ADLK_FLAG

#define ADLK_INSTANTIATE_CUDA_OPTIM(T) \
  ADLK_INSTANTIATE(sgd_step, T)        \
  ADLK_INSTANTIATE(adagrad_step, T)    \
  ADLK_INSTANTIATE(rmsprop_step, T)    \
  ADLK_INSTANTIATE(adam_step, T)       \
  ADLK_INSTANTIATE(total_norm, T)      \
  ADLK_INSTANTIATE(clip_scale, T)

ADLK_INSTANTIATE_CUDA_OPTIM(float)
ADLK_INSTANTIATE_CUDA_OPTIM(double)

}  // namespace adlk::cuda
