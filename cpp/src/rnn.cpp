#include "adlk/rnn.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "adlk/blas.h"
#include "adlk/packed_gemm.h"
#include "adlk/rnn_cell.h"
#include "adlk/parallel.h"
#include "adlk/tuning.h"
#include "adlk/scratch.h"
#include "partition.h"
#include "adlk/vecmath.h"

namespace adlk {

namespace {

constexpr index_t kMinTileCols = kRnnMinTileCols;  // adlk/tuning.h

// A spin-wait iteration's hint to the core (x86: pause, which also frees the sibling
// hyperthread's share of the core).
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// The recurrent gate loops (the *_tile functions below, inlined into these) in an AVX-512
// (x86-64-v4) build, twice the lanes for their transcendentals, where the CPU runs it and
// the packed GEMM kernel is AVX-512; else in ADLK_MULTIVERSION's AVX2 or baseline build.
// So ADLK_GEMM_ISA=avx2 holds them to AVX2 too (with the AVX-512 build they made an
// AVX2-held T=50 LSTM look 5.6% faster forward, 2.5% backward). Elementwise loops only:
// every build computes each element the same way (the same bits).
#if ADLK_TARGET_CLONES
template <auto Loop, typename... Args>
__attribute__((target("arch=x86-64-v4"))) void gate_loop_avx512(Args... args) {
  Loop(args...);
}
template <auto Loop, typename... Args>
ADLK_MULTIVERSION void gate_loop_narrow(Args... args) {
  Loop(args...);
}
inline bool gate_loops_avx512() {
  static const bool on = __builtin_cpu_supports("x86-64-v4") &&
                         std::string(gemm_packed_isa()) == "avx512";
  return on;
}
template <auto Loop, typename... Args>
void gate_loop(Args... args) {
  if (gate_loops_avx512())
    gate_loop_avx512<Loop>(args...);
  else
    gate_loop_narrow<Loop>(args...);
}
#else
template <auto Loop, typename... Args>
void gate_loop(Args... args) {
  Loop(args...);
}
#endif

// Tiles of (batch rows, hidden units) for the time loop, one per thread (some threads may
// get none).
// Column tiles start at multiples of align (kPackedPanel where they index packed panels).
struct TileGrid {
  int nb = 1, nh = 1;
  index_t B = 0, H = 0, align = 16;
  TileGrid(index_t B_, index_t H_, int np, index_t align_ = 16) : B(B_), H(H_), align(align_) {
    nh = static_cast<int>(std::clamp<index_t>(H / kMinTileCols, 1, np));
    nb = static_cast<int>(std::clamp<index_t>(np / nh, 1, std::max<index_t>(B, 1)));
  }
  bool tile(int p, Span& rows, Span& cols) const {
    if (p >= nb * nh) return false;
    rows = split(B, nb, p / nh);
    cols = split(H, nh, p % nh, align);
    return rows.size() > 0 && cols.size() > 0;
  }
};

// One time step's tiles cut into chunks and shared out at run time, without a barrier
// between steps. Each thread first runs the chunks of its own tile (TileGrid's), whose
// weight panels stay in its cache from step to step, then claims the unclaimed chunks of
// the others' tiles. On a machine whose cores run at unequal speed (a busy hyperthread
// sibling, a noisy neighbour, hybrid cores) a fixed split waits at every step for the
// slowest core: on the 2-core VM, with one core at ~60% speed, the T=50 LSTM forward took
// 1.45x its quiet time, waiting ~8 ms of ~22 at the barriers. A chunk's results do not
// depend on which thread runs it, so the bits stay those of any thread count.
//
// Batch rows are independent sequences: a chunk of step s needs only the chunks of step
// s - 1 in the same rows (its h_{t-1} rows, all units). Rows are cut into groups, and a
// chunk waits for its group's chunks of the step before instead of for the whole step, so
// a thread that runs out of work in step s starts step s + 1 on rows already done
// (against a barrier per step, whose waits were ~3% of the time: -1.6% forward and
// backward time on T=50, B=64, H=256, 2 threads).
class StepChunks {
 public:
  // Chunks: columns in pieces of chunk_cols (a multiple of the tiles' alignment), rows in
  // pieces of whole kRowAlign-row groups where a row of tiles has too few column pieces.
  StepChunks(const TileGrid& grid, int np, index_t chunk_cols)
      : np_(np), chunk_cols_(chunk_cols), tiles_(static_cast<size_t>(np)) {
    index_t groups = 0;
    for (int home = 0; home < np; ++home) {
      Tile& tile = tiles_[static_cast<size_t>(home)];
      if (!grid.tile(home, tile.rows, tile.cols)) continue;
      tile.ncol = ceil_div(tile.cols.size(), chunk_cols);
      // Tiles in one row of the grid share its row pieces (the count of its first tile).
      const int first = home - home % grid.nh;
      if (home == first) {
        tile.nrow = std::max<index_t>(
            1, std::min(ceil_div(kMinChunks, tile.ncol), tile.rows.size() / kRowAlign));
        tile.group0 = groups;
        groups += tile.nrow;
      } else {
        tile.nrow = tiles_[static_cast<size_t>(first)].nrow;
        tile.group0 = tiles_[static_cast<size_t>(first)].group0;
      }
    }
    groups_ = std::vector<Counter>(static_cast<size_t>(groups));
    group_chunks_.assign(static_cast<size_t>(groups), 0);
    for (const Tile& tile : tiles_)
      for (index_t r = 0; r < tile.nrow; ++r)
        group_chunks_[static_cast<size_t>(tile.group0 + r)] += tile.ncol;
  }

  // Runs fn(rows, cols) on chunks of step s until none is left unclaimed. Every thread p
  // of the team (np threads, at most the grid's) calls it for s = 0, 1, ... in turn, and
  // the team needs a barrier after the last step before it reads any step's results.
  template <typename Fn>
  void run(int p, index_t s, Fn&& fn) {
    for (int q = 0; q < np_; ++q) {
      Tile& tile = tiles_[static_cast<size_t>((p + q) % np_)];
      const index_t n = tile.ncol * tile.nrow;
      if (n == 0) continue;
      // The claims count up over all steps: this thread saw step s - 1's run out, so the
      // count is at least s * n here.
      index_t v = tile.claimed.v.load(std::memory_order_relaxed);
      while (v < (s + 1) * n) {
        if (!tile.claimed.v.compare_exchange_weak(v, v + 1, std::memory_order_relaxed))
          continue;
        const index_t i = v - s * n, piece = i / tile.ncol;
        Counter& group = groups_[static_cast<size_t>(tile.group0 + piece)];
        const index_t per_step = group_chunks_[static_cast<size_t>(tile.group0 + piece)];
        wait_for(group, s * per_step);
        const Span r = split(tile.rows.size(), static_cast<int>(tile.nrow),
                             static_cast<int>(piece), kRowAlign);
        const index_t c0 = tile.cols.begin + (i % tile.ncol) * chunk_cols_;
        fn(Span{tile.rows.begin + r.begin, tile.rows.begin + r.end},
           Span{c0, std::min(tile.cols.end, c0 + chunk_cols_)});
        group.v.fetch_add(1, std::memory_order_release);
        v = tile.claimed.v.load(std::memory_order_relaxed);
      }
    }
  }

