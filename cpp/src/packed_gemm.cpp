#include "adlk/packed_gemm.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define ADLK_PACKED_X86 1
#endif

namespace adlk {

namespace {

constexpr index_t NR = kPackedPanel, NH = kPackedHalf;

// How many columns of a panel starting at column n0 exist.
inline int panel_cols(index_t N, index_t n0) { return static_cast<int>(std::min(NR, N - n0)); }

// ---- operands -----------------------------------------------------------------------------

// Floats between rows k and k + 1 of a packed panel's half: NH where the kernel in use
// keeps each half as a block (the AVX2 one), NR where the halves interleave. And from a
// row's first half to its second in a panel packed kp deep.
index_t row_stride();
inline index_t half_offset(index_t kp) { return row_stride() == NH ? kp * NH : NH; }

// One product of a sum C = A1 @ W1^T (+ A2 @ W2^T): A (rows, row stride lda), W's packed
// panels (layout: packed_gemm.h; kp: the depth they were packed with, K or more when the
// product reads a part of them), depth K (0: no such product). The kernels run an
// element's chain over the first product's k, then the second's. `rows` (one panel read
// in place, N <= NR): row k of the panel is the NR consecutive floats at Wp + rows[k].
// `arows` (first product only): row i of A is the K floats at A + arows[i] instead of A +
// i * lda. `taps` (with arows, first product only; one packed panel read at gathered
// rows): pairs (a_k, w_k), element k of row i is A[arows[i] + a_k] and row k of the panel
// starts at Wp + w_k (one table: a kernel reading two ran out of registers, 7% slower).
struct Src {
  index_t K = 0;
  const float* A = nullptr;
  index_t lda = 0;
  const float* Wp = nullptr;
  const index_t* rows = nullptr;
  const index_t* arows = nullptr;
  const index_t* taps = nullptr;
  index_t kp = 0;
  // The same operand from row i on, at the panel of column n0 (an in-place panel: column
  // n0 of the one panel).
  Src at(index_t i, index_t n0) const {
    return {K,    arows ? A : A + i * lda, lda, rows || taps ? Wp + n0 : Wp + n0 * kp, rows,
            arows ? arows + i : nullptr, taps, kp};
  }
  // Depth [k0, k1) of the operand.
  Src depth(index_t k0, index_t k1) const {
    return {k1 - k0, taps ? A : A + k0, lda, rows || taps ? Wp : Wp + k0 * row_stride(),
            rows ? rows + k0 : nullptr, arows, taps ? taps + 2 * k0 : nullptr, kp};
  }
  // Row k (interleaved halves: the kernels other than AVX2).
  const float* row(index_t k) const { return rows ? Wp + rows[k] : Wp + k * NR; }
};

// Where a tile's results go and where their chains start: row i of C at C + crows[i]
// (else C + i * ldc); each chain from row_bias[i] or col_bias[j] (else 0, or C's value
// when accumulating).
struct Dst {
  float* C = nullptr;
  index_t ldc = 0;
  const index_t* crows = nullptr;
  const float* row_bias = nullptr;
  const float* col_bias = nullptr;
  // The same from row i on, at column n0.
  Dst at(index_t i, index_t n0) const {
    return {crows ? C + n0 : C + i * ldc + n0, ldc, crows ? crows + i : nullptr,
            row_bias ? row_bias + i : nullptr, col_bias ? col_bias + n0 : nullptr};
  }
  float* row(index_t i) const { return crows ? C + crows[i] : C + i * ldc; }
};

// ---- portable kernel -------------------------------------------------------------------

inline float fma_chain(float a, float w, float c) {
#ifdef FP_FAST_FMAF
  return std::fma(a, w, c);
#else
  return a * w + c;  // no fast fma on this target: plain multiply-add (own rounding)
#endif
}

void gemm_portable(index_t M, index_t N, const Src& s1, const Src& s2, bool accumulate,
                   const Dst& d) {
  float acc[NR];
  for (index_t n0 = 0; n0 < N; n0 += NR) {
    const int nc = panel_cols(N, n0);
    for (index_t i = 0; i < M; ++i) {
      const Dst di = d.at(i, n0);
      float* c = di.row(0);
      for (int j = 0; j < NR; ++j)
        acc[j] = j >= nc         ? 0.0f
                 : accumulate    ? c[j]
                 : di.row_bias   ? di.row_bias[0]
                 : di.col_bias   ? di.col_bias[j]
                                 : 0.0f;
      for (const Src& src : {s1.at(i, n0), s2.at(i, n0)}) {
        const float* a = src.arows ? src.A + src.arows[0] : src.A;
        for (index_t k = 0; k < src.K; ++k) {
          const float ak = a[src.taps ? src.taps[2 * k] : k];
          const float* w = src.taps ? src.Wp + src.taps[2 * k + 1] : src.row(k);
          for (int j = 0; j < NR; ++j) acc[j] = fma_chain(ak, w[j], acc[j]);
        }
      }
      std::memcpy(c, acc, sizeof(float) * static_cast<std::size_t>(nc));
    }
  }
}

#ifdef ADLK_PACKED_X86

// Rows of C in tiles of MR, the remainder in one tile of fewer rows. Tile::run<MR> is an
// ISA's micro-kernel (an out-of-line call per tile: its k loop dwarfs the call). s1, s2
// point at the panel in use (at one of its halves for the AVX2 kernel).
template <typename Tile, int MR>
void rows_of_tiles(index_t M, const Src& s1, const Src& s2, bool accumulate, const Dst& d,
                   int nc) {
  if constexpr (MR > 0) {
    index_t i = 0;
    for (; i + MR <= M; i += MR)
      Tile::template run<MR>(s1.at(i, 0), s2.at(i, 0), accumulate, d.at(i, 0), nc);
    if (i < M)
      rows_of_tiles<Tile, MR - 1>(M - i, s1.at(i, 0), s2.at(i, 0), accumulate, d.at(i, 0),
                                  nc);
  }
}

// Calls fn(i, r) for the row tiles of M rows: tiles of MR rows, except that a remainder of
// fewer than MinRows rows (too few accumulator chains to keep the FMA ports busy: a tile
// of r rows holds 2r) is not left on its own: the last full tile and it become a tile of
// MinRows rows and one of the rest (6 + 2 rows as 4 + 4).
template <int MR, int MinRows, typename Fn>
void for_each_row_tile(index_t M, Fn&& fn) {
  const index_t r = M % MR;
  const index_t full_end = M >= MR && r != 0 && r < MinRows ? M - MR - r : M - r;
  index_t i = 0;
  for (; i < full_end; i += MR) fn(i, MR);
  if (M - i > MR) {
    fn(i, MinRows);
    i += MinRows;
  }
  if (i < M) fn(i, int(M - i));
}

// Tile::run<R> for a tile of r rows (1 <= r <= MR), R chosen at run time.
template <typename Tile, int MR>
void run_tile(int r, const Src& s1, const Src& s2, bool accumulate, const Dst& d, int nc) {
  if constexpr (MR > 0) {
    if (r == MR) return Tile::template run<MR>(s1, s2, accumulate, d, nc);
    run_tile<Tile, MR - 1>(r, s1, s2, accumulate, d, nc);
  }
}

// Runs fn(a, b, accumulate) over the depth of one panel in chunks: at most kDepthChunk k
// of the two products together per call, so that the chunk of the panel (128 KiB) stays
// in L2 while all rows pass. Each chunk continues the elements' chains from C (accumulate
// after the first), so the chunking leaves no trace in the bits. Not smaller: every chunk
// stores and reloads the C tiles, and a 32 KiB chunk did not stay in a 32 KiB L1 beside
// A's rows anyway; 256 (chunks of 256, 256 and 64 on a 576-deep conv) cost the
// 32x64x32x32 3x3 forward 6% and the LSTM forward + backward 2.5% against 1024.
constexpr index_t kDepthChunk = 1024;

template <typename Fn>
void for_each_depth_chunk(const Src& s1, const Src& s2, bool accumulate, Fn&& fn) {
  const index_t K = s1.K + s2.K;
  if (K <= 2 * kDepthChunk) return fn(s1, s2, accumulate);
  for (index_t k0 = 0; k0 < K; k0 += kDepthChunk) {
    const index_t k1 = std::min(K, k0 + kDepthChunk);
    // [k0, k1) of the concatenated depth: s1's part, then s2's
    const Src a = s1.depth(std::min(k0, s1.K), std::min(k1, s1.K));
    const Src b = s2.depth(std::max(k0, s1.K) - s1.K, std::max(k1, s1.K) - s1.K);
    fn(a, b, accumulate || k0 > 0);
  }
}

// Asks for the cache lines of the tile's C rows (nc floats each) before its k loop: a
// store that misses waits for the line to be read (a C far larger than the caches, a
// convolution's output: -9% kernel speed at 3 MB), and the k loop hides that read.
template <int MR>
inline void prefetch_rows(const Dst& d, int nc) {
  for (int i = 0; i < MR; ++i) {
    const char* row = reinterpret_cast<const char*>(d.row(i));
    const char* last = reinterpret_cast<const char*>(d.row(i) + nc - 1);
    for (const char* p = row; p <= last; p += 64) _mm_prefetch(p, _MM_HINT_T0);
    _mm_prefetch(last, _MM_HINT_T0);  // the row's last line, when it starts unaligned
  }
}

// The micro-kernels' loops over a tile's rows unrolled at once: GCC then keeps the
// accumulator arrays in registers from the initial values through both sources' k loops
// to the stores. Left to its later unrolling, it kept them on the stack between the loops
// (stored and reloaded about 100 vectors a tile: the time of ~18 k steps, 16% of a tile
// at K = 96 and 3% at K = 384 on AVX-512). Not a change of arithmetic: the same bits.
#define ADLK_UNROLL_ROWS _Pragma("GCC unroll 16")

// How a micro-kernel reads A (Src): rows lda apart, rows at offsets (arows), or
// elements at row offsets plus depth offsets (arows, taps).
enum class ARead { strided, rows, gather };

// ---- AVX-512: MR rows x 32 columns (two zmm per row) -------------------------------------

template <int MR, bool InPlace, ARead Read>
__attribute__((target("avx512f"))) inline void fma_rows_avx512(const Src& s, __m512* c0,
                                                               __m512* c1) {
  const float* ar[MR];  // the rows of A (ARead::rows, gather)
ADLK_UNROLL_ROWS
  for (int i = 0; i < MR; ++i) ar[i] = Read != ARead::strided ? s.A + s.arows[i] : nullptr;
  for (index_t k = 0; k < s.K; ++k) {
    const float* w = Read == ARead::gather ? s.Wp + s.taps[2 * k + 1]
                     : InPlace             ? s.Wp + s.rows[k]
                                           : s.Wp + k * NR;
    const index_t ka = Read == ARead::gather ? s.taps[2 * k] : k;
    const __m512 w0 = _mm512_loadu_ps(w);
    const __m512 w1 = _mm512_loadu_ps(w + NH);
ADLK_UNROLL_ROWS
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(Read != ARead::strided ? ar[i][ka] : s.A[i * s.lda + k]);
      c0[i] = _mm512_fmadd_ps(a, w0, c0[i]);
      c1[i] = _mm512_fmadd_ps(a, w1, c1[i]);
    }
  }
}

template <int MR>
__attribute__((target("avx512f"))) void tile_avx512(const Src& s1, const Src& s2,
                                                    bool accumulate, const Dst& d, int nc) {
  const __mmask16 m0 = nc >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << nc) - 1);
  const __mmask16 m1 =
      nc >= 32 ? __mmask16(0xFFFF) : nc > 16 ? __mmask16((1u << (nc - 16)) - 1) : __mmask16(0);
  __m512 c0[MR], c1[MR];
  if (!accumulate) prefetch_rows<MR>(d, nc);
  const __m512 b0 = d.col_bias ? _mm512_maskz_loadu_ps(m0, d.col_bias) : _mm512_setzero_ps();
  const __m512 b1 =
      d.col_bias ? _mm512_maskz_loadu_ps(m1, d.col_bias + 16) : _mm512_setzero_ps();
