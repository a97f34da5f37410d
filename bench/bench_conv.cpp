// Google Benchmark microbenchmarks of the C++ core's convolution kernels.
//
// Measures the core without Python in the way: adlk::im2col, adlk::col2im,
// adlk::conv2d_forward<float> and adlk::conv2d_backward<float> on the four shapes of
// bench/bench_conv.py. Reports bytes/s for the copy kernels (im2col, col2im: bytes read
// + written) and FLOP/s for the convolutions (forward 2*N*C_out*L*C_in*kH*kW, backward
// grad_x + grad_weight, twice that). Times are wall-clock (the kernels are threaded).
//
//   bench_conv_cpp [--threads=N] [Google Benchmark flags, e.g. --benchmark_filter=fwd]
//
// --threads defaults to the core's default (all cores, or OMP_NUM_THREADS).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "adlk/conv.h"
#include "adlk/parallel.h"

namespace {

struct Case {
  const char* name;
  adlk::index_t N, C, H, W, C_out, k, stride, pad;
};

// float32, bias on: same shapes as the Python benchmark (bench/bench_conv.py).
const Case kCases[] = {
    {"64x1x28x28_k5_to32", 64, 1, 28, 28, 32, 5, 1, 0},
    {"64x32x14x14_k3p1_to64", 64, 32, 14, 14, 64, 3, 1, 1},
    {"32x64x32x32_k3p1_to128", 32, 64, 32, 32, 128, 3, 1, 1},
    {"8x3x224x224_k7s2p3_to64", 8, 3, 224, 224, 64, 7, 2, 3},
};

adlk::Conv2dGeom geom(const Case& c) {
  adlk::Conv2dGeom g;
  g.N = c.N, g.C = c.C, g.H = c.H, g.W = c.W, g.C_out = c.C_out;
  g.kH = g.kW = c.k, g.sH = g.sW = c.stride, g.pH = g.pW = c.pad;
  g.finalize();
  return g;
}

std::vector<float> random_vec(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

double fwd_flops(const adlk::Conv2dGeom& g) {
  return 2.0 * g.N * g.C_out * g.L() * (g.C / g.groups) * g.kH * g.kW;
}

benchmark::Counter flop_rate(double flops) {
  return benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate,
                            benchmark::Counter::kIs1000);
}

void BM_im2col(benchmark::State& st, Case c) {
  const auto g = geom(c);
  const auto x = random_vec(g.N * g.C * g.H * g.W, 1);
  std::vector<float> cols(g.N * g.col_rows() * g.L());
  for (auto _ : st) {
    adlk::im2col(x.data(), g, cols.data());
    benchmark::DoNotOptimize(cols.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * (x.size() + cols.size()) * sizeof(float));
}

void BM_col2im(benchmark::State& st, Case c) {
  const auto g = geom(c);
  const auto cols = random_vec(g.N * g.col_rows() * g.L(), 2);
  std::vector<float> x(g.N * g.C * g.H * g.W);
  for (auto _ : st) {
    adlk::col2im(cols.data(), g, x.data());
    benchmark::DoNotOptimize(x.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * (x.size() + cols.size()) * sizeof(float));
}

void BM_conv2d_forward(benchmark::State& st, Case c) {
  const auto g = geom(c);
  const auto x = random_vec(g.N * g.C * g.H * g.W, 3);
  const auto w = random_vec(g.C_out * g.C * g.kH * g.kW, 4);
  const auto b = random_vec(g.C_out, 5);
  std::vector<float> y(g.N * g.C_out * g.L());
  for (auto _ : st) {
    adlk::conv2d_forward(x.data(), w.data(), b.data(), g, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  st.counters["FLOP/s"] = flop_rate(fwd_flops(g));
}

void BM_conv2d_backward(benchmark::State& st, Case c) {
  const auto g = geom(c);
  const auto x = random_vec(g.N * g.C * g.H * g.W, 3);
  const auto w = random_vec(g.C_out * g.C * g.kH * g.kW, 4);
  const auto dy = random_vec(g.N * g.C_out * g.L(), 6);
  std::vector<float> dx(x.size()), dw(w.size()), db(g.C_out);
  for (auto _ : st) {
    adlk::conv2d_backward(dy.data(), x.data(), w.data(), g, dx.data(), dw.data(), db.data());
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  st.counters["FLOP/s"] = flop_rate(2 * fwd_flops(g));
}

// Our own flag, taken out of argv before Google Benchmark sees it. With a Google
// Benchmark older than 1.8, "--benchmark_min_time=0.2s" loses its "s" (1.7 wants a
// bare number of seconds), so the same command line works with either version.
int take_threads_flag(int* argc, char** argv) {
  int threads = 0;
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0) {
      threads = std::atoi(argv[i] + 10);
      continue;
    }
#ifdef ADLK_GBENCH_BARE_MIN_TIME
    if (std::strncmp(argv[i], "--benchmark_min_time=", 21) == 0) {
      const std::size_t len = std::strlen(argv[i]);
      if (len > 21 && argv[i][len - 1] == 's') argv[i][len - 1] = '\0';
    }
#endif
    argv[out++] = argv[i];
  }
  *argc = out;
  return threads;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = take_threads_flag(&argc, argv);
  if (threads > 0) adlk::set_num_threads(threads);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("adlk_threads", std::to_string(adlk::get_num_threads()));
  benchmark::AddCustomContext("adlk_blas", adlk::blas_version());
  benchmark::AddCustomContext("adlk_compiler", adlk::compiler_version());

  for (const Case& c : kCases) {
    const std::string n = c.name;
    benchmark::RegisterBenchmark(("im2col/" + n).c_str(), BM_im2col, c)
        ->UseRealTime()->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("col2im/" + n).c_str(), BM_col2im, c)
        ->UseRealTime()->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("conv2d_fwd/" + n).c_str(), BM_conv2d_forward, c)
        ->UseRealTime()->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("conv2d_bwd/" + n).c_str(), BM_conv2d_backward, c)
        ->UseRealTime()->Unit(benchmark::kMillisecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