 private:
  // At least 8 chunks per row of tiles: the wait for the last chunk is about half a chunk
  // (against 4: -1 to -4% forward time on T=50, B=64, H=256; 16: no better).
  static constexpr index_t kMinChunks = 8, kRowAlign = 8;
  struct alignas(64) Counter {
    std::atomic<index_t> v{0};
  };
  struct Tile {
    Span rows, cols;
    index_t ncol = 0, nrow = 0, group0 = 0;
    Counter claimed;  // chunks claimed over all steps so far
  };
  // Until the row group's finished chunks (over all steps) reach `count`. The acquire
  // pairs with the release of every chunk counted (a release sequence of the adds).
  static void wait_for(const Counter& group, index_t count) {
    for (int spins = 0; group.v.load(std::memory_order_acquire) < count; ++spins) {
      if (spins < kSpinsBeforeYield)
        cpu_relax();
      else
        std::this_thread::yield();  // more threads than cores: let the awaited one run
    }
  }
  static constexpr int kSpinsBeforeYield = 1 << 14;
  int np_;
  index_t chunk_cols_;
  std::vector<Tile> tiles_;
  std::vector<Counter> groups_;  // chunks finished over all steps, per row group
  std::vector<index_t> group_chunks_;  // chunks per step, per row group
};

// C[rows, k*H + cols] = A[rows, :] @ W[k*H + cols, :]^T + beta * C for each gate k < G:
// the gate columns of one tile. A tile spanning all hidden units is one GEMM.
template <typename T>
void gate_gemm(int G, index_t H, Span rows, Span cols, index_t K, const T* A, index_t lda,
               const T* W, T beta, T* C, index_t ldc) {
  if (cols.begin == 0 && cols.end == H) {
    gemm<T>(false, true, rows.size(), G * H, K, T(1), A + rows.begin * lda, lda, W, K, beta,
            C + rows.begin * ldc, ldc);
    return;
  }
  for (int k = 0; k < G; ++k)
    gemm<T>(false, true, rows.size(), cols.size(), K, T(1), A + rows.begin * lda, lda,
            W + (k * H + cols.begin) * K, K, beta, C + rows.begin * ldc + k * H + cols.begin,
            ldc);
}

// C[rows, gate columns of the tile] = bias_a + bias_b (either may be null). Returns the
// beta for the GEMMs that follow: 0 when there is no bias (C is then left as is).
template <typename T>
T fill_gate_bias(int G, index_t H, Span rows, Span cols, const T* bias_a, const T* bias_b,
                 T* C, index_t ldc) {
  if (!bias_a && !bias_b) return T(0);
  for (index_t r = rows.begin; r < rows.end; ++r)
    for (int k = 0; k < G; ++k) {
      T* c = C + r * ldc + k * H;
      for (index_t j = cols.begin; j < cols.end; ++j)
        c[j] = (bias_a ? bias_a[k * H + j] : T(0)) + (bias_b ? bias_b[k * H + j] : T(0));
    }
  return T(1);
}

// C[part of rows] = A @ B + beta * C, rows split across the team (A (R, K), B (K, N)).
template <typename T>
void rows_gemm(int p, int np, index_t R, index_t N, index_t K, const T* A, index_t lda,
               const T* B, index_t ldb, T beta, T* C, index_t ldc) {
  const Span s = split(R, np, p);
  if (s.size() > 0)
    gemm<T>(false, false, s.size(), N, K, T(1), A + s.begin * lda, lda, B, ldb, beta,
            C + s.begin * ldc, ldc);
}

// C[part of M rows] = G^T @ X + beta * C with G (K, M) (row stride ldg), X (K, N): the
// weight gradient of a projection, split across the team by output rows.
template <typename T>
void wgrad_gemm(int p, int np, index_t M, index_t N, index_t K, const T* G, index_t ldg,
                const T* X, index_t ldx, T beta, T* C) {
  const Span s = split(M, np, p);
  if (s.size() > 0)
    gemm<T>(true, false, s.size(), N, K, T(1), G + s.begin, ldg, X, ldx, beta, C + s.begin * N,
            N);
}

// out[j] += G[r, j] for the rows r < R in order, j < N.
template <typename T>
void add_rows(index_t R, index_t N, const T* G, index_t ldg, T* out) {
  for (index_t r = 0; r < R; ++r) {
    const T* g = G + r * ldg;
#pragma omp simd
    for (index_t j = 0; j < N; ++j) out[j] += g[j];
  }
}

// out[j] = sum over rows r (in order) of G[r, j], columns split across the team: the
// result does not depend on the number of threads.
template <typename T>
void column_sums(int p, int np, index_t R, index_t N, const T* G, index_t ldg, T* out) {
  const Span s = split(N, np, p, 16);
  if (s.size() == 0) return;
  std::fill(out + s.begin, out + s.end, T(0));
  add_rows(R, s.size(), G + s.begin, ldg, out + s.begin);
}

// ---- pointwise passes (one tile) --------------------------------------------------

// LSTM step on a tile of nr rows, nc hidden units: the pre-activations pre (row stride
// ldp, gate stride gsp) plus bias (4H, gate stride H; null: none) become the activations
// i, f, g, o, written to act (row stride lda, gate stride H); c = f * c_prev + i * g
// (c_prev, c_next: row stride H), h = o * tanh(c) (row stride ldh). Every pointer starts
// at the tile's first row and unit. pre and act may be the same memory (each element is
// read before it is written).
//
// The loops run on a chunk's columns; FixedCols (non-zero) is their count known at
// compile time, the float sequences' chunk width, whose loop the compiler then unrolls
// whole, without the masked remainder of a run-time count (the pointwise passes took
// 15% of the T=50, B=64, H=256 forward: -2.5% forward, -3% backward time).
template <typename T, index_t FixedCols>
ADLK_ALWAYS_INLINE void lstm_step_rows(
    index_t nr, index_t nc_any, index_t H, const T* pre, index_t ldp, index_t gsp,
    const T* bias, T* act, index_t lda, const T* c_prev, T* c_next, T* h_next, index_t ldh) {
  const index_t nc = FixedCols ? FixedCols : nc_any;
  for (index_t r = 0; r < nr; ++r) {
    const T* p = pre + r * ldp;
    T* a = act + r * lda;
    const T* __restrict cp = c_prev + r * H;
    T* __restrict cn = c_next + r * H;
    T* __restrict hn = h_next + r * ldh;
#pragma omp simd
    for (index_t j = 0; j < nc; ++j) {
      T gi = p[j], gf = p[gsp + j], gg = p[2 * gsp + j], go = p[3 * gsp + j];
      if (bias) {
        gi += bias[j];
        gf += bias[H + j];
        gg += bias[2 * H + j];
        go += bias[3 * H + j];
      }
      cell::lstm_step(gi, gf, gg, go, cp[j], cn[j], hn[j]);
      a[j] = gi;
      a[H + j] = gf;
      a[2 * H + j] = gg;
      a[3 * H + j] = go;
    }
  }
}

template <typename T>
ADLK_ALWAYS_INLINE void lstm_step_tile(index_t nr, index_t nc, index_t H, const T* pre,
                                       index_t ldp, index_t gsp, const T* bias, T* act,
                                       index_t lda, const T* c_prev, T* c_next, T* h_next,
                                       index_t ldh) {
  if (nc == kPackedPanel)
    lstm_step_rows<T, kPackedPanel>(nr, nc, H, pre, ldp, gsp, bias, act, lda, c_prev, c_next,
                                    h_next, ldh);
  else
    lstm_step_rows<T, 0>(nr, nc, H, pre, ldp, gsp, bias, act, lda, c_prev, c_next, h_next, ldh);
}

// Backward of one LSTM step on a tile. dh (in: gradient reaching h_t from step t+1, plus
// grad_y[t] if given) and dc (in: from step t+1; out: to c_{t-1}); dG (row stride 4H)
// receives the pre-activation gradients.
template <typename T, bool HasGradY, index_t FixedCols>
ADLK_ALWAYS_INLINE void lstm_step_backward_rows(
    index_t r0, index_t r1, index_t j0, index_t j1, index_t H, const T* gates,
    const T* c_prev, const T* c_cur, const T* grad_y, index_t ldgy, const T* dh, T* dc,
    T* dG) {
  const index_t nc = FixedCols ? FixedCols : j1 - j0;
  for (index_t r = r0; r < r1; ++r) {
    const T* __restrict gi = gates + r * 4 * H + j0;
    const T* __restrict gf = gi + H;
    const T* __restrict gg = gi + 2 * H;
    const T* __restrict go = gi + 3 * H;
    const T* __restrict cp = c_prev + r * H + j0;
    const T* __restrict cc = c_cur + r * H + j0;
    const T* __restrict gy = HasGradY ? grad_y + r * ldgy + j0 : nullptr;
    const T* __restrict dhr = dh + r * H + j0;
    T* __restrict dcr = dc + r * H + j0;
    T* __restrict di = dG + r * 4 * H + j0;
    T* __restrict df = di + H;
    T* __restrict dg = di + 2 * H;
    T* __restrict d_o = di + 3 * H;
#pragma omp simd
    for (index_t j = 0; j < nc; ++j)
      cell::lstm_step_grad(gi[j], gf[j], gg[j], go[j], cp[j], cc[j], HasGradY ? dhr[j] + gy[j] : dhr[j],
                           dcr[j], di[j], df[j], dg[j], d_o[j]);
  }
}

template <typename T, bool HasGradY>
ADLK_ALWAYS_INLINE void
lstm_step_backward_tile(index_t r0, index_t r1, index_t j0, index_t j1, index_t H, const T* gates,
                        const T* c_prev, const T* c_cur, const T* grad_y, index_t ldgy, const T* dh,
                        T* dc, T* dG) {
  if (j1 - j0 == kPackedPanel)  // the float chunk width (see lstm_step_tile)
    lstm_step_backward_rows<T, HasGradY, kPackedPanel>(r0, r1, j0, j1, H, gates, c_prev, c_cur,
                                                       grad_y, ldgy, dh, dc, dG);
  else
    lstm_step_backward_rows<T, HasGradY, 0>(r0, r1, j0, j1, H, gates, c_prev, c_cur, grad_y,
                                            ldgy, dh, dc, dG);
}

// GRU step on a tile: the input projections in gi_all (row stride 3H) become r, z, n.
// The recurrent projections of row r lie at gh + r * ldgh: unit j's r, z, n at [j],
// [gs + j], [2 * gs + j] (gs = H for the plain layout; the sequence packs a tile's gate
// columns together, see gru_forward). bias_i and bias_h (3H each; both or neither) are
// added to the two sides here when given. h (row stride ldh) is h_{t-1}; hn_out (row
// stride H) keeps W_hn h + b_hn; h_next has row stride ldo.
template <typename T>
ADLK_ALWAYS_INLINE void gru_step_tile(index_t r0, index_t r1, index_t j0, index_t j1,
                                      index_t H, const T* bias_i, const T* bias_h,
                                      T* gi_all, const T* gh, index_t ldgh, index_t gs,
                                      const T* h, index_t ldh, T* hn_out, T* h_next,
                                      index_t ldo) {
  for (index_t r = r0; r < r1; ++r) {
    T* __restrict gr = gi_all + r * 3 * H;
    T* __restrict gz = gr + H;
    T* __restrict gn = gr + 2 * H;
    const T* __restrict hr = gh + r * ldgh;
    const T* __restrict hz = hr + gs;
    const T* __restrict hnn = hr + 2 * gs;
    const T* __restrict hp = h + r * ldh;
    T* __restrict hno = hn_out + r * H;
    T* __restrict out = h_next + r * ldo;
    if (bias_i) {
      const T* __restrict bi = bias_i;
      const T* __restrict bh = bias_h;
#pragma omp simd
      for (index_t j = j0; j < j1; ++j) {
        const T hn = hnn[j] + bh[2 * H + j];
        hno[j] = hn;
        cell::gru_step(gr[j] + bi[j], gz[j] + bi[H + j], gn[j] + bi[2 * H + j], hr[j] + bh[j],
                       hz[j] + bh[H + j], hn, hp[j], gr[j], gz[j], gn[j], out[j]);
      }
    } else {
#pragma omp simd
      for (index_t j = j0; j < j1; ++j) {
        hno[j] = hnn[j];
        cell::gru_step(gr[j], gz[j], gn[j], hr[j], hz[j], hnn[j], hp[j], gr[j], gz[j], gn[j],
                       out[j]);
      }
    }
  }
}

template <typename T>
ADLK_ALWAYS_INLINE void
gru_backward_tile(index_t r0, index_t r1, index_t j0, index_t j1, index_t H, const T* gates,
                  const T* hn, const T* h, const T* grad_h_next, T* dgi_all, T* dgh_all,
                  T* grad_h) {
  for (index_t r = r0; r < r1; ++r) {
    const T* __restrict gr = gates + r * 3 * H;
    const T* __restrict gz = gr + H;
    const T* __restrict gn = gr + 2 * H;
    const T* __restrict hnr = hn + r * H;
    const T* __restrict hp = h + r * H;
    const T* __restrict dh = grad_h_next + r * H;
    T* __restrict dir = dgi_all + r * 3 * H;
    T* __restrict diz = dir + H;
    T* __restrict din = dir + 2 * H;
    T* __restrict dhr = dgh_all + r * 3 * H;
    T* __restrict dhz = dhr + H;
    T* __restrict dhn = dhr + 2 * H;
    T* __restrict gh = grad_h + r * H;
#pragma omp simd
    for (index_t j = j0; j < j1; ++j)
      cell::gru_step_grad(gr[j], gz[j], gn[j], hnr[j], hp[j], dh[j], dir[j], diz[j], din[j], dhr[j],
                          dhz[j], dhn[j], gh[j]);
  }
}

// BPTT step of a GRU sequence on a tile: d = dh (+ grad_y[t]) gives the input-side and
// recurrent-side pre-activation gradients (row stride 3H); dh (row stride H) is replaced
// by its direct part d * z (the caller adds the recurrent GEMM's part).
template <typename T, bool HasGradY>
ADLK_ALWAYS_INLINE void
gru_seq_backward_tile(index_t r0, index_t r1, index_t j0, index_t j1, index_t H, const T* gates,
                      const T* hn, const T* h, index_t ldh, const T* grad_y, index_t ldgy, T* dh,
                      T* dgi_all, T* dgh_all) {
  for (index_t r = r0; r < r1; ++r) {
    const T* __restrict gr = gates + r * 3 * H;
    const T* __restrict gz = gr + H;
    const T* __restrict gn = gr + 2 * H;
    const T* __restrict hnr = hn + r * H;
    const T* __restrict hp = h + r * ldh;
    const T* __restrict gy = HasGradY ? grad_y + r * ldgy : nullptr;
    T* __restrict d = dh + r * H;
    T* __restrict dir = dgi_all + r * 3 * H;
    T* __restrict diz = dir + H;
    T* __restrict din = dir + 2 * H;
    T* __restrict dhr = dgh_all + r * 3 * H;
    T* __restrict dhz = dhr + H;
    T* __restrict dhn = dhr + 2 * H;
#pragma omp simd
    for (index_t j = j0; j < j1; ++j)
      cell::gru_step_grad(gr[j], gz[j], gn[j], hnr[j], hp[j], HasGradY ? d[j] + gy[j] : d[j],
                          dir[j], diz[j], din[j], dhr[j], dhz[j], dhn[j], d[j]);
  }
}

// tanh or relu in place on a tile of a (row stride ld), after adding bias (H) where given.
template <typename T>
ADLK_ALWAYS_INLINE void rnn_act_tile(index_t r0, index_t r1, index_t j0, index_t j1,
                                     index_t ld, bool relu, const T* bias, T* a) {
  for (index_t r = r0; r < r1; ++r) {
    T* __restrict v = a + r * ld;
    if (bias) {
      const T* __restrict b = bias;
#pragma omp simd
      for (index_t j = j0; j < j1; ++j) v[j] += b[j];
    }
    if (relu) {
#pragma omp simd
      for (index_t j = j0; j < j1; ++j) v[j] = v[j] < T(0) ? T(0) : v[j];  // NaN stays NaN
    } else {
#pragma omp simd
      for (index_t j = j0; j < j1; ++j) v[j] = vm::tanh(v[j]);
    }
  }
}

// da = (dh + grad_y[t]) * act'(y) on a tile, act' from the output y (row stride ldy); relu's
// derivative is 0 at 0 (and for NaN), as PyTorch's threshold_backward.
template <typename T, bool HasGradY>
ADLK_ALWAYS_INLINE void
rnn_seq_backward_tile(index_t r0, index_t r1, index_t j0, index_t j1, index_t H, bool relu,
                      const T* y, index_t ldy, const T* grad_y, index_t ldgy, const T* dh, T* da) {
  for (index_t r = r0; r < r1; ++r) {
    const T* __restrict yr = y + r * ldy;
    const T* __restrict gy = HasGradY ? grad_y + r * ldgy : nullptr;
    const T* __restrict d = dh + r * H;
    T* __restrict a = da + r * H;
    if (relu) {
#pragma omp simd
      for (index_t j = j0; j < j1; ++j) {
        const T g = HasGradY ? d[j] + gy[j] : d[j];
        a[j] = yr[j] > T(0) ? g : T(0);
      }
    } else {
#pragma omp simd
      for (index_t j = j0; j < j1; ++j) {
        const T g = HasGradY ? d[j] + gy[j] : d[j];
        a[j] = g * (T(1) - yr[j] * yr[j]);
      }
    }
  }
}

template <typename T>
ADLK_MULTIVERSION void tanh_rows(index_t n_rows, index_t A, T* e, const T* q, index_t B,
                                 index_t r0, const T* v, T* scores, index_t T_) {
  // rows r = t*B + b of e (T*B, A): e = tanh(e + q[b]); score[b, t] = e . v
  for (index_t r = r0; r < r0 + n_rows; ++r) {
    const index_t t = r / B, b = r - t * B;
    T* __restrict er = e + r * A;
    const T* __restrict qb = q + b * A;
    T s = T(0);
#pragma omp simd reduction(+ : s)
    for (index_t a = 0; a < A; ++a) {
      const T ev = vm::tanh(er[a] + qb[a]);
      er[a] = ev;
      s += ev * v[a];
    }
    scores[b * T_ + t] = s;
  }
}

template <typename T>
struct Buffer {
  std::unique_ptr<T[]> p;
  explicit Buffer(index_t n) : p(new T[static_cast<std::size_t>(std::max<index_t>(n, 1))]) {}
  T* get() const { return p.get(); }
};

// Large work buffers of a backward pass: up to kRnnKeepBytes (adlk/tuning.h) they live in
// the calling thread's persistent scratch (slot 0); larger ones are allocated for the
// call and freed, so that the memory kept between calls stays bounded.
constexpr std::size_t kKeepBytes = kRnnKeepBytes;

template <typename T>
struct WorkBuffer {
  std::unique_ptr<T[]> owned;
  T* ptr = nullptr;
  explicit WorkBuffer(index_t n, int slot = 0) {
    const std::size_t count = static_cast<std::size_t>(std::max<index_t>(n, 1));
    if (count * sizeof(T) <= kKeepBytes) {
      ptr = thread_scratch_as<T>(slot, count);
    } else {
      owned.reset(new T[count]);
      ptr = owned.get();
    }
  }
  T* get() const { return ptr; }
};

// b_ih + b_hh (n each; either may be null) into buf, for the pointwise passes that add the
// biases; null when there is neither.
template <typename T>
const T* summed_bias(const T* b_ih, const T* b_hh, index_t n, Buffer<T>& buf) {
  if (!b_ih && !b_hh) return nullptr;
  fill_gate_bias<T>(1, n, {0, 1}, {0, n}, b_ih, b_hh, buf.get(), n);
  return buf.get();
}

// C (R, N) = A (R, K) @ W^T for float sequences' input projections, through the packed
// GEMM: the team packs W (N, K) into Wp (packed_weight_size(N, K)), then each thread takes
// an equal share of the rows in blocks of kSeqProjectionRows. Every element is one FMA
// chain, so the split leaves no trace in the bits; C needs no zeroing or bias pass first.
// Contains a barrier (between packing and use).
void input_projection_packed(int p, int np, index_t R, index_t N, index_t K, const float* A,
                             index_t lda, const float* W, float* Wp, float* C, index_t ldc) {
  pack_weight_part(p, np, N, K, W, K, false, Wp);
#pragma omp barrier
  const Span rows = split(R, np, p);
  for (index_t r = rows.begin; r < rows.end; r += kSeqProjectionRows)
    gemm_packed(std::min(kSeqProjectionRows, rows.end - r), N, K, A + r * lda, lda, Wp, false,
                C + r * ldc, ldc);
}

}  // namespace

// ---- geometry checks -----------------------------------------------------------------

void SeqGeom::check() const {
  adlk::check(T >= 0 && B >= 0 && I >= 1 && H >= 1, "sequence: need T, B >= 0 and I, H >= 1");
  adlk::check(ldx >= I && ldy >= H, "sequence: row strides must be at least the row length");
  const index_t rows = mul_checked(T, B, "T*B");
  mul_checked(rows, std::max(ldx, mul_checked(4, H, "4H")), "T*B*row");
  mul_checked(rows, ldy, "T*B*ldy");
  for (index_t v : {rows, 4 * H, I, H, ldx, ldy}) check_blas_dim(v, "sequence dimension");
}

void CellGeom::check() const {
  adlk::check(B >= 0 && I >= 1 && H >= 1, "cell: need B >= 0 and I, H >= 1");
  mul_checked(B, mul_checked(4, std::max(I, H), "4*row"), "B*row");
  for (index_t v : {B, 4 * H, I, H}) check_blas_dim(v, "cell dimension");
}

void AttentionGeom::check() const {
  adlk::check(B >= 0 && T >= 1 && Dq >= 1 && Dk >= 1 && A >= 1,
        "attention: need B >= 0 and T, Dq, Dk, A >= 1");
  const index_t rows = mul_checked(T, B, "T*B");
  mul_checked(rows, std::max(A, Dk), "T*B*row");
  for (index_t v : {rows, Dq, Dk, A}) check_blas_dim(v, "attention dimension");
}

namespace {

// Fixed partitions. OpenBLAS picks its kernels (small-matrix paths, edge tiles) by the
// shape of a call, so one product split in two places can differ in the last bits from
// the same product split elsewhere. The GRU and RNN sequences' BLAS GEMMs (float64, and
// the float64 LSTM backward's GEMMs over all steps) are therefore cut into pieces that
// depend on the sizes only (adlk/tuning.h, kSeq*); threads take the pieces (in turn, or
// claimed at run time), and every result is the same bits for any thread count. float32
// runs the packed-weight kernel, whose elements do not depend on any split.

// Time-loop tiles: (batch rows, hidden units) blocks of about kSeqTileRows x kSeqTileCols.
struct FixedTiles {
  index_t B, H;
  int nb, nh;
  FixedTiles(index_t B_, index_t H_)
      : B(B_),
        H(H_),
        nb(static_cast<int>(std::max<index_t>(1, (B_ + kSeqTileRows - 1) / kSeqTileRows))),
        nh(static_cast<int>(std::max<index_t>(1, H_ / kSeqTileCols))) {}
  int count() const { return nb * nh; }
  Span cols(int c) const { return split(H, nh, c, 16); }
  void tile(int i, Span& r, Span& c) const {
    r = split(B, nb, i / nh);
    c = cols(i % nh);
  }
};

inline int gemm_parts(index_t n) {
  return static_cast<int>(std::clamp<index_t>(n / kSeqGemmMinRows, 1, kSeqGemmParts));
}

// rows_gemm over fixed pieces of the R rows; bias_a/bias_b (either may be null) fill C's
// rows first as the GEMM's initial value (N = their length).
template <typename T>
void rows_gemm_fixed(int p, int np, index_t R, index_t N, index_t K, bool trans_b, const T* A,
                     index_t lda, const T* B, index_t ldb, const T* bias_a, const T* bias_b,
                     T* C, index_t ldc) {
  const int parts = gemm_parts(R);
  for (int q = p; q < parts; q += np) {
    const Span s = split(R, parts, q, 16);
    if (s.size() == 0) continue;
    const T beta = fill_gate_bias<T>(1, N, s, {0, N}, bias_a, bias_b, C, ldc);
    gemm<T>(false, trans_b, s.size(), N, K, T(1), A + s.begin * lda, lda, B, ldb, beta,
            C + s.begin * ldc, ldc);
  }
}

// h_n = h of the last step in running order (h0 when T == 0), rows split across the team.
template <typename T>
void copy_final(int p, int np, const SeqGeom& g, bool reverse, const T* h0, const T* y,
                T* h_n) {
  if (!h_n) return;
  const Span br = split(g.B, np, p);
  const index_t t_last = reverse ? 0 : g.T - 1;
  for (index_t b = br.begin; b < br.end; ++b) {
    const T* hs = g.T == 0 ? h0 + b * g.H : y + (t_last * g.B + b) * g.ldy;
    std::copy(hs, hs + g.H, h_n + b * g.H);
  }
}

// dh[tile] (+)= dG_t[tile rows, :] @ w_hh[:, tile cols] of a GRU or RNN backward step
// (w_hh (GH, H), GH = G*H). float: each column block of w_hh packed once per sequence as
// the (n, GH) operand of the packed-weight GEMM (adlk/packed_gemm.h); double: the BLAS.
template <typename T>
struct RecurrentGrad {
  static constexpr bool kPacked = std::is_same_v<T, float>;
  const FixedTiles& tiles;
  const T* w_hh;
  index_t GH;
  std::vector<index_t> off;
  WorkBuffer<float> panels;
  RecurrentGrad(const FixedTiles& t, const T* w, index_t gh)
      : tiles(t), w_hh(w), GH(gh), off(static_cast<std::size_t>(t.nh) + 1, 0),
        panels(kPacked ? block_offsets(t, gh, off) : 0, 1) {}
  static index_t block_offsets(const FixedTiles& t, index_t gh, std::vector<index_t>& off) {
    for (int cb = 0; cb < t.nh; ++cb)
      off[cb + 1] = off[cb] + packed_weight_size(t.cols(cb).size(), gh);
    return off.back();
  }
  // This thread's share of the packing (read after the next barrier).
  void pack(int p, int np) {
    if constexpr (kPacked)
      for (int cb = p; cb < tiles.nh; cb += np) {
        const Span c = tiles.cols(cb);
        pack_weight_transposed(c.size(), GH, w_hh + c.begin, tiles.H, panels.get() + off[cb]);
      }
  }
  void apply(int tile, const T* dG_t, bool accumulate, T* dh) const {
    Span tr, tc;
    tiles.tile(tile, tr, tc);
    const index_t H = tiles.H;
    if constexpr (kPacked)
      gemm_packed(tr.size(), tc.size(), GH, dG_t + tr.begin * GH, GH,
                  panels.get() + off[tile % tiles.nh], accumulate, dh + tr.begin * H + tc.begin,
                  H);
    else
      gemm<T>(false, false, tr.size(), tc.size(), GH, T(1), dG_t + tr.begin * GH, GH,
              w_hh + tc.begin, H, accumulate ? T(1) : T(0), dh + tr.begin * H + tc.begin, H);
  }
};

// The GEMMs over all steps that end a sequence's backward: grad_x = dGi @ w_ih,
// grad_w_ih = dGi^T @ x and grad_w_hh = sum over steps of dGh_t^T @ h_{t-1} (the first step
// in running order saw h0, every other one y of its predecessor); dGi, dGh (T*B, G) by
// position t, one array for the LSTM and RNN. The BLAS path (float64; float32 runs
// PackedSeqGrads): each GEMM is cut into pieces fixed by the sizes (gemm_parts), and the
// team claims the pieces of all three from one list at run time (an OpenMP dynamic loop,
// no barrier after): a piece's bits do not depend on the thread that runs it, and a core
// running slower holds up no one.
template <typename T>
void sequence_weight_grads(const SeqGeom& g, index_t G, const T* dGi, const T* dGh,
                           const T* x, const T* w_ih, const T* h0, const T* y, bool reverse,
                           T* grad_x, T* grad_w_ih, T* grad_w_hh) {
  const index_t Tn = g.T, B = g.B, I = g.I, H = g.H, R = Tn * B;
  const int n_hh = gemm_parts(G), n_ih = gemm_parts(G), n_x = gemm_parts(R);
  const index_t t_first = reverse ? Tn - 1 : 0;
#pragma omp for schedule(dynamic, 1) nowait
  for (int q = 0; q < n_hh + n_ih + n_x; ++q) {
    if (q < n_hh) {  // grad_w_hh rows of this piece: h0's step, then the rest added
      const Span s = split(G, n_hh, q, 16);
      if (s.size() == 0) continue;
      T* out = grad_w_hh + s.begin * H;
      const index_t k0 = Tn == 0 ? 0 : B;  // K = 0 zeroes the piece
      gemm<T>(true, false, s.size(), H, k0, T(1), dGh + t_first * B * G + s.begin, G, h0, H,
              T(0), out, H);
      if (Tn > 1)
        gemm<T>(true, false, s.size(), H, (Tn - 1) * B, T(1),
                dGh + (reverse ? 0 : B) * G + s.begin, G, y + (reverse ? B : 0) * g.ldy, g.ldy,
                T(1), out, H);
    } else if (q < n_hh + n_ih) {
      const Span s = split(G, n_ih, q - n_hh, 16);
      if (s.size() > 0)
        gemm<T>(true, false, s.size(), I, R, T(1), dGi + s.begin, G, x, g.ldx, T(0),
                grad_w_ih + s.begin * I, I);
    } else {
      const Span s = split(R, n_x, q - n_hh - n_ih, 16);
      if (s.size() > 0)
        gemm<T>(false, false, s.size(), I, G, T(1), dGi + s.begin * G, G, w_ih, I, T(0),
                grad_x + s.begin * I, I);
    }
  }
}

// float: the GEMMs of sequence_weight_grads on the packed-weight kernel. w_ih, x and the
// previous states (h0, then y) are packed once, as the panels of w_ih^T, x^T and h^T; a
// weight-gradient piece (dG's columns [g0, g0 + m)) is transposed once into the thread's
// buffer and serves both grad_w_ih and grad_w_hh; its bias gradients are summed while its
// rows pass through the transposition (against a separate pass over dG: -1.4% backward
// time on T=50, B=64, H=256). OpenBLAS, called per piece, packed dG twice and the shared
// operand again for every piece (on the T=50, B=64, H=256 LSTM its packing took 18% of the
// backward). Every element is one FMA chain in k order (grad_w_hh's over h0's step, then
// the others'), every bias gradient one sum in row order, so the pieces can go to any
// thread without changing a bit.
class PackedSeqGrads {
 public:
  // slot, slot + 1: thread scratch slots (WorkBuffer) the caller leaves free; nt: the
  // team size (a transposition buffer each).
  PackedSeqGrads(const SeqGeom& g, index_t G, bool reverse, int nt, int slot)
      : g_(g), G_(G), reverse_(reverse), k_first_(g.T == 0 ? 0 : g.B),
        k_rest_(g.T > 1 ? (g.T - 1) * g.B : 0), rows_(std::min(kWeightRows, G)),
        panels_(offsets(), slot),
        columns_(mul_checked(mul_checked(rows_, g.T * g.B, "dG piece"), nt, "dG pieces"),
                 slot + 1) {}

