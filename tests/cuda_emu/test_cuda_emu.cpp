// Every CUDA launcher of cuda/*.cu, run on CPU threads by the emulation harness
// (adlk/cuda/emulation.h), against the CPU library on small and edge geometries.
//
// Built by tests/cuda_emu/CMakeLists.txt under ThreadSanitizer and under
// AddressSanitizer + UndefinedBehaviorSanitizer, in two kernel configurations: the real
// one (256-thread blocks, grid cap as on the GPU) and 16-thread blocks with grids capped
// at 2 blocks (blocks that are not whole warps; grids smaller than the data, so every
// grid-stride loop takes several turns). Where a kernel adds in the CPU's order (every
// pooling kernel, im2col/col2im, sum_batches) the results must be bitwise equal; the
// channel sums (a shared-memory tree in double) are compared with a float64 sum. The
// optimizer, activation and dropout launchers are checked in test_optim_nn.cpp.
//
// Prints one line per failed check and ends with "N passed, N failed"; exit status 1 on
// any failure.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "adlk/conv.h"
#include "adlk/cuda/conv.h"
#include "adlk/cuda/pool.h"
#include "adlk/parallel.h"
#include "adlk/pool.h"
#include "check.h"
#include "test_cuda_emu.h"

namespace {

using adlk::index_t;

using cuda_emu_test::check;

template <typename T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <typename T>
std::vector<T> random_vector(std::size_t n, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> d(-64, 64);  // ties in max pooling, exact sums rare
  std::vector<T> v(n);
  for (T& e : v) e = T(d(rng)) / T(8) + T(d(rng)) * T(1e-3);
  return v;
}

std::string conv_name(const adlk::Conv2dGeom& g) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "N%lld C%lld %lldx%lld k%lldx%lld s%lldx%lld p%lldx%lld d%lldx%lld",
                (long long)g.N, (long long)g.C, (long long)g.H, (long long)g.W, (long long)g.kH,
                (long long)g.kW, (long long)g.sH, (long long)g.sW, (long long)g.pH, (long long)g.pW,
                (long long)g.dH, (long long)g.dW);
  return buf;
}

// ---- conv ---------------------------------------------------------------------------------

template <typename T>
void test_conv(adlk::Conv2dGeom g, std::mt19937_64& rng) {
  g.finalize();
  const std::string name = conv_name(g) + (sizeof(T) == 8 ? " f64" : " f32");
  const index_t img = g.C * g.H * g.W, cols_img = g.col_rows() * g.L();
  const auto x = random_vector<T>(static_cast<std::size_t>(g.N * img), rng);

  // im2col of the whole batch, and of images [1, N) only (n0 > 0).
  std::vector<T> want(static_cast<std::size_t>(g.N * cols_img)), got(want.size(), T(-7));
  adlk::im2col<T>(x.data(), g, want.data());
  adlk::cuda::im2col<T>(x.data(), got.data(), g, 0, g.N, nullptr);
  check(bitwise_equal(got, want), "im2col " + name);
  if (g.N > 1) {
    std::vector<T> part(std::size_t((g.N - 1) * cols_img), T(-7));
    adlk::cuda::im2col<T>(x.data(), part.data(), g, 1, g.N - 1, nullptr);
    check(std::memcmp(part.data(), want.data() + cols_img, part.size() * sizeof(T)) == 0,
          "im2col n0=1 " + name);
  }

  // col2im: overlaps summed in the CPU's order.
  const auto cols = random_vector<T>(static_cast<std::size_t>(g.N * cols_img), rng);
  std::vector<T> xw(static_cast<std::size_t>(g.N * img)), xg(xw.size(), T(-7));
  adlk::col2im<T>(cols.data(), g, xw.data());
  adlk::cuda::col2im<T>(cols.data(), xg.data(), g, 0, g.N, nullptr);
  check(bitwise_equal(xg, xw), "col2im " + name);
}

