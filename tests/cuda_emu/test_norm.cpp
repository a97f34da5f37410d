// The CUDA batch norm and layer norm launchers (cuda/norm.cu) on CPU threads, against the
// CPU library. Their statistics are sums in the GPU's own fixed trees, so results are
// compared to rounding (a few eps of the value's scale); batch norm's eval forward uses
// no sums and must give the CPU's outputs to the rounding of one contracted multiply-add.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "adlk/cuda/nn.h"
#include "adlk/nn.h"
#include "check.h"
#include "test_cuda_emu.h"

namespace {

using adlk::index_t;
using cuda_emu_test::check;

template <typename T>
std::vector<T> randoms(index_t n, double offset, double spread, std::mt19937_64& rng) {
  std::normal_distribution<double> d(offset, spread);
  std::vector<T> v(static_cast<std::size_t>(n));
  for (T& e : v) e = T(d(rng));
  return v;
}

// |a - b| <= tol * (|a| + scale) elementwise, NaN equal to NaN; prints the first miss.
template <typename T>
bool near(const std::vector<T>& a, const std::vector<T>& b, double scale, double tol_eps = 64) {
  if (a.size() != b.size()) return false;
  const double tol = tol_eps * std::numeric_limits<T>::epsilon();
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(double(a[i])) && std::isnan(double(b[i]))) continue;
    if (!(std::fabs(double(a[i]) - double(b[i])) <= tol * (std::fabs(double(a[i])) + scale))) {
      std::printf("  differs at %zu: %.17g vs %.17g\n", i, double(a[i]), double(b[i]));
      return false;
    }
  }
  return true;
}

template <typename T>
void test_batchnorm(index_t N, index_t C, index_t S, double offset, std::mt19937_64& rng) {
  const std::string name = "batchnorm " + std::to_string(N) + "x" + std::to_string(C) + "x" +
                           std::to_string(S) + " offset " + std::to_string(int(offset)) +
                           (sizeof(T) == 4 ? " float" : " double");
  const adlk::BatchNormGeom g{N, C, S};
  const index_t n = N * C * S;
  const auto x = randoms<T>(n, offset, 1.5, rng), dy = randoms<T>(n, 0, 1, rng);
  const auto w = randoms<T>(C, 1, 0.5, rng), b = randoms<T>(C, 0, 0.5, rng);
  std::vector<double> ws(static_cast<std::size_t>(adlk::cuda::batchnorm_workspace(g)), -7.0);
  const auto Cs = static_cast<std::size_t>(C);
  for (bool affine : {true, false}) {
    const T* pw = affine ? w.data() : nullptr;
    const T* pb = affine ? b.data() : nullptr;
    const std::string nm = name + (affine ? " affine" : "");
    // training: batch statistics and the running update
    std::vector<T> rm_c(Cs, T(0.5)), rv_c(Cs, T(2)), rm_g = rm_c, rv_g = rv_c;
    std::vector<T> yc(static_cast<std::size_t>(n)), yg(yc.size(), T(-5));
    std::vector<T> mc(Cs), ic(Cs), mg(Cs, T(-5)), ig(Cs, T(-5));
    adlk::batchnorm_forward<T>(g, x.data(), pw, pb, rm_c.data(), rv_c.data(), true, 0.1, 1e-5,
                               yc.data(), mc.data(), ic.data());
    adlk::cuda::batchnorm_forward<T>(g, x.data(), pw, pb, rm_g.data(), rv_g.data(), true, 0.1, 1e-5,
                                     yg.data(), mg.data(), ig.data(), ws.data(), nullptr);
    // a mean's error scales with the values summed, not with the mean (near 0 here)
    const double values = std::fabs(offset) + 4;
    check(near(mc, mg, values) && near(ic, ig, 0) && near(rm_c, rm_g, values) && near(rv_c, rv_g, 0),
          nm + " training statistics");
    check(near(yc, yg, 4), nm + " training y");
    for (bool training : {true, false}) {
      std::vector<T> gxc(yc.size()), gxg(yc.size(), T(-5)), gwc(Cs), gbc(Cs), gwg(Cs, T(-5)), gbg(Cs, T(-5));
      adlk::batchnorm_backward<T>(g, dy.data(), x.data(), pw, mc.data(), ic.data(), training,
                                  gxc.data(), gwc.data(), gbc.data());
      adlk::cuda::batchnorm_backward<T>(g, dy.data(), x.data(), pw, mc.data(), ic.data(), training,
                                        gxg.data(), gwg.data(), gbg.data(), ws.data(), nullptr);
      // the sums of N * S terms of size ~1: their error scales with sqrt(count)
      const double sums = std::sqrt(double(N * S)) + 1;
      check(near(gbc, gbg, sums) && near(gwc, gwg, sums), nm + " backward sums training " + std::to_string(training));
      check(near(gxc, gxg, 4), nm + " grad_x training " + std::to_string(training));
    }
    // eval: the running statistics, no sums
    std::vector<T> ye(yc.size()), yeg(yc.size(), T(-5)), me(Cs), ie(Cs), meg(Cs, T(-5)), ieg(Cs, T(-5));
    adlk::batchnorm_forward<T>(g, x.data(), pw, pb, rm_c.data(), rv_c.data(), false, 0.1, 1e-5,
                               ye.data(), me.data(), ie.data());
    adlk::cuda::batchnorm_forward<T>(g, x.data(), pw, pb, rm_c.data(), rv_c.data(), false, 0.1, 1e-5,
                                     yeg.data(), meg.data(), ieg.data(), ws.data(), nullptr);
    check(me == meg && ie == ieg && near(ye, yeg, 1, 2), nm + " eval");
  }
}