  // This thread's share of the packing (read after the next barrier).
  void pack(int p, int np, const float* x, const float* w_ih, const float* h0,
            const float* y) const {
    float* P = panels_.get();
    pack_weight_part(p, np, g_.I, G_, w_ih, g_.I, true, P + off_[0]);
    pack_weight_part(p, np, g_.I, g_.T * g_.B, x, g_.ldx, true, P + off_[1]);
    pack_weight_part(p, np, g_.H, k_first_, h0, g_.H, true, P + off_[2]);
    if (k_rest_ > 0)
      pack_weight_part(p, np, g_.H, k_rest_, y + (reverse_ ? g_.B : 0) * g_.ldy, g_.ldy, true,
                       P + off_[3]);
  }

  // grad_x, grad_w_ih (from dGi) and grad_w_hh (from dGh; dGi when null, its columns
  // transposed once for both), and the column sums of dGi and dGh into sum_i and sum_h (G
  // each; null: not computed; sum_h only with dGh), pieces claimed by the team p (an
  // OpenMP dynamic loop, no barrier after).
  void run(int p, const float* dGi, const float* dGh, float* grad_x, float* grad_w_ih,
           float* grad_w_hh, float* sum_i, float* sum_h) const {
    const float* P = panels_.get();
    const index_t R = g_.T * g_.B, G = G_, m_all = rows_;
    const index_t first = (reverse_ ? g_.T - 1 : 0) * g_.B, rest = reverse_ ? 0 : g_.B;
    float* cols = columns_.get() + p * m_all * R;  // (m, R): dG[:, g0:g0+m]^T
    const index_t n_w = ceil_div(G, m_all), n_x = ceil_div(R, kInputRows);
#pragma omp for schedule(dynamic, 1) nowait
    for (index_t q = 0; q < n_w + n_x; ++q) {
      if (q < n_w) {
        const index_t g0 = q * m_all, m = std::min(m_all, G - g0);
        transpose_columns(dGi, g0, m, cols, sum_i ? sum_i + g0 : nullptr);
        gemm_packed(m, g_.I, R, cols, R, P + off_[1], false, grad_w_ih + g0 * g_.I, g_.I);
        if (dGh) transpose_columns(dGh, g0, m, cols, sum_h ? sum_h + g0 : nullptr);
        gemm_packed2(m, g_.H, k_first_, cols + first, R, P + off_[2], k_rest_, cols + rest, R,
                     P + off_[3], false, grad_w_hh + g0 * g_.H, g_.H);
      } else {
        const index_t r0 = (q - n_w) * kInputRows, m = std::min(kInputRows, R - r0);
        gemm_packed(m, g_.I, G, dGi + r0 * G, G, P + off_[0], false, grad_x + r0 * g_.I,
                    g_.I);
      }
    }
  }