template <typename T>
void test_conv_reductions(index_t N, index_t C, index_t L, std::mt19937_64& rng) {
  const std::string name = "N" + std::to_string(N) + " C" + std::to_string(C) + " L" +
                           std::to_string(L) + (sizeof(T) == 8 ? " f64" : " f32");
  const auto dy = random_vector<T>(static_cast<std::size_t>(N * C * L), rng);
  std::vector<T> db(static_cast<std::size_t>(C), T(-7));
  adlk::cuda::channel_sums<T>(dy.data(), db.data(), N, C, L, nullptr);
  bool ok = true;
  for (index_t c = 0; c < C; ++c) {
    // float64 reference; the kernel also sums in double, in another order: the two
    // differ by at most (N*L) * eps(double) * sum|dy|, then by the rounding to T.
    double s = 0, abs_sum = 0;
    for (index_t n = 0; n < N; ++n)
      for (index_t l = 0; l < L; ++l) {
        s += double(dy[std::size_t((n * C + c) * L + l)]);
        abs_sum += std::abs(double(dy[std::size_t((n * C + c) * L + l)]));
      }
    const double tol = 2 * double(std::numeric_limits<T>::epsilon()) * std::abs(s) +
                       double(N * L) * std::numeric_limits<double>::epsilon() * abs_sum;
    ok = ok && std::abs(double(db[std::size_t(c)]) - s) <= tol;
  }
  check(ok, "channel_sums " + name);

  for (bool accumulate : {false, true}) {
    const index_t nb = N, count = C * L;
    const auto partials = random_vector<T>(static_cast<std::size_t>(nb * count), rng);
    auto out = random_vector<T>(static_cast<std::size_t>(count), rng);
    std::vector<T> want = out;
    for (index_t j = 0; j < count; ++j) {
      T acc = accumulate ? want[std::size_t(j)] : T(0);
      for (index_t b = 0; b < nb; ++b) acc += partials[std::size_t(b * count + j)];
      want[std::size_t(j)] = acc;
    }
    adlk::cuda::sum_batches<T>(partials.data(), out.data(), nb, count, accumulate, nullptr);
    check(bitwise_equal(out, want), std::string("sum_batches accumulate=") +
                                        (accumulate ? "1 " : "0 ") + name);
  }
}

// ---- pool ---------------------------------------------------------------------------------

template <typename T>
void test_pool(adlk::Pool2dGeom g, std::mt19937_64& rng) {
  g.finalize();
  char buf[200];
  std::snprintf(buf, sizeof buf, "N%lld C%lld %lldx%lld k%lldx%lld s%lldx%lld p%lldx%lld d%lldx%lld ceil%d %s",
                (long long)g.N, (long long)g.C, (long long)g.H, (long long)g.W, (long long)g.kH,
                (long long)g.kW, (long long)g.sH, (long long)g.sW, (long long)g.pH, (long long)g.pW,
                (long long)g.dH, (long long)g.dW, int(g.ceil_mode), sizeof(T) == 8 ? "f64" : "f32");
  const std::string name = buf;
  const index_t in_n = g.N * g.C * g.H * g.W, out_n = g.N * g.C * g.H_out * g.W_out;
  const auto x = random_vector<T>(static_cast<std::size_t>(in_n), rng);

  std::vector<T> yw(static_cast<std::size_t>(out_n)), yg(yw.size(), T(-7));
  std::vector<std::int64_t> iw(yw.size()), ig(yw.size(), -7);
  adlk::maxpool2d_forward<T>(x.data(), g, yw.data(), iw.data());
  adlk::cuda::maxpool2d_forward<T>(x.data(), g, yg.data(), ig.data(), nullptr);
  check(bitwise_equal(yg, yw) && ig == iw, "maxpool2d_forward " + name);
  check(adlk::cuda::maxpool2d_first_outside_window(iw.data(), g, nullptr) == -1,
        "maxpool2d_first_outside_window (valid) " + name);

  const auto dy = random_vector<T>(static_cast<std::size_t>(out_n), rng);
  adlk::IndexScatterGeom sg;
  sg.planes = g.N * g.C, sg.count = g.H_out * g.W_out, sg.dst_size = g.H * g.W;
  std::vector<T> dxw(static_cast<std::size_t>(in_n)), dxg(dxw.size(), T(-7)), dxp(dxw.size(), T(-7));
  check(adlk::maxpool2d_backward<T>(dy.data(), iw.data(), sg, dxw.data()) == -1, "cpu backward");
  adlk::cuda::maxpool2d_backward<T>(dy.data(), iw.data(), g, dxg.data(), nullptr);
  check(bitwise_equal(dxg, dxw), "maxpool2d_backward (gather) " + name);
  adlk::cuda::maxpool2d_backward_planes<T>(dy.data(), iw.data(), sg, dxp.data(), nullptr);
  check(bitwise_equal(dxp, dxw), "maxpool2d_backward_planes " + name);
  check(adlk::cuda::first_index_out_of_range(iw.data(), out_n, sg.dst_size, nullptr) == -1,
        "first_index_out_of_range (valid) " + name);

  std::vector<T> uw(static_cast<std::size_t>(in_n)), ug(uw.size(), T(-7));
  check(adlk::max_unpool2d<T>(yw.data(), iw.data(), sg, uw.data()) == -1, "cpu unpool");
  adlk::cuda::max_unpool2d_planes<T>(yw.data(), iw.data(), sg, ug.data(), nullptr);
  check(bitwise_equal(ug, uw), "max_unpool2d_planes " + name);

  // A bad index is found at its position, the first one if several.
  if (out_n > 2) {
    auto bad = iw;
    bad[std::size_t(out_n - 1)] = sg.dst_size;
    bad[std::size_t(out_n / 2)] = -2;
    check(adlk::cuda::first_index_out_of_range(bad.data(), out_n, sg.dst_size, nullptr) ==
              out_n / 2, "first_index_out_of_range (bad) " + name);
    check(adlk::cuda::maxpool2d_first_outside_window(bad.data(), g, nullptr) == out_n / 2,
          "maxpool2d_first_outside_window (bad) " + name);
  }

  if (g.dH == 1 && g.dW == 1) {
    for (bool cip : {true, false}) {
      std::vector<T> aw(static_cast<std::size_t>(out_n)), ag(aw.size(), T(-7));
      adlk::avgpool2d_forward<T>(x.data(), g, cip, aw.data());
      adlk::cuda::avgpool2d_forward<T>(x.data(), g, cip, ag.data(), nullptr);
      check(bitwise_equal(ag, aw), std::string("avgpool2d_forward cip=") + (cip ? "1 " : "0 ") + name);
      std::vector<T> bw(static_cast<std::size_t>(in_n)), bg(bw.size(), T(-7));
      adlk::avgpool2d_backward<T>(dy.data(), g, cip, bw.data());
      adlk::cuda::avgpool2d_backward<T>(dy.data(), g, cip, bg.data(), nullptr);
      check(bitwise_equal(bg, bw), std::string("avgpool2d_backward cip=") + (cip ? "1 " : "0 ") + name);
    }
  }
}