ADLK_UNROLL_ROWS
  for (int i = 0; i < MR; ++i) {
    const __m512 rb = d.row_bias ? _mm512_set1_ps(d.row_bias[i]) : _mm512_setzero_ps();
    c0[i] = accumulate ? _mm512_maskz_loadu_ps(m0, d.row(i)) : d.row_bias ? rb : b0;
    c1[i] = accumulate ? _mm512_maskz_loadu_ps(m1, d.row(i) + 16) : d.row_bias ? rb : b1;
  }
  // (separate calls: a loop over the two sources kept the accumulators in memory)
  if (s1.taps)
    fma_rows_avx512<MR, false, ARead::gather>(s1, c0, c1);
  else if (s1.rows)
    fma_rows_avx512<MR, true, ARead::strided>(s1, c0, c1);
  else if (s1.arows)
    fma_rows_avx512<MR, false, ARead::rows>(s1, c0, c1);
  else
    fma_rows_avx512<MR, false, ARead::strided>(s1, c0, c1);
  if (s2.rows)
    fma_rows_avx512<MR, true, ARead::strided>(s2, c0, c1);
  else
    fma_rows_avx512<MR, false, ARead::strided>(s2, c0, c1);
ADLK_UNROLL_ROWS
  for (int i = 0; i < MR; ++i) {
    _mm512_mask_storeu_ps(d.row(i), m0, c0[i]);
    _mm512_mask_storeu_ps(d.row(i) + 16, m1, c1[i]);
  }
}