 private:
  // Columns of dG per weight-gradient piece and rows per grad_x piece. Work sizes only:
  // no bit depends on them.
  static constexpr index_t kWeightRows = 64, kInputRows = 256, kSumRows = 64;

  // out (m, R) = dG[:, g0:g0+m]^T, in blocks of kSumRows rows; sums (m values, or null)
  // = the columns' sums over the rows in order from 0 (the bits of column_sums), each
  // block's rows added while they are in L1.
  void transpose_columns(const float* dG, index_t g0, index_t m, float* out,
                         float* sums) const {
    const index_t R = g_.T * g_.B;
    if (!sums) return transpose(R, m, dG + g0, G_, out, R);
    std::fill(sums, sums + m, 0.0f);
    for (index_t r0 = 0; r0 < R; r0 += kSumRows) {
      const index_t nr = std::min(kSumRows, R - r0);
      transpose(nr, m, dG + r0 * G_ + g0, G_, out + r0, R);
      add_rows(nr, m, dG + r0 * G_ + g0, G_, sums);
    }
  }

  // Fills off_ (w_ih^T, x^T, h0^T, then y^T of all but the last step) and returns the
  // total.
  index_t offsets() {
    off_[1] = packed_weight_size(g_.I, G_);
    off_[2] = add_checked(off_[1], packed_weight_size(g_.I, g_.T * g_.B), "packed x");
    off_[3] = add_checked(off_[2], packed_weight_size(g_.H, k_first_), "packed h0");
    off_[4] = add_checked(off_[3], packed_weight_size(g_.H, k_rest_), "packed y");
    return off_[4];
  }