adlk::Conv2dGeom conv_geom(index_t N, index_t C, index_t H, index_t W, index_t k, index_t s,
                           index_t p, index_t d) {
  adlk::Conv2dGeom g;
  g.N = N, g.C = C, g.H = H, g.W = W, g.kH = k, g.kW = k, g.sH = s, g.sW = s, g.pH = p,
  g.pW = p, g.dH = d, g.dW = d;
  return g;
}

adlk::Pool2dGeom pool_geom(index_t N, index_t C, index_t H, index_t W, index_t k, index_t s,
                           index_t p, index_t d, bool ceil_mode) {
  adlk::Pool2dGeom g;
  g.N = N, g.C = C, g.H = H, g.W = W, g.kH = k, g.kW = k, g.sH = s, g.sW = s, g.pH = p,
  g.pW = p, g.dH = d, g.dW = d, g.ceil_mode = ceil_mode;
  return g;
}

template <typename T>
void run_all(std::mt19937_64& rng) {
  // Small and edge geometries: 1x1, kernel = input, strides beyond the kernel, padding,
  // dilation, odd sizes, non-square kernels and strides.
  test_conv<T>(conv_geom(2, 3, 5, 7, 3, 1, 1, 1), rng);
  test_conv<T>(conv_geom(3, 2, 6, 6, 2, 2, 0, 1), rng);
  test_conv<T>(conv_geom(1, 1, 1, 1, 1, 1, 0, 1), rng);
  test_conv<T>(conv_geom(2, 2, 4, 4, 4, 1, 0, 1), rng);
  test_conv<T>(conv_geom(2, 1, 9, 5, 3, 3, 2, 2), rng);
  test_conv<T>(conv_geom(1, 2, 7, 7, 2, 5, 1, 1), rng);
  adlk::Conv2dGeom odd = conv_geom(2, 2, 6, 9, 1, 1, 0, 1);
  odd.kH = 3, odd.kW = 2, odd.sH = 2, odd.sW = 3, odd.pH = 1, odd.pW = 0, odd.dH = 1, odd.dW = 2;
  test_conv<T>(odd, rng);

  test_conv_reductions<T>(3, 4, 5, rng);
  test_conv_reductions<T>(1, 1, 1, rng);
  test_conv_reductions<T>(2, 5, 33, rng);  // L > kThreads in the 16-thread build
  test_conv_reductions<T>(4, 3, 300, rng);

  test_pool<T>(pool_geom(2, 3, 6, 6, 2, 2, 0, 1, false), rng);
  test_pool<T>(pool_geom(1, 2, 7, 5, 3, 2, 1, 1, true), rng);
  test_pool<T>(pool_geom(2, 1, 9, 9, 3, 1, 1, 2, false), rng);
  test_pool<T>(pool_geom(1, 1, 5, 5, 2, 3, 1, 1, true), rng);
  test_pool<T>(pool_geom(1, 2, 1, 1, 1, 1, 0, 1, false), rng);
  test_pool<T>(pool_geom(3, 2, 8, 11, 3, 3, 0, 1, true), rng);
}

}  // namespace

int main() {
  adlk::set_num_threads(1);  // the CPU references: no OpenMP team beside the emulated threads
  std::mt19937_64 rng(12345);
  run_all<float>(rng);
  run_all<double>(rng);
  run_optim_nn<float>(rng);
  run_optim_nn<double>(rng);
  run_norm<float>(rng);
  run_norm<double>(rng);
  run_rnn<float>(rng);
  run_rnn<double>(rng);
  run_embedding<float>(rng);
  run_embedding<double>(rng);
  return cuda_emu_test::report();
}