// 8 rows: 16 accumulators, enough independent chains for two FMA ports at 4 cycles of
// latency; batches and channel counts are multiples of 8 (12 rows left a 4-row tile at 64:
// ~5% slower there).
constexpr int kMrAvx512 = 8;

struct Avx512Tile {
  template <int MR>
  static void run(const Src& s1, const Src& s2, bool accumulate, const Dst& d, int nc) {
    tile_avx512<MR>(s1, s2, accumulate, d, nc);
  }
};

void gemm_avx512(index_t M, index_t N, const Src& s1, const Src& s2, bool accumulate,
                 const Dst& d) {
  // A panel (K x 32 floats: 32 KiB at K = 256) stays in L1 while all of A's rows pass.
  for (index_t n0 = 0; n0 < N; n0 += NR)
    for_each_depth_chunk(s1.at(0, n0), s2.at(0, n0), accumulate,
                         [&](const Src& a, const Src& b, bool acc) {
                           rows_of_tiles<Avx512Tile, kMrAvx512>(M, a, b, acc, d.at(0, n0),
                                                                panel_cols(N, n0));
                         });
}

// ---- AVX2 + FMA: MR rows x 16 columns (half a panel, two ymm per row) --------------------

// A panel read in place (a convolution's shifted bands) has its rows scattered over the
// bands in runs of kH: a pattern the hardware prefetcher follows poorly, and the rows
// (576 x 64 B on a 64-channel 3x3 layer) do not fit L1 beside A's rows. The AVX2 kernel asks
// for row k + this many while it works on row k (~150 cycles ahead): 32x64x32x32 3x3
// forward -5%, backward -3.5% (interleaved runs, distances 8-32 within 1%). The AVX-512
// kernel, twice the arithmetic per row, showed no change, so it goes without.
constexpr index_t kInPlacePrefetchRowsAvx2 = 24;