  SeqGeom g_;
  index_t G_;
  bool reverse_;
  index_t k_first_, k_rest_, rows_;
  index_t off_[5] = {};
  WorkBuffer<float> panels_, columns_;
};

}  // namespace

// ---- LSTM ------------------------------------------------------------------------------

template <typename T>
void lstm_forward(const SeqGeom& g, const T* x, const T* h0, const T* c0, const T* w_ih,
                  const T* w_hh, const T* b_ih, const T* b_hh, bool reverse, T* y, T* h_n,
                  T* c_n, T* gates, T* cells) {
  g.check();
  // No batch rows: every output is empty; skip the T steps (a barrier each).
  if (g.B == 0) return;
  const index_t Tn = g.T, B = g.B, I = g.I, H = g.H, G4 = 4 * H, R = Tn * B;
  // float: each gate's blocks of w_ih and w_hh packed into GEMM panels once for the whole
  // sequence (adlk/packed_gemm.h), and a step's gates computed from x_t and h_{t-1} in one
  // pass per tile (gemm_packed2): no input projection of all steps written first and read
  // back from memory later (-10% time on T=50, B=64, H=256). Tiles' columns start on panel
  // boundaries. double keeps the BLAS, the input projection of all steps first.
  constexpr bool use_packed_gemm = std::is_same_v<T, float>;
  const index_t hh_gate = use_packed_gemm ? packed_weight_size(H, H) : 0;
  const index_t ih_gate = use_packed_gemm ? packed_weight_size(H, I) : 0;
  WorkBuffer<float> panels(4 * (hh_gate + ih_gate), 1);
  float* p_hh = panels.get();
  float* p_ih = p_hh + 4 * hh_gate;
  // b_ih + b_hh, added in the step's pointwise pass (a bias written into every step's
  // gates before the input GEMM would cost a pass over all T*B*4H of them).
  Buffer<T> bias_buf(G4);
  const T* bias = summed_bias(b_ih, b_hh, G4, bias_buf);
  const int nt = get_num_threads();
  const index_t align = use_packed_gemm ? kPackedPanel : 16;
  StepChunks chunks(TileGrid(B, H, nt, align), nt, align);
  // float: a thread's pre-activations of kLstmStepRows rows of a chunk (4 gates of one
  // panel of units each).
  constexpr index_t kPreStride = 4 * kPackedPanel;
#pragma omp parallel num_threads(nt)
  {
    const int p = omp_get_thread_num(), np = omp_get_num_threads();
    // on the stack (32 KiB): no allocation, which could throw, inside the region
    alignas(64) float pre[use_packed_gemm ? kLstmStepRows * kPreStride : 1];
    if constexpr (use_packed_gemm) {
      for (int k = 0; k < 4; ++k) {
        pack_weight_part(p, np, H, I, w_ih + k * H * I, I, false, p_ih + k * ih_gate);
        pack_weight_part(p, np, H, H, w_hh + k * H * H, H, false, p_hh + k * hh_gate);
      }
    } else {  // input projection of every step at once
      const Span rows = split(R, np, p);
      if (rows.size() > 0)
        gemm<T>(false, true, rows.size(), G4, I, T(1), x + rows.begin * g.ldx, g.ldx, w_ih, I,
                T(0), gates + rows.begin * G4, G4);
    }
#pragma omp barrier
    for (index_t s = 0; s < Tn; ++s) {
      const index_t t = reverse ? Tn - 1 - s : s;
      const index_t tp = reverse ? t + 1 : t - 1;  // the step before, in running order
      const T* hp = s == 0 ? h0 : y + tp * B * g.ldy;
      const index_t ldh = s == 0 ? H : g.ldy;
      const T* cp = s == 0 ? c0 : cells + tp * B * H;
      T* gt = gates + t * B * G4;
      T* ct = cells + t * B * H;
      T* yt = y + t * B * g.ldy;
      chunks.run(p, s, [&](Span tr, Span tc) {
        const index_t j0 = tc.begin, nc = tc.size();
        const T* bias_j = bias ? bias + j0 : nullptr;
        if constexpr (use_packed_gemm) {
          // The chunk's pre-activations go to the thread's scratch, blocks of rows at a
          // time, and the step reads them from there: the gates of the cache are written
          // once, activated (-8% time on T=50, B=64, H=256 against computing them in the
          // cache and activating them in place).
          for (index_t r0 = tr.begin; r0 < tr.end; r0 += kLstmStepRows) {
            const index_t nr = std::min(kLstmStepRows, tr.end - r0);
            for (int k = 0; k < 4; ++k)
              gemm_packed2(nr, nc, I, x + (t * B + r0) * g.ldx, g.ldx,
                           p_ih + k * ih_gate + j0 * I, H, hp + r0 * ldh, ldh,
                           p_hh + k * hh_gate + j0 * H, false, pre + k * kPackedPanel,
                           kPreStride);
            gate_loop<&lstm_step_tile<T>>(nr, nc, H, pre, kPreStride, kPackedPanel, bias_j,
                                          gt + r0 * G4 + j0, G4, cp + r0 * H + j0, ct + r0 * H + j0,
                                          yt + r0 * g.ldy + j0, g.ldy);
          }
        } else {
          gate_gemm<T>(4, H, tr, tc, H, hp, ldh, w_hh, T(1), gt, G4);
          T* gtile = gt + tr.begin * G4 + j0;
          gate_loop<&lstm_step_tile<T>>(tr.size(), nc, H, gtile, G4, H, bias_j, gtile, G4,
                                        cp + tr.begin * H + j0, ct + tr.begin * H + j0,
                                        yt + tr.begin * g.ldy + j0, g.ldy);
        }
      });
    }
#pragma omp barrier
    const Span br = split(B, np, p);
    const index_t t_last = reverse ? 0 : Tn - 1;
    for (index_t b = br.begin; b < br.end; ++b) {
      const T* hs = Tn == 0 ? h0 + b * H : y + (t_last * B + b) * g.ldy;
      const T* cs = Tn == 0 ? c0 + b * H : cells + (t_last * B + b) * H;
      if (h_n) std::copy(hs, hs + H, h_n + b * H);
      if (c_n) std::copy(cs, cs + H, c_n + b * H);
    }
  }
}

template <typename T>
void lstm_backward(const SeqGeom& g, const T* grad_y, index_t ldgy, const T* grad_h_n,
                   const T* grad_c_n, const T* x, const T* h0, const T* c0, const T* w_ih,
                   const T* w_hh, const T* gates, const T* cells, const T* y, bool reverse,
                   T* grad_x, T* grad_h0, T* grad_c0, T* grad_w_ih, T* grad_w_hh, T* grad_b) {
  g.check();
  check(!grad_y || ldgy >= g.H, "lstm_backward: grad_y row stride must be >= H");
  check(g.T <= 1 || y != nullptr, "lstm_backward: y is needed when T > 1");
  check_blas_dim(ldgy, "lstm_backward: grad_y row stride");
  const index_t Tn = g.T, B = g.B, I = g.I, H = g.H, G4 = 4 * H, R = Tn * B;
  if (B == 0) {  // no batch rows: zero weight gradients, without the T-step loop
    std::fill(grad_w_ih, grad_w_ih + G4 * I, T(0));
    std::fill(grad_w_hh, grad_w_hh + G4 * H, T(0));
    if (grad_b) std::fill(grad_b, grad_b + G4, T(0));
    return;
  }
  WorkBuffer<T> dG_buf(mul_checked(R, G4, "T*B*4H"));  // gate gradients of every step
  T* dG = dG_buf.get();
  T* dh = grad_h0;  // the recurrent gradients live in the outputs
  T* dc = grad_c0;
  // float: w_hh packed once as the (H, 4H) operand W_hh^T of dh = dG_t @ W_hh.
  constexpr bool use_packed_gemm = std::is_same_v<T, float>;
  WorkBuffer<float> panels(use_packed_gemm ? packed_weight_size(H, G4) : 0, 1);
  std::optional<PackedSeqGrads> packed_grads;
  const int nt = get_num_threads();
  if constexpr (use_packed_gemm) packed_grads.emplace(g, G4, reverse, nt, 2);
  const index_t align = use_packed_gemm ? kPackedPanel : 16;
  const TileGrid grid(B, H, nt, align);
  // Chunks claimed at run time (StepChunks), which waits for the rows' chunks of the phase
  // before: phase 0 runs the first step's pointwise pass; phase s + 1 computes
  // dh = dG_t @ W_hh of step s on a chunk (dG_t of the chunk's rows, all units) and, on
  // the same chunk, the pointwise pass of step s + 1, which reads only that chunk's dh and
  // dc (against a separate phase for each of the two: -1.5% time on T=50, B=64, H=256).
  StepChunks chunks(grid, nt, align);
  // Step s counts in backward order: t = its position.
  auto step_position = [&](index_t s) { return reverse ? s : Tn - 1 - s; };
  auto pointwise = [&](index_t s, Span tr, Span tc) {
    const index_t t = step_position(s);
    const bool first = s == Tn - 1;  // the step that read h0, c0
    const T* cp = first ? c0 : cells + (reverse ? t + 1 : t - 1) * B * H;
    T* dGt = dG + t * B * G4;
    if (grad_y)
      gate_loop<&lstm_step_backward_tile<T, true>>(tr.begin, tr.end, tc.begin, tc.end, H,
                                                   gates + t * B * G4, cp, cells + t * B * H,
                                                   grad_y + t * B * ldgy, ldgy, dh, dc, dGt);
    else
      gate_loop<&lstm_step_backward_tile<T, false>>(tr.begin, tr.end, tc.begin, tc.end, H,
                                                    gates + t * B * G4, cp, cells + t * B * H,
                                                    nullptr, 0, dh, dc, dGt);
  };
#pragma omp parallel num_threads(nt)
  {
    const int p = omp_get_thread_num(), np = omp_get_num_threads();
    if constexpr (use_packed_gemm) {
      pack_weight_part(p, np, H, G4, w_hh, H, true, panels.get());
      packed_grads->pack(p, np, x, w_ih, h0, y);
    }
    for (int q = p; q < nt; q += np) {
      Span tr, tc;
      if (!grid.tile(q, tr, tc)) continue;
      for (index_t b = tr.begin; b < tr.end; ++b)
        for (index_t j = tc.begin; j < tc.end; ++j) {
          dh[b * H + j] = grad_h_n ? grad_h_n[b * H + j] : T(0);
          dc[b * H + j] = grad_c_n ? grad_c_n[b * H + j] : T(0);
        }
    }
#pragma omp barrier
    if (Tn > 0) chunks.run(p, 0, [&](Span tr, Span tc) { pointwise(0, tr, tc); });
    for (index_t s = 0; s < Tn; ++s) {
      const T* dGt = dG + step_position(s) * B * G4;
      chunks.run(p, s + 1, [&](Span tr, Span tc) {
        // dh[chunk] = dG_t[chunk rows, :] @ w_hh[:, chunk cols]
        if constexpr (use_packed_gemm)
          gemm_packed(tr.size(), tc.size(), G4, dGt + tr.begin * G4, G4,
                      panels.get() + tc.begin * G4, false, dh + tr.begin * H + tc.begin, H);
        else
          gemm<T>(false, false, tr.size(), tc.size(), G4, T(1), dGt + tr.begin * G4, G4,
                  w_hh + tc.begin, H, T(0), dh + tr.begin * H + tc.begin, H);
        if (s + 1 < Tn) pointwise(s + 1, tr, tc);
      });
    }
#pragma omp barrier
    // Weight gradients over all steps at once.
    if constexpr (use_packed_gemm) {
      packed_grads->run(p, dG, nullptr, grad_x, grad_w_ih, grad_w_hh, grad_b, nullptr);
    } else {
      sequence_weight_grads<T>(g, G4, dG, dG, x, w_ih, h0, y, reverse, grad_x, grad_w_ih,
                               grad_w_hh);
      if (grad_b) column_sums<T>(p, np, R, G4, dG, G4, grad_b);
    }
  }
}

// ---- GRU and RNN sequences --------------------------------------------------------------

template <typename T>
void gru_forward(const SeqGeom& g, const T* x, const T* h0, const T* w_ih, const T* w_hh,
                 const T* b_ih, const T* b_hh, bool reverse, T* y, T* h_n, T* gates, T* hn) {
  g.check();
  if (g.B == 0) return;  // every output is empty; skip the T steps (a barrier each)
  const index_t Tn = g.T, B = g.B, I = g.I, H = g.H, G3 = 3 * H, R = Tn * B;
  const FixedTiles tiles(B, H);
  // Each column block's rows of w_hh for its three gates are packed together (r, z, n
  // blocks of the block's width), so that a tile's recurrent projection is one GEMM per
  // step instead of three narrow ones. One block: w_hh as it is.
  const bool packed = tiles.nh > 1;
  Buffer<T> wp_buf(packed ? G3 * H : 0);
  Buffer<T> gh_buf(mul_checked(B, G3, "B*3H"));  // recurrent projections of a step, packed
  T *wp = wp_buf.get(), *gh = gh_buf.get();
  const T* W = packed ? wp : w_hh;
  // The biases are added in the step's pointwise pass (filling them into every step's
  // projections first costs a pass over memory); a missing one of the two reads zeros.
  const bool has_bias = b_ih || b_hh;
  Buffer<T> zero_bias(has_bias && !(b_ih && b_hh) ? G3 : 0);
  if (has_bias && !(b_ih && b_hh)) std::fill(zero_bias.get(), zero_bias.get() + G3, T(0));
  const T* bias_i = has_bias ? (b_ih ? b_ih : zero_bias.get()) : nullptr;
  const T* bias_h = has_bias ? (b_hh ? b_hh : zero_bias.get()) : nullptr;
  // float: each column block's 3n rows of W also packed into GEMM panels once for the
  // whole sequence (adlk/packed_gemm.h); double keeps the BLAS.
  constexpr bool use_packed_gemm = std::is_same_v<T, float>;
  std::vector<index_t> panel_off(static_cast<std::size_t>(tiles.nh) + 1, 0);
  for (int cb = 0; cb < tiles.nh; ++cb)
    panel_off[cb + 1] = panel_off[cb] + packed_weight_size(3 * tiles.cols(cb).size(), H);
  const index_t ih_off = panel_off.back();
  WorkBuffer<float> panels(use_packed_gemm ? ih_off + packed_weight_size(G3, I) : 0, 1);
  const int nt = get_num_threads();
#pragma omp parallel num_threads(nt)
  {
    const int p = omp_get_thread_num(), np = omp_get_num_threads();
    // Input projection of every step at once.
    if constexpr (use_packed_gemm)
      input_projection_packed(p, np, R, G3, I, x, g.ldx, w_ih, panels.get() + ih_off, gates,
                              G3);
    else
      rows_gemm_fixed<T>(p, np, R, G3, I, true, x, g.ldx, w_ih, I, nullptr, nullptr, gates, G3);
    if (packed)
      for (int cb = p; cb < tiles.nh; cb += np) {
        const Span c = tiles.cols(cb);
        for (int k = 0; k < 3; ++k)
          std::copy(w_hh + (k * H + c.begin) * H, w_hh + (k * H + c.end) * H,
                    wp + (3 * c.begin + k * c.size()) * H);
      }
    if constexpr (use_packed_gemm)
      for (int cb = p; cb < tiles.nh; cb += np) {
        const Span c = tiles.cols(cb);
        pack_weight(3 * c.size(), H, W + 3 * c.begin * H, H, panels.get() + panel_off[cb]);
      }
#pragma omp barrier
    for (index_t s = 0; s < Tn; ++s) {
      const index_t t = reverse ? Tn - 1 - s : s;
      const index_t tp = reverse ? t + 1 : t - 1;  // the step before, in running order
      const T* hp = s == 0 ? h0 : y + tp * B * g.ldy;
      const index_t ldh = s == 0 ? H : g.ldy;
      for (int i = p; i < tiles.count(); i += np) {
        Span tr, tc;
        tiles.tile(i, tr, tc);
        const index_t c0 = tc.begin, n = tc.size();
        // the tile's r, z, n columns: gh[row, 3*c0 .. 3*(c0 + n)), one GEMM
        if constexpr (use_packed_gemm)
          gemm_packed(tr.size(), 3 * n, H, hp + tr.begin * ldh, ldh,
                      panels.get() + panel_off[i % tiles.nh], false,
                      gh + tr.begin * G3 + 3 * c0, G3);
        else
          gemm<T>(false, true, tr.size(), 3 * n, H, T(1), hp + tr.begin * ldh, ldh,
                  W + 3 * c0 * H, H, T(0), gh + tr.begin * G3 + 3 * c0, G3);
        gate_loop<&gru_step_tile<T>>(tr.begin, tr.end, tc.begin, tc.end, H, bias_i, bias_h,
                                     gates + t * B * G3, gh + 2 * c0, G3, n, hp, ldh,
                                     hn + t * B * H, y + t * B * g.ldy, g.ldy);
      }
#pragma omp barrier
    }
    copy_final(p, np, g, reverse, h0, y, h_n);
  }
}

template <typename T>
void gru_backward(const SeqGeom& g, const T* grad_y, index_t ldgy, const T* grad_h_n,
                  const T* x, const T* h0, const T* w_ih, const T* w_hh, const T* gates,
                  const T* hn, const T* y, bool reverse, T* grad_x, T* grad_h0, T* grad_w_ih,
                  T* grad_w_hh, T* grad_b_ih, T* grad_b_hh) {
  g.check();
  check(!grad_y || ldgy >= g.H, "gru_backward: grad_y row stride must be >= H");
  check(g.T <= 1 || y != nullptr, "gru_backward: y is needed when T > 1");
  check_blas_dim(ldgy, "gru_backward: grad_y row stride");
  const index_t Tn = g.T, B = g.B, I = g.I, H = g.H, G3 = 3 * H, R = Tn * B;
  if (B == 0) {  // no batch rows: zero weight gradients, without the T-step loop
    std::fill(grad_w_ih, grad_w_ih + G3 * I, T(0));
    std::fill(grad_w_hh, grad_w_hh + G3 * H, T(0));
    if (grad_b_ih) std::fill(grad_b_ih, grad_b_ih + G3, T(0));
    if (grad_b_hh) std::fill(grad_b_hh, grad_b_hh + G3, T(0));
    return;
  }
  // Pre-activation gradients of every step, input side then recurrent side (they differ
  // in the n block: the recurrent one is scaled by r).
  WorkBuffer<T> dG_buf(mul_checked(R, mul_checked(6, H, "6H"), "T*B*6H"));
  T* dGi = dG_buf.get();
  T* dGh = dGi + R * G3;
  T* dh = grad_h0;  // the recurrent gradient lives in the output
  const FixedTiles tiles(B, H);
  RecurrentGrad<T> rgrad(tiles, w_hh, G3);
  const int nt = get_num_threads();
  std::optional<PackedSeqGrads> packed_grads;  // float: the GEMMs over all steps
  if constexpr (std::is_same_v<T, float>) packed_grads.emplace(g, G3, reverse, nt, 2);
#pragma omp parallel num_threads(nt)
  {
    const int p = omp_get_thread_num(), np = omp_get_num_threads();
    rgrad.pack(p, np);  // first read after the first step's barrier
    if constexpr (std::is_same_v<T, float>) packed_grads->pack(p, np, x, w_ih, h0, y);
    // A thread keeps its tiles through the loop: it alone reads and writes their dh.
    for (int i = p; i < tiles.count(); i += np) {
      Span tr, tc;
      tiles.tile(i, tr, tc);
      for (index_t b = tr.begin; b < tr.end; ++b)
        for (index_t j = tc.begin; j < tc.end; ++j)
          dh[b * H + j] = grad_h_n ? grad_h_n[b * H + j] : T(0);
    }
    for (index_t s = 0; s < Tn; ++s) {
      const index_t t = reverse ? s : Tn - 1 - s;  // forward order, reversed
      const bool first = s == Tn - 1;               // the step that read h0
      const T* hp = first ? h0 : y + (reverse ? t + 1 : t - 1) * B * g.ldy;
      const index_t ldh = first ? H : g.ldy;
      T* dgi_t = dGi + t * B * G3;
      T* dgh_t = dGh + t * B * G3;
      for (int i = p; i < tiles.count(); i += np) {
        Span tr, tc;
        tiles.tile(i, tr, tc);
        if (grad_y)
          gate_loop<&gru_seq_backward_tile<T, true>>(tr.begin, tr.end, tc.begin, tc.end, H,
                                                     gates + t * B * G3, hn + t * B * H, hp, ldh,
                                                     grad_y + t * B * ldgy, ldgy, dh, dgi_t, dgh_t);
        else
          gate_loop<&gru_seq_backward_tile<T, false>>(tr.begin, tr.end, tc.begin, tc.end, H,
                                                      gates + t * B * G3, hn + t * B * H, hp, ldh,
                                                      nullptr, 0, dh, dgi_t, dgh_t);
      }
#pragma omp barrier
      // dh[tile] += dGh_t[tile rows, :] @ w_hh[:, tile cols] (onto the direct part d * z)
      for (int i = p; i < tiles.count(); i += np) rgrad.apply(i, dgh_t, true, dh);
    }
#pragma omp barrier
    // Weight gradients over all steps at once.
    if constexpr (std::is_same_v<T, float>) {
      packed_grads->run(p, dGi, dGh, grad_x, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh);
    } else {
      sequence_weight_grads<T>(g, G3, dGi, dGh, x, w_ih, h0, y, reverse, grad_x, grad_w_ih,
                               grad_w_hh);
      if (grad_b_ih) column_sums<T>(p, np, R, G3, dGi, G3, grad_b_ih);
      if (grad_b_hh) column_sums<T>(p, np, R, G3, dGh, G3, grad_b_hh);
    }
  }
}

template <typename T>
void rnn_forward(const SeqGeom& g, const T* x, const T* h0, const T* w_ih, const T* w_hh,
                 const T* b_ih, const T* b_hh, bool relu, bool reverse, T* y, T* h_n) {
  g.check();
  if (g.B == 0) return;
  const index_t Tn = g.T, B = g.B, I = g.I, H = g.H, R = Tn * B;
  const FixedTiles tiles(B, H);
  // float: each column block's rows of w_hh packed once for the sequence (as gru_forward)
  constexpr bool use_packed_gemm = std::is_same_v<T, float>;
  std::vector<index_t> panel_off(static_cast<std::size_t>(tiles.nh) + 1, 0);
  for (int cb = 0; cb < tiles.nh; ++cb)
    panel_off[cb + 1] = panel_off[cb] + packed_weight_size(tiles.cols(cb).size(), H);
  const index_t ih_off = panel_off.back();
  WorkBuffer<float> panels(use_packed_gemm ? ih_off + packed_weight_size(H, I) : 0, 1);
  // b_ih + b_hh, added in the step's pointwise pass.
  Buffer<T> bias_buf(H);
  const T* bias = summed_bias(b_ih, b_hh, H, bias_buf);
  const int nt = get_num_threads();
#pragma omp parallel num_threads(nt)
  {
    const int p = omp_get_thread_num(), np = omp_get_num_threads();
    // Input projection of every step at once, straight into y.
    if constexpr (use_packed_gemm)
      input_projection_packed(p, np, R, H, I, x, g.ldx, w_ih, panels.get() + ih_off, y, g.ldy);
    else
      rows_gemm_fixed<T>(p, np, R, H, I, true, x, g.ldx, w_ih, I, nullptr, nullptr, y, g.ldy);
    if constexpr (use_packed_gemm)
      for (int cb = p; cb < tiles.nh; cb += np) {
        const Span c = tiles.cols(cb);
        pack_weight(c.size(), H, w_hh + c.begin * H, H, panels.get() + panel_off[cb]);
      }
#pragma omp barrier
    for (index_t s = 0; s < Tn; ++s) {
      const index_t t = reverse ? Tn - 1 - s : s;
      const index_t tp = reverse ? t + 1 : t - 1;
      const T* hp = s == 0 ? h0 : y + tp * B * g.ldy;
      T* yt = y + t * B * g.ldy;
      for (int i = p; i < tiles.count(); i += np) {
        Span tr, tc;
        tiles.tile(i, tr, tc);
        const index_t ldh = s == 0 ? H : g.ldy;
        if constexpr (use_packed_gemm)
          gemm_packed(tr.size(), tc.size(), H, hp + tr.begin * ldh, ldh,
                      panels.get() + panel_off[i % tiles.nh], true,
                      yt + tr.begin * g.ldy + tc.begin, g.ldy);
        else
          gate_gemm<T>(1, H, tr, tc, H, hp, ldh, w_hh, T(1), yt, g.ldy);
        gate_loop<&rnn_act_tile<T>>(tr.begin, tr.end, tc.begin, tc.end, g.ldy, relu, bias, yt);
      }
#pragma omp barrier
    }
    copy_final(p, np, g, reverse, h0, y, h_n);
  }
}

template <typename T>
void rnn_backward(const SeqGeom& g, const T* grad_y, index_t ldgy, const T* grad_h_n,
                  const T* x, const T* h0, const T* w_ih, const T* w_hh, const T* y, bool relu,
                  bool reverse, T* grad_x, T* grad_h0, T* grad_w_ih, T* grad_w_hh, T* grad_b) {
  g.check();
  check(!grad_y || ldgy >= g.H, "rnn_backward: grad_y row stride must be >= H");
  check(g.T == 0 || y != nullptr, "rnn_backward: y is needed when T > 0");
  check_blas_dim(ldgy, "rnn_backward: grad_y row stride");
  const index_t Tn = g.T, B = g.B, I = g.I, H = g.H, R = Tn * B;
  if (B == 0) {
    std::fill(grad_w_ih, grad_w_ih + H * I, T(0));
    std::fill(grad_w_hh, grad_w_hh + H * H, T(0));
    if (grad_b) std::fill(grad_b, grad_b + H, T(0));
    return;
  }
  WorkBuffer<T> da_buf(mul_checked(R, H, "T*B*H"));  // pre-activation gradients
  T* dA = da_buf.get();
  T* dh = grad_h0;
  const FixedTiles tiles(B, H);
  RecurrentGrad<T> rgrad(tiles, w_hh, H);
  const int nt = get_num_threads();
  std::optional<PackedSeqGrads> packed_grads;  // float: the GEMMs over all steps
  if constexpr (std::is_same_v<T, float>) packed_grads.emplace(g, H, reverse, nt, 2);
#pragma omp parallel num_threads(nt)
  {
    const int p = omp_get_thread_num(), np = omp_get_num_threads();
    rgrad.pack(p, np);  // first read after the first step's barrier
    if constexpr (std::is_same_v<T, float>) packed_grads->pack(p, np, x, w_ih, h0, y);
    for (int i = p; i < tiles.count(); i += np) {
      Span tr, tc;
      tiles.tile(i, tr, tc);
      for (index_t b = tr.begin; b < tr.end; ++b)
        for (index_t j = tc.begin; j < tc.end; ++j)
          dh[b * H + j] = grad_h_n ? grad_h_n[b * H + j] : T(0);
    }
    for (index_t s = 0; s < Tn; ++s) {
      const index_t t = reverse ? s : Tn - 1 - s;
      T* da_t = dA + t * B * H;
      for (int i = p; i < tiles.count(); i += np) {
        Span tr, tc;
        tiles.tile(i, tr, tc);
        if (grad_y)
          gate_loop<&rnn_seq_backward_tile<T, true>>(tr.begin, tr.end, tc.begin, tc.end, H, relu,
                                                     y + t * B * g.ldy, g.ldy,
                                                     grad_y + t * B * ldgy, ldgy, dh, da_t);
        else
          gate_loop<&rnn_seq_backward_tile<T, false>>(tr.begin, tr.end, tc.begin, tc.end, H, relu,
                                                      y + t * B * g.ldy, g.ldy, nullptr, 0, dh,
                                                      da_t);
      }
#pragma omp barrier
      for (int i = p; i < tiles.count(); i += np) rgrad.apply(i, da_t, false, dh);
    }
#pragma omp barrier
    if constexpr (std::is_same_v<T, float>) {
      packed_grads->run(p, dA, nullptr, grad_x, grad_w_ih, grad_w_hh, grad_b, nullptr);
    } else {
      sequence_weight_grads<T>(g, H, dA, dA, x, w_ih, h0, y, reverse, grad_x, grad_w_ih,
                               grad_w_hh);
      if (grad_b) column_sums<T>(p, np, R, H, dA, H, grad_b);
    }
  }
}

// ---- GRU and RNN cells -----------------------------------------------------------------

template <typename T>
void gru_cell_forward(const CellGeom& g, const T* x, const T* h, const T* w_ih, const T* w_hh,
                      const T* b_ih, const T* b_hh, T* h_next, T* gates, T* hn) {
  g.check();
  const index_t B = g.B, I = g.I, H = g.H, G3 = 3 * H;
  Buffer<T> gh_buf(B * G3);
  T* gh = gh_buf.get();
  const int nt = get_num_threads();
#pragma omp parallel num_threads(nt)
  {
    const int np = omp_get_num_threads();
    const TileGrid grid(B, H, np);
    Span tr, tc;
    if (grid.tile(omp_get_thread_num(), tr, tc)) {
      const T beta_i = fill_gate_bias<T>(3, H, tr, tc, b_ih, nullptr, gates, G3);
      gate_gemm<T>(3, H, tr, tc, I, x, I, w_ih, beta_i, gates, G3);
      const T beta_h = fill_gate_bias<T>(3, H, tr, tc, b_hh, nullptr, gh, G3);
      gate_gemm<T>(3, H, tr, tc, H, h, H, w_hh, beta_h, gh, G3);
      gate_loop<&gru_step_tile<T>>(tr.begin, tr.end, tc.begin, tc.end, H, nullptr, nullptr, gates,
                                   gh, G3, H, h, H, hn, h_next, H);
    }
  }
}

template <typename T>
void gru_cell_backward(const CellGeom& g, const T* grad_h_next, const T* x, const T* h,
                       const T* w_ih, const T* w_hh, const T* gates, const T* hn, T* grad_x,
                       T* grad_h, T* grad_w_ih, T* grad_w_hh, T* grad_b_ih, T* grad_b_hh) {
  g.check();
  const index_t B = g.B, I = g.I, H = g.H, G3 = 3 * H;
  Buffer<T> dgi_buf(B * G3), dgh_buf(B * G3);
  T *dgi = dgi_buf.get(), *dgh = dgh_buf.get();
  const int nt = get_num_threads();
#pragma omp parallel num_threads(nt)
  {
    const int p = omp_get_thread_num(), np = omp_get_num_threads();
    const TileGrid grid(B, H, np);
    Span tr, tc;
    if (grid.tile(p, tr, tc))
      gate_loop<&gru_backward_tile<T>>(tr.begin, tr.end, tc.begin, tc.end, H, gates, hn, h,
                                       grad_h_next, dgi, dgh, grad_h);
#pragma omp barrier
    rows_gemm<T>(p, np, B, I, G3, dgi, G3, w_ih, I, T(0), grad_x, I);
    rows_gemm<T>(p, np, B, H, G3, dgh, G3, w_hh, H, T(1), grad_h, H);
    wgrad_gemm<T>(p, np, G3, I, B, dgi, G3, x, I, T(0), grad_w_ih);
    wgrad_gemm<T>(p, np, G3, H, B, dgh, G3, h, H, T(0), grad_w_hh);
    if (grad_b_ih) column_sums<T>(p, np, B, G3, dgi, G3, grad_b_ih);
    if (grad_b_hh) column_sums<T>(p, np, B, G3, dgh, G3, grad_b_hh);
  }
}

template <typename T>
void rnn_cell_forward(const CellGeom& g, const T* x, const T* h, const T* w_ih, const T* w_hh,
                      const T* b_ih, const T* b_hh, bool relu, T* h_next) {
  g.check();
  const index_t B = g.B, I = g.I, H = g.H;
  const int nt = get_num_threads();
#pragma omp parallel num_threads(nt)
  {
    const TileGrid grid(B, H, omp_get_num_threads());
    Span tr, tc;
    if (grid.tile(omp_get_thread_num(), tr, tc)) {
      const T beta = fill_gate_bias<T>(1, H, tr, tc, b_ih, b_hh, h_next, H);
      gate_gemm<T>(1, H, tr, tc, I, x, I, w_ih, beta, h_next, H);
      gate_gemm<T>(1, H, tr, tc, H, h, H, w_hh, T(1), h_next, H);
      gate_loop<&rnn_act_tile<T>>(tr.begin, tr.end, tc.begin, tc.end, H, relu, nullptr, h_next);
    }
  }
}

template <typename T>
void rnn_cell_backward(const CellGeom& g, const T* grad_h_next, const T* x, const T* h,
                       const T* w_ih, const T* w_hh, const T* h_next, bool relu, T* grad_x,
                       T* grad_h, T* grad_w_ih, T* grad_w_hh, T* grad_b) {
  g.check();
  const index_t B = g.B, I = g.I, H = g.H;
  Buffer<T> da_buf(B * H);
  T* da = da_buf.get();
  const int nt = get_num_threads();
#pragma omp parallel num_threads(nt)
  {
    const int p = omp_get_thread_num(), np = omp_get_num_threads();
    const Span rows = split(B * H, np, p);
    for (index_t k = rows.begin; k < rows.end; ++k) {
      const T y = h_next[k];
      // relu: derivative 0 at 0 (and for NaN), as PyTorch's threshold_backward
      da[k] = relu ? (y > T(0) ? grad_h_next[k] : T(0)) : grad_h_next[k] * (T(1) - y * y);
    }
#pragma omp barrier
    rows_gemm<T>(p, np, B, I, H, da, H, w_ih, I, T(0), grad_x, I);
    rows_gemm<T>(p, np, B, H, H, da, H, w_hh, H, T(0), grad_h, H);
    wgrad_gemm<T>(p, np, H, I, B, da, H, x, I, T(0), grad_w_ih);
    wgrad_gemm<T>(p, np, H, H, B, da, H, h, H, T(0), grad_w_hh);
    if (grad_b) column_sums<T>(p, np, B, H, da, H, grad_b);
  }
}

// ---- additive attention ------------------------------------------------------------------

template <typename T>
void additive_attention_forward(const AttentionGeom& g, const T* query, const T* keys,
                                const T* w_query, const T* w_key, const T* v,
                                const std::uint8_t* mask, T* context, T* weights, T* tanh_act) {
  g.check();
  const index_t B = g.B, Tn = g.T, Dq = g.Dq, Dk = g.Dk, A = g.A, R = Tn * B;
  if (mask)
    for (index_t b = 0; b < B; ++b)
      check(std::any_of(mask + b * Tn, mask + (b + 1) * Tn, [](std::uint8_t m) { return m != 0; }),
            "additive_attention_forward: a mask row has no True entry");
  Buffer<T> qp_buf(B * A);
  T* qp = qp_buf.get();
  const int nt = get_num_threads();
#pragma omp parallel num_threads(nt)
  {
    const int p = omp_get_thread_num(), np = omp_get_num_threads();
    const Span bs = split(B, np, p), rs = split(R, np, p);
    if (bs.size() > 0)
      gemm<T>(false, true, bs.size(), A, Dq, T(1), query + bs.begin * Dq, Dq, w_query, Dq, T(0),
              qp + bs.begin * A, A);
    if (rs.size() > 0)
      gemm<T>(false, true, rs.size(), A, Dk, T(1), keys + rs.begin * Dk, Dk, w_key, Dk, T(0),
              tanh_act + rs.begin * A, A);
#pragma omp barrier
    tanh_rows<T>(rs.size(), A, tanh_act, qp, B, rs.begin, v, weights, Tn);
#pragma omp barrier
    for (index_t b = bs.begin; b < bs.end; ++b) {
      T* w = weights + b * Tn;
      const std::uint8_t* m = mask ? mask + b * Tn : nullptr;
      T top = -std::numeric_limits<T>::infinity();
      for (index_t t = 0; t < Tn; ++t)
        if (!m || m[t]) top = std::max(top, w[t]);
      T sum = T(0);
      for (index_t t = 0; t < Tn; ++t) {
        w[t] = (!m || m[t]) ? std::exp(w[t] - top) : T(0);
        sum += w[t];
      }
      const T inv = T(1) / sum;
      T* ctx = context + b * Dk;
      std::fill(ctx, ctx + Dk, T(0));
      for (index_t t = 0; t < Tn; ++t) {
        w[t] *= inv;
        if (m && !m[t]) continue;
        const T wt = w[t];
        const T* k = keys + (t * B + b) * Dk;
#pragma omp simd
        for (index_t d = 0; d < Dk; ++d) ctx[d] += wt * k[d];
      }
    }
  }
}

template <typename T>
void additive_attention_backward(const AttentionGeom& g, const T* grad_context,
                                 const T* grad_weights, const T* query, const T* keys,
                                 const T* w_query, const T* w_key, const T* v,
                                 const T* tanh_act, const T* weights, T* grad_query,
                                 T* grad_keys, T* grad_w_query, T* grad_w_key, T* grad_v) {
  g.check();
  const index_t B = g.B, Tn = g.T, Dq = g.Dq, Dk = g.Dk, A = g.A, R = Tn * B;
  if (B == 0) {  // no batch rows: zero weight gradients, without loops over T
    std::fill(grad_w_query, grad_w_query + A * Dq, T(0));
    std::fill(grad_w_key, grad_w_key + A * Dk, T(0));
    std::fill(grad_v, grad_v + A, T(0));
    return;
  }
  Buffer<T> dscore_buf(B * Tn), dqp_buf(B * A);
  T *dscore = dscore_buf.get(), *dqp = dqp_buf.get();
  WorkBuffer<T> da_buf(R * A);  // (T, B, A)
  T* da = da_buf.get();
  const int nt = get_num_threads();
#pragma omp parallel num_threads(nt)
  {
    const int p = omp_get_thread_num(), np = omp_get_num_threads();
    const Span bs = split(B, np, p), rs = split(R, np, p), as = split(A, np, p);
    // Softmax backward per batch row; positions of weight 0 (masked) take no part.
    for (index_t b = bs.begin; b < bs.end; ++b) {
      const T* w = weights + b * Tn;
      const T* gc = grad_context + b * Dk;
      T* ds = dscore + b * Tn;
      T dot_sum = T(0);
      for (index_t t = 0; t < Tn; ++t) {
        T* gk = grad_keys + (t * B + b) * Dk;
        if (w[t] == T(0)) {
          ds[t] = T(0);
          std::fill(gk, gk + Dk, T(0));
          continue;
        }
        const T* k = keys + (t * B + b) * Dk;
        T dw = grad_weights ? grad_weights[b * Tn + t] : T(0);
        for (index_t d = 0; d < Dk; ++d) dw += gc[d] * k[d];
        ds[t] = dw;
        dot_sum += w[t] * dw;
        const T wt = w[t];
#pragma omp simd
        for (index_t d = 0; d < Dk; ++d) gk[d] = wt * gc[d];
      }
      for (index_t t = 0; t < Tn; ++t) ds[t] = w[t] == T(0) ? T(0) : w[t] * (ds[t] - dot_sum);
    }
#pragma omp barrier
    for (index_t r = rs.begin; r < rs.end; ++r) {
      const index_t t = r / B, b = r - t * B;
      const T s = dscore[b * Tn + t];
      const T* e = tanh_act + r * A;
      T* d = da + r * A;
#pragma omp simd
      for (index_t a = 0; a < A; ++a) d[a] = s * v[a] * (T(1) - e[a] * e[a]);
    }
#pragma omp barrier
    if (rs.size() > 0)
      gemm<T>(false, false, rs.size(), Dk, A, T(1), da + rs.begin * A, A, w_key, Dk, T(1),
              grad_keys + rs.begin * Dk, Dk);
    wgrad_gemm<T>(p, np, A, Dk, R, da, A, keys, Dk, T(0), grad_w_key);
    if (as.size() > 0) {
      // grad_v[a] = sum over (t, b) in order of dscore * tanh_act
      T* gv = grad_v + as.begin;
      std::fill(gv, gv + as.size(), T(0));
      for (index_t t = 0; t < Tn; ++t)
        for (index_t b = 0; b < B; ++b) {
          const T s = dscore[b * Tn + t];
          const T* e = tanh_act + (t * B + b) * A + as.begin;
#pragma omp simd
          for (index_t a = 0; a < as.size(); ++a) gv[a] += s * e[a];
        }
    }
    for (index_t b = bs.begin; b < bs.end; ++b) {
      T* dq = dqp + b * A;
      std::fill(dq, dq + A, T(0));
      for (index_t t = 0; t < Tn; ++t) {
        const T* d = da + (t * B + b) * A;
#pragma omp simd
        for (index_t a = 0; a < A; ++a) dq[a] += d[a];
      }
    }
#pragma omp barrier
    if (bs.size() > 0)
      gemm<T>(false, false, bs.size(), Dq, A, T(1), dqp + bs.begin * A, A, w_query, Dq, T(0),
              grad_query + bs.begin * Dq, Dq);
    wgrad_gemm<T>(p, np, A, Dq, B, dqp, A, query, Dq, T(0), grad_w_query);
  }
}

// ---- instantiations ----------------------------------------------------------------------

#define ADLK_INSTANTIATE_RNN(T)                     \
  ADLK_INSTANTIATE(lstm_forward, T)                 \
  ADLK_INSTANTIATE(lstm_backward, T)                \
  ADLK_INSTANTIATE(gru_forward, T)                  \
  ADLK_INSTANTIATE(gru_backward, T)                 \
  ADLK_INSTANTIATE(rnn_forward, T)                  \
  ADLK_INSTANTIATE(rnn_backward, T)                 \
  ADLK_INSTANTIATE(gru_cell_forward, T)             \
  ADLK_INSTANTIATE(gru_cell_backward, T)            \
  ADLK_INSTANTIATE(rnn_cell_forward, T)             \
  ADLK_INSTANTIATE(rnn_cell_backward, T)            \
  ADLK_INSTANTIATE(additive_attention_forward, T)   \
  ADLK_INSTANTIATE(additive_attention_backward, T)

ADLK_INSTANTIATE_RNN(float)
ADLK_INSTANTIATE_RNN(double)

}  // namespace adlk