template <typename T>
void test_layernorm(index_t rows, index_t D, double offset, std::mt19937_64& rng) {
  const std::string name = "layernorm " + std::to_string(rows) + "x" + std::to_string(D) +
                           " offset " + std::to_string(int(offset)) + (sizeof(T) == 4 ? " float" : " double");
  const index_t n = rows * D;
  auto x = randoms<T>(n, offset, 1, rng);
  if (n > 0) x[0] = T(offset + 1e4);  // a far first value: the recentering pass
  const auto dy = randoms<T>(n, 0, 1, rng);
  const auto w = randoms<T>(D, 1, 0.5, rng), b = randoms<T>(D, 0, 0.5, rng);
  const auto Ds = static_cast<std::size_t>(D), Rs = static_cast<std::size_t>(rows);
  std::vector<double> ws(static_cast<std::size_t>(adlk::cuda::layernorm_workspace(rows, D)), -7.0);
  // every weight/bias variant on small rows; the larger ones (whose threads cost the
  // sanitizers most) with both or neither
  for (int variant = 0; variant < 4; variant += n > 1000 ? 3 : 1) {
    const T* pw = variant & 1 ? w.data() : nullptr;
    const T* pb = variant & 2 ? b.data() : nullptr;
    const std::string nm = name + " variant " + std::to_string(variant);
    std::vector<T> yc(static_cast<std::size_t>(n)), yg(yc.size(), T(-5));
    std::vector<T> mc(Rs), rc(Rs), mg(Rs, T(-5)), rg(Rs, T(-5));
    adlk::layernorm_forward<T>(rows, D, x.data(), pw, pb, 1e-5, yc.data(), mc.data(), rc.data());
    adlk::cuda::layernorm_forward<T>(rows, D, x.data(), pw, pb, 1e-5, yg.data(), mg.data(), rg.data(), nullptr);
    const double values = std::fabs(offset) + 4;  // the scale of a mean's error
    check(near(mc, mg, values) && near(rc, rg, 0) && near(yc, yg, 4), nm + " forward");
    std::vector<T> gxc(yc.size()), gxg(yc.size(), T(-5)), gwc(Ds), gbc(Ds), gwg(Ds, T(-5)), gbg(Ds, T(-5));
    adlk::layernorm_backward<T>(rows, D, dy.data(), x.data(), mc.data(), rc.data(), pw, gxc.data(),
                                gwc.data(), gbc.data());
    adlk::cuda::layernorm_backward<T>(rows, D, dy.data(), x.data(), mc.data(), rc.data(), pw, gxg.data(),
                                      gwg.data(), gbg.data(), ws.data(), nullptr);
    // the CPU sums a chunk's column in T: float error grows with the rows
    const double sums = std::sqrt(double(rows)) + 1;
    check(near(gxc, gxg, 4) && near(gwc, gwg, sums) && near(gbc, gbg, sums), nm + " backward");
  }
}

}  // namespace

template <typename T>
void run_norm(std::mt19937_64& rng) {
  // several items per channel in the small configuration (kNormItem 64), S = 1 (the
  // (N, C) layout), planes larger than an item, empty batches
  test_batchnorm<T>(70, 4, 1, 0, rng);
  test_batchnorm<T>(9, 2, 33, 1e3, rng);
  test_batchnorm<T>(3, 5, 130, 0, rng);
  test_batchnorm<T>(0, 3, 4, 0, rng);
  test_batchnorm<T>(4, 3, 0, 0, rng);
  test_layernorm<T>(1, 1, 0, rng);
  test_layernorm<T>(40, 33, 1e3, rng);
  test_layernorm<T>(70, 100, 0, rng);
  test_layernorm<T>(0, 6, 0, rng);
}

template void run_norm<float>(std::mt19937_64&);
template void run_norm<double>(std::mt19937_64&);