template <int MR, bool InPlace, ARead Read>
__attribute__((target("avx2,fma"))) inline void fma_rows_avx2(const Src& s, __m256* c0,
                                                              __m256* c1) {
  const float* ar[MR];  // the rows of A (ARead::rows, gather)
ADLK_UNROLL_ROWS
  for (int i = 0; i < MR; ++i) ar[i] = Read != ARead::strided ? s.A + s.arows[i] : nullptr;
  for (index_t k = 0; k < s.K; ++k) {
    const float* w = Read == ARead::gather ? s.Wp + s.taps[2 * k + 1]
                     : InPlace             ? s.Wp + s.rows[k]
                                           : s.Wp + k * NH;
    const index_t ka = Read == ARead::gather ? s.taps[2 * k] : k;
    if (InPlace && k + kInPlacePrefetchRowsAvx2 < s.K)
      _mm_prefetch(reinterpret_cast<const char*>(s.Wp + s.rows[k + kInPlacePrefetchRowsAvx2]),
                   _MM_HINT_T0);
    const __m256 w0 = _mm256_loadu_ps(w);
    const __m256 w1 = _mm256_loadu_ps(w + 8);
ADLK_UNROLL_ROWS
    for (int i = 0; i < MR; ++i) {
      // set1 of a plain load, not _mm256_broadcast_ss(pointer): GCC treats that builtin as
      // a read of unknown memory and kept the accumulators in memory, at half the speed
      const __m256 a = _mm256_set1_ps(Read != ARead::strided ? ar[i][ka] : s.A[i * s.lda + k]);
      c0[i] = _mm256_fmadd_ps(a, w0, c0[i]);
      c1[i] = _mm256_fmadd_ps(a, w1, c1[i]);
    }
  }
}

template <int MR>
__attribute__((target("avx2,fma"))) void tile_avx2(const Src& s1, const Src& s2,
                                                  bool accumulate, const Dst& d, int nc) {
  // nc: columns of this half panel that exist (1..16); partial halves go through a
  // buffer so that no load or store leaves the row.
  alignas(32) float buf[MR][16];
  const bool full = nc == 16;
  __m256 c0[MR], c1[MR];
  if (!accumulate) prefetch_rows<MR>(d, nc);
  __m256 b0 = _mm256_setzero_ps(), b1 = b0;
  if (d.col_bias && !accumulate) {
    alignas(32) float cb[16];
    for (int j = 0; j < 16; ++j) cb[j] = j < nc ? d.col_bias[j] : 0.0f;
    b0 = _mm256_load_ps(cb);
    b1 = _mm256_load_ps(cb + 8);
  }
ADLK_UNROLL_ROWS
  for (int i = 0; i < MR; ++i) {
    const float* c = d.row(i);
    if (!accumulate) {
      c0[i] = d.row_bias ? _mm256_set1_ps(d.row_bias[i]) : b0;
      c1[i] = d.row_bias ? c0[i] : b1;
    } else if (full) {
      c0[i] = _mm256_loadu_ps(c);
      c1[i] = _mm256_loadu_ps(c + 8);
    } else {
      for (int j = 0; j < 16; ++j) buf[i][j] = j < nc ? c[j] : 0.0f;
      c0[i] = _mm256_load_ps(buf[i]);
      c1[i] = _mm256_load_ps(buf[i] + 8);
    }
  }
  // (separate calls: a loop over the two sources kept the accumulators in memory)
  if (s1.taps)
    fma_rows_avx2<MR, false, ARead::gather>(s1, c0, c1);
  else if (s1.rows)
    fma_rows_avx2<MR, true, ARead::strided>(s1, c0, c1);
  else if (s1.arows)
    fma_rows_avx2<MR, false, ARead::rows>(s1, c0, c1);
  else
    fma_rows_avx2<MR, false, ARead::strided>(s1, c0, c1);
  if (s2.rows)
    fma_rows_avx2<MR, true, ARead::strided>(s2, c0, c1);
  else
    fma_rows_avx2<MR, false, ARead::strided>(s2, c0, c1);
ADLK_UNROLL_ROWS
  for (int i = 0; i < MR; ++i) {
    float* c = d.row(i);
    if (full) {
      _mm256_storeu_ps(c, c0[i]);
      _mm256_storeu_ps(c + 8, c1[i]);
    } else {
      _mm256_store_ps(buf[i], c0[i]);
      _mm256_store_ps(buf[i] + 8, c1[i]);
      std::memcpy(c, buf[i], sizeof(float) * static_cast<std::size_t>(nc));
    }
  }
}

constexpr int kMrAvx2 = 6;  // 12 accumulators + 2 panel rows + 1 broadcast of 16 ymm

struct Avx2Tile {
  template <int MR>
  static void run(const Src& s1, const Src& s2, bool accumulate, const Dst& d, int nc) {
    tile_avx2<MR>(s1, s2, accumulate, d, nc);
  }
};

