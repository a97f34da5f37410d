// Limits and tuning constants of the core, each defined once.
//
// A limit bounds what the kernels accept (the Python layer reads it from the compiled
// module); a tuning constant trades overhead against parallelism or cache use, and
// names the benchmark (bench/, run with `python bench/run.py FAMILY`) whose cases it
// was set and is checked with. Changing a tuning constant changes no result except
// where noted (kSumChunk fixes the summation order).
#pragma once

#include <cstddef>

#include "adlk/common.h"

namespace adlk {

// ---- limits ----------------------------------------------------------------------------
// Geometry arguments (kernel size, stride, padding, dilation) are < 2^31, so products of
// two of them and of them with sizes stay far from 64-bit overflow.
constexpr index_t kMaxGeomArg = index_t(1) << 31;
// set_num_threads accepts 1..kMaxThreads (far above any machine; OpenMP's own limit is
// implementation-defined).
constexpr int kMaxThreads = 65536;

// ---- determinism -----------------------------------------------------------------------
// Elementwise work and every partial sum (losses, clip_grad_norm's norms) are cut into
// fixed chunks of this many elements, so that no result depends on the thread count.
// Part of the numerics: changing it changes the last bits of those sums.
constexpr index_t kSumChunk = 32768;

// ---- parallel grains -------------------------------------------------------------------
// Below this many elements, elementwise kernels and optimizer steps run on one thread (a
// parallel region costs more than it saves). bench_nn.py / bench_optim.py, small cases.
constexpr index_t kElementwiseParallelGrain = index_t(1) << 15;
// The same for window kernels (conv, pooling), whose elements cost more each.
// bench_conv.py / bench_pool.py, small cases.
constexpr index_t kWindowParallelGrain = index_t(1) << 14;

// ---- cache blocking --------------------------------------------------------------------
// Byte budget of one conv unit's column matrix plus its output rows (adlk/conv.h): about
// a core's L2 cache, so a block stays cached between im2col and GEMM. bench_conv.py.
constexpr std::size_t kConvBlockBytes = std::size_t(1) << 20;
// The most bytes of one image's shifted input bands (all channels) that the panel path of
// the float32 forward keeps per thread (adlk/conv.h); beyond that an image takes the
// im2col path. The packed grad_weight reads its columns from the bands under the same
// bound (a thread's channels' bands; else im2col): with 2 threads (AMD EPYC, AVX-512,
// 2026-12-07) 0.93x the im2col path's time on 64x32x14x14 3x3 and 0.95x on 32x64x32x32. Its panels still win with bands past the 1 MiB L2, from L3 (2 threads, AMD
// EPYC, AVX-512, 2026-12-06): 16x64x56x56 3x3 (bands 2.5 MB) forward 0.82x and grad_x
// 0.79x the im2col path's time, 32x64x32x32 3x3's grad_x (bands 1.7 MB) 0.85x.
constexpr std::size_t kConvBandBytes = std::size_t(4) << 20;

// The float32 conv forward takes the packed-kernel panel path (adlk/conv.h) for stride-1,
// non-pointwise convolutions of at least this depth C/groups*kH*kW. Measured with 2
// threads (AMD EPYC, AVX-512, 2026-12-06), since its panels inside an image are read from
// the bands in place: time against the im2col path at K = 36-144 0.55-0.9x, at 288-576
// 0.8-0.95x, at 25 (5x5, one channel) about the same; with stride 2 it lost at K = 72 and
// 147 and won at 288, so strided kernels keep the im2col path. ADLK_CONV_PANELS=always /
// never overrides it.
constexpr index_t kConvPanelMinDepth = 32;
// The float32 forward by tap classes (adlk/conv.h) takes geometries whose output rows
// times output columns fall in at most this many classes of kept taps (a 3x3 kernel with
// padding 1: 9; each class is a GEMM call per 32 output channels), of depth
// C/groups*kH*kW >= kConvTapMinDepth. Measured with 2 threads (AMD EPYC, AVX-512,
// 2026-12-07) against the panels: 64x32x14x14 3x3 -> 64 0.9x the time, 32x64x32x32 and
// 16x64x56x56 about the same; against the im2col path 8x3x224x224 7x7 stride 2 0.88x,
// 3x3 stride 2 at 144 deep about 0.6x; at depth 9-27 1.2-1.3x, 36 the same. Its tiles
// hold 32 output channels, so fewer than 32 per group leave lanes idle (16: 1.5x, 8:
// 2.3x the panels' time), and it takes only groups that fill 80% of them.
constexpr index_t kConvMaxTapClasses = 25;
constexpr index_t kConvTapMinDepth = 32;
// The AVX2 kernel runs the tap paths (forward and grad_weight) up to this depth. Measured
// with 2 threads (AMD EPYC held to AVX2, 2026-12-07), forward time against the panels or
// im2col: depth 144-288 0.90-0.98x (8x3x224x224 7x7 s2 0.90x, 64x32x14x14 0.95-0.98x,
// 32x32x28x28 -> 128 0.92x), depth 576 1.03-1.07x (32x64x32x32 -> 64 and 128,
// 64x64x16x16, 16x64x56x56), 1152 1.05x; grad_weight 0.86x (64x32x14x14), 0.98x
// (32x32x28x28), 1.05x (32x64x32x32).
constexpr index_t kConvTapMaxDepthAvx2 = 384;
// Deeper than that, its tap-class forward still wins where the panels would not run (a
// stride: against im2col) or where an image has fewer than this many output positions
// (panels of 32 positions then often span two images, whose columns are copied). Time
// against the panels at depth 576-2304 (2 threads, AMD EPYC held to AVX2, 2026-12-08):
// 7x7-15x15 outputs 0.74-0.93x (64x64x14x14 -> 32, the 64x32x14x14 layer's grad_x,
// 0.79x), 20x20-28x28 0.96-0.98x, 16x16 1.01x, 32x32 0.99x (-> 32) and 1.05x (-> 64,
// 128), 56x56 1.03x; stride 2 against im2col 0.80-0.96x (outputs 14x14-112x112).
constexpr index_t kConvTapDeepMaxPositionsAvx2 = 1024;
// The AVX2 kernel's tap-class forward runs a depth K of at least kConvTapSplitDepthAvx2 in
// ceil(K / kConvTapPieceDepthAvx2) equal pieces, each continuing the chains of the one
// before (the same bits): a piece's half panel (64 B a k) then stays in L1 while the
// class's positions pass. Forward time with 2 threads (AMD EPYC held to AVX2, 2026-12-07,
// interleaved in one process): 64x24x14x14 3x3 (K 216, 2 pieces) 0.93x, 64x32x14x14
// (288, 2) 0.955x, 64x40x14x14 (360, 3) 0.97x, 32x32x28x28 -> 128 (288) 0.97x; pieces
// of 72 at K 144-147 cost 1.03x, and the AVX-512 kernel (128 B a k) gained nothing.
constexpr index_t kConvTapSplitDepthAvx2 = 192, kConvTapPieceDepthAvx2 = 144;
// Bytes of the tap-class forward's staged output block (positions x output channels) per
// thread, transposed into y at the end of the block: about half a core's L2.
constexpr std::size_t kConvTapStageBytes = std::size_t(256) << 10;
// The tap-class forward writes an output of at least this many bytes into y with
// non-temporal stores (whole cache lines of rows of 16k floats: no read of each line
// before it is written; the output then leaves the caches). With 2 threads (AMD EPYC,
// 2026-12-07): 8x3x224x224 7x7 stride 2 (y 26 MB) 0.94x the time, 16x64x56x56 (13 MB)
// 0.975x, 32x64x32x32 -> 128 (17 MB) 0.985x; 4 MB outputs the same or 1.1x slower. The
// AVX2 kernel's streamed 8x8 transposes: 224 layer's transposition 11% -> 9% of the time.
constexpr std::size_t kConvStreamBytes = std::size_t(8) << 20;
// The other float32 forwards (im2col into a block of columns) run their GEMMs on the
// packed-weight kernel, the column matrix read in place, for C/groups*kH*kW of at least
// this: measured with 2 threads (AMD EPYC, AVX-512, 2026-12-06) against OpenBLAS on the
// same columns, 147 (7x7 stride 2, 3 channels) 0.87x the time, 144 (3x3, 16 channels)
// 0.9x, 128 (1x1) the same, 64 (1x1) and 72 (3x3 stride 2) 1.05x, 25 (5x5, one channel)
// 1.08x (at small depth a tile's setup and stores weigh more than in OpenBLAS's larger
// tiles). 1x1 kernels keep OpenBLAS (2 threads, AMD EPYC, AVX-512, 2026-12-08, the packed
// kernel's time against it: depth 128-256 on 14x14-56x56 images 1.15-1.4x, stride 2
// 1.04-1.13x, depth 64 1.0-1.03x, on 7x7 images 0.94-1.04x). ADLK_CONV_PANELS=always /
// never overrides it.
constexpr index_t kConvPackedColumnsMinDepth = 128;
// The float32 grad_weight runs on the packed-weight kernel (grad_y packed as its panels,
// the column matrix read in place) where a group has at least this many rows
// C/groups*kH*kW: measured with 2 threads (AMD EPYC, AVX-512, 2026-12-06) against im2col
// + OpenBLAS, 288 and 576 rows took 0.85-0.93x the time, 147 rows (7x7, 3 channels) the
// same, 25 rows (5x5, one channel) 1.9x. ADLK_CONV_PANELS=always / never overrides it.
constexpr index_t kConvWeightGradMinRows = 256;
// It keeps one image's grad_y packed whole (C_out rounded up to 32 times H_out*W_out
// floats) in the calling thread's scratch, which is kept between calls; larger images
// take the BLAS path, whose scratch holds blocks of output rows.
constexpr std::size_t kConvGradPackMaxBytes = std::size_t(16) << 20;
// Conv images with fewer output positions than this share a GEMM with their neighbours.
// bench_conv.py, the 8x8 / 7x7 layers.
constexpr index_t kConvMinGemmColumns = 128;
// A convolution with one input channel per group (depthwise) runs its forward on a direct
// kernel (conv.cpp) up to this many output channels per group, its backward up to the
// second, instead of im2col + GEMM. Time against that path with 2 threads (AMD EPYC,
// 2026-12-08; 32x64x28x28 3x3, per group 1, 2, 4, 8 outputs): forward 0.30x, 0.38x, 0.49x,
// 0.58x; grad_x 0.26x, 0.55x, 0.90x, 1.5x; grad_weight 0.42x, 0.61x, 0.93x, 1.13x.
constexpr index_t kConvDepthwiseMaxOutputs = 8, kConvDepthwiseGradMaxOutputs = 4;
// Recurrent tiles have at least this many hidden units (GEMMs on narrower column blocks
// lose efficiency); the remaining threads split the batch. bench_rnn.py.
constexpr index_t kRnnMinTileCols = 32;
// GRU and RNN sequences cut their BLAS GEMMs (float64; float32 runs the packed-weight
// kernel where it can) into pieces fixed by the sizes alone (their
// results are then the same bits for any thread count; OpenBLAS picks kernels by a call's
// shape): time-loop tiles of about this many batch rows and hidden units, and at most
// kSeqGemmParts pieces (of >= kSeqGemmMinRows rows) of the GEMMs over all steps; threads
// take pieces in turn. The parts bound both the redundant operand packing and the
// threads a GEMM can use; not yet tuned (bench_rnn.py, gru_seq). Part of the numerics:
// changing them changes the last bits.
constexpr index_t kSeqTileRows = 64;
constexpr index_t kSeqTileCols = 64;
constexpr int kSeqGemmParts = 8;
constexpr index_t kSeqGemmMinRows = 64;
// Rows of the input projection per packed-GEMM call (float sequences): a block of x
// (256 rows x I) stays in L2 while w_ih's packed panels pass through L1. Any value gives
// the same bits (one FMA chain per element). bench_rnn.py, lstm_seq and gru_seq.
constexpr index_t kSeqProjectionRows = 256;
// Rows of an LSTM forward step's chunk whose gate pre-activations a thread keeps in its
// scratch (kLstmStepRows x 4 x 32 floats: 32 KiB, L1) before activating them. Any value
// gives the same bits. bench_rnn.py, lstm_seq (blocks of 8 or 16 rows: the same speed).
constexpr index_t kLstmStepRows = 64;
// Backward work buffers up to this size stay in the thread's scratch between calls (a
// T=50, B=64, H=256 LSTM spent a third of forward+backward faulting fresh pages);
// larger ones are freed after the call. bench_rnn.py.
constexpr std::size_t kRnnKeepBytes = std::size_t(64) << 20;
// Rows of a layer-norm backward handled per work item. bench_nn.py, layer norm.
constexpr index_t kLayerNormRowChunk = 64;
// Columns of one work item of embedding_backward (a row of grad_weight is split into
// blocks of this many, so that a few heavy rows still spread over the threads; results do
// not depend on it). bench_nn.py, embedding.
constexpr index_t kEmbeddingColumns = 256;
// Persistent scratch buffers per thread (adlk/scratch.h).
constexpr int kScratchSlots = 4;

}  // namespace adlk