// The second half of each panel where `half` is 1: 16 lanes on in a panel read in place,
// the second block of kp rows of 16 in a packed one (at(), depth() and the kernel's row
// reads then work unchanged inside it).
Src half_panel(const Src& s, int half) {
  const index_t offset = s.rows ? NH : half_offset(s.kp);
  return {s.K, s.A, s.lda, s.Wp + half * offset, s.rows, s.arows, s.taps, s.kp};
}

// Panels read in place (a convolution's bands, several panels a call): row tiles outer,
// so that a tile of A (the weight: 6 rows of the depth) stays in L1 while it passes all
// the half panels, which come from L2 either way (576 x 64 B each on a 64-channel 3x3
// layer). 32x64x32x32 3x3 forward (4 panels a call) -3%, backward -1.5%.
void gemm_avx2_tiles_outer(index_t M, index_t N, const Src& s1, const Src& s2,
                           bool accumulate, const Dst& d) {
  for_each_row_tile<kMrAvx2, 4>(M, [&](index_t i, int rows) {
    for (index_t n0 = 0; n0 < N; n0 += NR) {
      const int nc = panel_cols(N, n0);
      for (int half = 0; half < 2 && 16 * half < nc; ++half)
        run_tile<Avx2Tile, kMrAvx2>(rows, half_panel(s1.at(i, n0), half),
                                    half_panel(s2.at(i, n0), half), accumulate,
                                    d.at(i, n0 + 16 * half), std::min(16, nc - 16 * half));
    }
  });
}

void gemm_avx2(index_t M, index_t N, const Src& s1, const Src& s2, bool accumulate,
               const Dst& d) {
  if (s1.rows && N > NR && s1.K + s2.K <= 2 * kDepthChunk)
    return gemm_avx2_tiles_outer(M, N, s1, s2, accumulate, d);
  for (index_t n0 = 0; n0 < N; n0 += NR) {
    const int nc = panel_cols(N, n0);
    for (int half = 0; half < 2 && 16 * half < nc; ++half)
      for_each_depth_chunk(half_panel(s1.at(0, n0), half), half_panel(s2.at(0, n0), half),
                           accumulate,
                           [&](const Src& a, const Src& b, bool acc) {
                             const Dst dh = d.at(0, n0 + 16 * half);
                             const int nh = std::min(16, nc - 16 * half);
                             for_each_row_tile<kMrAvx2, 4>(M, [&](index_t i, int rows) {
                               run_tile<Avx2Tile, kMrAvx2>(rows, a.at(i, 0), b.at(i, 0), acc,
                                                           dh.at(i, 0), nh);
                             });
                           });
  }
}

#endif  // ADLK_PACKED_X86

using GemmFn = void (*)(index_t, index_t, const Src&, const Src&, bool, const Dst&);

struct Kernel {
  GemmFn fn;
  const char* isa;
  bool halves_in_blocks;  // the packed layout it reads (packed_gemm.h)
};

// The widest kernel this CPU runs; ADLK_GEMM_ISA=avx2 or =portable asks for a narrower one
// (avx2 gives the same bits as avx512; a request the CPU cannot honour is ignored).
Kernel pick_kernel() {
  const char* want = std::getenv("ADLK_GEMM_ISA");
  const auto allowed = [&](const char* isa) {
    if (!want || !*want) return true;
    if (std::strcmp(want, "portable") == 0) return false;
    if (std::strcmp(want, "avx2") == 0) return std::strcmp(isa, "avx2") == 0;
    return true;
  };
#ifdef ADLK_PACKED_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && allowed("avx512"))
    return {gemm_avx512, "avx512", false};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && allowed("avx2"))
    return {gemm_avx2, "avx2", true};
#else
  (void)allowed;
#endif
  return {gemm_portable, "portable", false};
}

const Kernel& kernel() {
  static const Kernel k = pick_kernel();
  return k;
}

index_t row_stride() { return kernel().halves_in_blocks ? NH : NR; }

#ifdef ADLK_PACKED_X86
// GCC 12's AVX-512 shuffle intrinsics start from _mm512_undefined_ps(), which its
// -Wuninitialized reports (GCC bug 105593, fixed in later releases).
#if !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// The low (or high) 64-bit pairs of a and b interleaved, per 128-bit lane.
template <bool Low>
__attribute__((target("avx512f"))) inline __m512 unpack_pairs(__m512 a, __m512 b) {
  const __m512d x = _mm512_castps_pd(a), y = _mm512_castps_pd(b);
  return _mm512_castpd_ps(Low ? _mm512_unpacklo_pd(x, y) : _mm512_unpackhi_pd(x, y));
}

// out[k * ldo + j] = in[j * ldi + k] for j, k < 16: a 16x16 block transposed in registers
// (pairs of rows interleaved, then pairs of pairs, then 128-bit lanes twice).
template <bool Stream = false>
__attribute__((target("avx512f"))) void transpose16_avx512(const float* in, index_t ldi,
                                                          float* out, index_t ldo) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(in + i * ldi);
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = unpack_pairs<true>(t[i], t[i + 2]);
    r[i + 1] = unpack_pairs<false>(t[i], t[i + 2]);
    r[i + 2] = unpack_pairs<true>(t[i + 1], t[i + 3]);
    r[i + 3] = unpack_pairs<false>(t[i + 1], t[i + 3]);
  }
  for (int h = 0; h < 16; h += 8)
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + 4 + i], 0x88);
      t[h + 4 + i] = _mm512_shuffle_f32x4(r[h + i], r[h + 4 + i], 0xdd);
    }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
    r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
  }
  for (int i = 0; i < 16; ++i) {
    if (Stream)  // out's rows start on cache lines (the caller's check)
      _mm512_stream_ps(out + i * ldo, r[i]);
    else
      _mm512_storeu_ps(out + i * ldo, r[i]);
  }
}
#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// The AVX-512 transposes run with the AVX-512 kernel (ADLK_GEMM_ISA=avx2 or portable
// also turns them off, so that those paths are tested on any machine), the AVX2 ones
// with the AVX2 kernel.
bool avx512_transposes() {
  static const bool on = std::strcmp(kernel().isa, "avx512") == 0;
  return on;
}
bool avx2_transposes() {
  static const bool on = std::strcmp(kernel().isa, "avx2") == 0;
  return on;
}

// t[k] lane j = in[j * ldi + k] for j, k < 8: an 8x8 block through registers (pairs of
// rows interleaved, then pairs of pairs, then 128-bit halves).
__attribute__((target("avx2"))) inline void transpose8_regs_avx2(const float* in, index_t ldi,
                                                                 __m256* t) {
  __m256 r[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(in + i * ldi);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
    t[i + 4] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
  }
}

// out[k * ldo + j] = in[j * ldi + k] for j, k < 8.
__attribute__((target("avx2"))) void transpose8_avx2(const float* in, index_t ldi, float* out,
                                                    index_t ldo) {
  __m256 t[8];
  transpose8_regs_avx2(in, ldi, t);
  for (int i = 0; i < 8; ++i) _mm256_storeu_ps(out + i * ldo, t[i]);
}

// The same for j < 16, k < 8, out's rows streamed (each starts a cache line: the caller's
// check) a whole line at a time: its two halves stored back to back, so that no line is
// left partly written while others are (two 8x8 blocks streamed one after the other kept
// 8 lines open at once).
__attribute__((target("avx2"))) void transpose8x16_stream_avx2(const float* in, index_t ldi,
                                                              float* out, index_t ldo) {
  __m256 lo[8], hi[8];
  transpose8_regs_avx2(in, ldi, lo);
  transpose8_regs_avx2(in + 8 * ldi, ldi, hi);
  for (int i = 0; i < 8; ++i) {
    _mm256_stream_ps(out + i * ldo, lo[i]);
    _mm256_stream_ps(out + i * ldo + 8, hi[i]);
  }
}
#endif

// ---- the FMA ceiling ------------------------------------------------------------------
//
// `iters` rounds of independent multiply-add chains of one vector each: more chains than
// the FMA latency times the ports (4 x 2 on current cores), within the vector registers
// (16 of 32 zmm; 12 of 16 ymm). The values stay normal (x -> 0.5 x + 0.5 tends to 1).
// Returns a sum of the lanes so that the loop is not optimized away.
constexpr int kPeakChains = 16, kPeakChainsYmm = 12;

double fma_peak_portable(index_t iters) {
  float acc[kPeakChainsYmm][8];
  for (int c = 0; c < kPeakChainsYmm; ++c)
    for (int j = 0; j < 8; ++j) acc[c][j] = float(c + j);
  for (index_t i = 0; i < iters; ++i)
    for (int c = 0; c < kPeakChainsYmm; ++c)
      for (int j = 0; j < 8; ++j) acc[c][j] = fma_chain(acc[c][j], 0.5f, 0.5f);
  double sum = 0;
  for (int c = 0; c < kPeakChainsYmm; ++c)
    for (int j = 0; j < 8; ++j) sum += acc[c][j];
  return sum;
}

#ifdef ADLK_PACKED_X86
__attribute__((target("avx512f"))) double fma_peak_avx512(index_t iters) {
  __m512 acc[kPeakChains];
  const __m512 half = _mm512_set1_ps(0.5f);
  for (int c = 0; c < kPeakChains; ++c) acc[c] = _mm512_set1_ps(float(c));
  for (index_t i = 0; i < iters; ++i)
    for (int c = 0; c < kPeakChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], half, half);
  alignas(64) float lanes[16];
  double sum = 0;
  for (int c = 0; c < kPeakChains; ++c) {
    _mm512_store_ps(lanes, acc[c]);
    for (float v : lanes) sum += v;
  }
  return sum;
}

__attribute__((target("avx2,fma"))) double fma_peak_avx2(index_t iters) {
  __m256 acc[kPeakChainsYmm];
  const __m256 half = _mm256_set1_ps(0.5f);
  for (int c = 0; c < kPeakChainsYmm; ++c) acc[c] = _mm256_set1_ps(float(c));
  for (index_t i = 0; i < iters; ++i)
    for (int c = 0; c < kPeakChainsYmm; ++c) acc[c] = _mm256_fmadd_ps(acc[c], half, half);
  alignas(32) float lanes[8];
  double sum = 0;
  for (int c = 0; c < kPeakChainsYmm; ++c) {
    _mm256_store_ps(lanes, acc[c]);
    for (float v : lanes) sum += v;
  }
  return sum;
}
#endif

}  // namespace

double fma_peak_gflops(double seconds) {
  double (*loop)(index_t) = fma_peak_portable;
  int flops_per_round = 2 * kPeakChainsYmm * 8;
#ifdef ADLK_PACKED_X86
  if (std::strcmp(kernel().isa, "avx512") == 0)
    loop = fma_peak_avx512, flops_per_round = 2 * kPeakChains * 16;
  if (std::strcmp(kernel().isa, "avx2") == 0) loop = fma_peak_avx2;
#endif
  using Clock = std::chrono::steady_clock;
  const auto elapsed = [](Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  // Rounds per run: doubled until one run takes 10 ms, then runs of that size until
  // `seconds` have passed (at least 5); the fastest counts.
  index_t iters = 1 << 10;
  volatile double sink = 0;
  for (;;) {
    const auto t0 = Clock::now();
    sink = sink + loop(iters);
    if (elapsed(t0) >= 0.01 || iters >= (index_t(1) << 40)) break;
    iters *= 2;
  }
  double best = 0;
  const auto start = Clock::now();
  for (int run = 0; run < 5 || elapsed(start) < seconds; ++run) {
    const auto t0 = Clock::now();
    sink = sink + loop(iters);
    const double t = elapsed(t0);
    if (t > 0) best = std::max(best, flops_per_round * double(iters) / t / 1e9);
  }
  return best;
}

index_t packed_weight_size(index_t N, index_t K) {
  const index_t panels = (N + NR - 1) / NR;
  return mul_checked(mul_checked(panels, NR, "packed columns"), K, "packed weight size");
}

void transpose(index_t rows, index_t cols, const float* src, index_t lds, float* dst,
               index_t ldd) {
  for (index_t r0 = 0; r0 < rows; r0 += 16) {
    const index_t nr = std::min<index_t>(16, rows - r0);
    index_t c0 = 0;
#ifdef ADLK_PACKED_X86
    // 16x16 blocks in registers: each line of src read once and wholly used (a column
    // walk over rows a power of two apart keeps missing in one L1 set).
    if (nr == 16 && avx512_transposes())
      for (; c0 + 16 <= cols; c0 += 16)
        transpose16_avx512(src + r0 * lds + c0, lds, dst + c0 * ldd + r0, ldd);
    // With AVX2, two 8x8 blocks: the tile loop below took a convolution's 14x14 output
    // 11% of its forward time.
    if (nr == 16 && avx2_transposes())
      for (; c0 + 8 <= cols; c0 += 8)
        for (index_t h = 0; h < 16; h += 8)
          transpose8_avx2(src + (r0 + h) * lds + c0, lds, dst + c0 * ldd + r0 + h, ldd);
#endif
    // The rest through a tile: rows of src read contiguously, then each row of dst
    // written 16 at a time.
    float tile[16][64];
    for (; c0 < cols; c0 += 64) {
      const index_t nc = std::min<index_t>(64, cols - c0);
      for (index_t r = 0; r < nr; ++r)
        for (index_t c = 0; c < nc; ++c) tile[r][c] = src[(r0 + r) * lds + c0 + c];
      for (index_t c = 0; c < nc; ++c)
        for (index_t r = 0; r < nr; ++r) dst[(c0 + c) * ldd + r0 + r] = tile[r][c];
    }
  }
}

void transpose_streaming(index_t rows, index_t cols, const float* src, index_t lds,
                         float* dst, index_t ldd) {
#ifdef ADLK_PACKED_X86
  if ((avx512_transposes() || avx2_transposes()) && ldd % 16 == 0) {
    // dst's rows (ldd floats apart) all start at the same offset in a cache line: rows
    // [0, a) of src up to a line boundary the usual way, then whole lines streamed
    const index_t a = std::min<index_t>(
        rows, index_t((64 - reinterpret_cast<std::uintptr_t>(dst) % 64) % 64 / sizeof(float)));
    transpose(a, cols, src, lds, dst, ldd);
    index_t r0 = a;
    for (; r0 + 16 <= rows; r0 += 16) {
      index_t c0 = 0;
      if (avx512_transposes())
        for (; c0 + 16 <= cols; c0 += 16)
          transpose16_avx512<true>(src + r0 * lds + c0, lds, dst + c0 * ldd + r0, ldd);
      else  // each dst row's 16 floats: one whole line
        for (; c0 + 8 <= cols; c0 += 8)
          transpose8x16_stream_avx2(src + r0 * lds + c0, lds, dst + c0 * ldd + r0, ldd);
      transpose(16, cols - c0, src + r0 * lds + c0, lds, dst + c0 * ldd + r0, ldd);
    }
    transpose(rows - r0, cols, src + r0 * lds, lds, dst + r0, ldd);
    _mm_sfence();  // the streamed stores ordered before whatever follows
    return;
  }
#endif
  transpose(rows, cols, src, lds, dst, ldd);
}

namespace {

// Runs fill(P, c0, nc, rs) for each half panel of a packing of N columns K deep: columns
// [c0, c0 + nc) of W^T (nc <= 16, 0 past N) go to rows P + k * rs; then zeroes the half's
// lanes from nc on.
template <typename Fill>
void for_each_half_panel(index_t N, index_t K, float* dst, Fill fill) {
  const index_t rs = row_stride();
  for (index_t n0 = 0; n0 < N; n0 += NR)
    for (index_t h = 0; h < 2; ++h) {
      float* P = dst + n0 * K + h * half_offset(K);
      const index_t c0 = n0 + h * NH, nc = std::clamp<index_t>(N - c0, 0, NH);
      fill(P, c0, nc, rs);
      if (nc < NH)
        for (index_t k = 0; k < K; ++k) std::fill(P + k * rs + nc, P + k * rs + NH, 0.0f);
    }
}

}  // namespace

void pack_weight(index_t N, index_t K, const float* W, index_t ldw, float* dst) {
  for_each_half_panel(N, K, dst, [&](float* P, index_t c0, index_t nc, index_t rs) {
    transpose(nc, K, W + c0 * ldw, ldw, P, rs);
  });
}

void pack_weight_transposed(index_t N, index_t K, const float* Wt, index_t ldw, float* dst) {
  for_each_half_panel(N, K, dst, [&](float* P, index_t c0, index_t nc, index_t rs) {
    if (nc == NH) {  // whole halves: fixed-size copies the compiler inlines
      for (index_t k = 0; k < K; ++k)
        std::memcpy(P + k * rs, Wt + k * ldw + c0, sizeof(float) * NH);
      return;
    }
    for (index_t k = 0; k < K; ++k)
      std::copy(Wt + k * ldw + c0, Wt + k * ldw + c0 + nc, P + k * rs);
  });
}

void pack_weight_part(int p, int np, index_t N, index_t K, const float* W, index_t ldw,
                      bool transposed, float* dst) {
  const index_t panels = (N + NR - 1) / NR;
  for (index_t q = p; q < panels; q += np) {
    const index_t n0 = q * NR, n = std::min(NR, N - n0);
    if (transposed)
      pack_weight_transposed(n, K, W + n0, ldw, dst + n0 * K);
    else
      pack_weight(n, K, W + n0 * ldw, ldw, dst + n0 * K);
  }
}

void gemm_packed(index_t M, index_t N, index_t K, const float* A, index_t lda, const float* Wp,
                 bool accumulate, float* C, index_t ldc, index_t panel_depth) {
  if (M <= 0 || N <= 0) return;
  const index_t kp = panel_depth ? panel_depth : K;
  kernel().fn(M, N, {K, A, lda, Wp, nullptr, nullptr, nullptr, kp}, {}, accumulate, {C, ldc});
}

void gemm_packed_row_bias(index_t M, index_t N, index_t K, const float* A, index_t lda,
                          const float* Wp, const float* bias, float* C, index_t ldc) {
  if (M <= 0 || N <= 0) return;
  kernel().fn(M, N, {K, A, lda, Wp, nullptr, nullptr, nullptr, K}, {}, false,
              {C, ldc, nullptr, bias});
}

void gemm_packed_arows(index_t M, index_t N, index_t K, const float* A, const index_t* arows,
                       const float* Wp, bool accumulate, float* C, index_t ldc) {
  if (M <= 0 || N <= 0) return;
  kernel().fn(M, N, {K, A, 0, Wp, nullptr, arows, nullptr, K}, {}, accumulate, {C, ldc});
}

void gemm_rows_row_bias(index_t M, index_t N, index_t K, const float* A, index_t lda,
                        const float* base, const index_t* rows, const float* bias, float* C,
                        index_t ldc) {
  if (M <= 0 || N <= 0) return;
  kernel().fn(M, N, {K, A, lda, base, rows}, {}, false, {C, ldc, nullptr, bias});
}

void gemm_gathered(index_t M, index_t N, index_t K, const float* A, const index_t* arows,
                   const float* Wp, index_t panel_depth, const index_t* taps, const float* bias,
                   bool accumulate, float* C, const index_t* crows) {
  check(N <= NR, "gemm_gathered: N must be <= kPackedPanel");
  if (M <= 0 || N <= 0) return;
  kernel().fn(M, N, {K, A, 0, Wp, nullptr, arows, taps, panel_depth}, {}, accumulate,
              {C, 0, crows, nullptr, accumulate ? nullptr : bias});
}

void gemm_packed2(index_t M, index_t N, index_t K1, const float* A1, index_t lda1,
                  const float* Wp1, index_t K2, const float* A2, index_t lda2, const float* Wp2,
                  bool accumulate, float* C, index_t ldc) {
  if (M <= 0 || N <= 0) return;
  kernel().fn(M, N, {K1, A1, lda1, Wp1, nullptr, nullptr, nullptr, K1},
              {K2, A2, lda2, Wp2, nullptr, nullptr, nullptr, K2}, accumulate, {C, ldc});
}

const char* gemm_packed_isa() { return kernel().isa; }

index_t packed_row_stride() { return row_stride(); }

}  // namespace adlk
