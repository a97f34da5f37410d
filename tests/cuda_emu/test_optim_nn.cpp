// The CUDA optimizer, activation and dropout launchers (cuda/optim.cu, cuda/nn.cu) on CPU
// threads, against the CPU library. They share their per-element arithmetic with the CPU
// kernels (adlk/optim_update.h, adlk/pointwise.h), so every result must be bitwise equal,
// dropout's mask included, except sigmoid and tanh, whose CPU code may contract
// multiply-adds into FMAs (AVX2 machines) where the kernels do not (adlk/vecmath.h):
// within 16 ulp of the result's scale. The total norm (a GPU-specific fixed tree) is
// compared with the CPU's to double rounding, the inf-norm (a maximum) exactly.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "adlk/cuda/nn.h"
#include "adlk/cuda/optim.h"
#include "adlk/nn.h"
#include "adlk/optim.h"
#include "adlk/optim_update.h"
#include "check.h"
#include "test_cuda_emu.h"

namespace {

using adlk::index_t;
using cuda_emu_test::check;

// Lists of tensors: `slots` arrays per tensor, one value vector each.
template <typename T>
struct Lists {
  std::vector<index_t> sizes;
  std::vector<std::vector<std::vector<T>>> data;  // [slot][tensor]

  Lists(const std::vector<index_t>& s, int slots, std::mt19937_64& rng) : sizes(s), data(slots) {
    std::uniform_real_distribution<double> d(-2, 2);
    for (auto& slot : data)
      for (index_t n : sizes) {
        std::vector<T> v(static_cast<std::size_t>(n));
        for (T& e : v) e = T(d(rng));
        slot.push_back(std::move(v));
      }
    // the state slots (2 and up) of Adagrad/RMSprop/Adam must be >= 0 where they are
    // square sums: use |v|
    for (std::size_t s2 = 2; s2 < data.size(); ++s2)
      for (auto& v : data[s2])
        for (T& e : v) e = std::fabs(e);
  }

  std::vector<T*> ptrs(int slot) {
    std::vector<T*> p;
    for (auto& v : data[std::size_t(slot)]) p.push_back(v.data());
    return p;
  }
  index_t count() const { return index_t(sizes.size()); }
  bool operator==(const Lists& o) const {
    for (std::size_t s = 0; s < data.size(); ++s)
      for (std::size_t k = 0; k < sizes.size(); ++k)
        if (!data[s][k].empty() &&
            std::memcmp(data[s][k].data(), o.data[s][k].data(), data[s][k].size() * sizeof(T)) != 0)
          return false;
    return true;
  }
};

// Sizes around the tile edges and more tensors than one launch takes (kListTensors = 48),
// empty ones among them.
std::vector<index_t> list_sizes(std::mt19937_64& rng) {
  std::vector<index_t> s = {1, 0, 3, 1023, 1024, 1025, 4097, 0, 16, 17};
  std::uniform_int_distribution<index_t> d(0, 70);
  for (int k = 0; k < 40; ++k) s.push_back(d(rng));
  return s;
}

template <typename T, typename Step>
void compare_steps(const std::string& what, const std::vector<index_t>& sizes, int slots,
                   std::mt19937_64& rng, Step step) {
  std::mt19937_64 copy = rng;
  Lists<T> cpu(sizes, slots, rng), gpu(sizes, slots, copy);
  for (index_t t = 1; t <= 3; ++t) step(cpu, gpu, t);
  check(cpu == gpu, what);
}

template <typename T>
const T* const* const_ptrs(const std::vector<T*>& v) {
  return const_cast<const T* const*>(v.data());
}

// The long list (two launches) for the variant with every flag set, a short one (tile
// edges of both configurations) for the others: the emulated 256-thread blocks are slow
// under ThreadSanitizer.
template <typename T>
void test_optimizers(std::mt19937_64& rng) {
  const auto long_sizes = list_sizes(rng);
  const std::vector<index_t> short_sizes = {1, 0, 3, 1025, 17, 4097};
  const auto sizes_for = [&](bool all_flags) { return all_flags ? long_sizes : short_sizes; };
  const std::string ty = sizeof(T) == 4 ? " float" : " double";
  for (int wd = 0; wd < 2; ++wd)
    for (int mom = 0; mom < 2; ++mom)
      for (int nest = 0; nest < 2; ++nest)
        for (int mx = 0; mx < 2; ++mx) {
          if (nest && !mom) continue;
          compare_steps<T>("sgd wd" + std::to_string(wd) + " mom" + std::to_string(mom) + " nest" +
                               std::to_string(nest) + " max" + std::to_string(mx) + ty,
                           sizes_for(wd && mom && nest && mx), 3, rng, [&](Lists<T>& c, Lists<T>& g, index_t step) {
                             adlk::SgdHyper h;
                             h.step = step, h.lr = 0.1, h.momentum = mom ? 0.9 : 0;
                             h.dampening = nest ? 0 : 0.1 * mom, h.nesterov = nest;
                             h.weight_decay = 0.05 * wd, h.maximize = mx;
                             auto cb = c.ptrs(2), gb = g.ptrs(2);
                             adlk::sgd_step<T>(c.count(), c.sizes.data(), c.ptrs(0).data(),
                                               const_ptrs(c.ptrs(1)), mom ? cb.data() : nullptr, h);
                             adlk::cuda::sgd_step<T>(g.count(), g.sizes.data(), g.ptrs(0).data(),
                                                     const_ptrs(g.ptrs(1)), mom ? gb.data() : nullptr,
                                                     h, nullptr);
                           });
        }
  for (int wd = 0; wd < 2; ++wd)
    compare_steps<T>("adagrad wd" + std::to_string(wd) + ty, sizes_for(wd), 3, rng,
                     [&](Lists<T>& c, Lists<T>& g, index_t step) {
                       adlk::AdagradHyper h;
                       h.step = step, h.lr = 0.05, h.lr_decay = 0.1, h.weight_decay = 0.05 * wd;
                       adlk::adagrad_step<T>(c.count(), c.sizes.data(), c.ptrs(0).data(),
                                             const_ptrs(c.ptrs(1)), c.ptrs(2).data(), h);
                       adlk::cuda::adagrad_step<T>(g.count(), g.sizes.data(), g.ptrs(0).data(),
                                                   const_ptrs(g.ptrs(1)), g.ptrs(2).data(), h, nullptr);
                     });
  for (int wd = 0; wd < 2; ++wd)
    for (int centered = 0; centered < 2; ++centered)
      for (int mom = 0; mom < 2; ++mom)
        compare_steps<T>("rmsprop wd" + std::to_string(wd) + " centered" + std::to_string(centered) +
                             " mom" + std::to_string(mom) + ty,
                         sizes_for(wd && centered && mom), 5, rng, [&](Lists<T>& c, Lists<T>& g, index_t step) {
                           adlk::RmspropHyper h;
                           h.step = step, h.lr = 0.01, h.alpha = centered ? 0.3 : 0.99;
                           h.weight_decay = 0.05 * wd, h.momentum = 0.9 * mom, h.centered = centered;
                           auto run = [&](Lists<T>& l, bool on_gpu) {
                             auto b = l.ptrs(3), a = l.ptrs(4);
                             T* const* bp = mom ? b.data() : nullptr;
                             T* const* ap = centered ? a.data() : nullptr;
                             if (on_gpu)
                               adlk::cuda::rmsprop_step<T>(l.count(), l.sizes.data(), l.ptrs(0).data(),
                                                           const_ptrs(l.ptrs(1)), l.ptrs(2).data(), bp,
                                                           ap, h, nullptr);
                             else
                               adlk::rmsprop_step<T>(l.count(), l.sizes.data(), l.ptrs(0).data(),
                                                     const_ptrs(l.ptrs(1)), l.ptrs(2).data(), bp, ap, h);
                           };
                           run(c, false);
                           run(g, true);
                         });
  for (int wd = 0; wd < 2; ++wd)
    for (int dec = 0; dec < 2; ++dec)
      for (int ams = 0; ams < 2; ++ams) {
        if (dec && !wd) continue;
        compare_steps<T>("adam wd" + std::to_string(wd) + " decoupled" + std::to_string(dec) +
                             " amsgrad" + std::to_string(ams) + ty,
                         sizes_for(wd && dec && ams), 5, rng, [&](Lists<T>& c, Lists<T>& g, index_t step) {
                           adlk::AdamHyper h;
                           h.step = step, h.lr = 0.01, h.beta1 = 0.8, h.beta2 = 0.99;
                           h.weight_decay = 0.05 * wd, h.decoupled_weight_decay = dec;
                           h.amsgrad = ams;
                           auto run = [&](Lists<T>& l, bool on_gpu) {
                             auto x = l.ptrs(4);
                             T* const* xp = ams ? x.data() : nullptr;
                             if (on_gpu)
                               adlk::cuda::adam_step<T>(l.count(), l.sizes.data(), l.ptrs(0).data(),
                                                        const_ptrs(l.ptrs(1)), l.ptrs(2).data(),
                                                        l.ptrs(3).data(), xp, h, nullptr);
                             else
                               adlk::adam_step<T>(l.count(), l.sizes.data(), l.ptrs(0).data(),
                                                  const_ptrs(l.ptrs(1)), l.ptrs(2).data(),
                                                  l.ptrs(3).data(), xp, h);
                           };
                           run(c, false);
                           run(g, true);
                         });
      }
}

template <typename T>
void test_norms(std::mt19937_64& rng) {
  const std::string ty = sizeof(T) == 4 ? " float" : " double";
  // the long list (two launches) once, a short one (each norm kernel has a shared-memory
  // tree: slow under ThreadSanitizer) for the NaN and inf cases and the clipping
  const auto long_sizes = list_sizes(rng);
  const std::vector<index_t> sizes = {1, 0, 3, 1025, 17, 4097};
  for (int variant = 0; variant < 3; ++variant) {  // plain, with a NaN, with an inf
    Lists<T> l(variant == 0 ? long_sizes : sizes, 1, rng);
    if (variant == 1) l.data[0][5][700] = std::numeric_limits<T>::quiet_NaN();
    if (variant == 2) l.data[0][3][2] = -std::numeric_limits<T>::infinity();
    auto p = l.ptrs(0);
    std::vector<double> partials(std::size_t(adlk::cuda::total_norm_partials(l.count(), l.sizes.data())));
    for (double nt : {1.0, 2.0, std::numeric_limits<double>::infinity()}) {
      const double want = adlk::total_norm<T>(l.count(), l.sizes.data(), const_ptrs(p), nt);
      double got = -1;
      adlk::cuda::total_norm<T>(l.count(), l.sizes.data(), const_ptrs(p), nt, partials.data(), &got, nullptr);
      const std::string what = "total_norm " + std::to_string(nt) + " variant" + std::to_string(variant) + ty;
      if (std::isnan(want) || std::isinf(want) || std::isinf(nt))
        check(std::memcmp(&want, &got, sizeof want) == 0 || (std::isnan(want) && std::isnan(got)), what);
      else
        check(std::fabs(got - want) <= 1e-13 * want, what);
    }
  }
  // no elements at all: 0
  std::vector<index_t> empty = {0, 0};
  std::vector<T*> none = {nullptr, nullptr};
  double partial = -1, got = -1;
  adlk::cuda::total_norm<T>(2, empty.data(), const_ptrs(none), 2.0, &partial, &got, nullptr);
  check(got == 0.0, "total_norm of empty tensors" + ty);
  // clip scaling: as the CPU's scale_tensors with the coefficient clip_grad_norm computes
  for (double max_norm : {0.5, 1e30}) {
    std::mt19937_64 copy = rng;
    Lists<T> c(sizes, 1, rng), g(sizes, 1, copy);
    auto cp = c.ptrs(0), gp = g.ptrs(0);
    const double total = adlk::total_norm<T>(c.count(), c.sizes.data(), const_ptrs(cp), 2.0);
    bool scale;
    const T coef = adlk::update::clip_coef<T>(total, max_norm, scale);
    if (scale) adlk::scale_tensors<T>(c.count(), c.sizes.data(), cp.data(), double(coef));
    adlk::cuda::clip_scale<T>(g.count(), g.sizes.data(), gp.data(), &total, max_norm, nullptr);
    check(c == g, "clip_scale max_norm " + std::to_string(max_norm) + ty);
  }
}

template <typename T>
std::vector<T> special_values(index_t n, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> d(-30, 30);
  std::vector<T> v(static_cast<std::size_t>(n));
  for (T& e : v) e = T(d(rng));
  const T specials[] = {T(0), -T(0), std::numeric_limits<T>::quiet_NaN(),
                        std::numeric_limits<T>::infinity(), -std::numeric_limits<T>::infinity(),
                        T(1e-30), T(-800), T(800), T(0.6), T(-0.7)};
  for (std::size_t i = 0; i < v.size() && i < 10; ++i) v[i * 7 % v.size()] = specials[i];
  return v;
}

// Bitwise equal, except that every NaN equals every NaN: the sign and payload of a NaN
// result depend on which operand the hardware propagates (x86 takes the first NaN
// operand, whose place the compiler may swap; GPUs return one canonical NaN).
template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(std::isnan(a[i]) && std::isnan(b[i])) && std::memcmp(&a[i], &b[i], sizeof(T)) != 0) {
      std::printf("  first difference at %zu: %.17g vs %.17g\n", i, double(a[i]), double(b[i]));
      return false;
    }
  return true;
}

// |a - b| <= 16 eps * (|a| + |scale|) elementwise, the special values (NaN, inf) equal.
template <typename T>
bool close(const std::vector<T>& a, const std::vector<T>& b, const std::vector<T>& scale) {
  const double eps = std::numeric_limits<T>::epsilon();
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i]) || std::isinf(a[i]) || std::isinf(b[i])) {
      if (!(std::isnan(a[i]) && std::isnan(b[i])) && a[i] != b[i]) return false;
    } else if (std::fabs(double(a[i]) - double(b[i])) >
               16 * eps * (std::fabs(double(a[i])) + std::fabs(double(scale[i])))) {
      std::printf("  differs at %zu: %.17g vs %.17g\n", i, double(a[i]), double(b[i]));
      return false;
    }
  }
  return true;
}

template <typename T>
void test_pointwise(std::mt19937_64& rng) {
  const std::string ty = sizeof(T) == 4 ? " float" : " double";
  using A = adlk::Activation;
  for (index_t n : {index_t(0), index_t(1), index_t(37), index_t(1000), index_t(4099)}) {
    const auto x = special_values<T>(n, rng), dy = special_values<T>(n, rng);
    const std::string sz = " n" + std::to_string(n) + ty;
    for (A act : {A::kRelu, A::kLeakyRelu, A::kSigmoid, A::kTanh}) {
      const std::string name = "activation " + std::to_string(int(act)) + sz;
      std::vector<T> yc(x.size()), yg(x.size(), T(-5));
      adlk::activation_forward<T>(n, x.data(), act, 0.02, yc.data());
      adlk::cuda::activation_forward<T>(n, x.data(), act, 0.02, yg.data(), nullptr);
      const bool exact = act == A::kRelu || act == A::kLeakyRelu;
      const std::vector<T> zeros(x.size());
      check(exact ? same_bits(yc, yg) : close(yc, yg, zeros), name + " forward");
      const std::vector<T>& saved = adlk::backward_takes_output(act) ? yc : x;
      std::vector<T> gc(x.size()), gg(x.size(), T(-5));
      adlk::activation_backward<T>(n, dy.data(), saved.data(), act, 0.02, gc.data());
      adlk::cuda::activation_backward<T>(n, dy.data(), saved.data(), act, 0.02, gg.data(), nullptr);
      check(exact ? same_bits(gc, gg) : close(gc, gg, dy), name + " backward");
    }
    for (double p : {0.0, 0.1, 0.5, 1.0}) {
      const std::string name = "dropout p" + std::to_string(p) + sz;
      const std::uint64_t seed = 0x9E3779B97F4A7C15ull;
      std::vector<T> yc(x.size()), yg(x.size(), T(-5));
      std::vector<char> mc(x.size()), mg(x.size(), 2);  // bool storage
      adlk::dropout_forward<T>(n, x.data(), p, seed, yc.data(), reinterpret_cast<bool*>(mc.data()));
      adlk::cuda::dropout_forward<T>(n, x.data(), p, seed, yg.data(), reinterpret_cast<bool*>(mg.data()),
                                     nullptr);
      check(same_bits(yc, yg) && mc == mg, name + " forward");
      std::vector<T> gc(x.size()), gg(x.size(), T(-5));
      adlk::dropout_backward<T>(n, dy.data(), reinterpret_cast<const bool*>(mc.data()), p, gc.data());
      adlk::cuda::dropout_backward<T>(n, dy.data(), reinterpret_cast<const bool*>(mc.data()), p,
                                      gg.data(), nullptr);
      check(same_bits(gc, gg), name + " backward");
    }
  }
}

// Softmax, cross-entropy and the elementwise losses: the GPU sums in its own fixed trees,
// so results are compared to rounding (16 eps of the result's scale), except the
// per-element losses and gradients of MSE and L1, which are the CPU's bits.
template <typename T>
void test_rows_and_losses(std::mt19937_64& rng) {
  const std::string ty = sizeof(T) == 4 ? " float" : " double";
  const std::vector<std::pair<index_t, index_t>> shapes = {{0, 3}, {1, 1}, {3, 5}, {7, 33}, {5, 100}, {40, 7}};
  for (auto [rows, K] : shapes) {
    const index_t n = rows * K;
    auto x = special_values<T>(n, rng), dy = special_values<T>(n, rng);
    if (n > 3) x[3] = T(1e4);  // a far-off maximum: exp flushes the rest to 0
    const std::vector<T> ones(static_cast<std::size_t>(n), T(1));
    const std::string sz = " " + std::to_string(rows) + "x" + std::to_string(K) + ty;
    for (bool log : {false, true}) {
      std::vector<T> yc(static_cast<std::size_t>(n)), yg(static_cast<std::size_t>(n), T(-5));
      adlk::softmax_forward<T>(rows, K, x.data(), log, yc.data());
      adlk::cuda::softmax_forward<T>(rows, K, x.data(), log, yg.data(), nullptr);
      check(close(yc, yg, ones), std::string(log ? "log_softmax" : "softmax") + " forward" + sz);
      std::vector<T> gc(static_cast<std::size_t>(n)), gg(static_cast<std::size_t>(n), T(-5));
      adlk::softmax_backward<T>(rows, K, dy.data(), yc.data(), log, gc.data());
      adlk::cuda::softmax_backward<T>(rows, K, dy.data(), yc.data(), log, gg.data(), nullptr);
      std::vector<T> scale(static_cast<std::size_t>(n), T(0));
      for (index_t r = 0; r < rows; ++r) {
        T row = 0;  // the row's |dy| sum bounds the error of its sum
        for (index_t j = 0; j < K; ++j) row += std::isfinite(dy[r * K + j]) ? std::fabs(dy[r * K + j]) : T(0);
        for (index_t j = 0; j < K; ++j) scale[r * K + j] = row;
      }
      check(close(gc, gg, scale), std::string(log ? "log_softmax" : "softmax") + " backward" + sz);
    }
    // cross-entropy on finite logits, with ignored rows
    std::uniform_real_distribution<double> d(-8, 8);
    for (T& v : x) v = T(d(rng));
    std::vector<std::int64_t> targets(static_cast<std::size_t>(rows));
    for (index_t b = 0; b < rows; ++b) targets[b] = b % 3 == 1 ? -100 : (b * 7) % K;
    std::vector<T> gc(static_cast<std::size_t>(n)), gg(static_cast<std::size_t>(n), T(-5)), lc(static_cast<std::size_t>(rows));
    std::vector<double> lg(static_cast<std::size_t>(rows), -5);
    adlk::softmax_cross_entropy<T>(rows, K, x.data(), targets.data(), adlk::Reduction::kNone, -100,
                                   gc.data(), lc.data());
    adlk::cuda::softmax_cross_entropy<T>(rows, K, x.data(), targets.data(), -100, 1.0, gg.data(),
                                         lg.data(), nullptr);
    std::vector<T> lgt(lg.begin(), lg.end());
    check(close(gc, gg, ones) && close(lc, lgt, std::vector<T>(static_cast<std::size_t>(rows), T(8))),
          "softmax_cross_entropy" + sz);
    double total = -1;
    adlk::cuda::sum_doubles(rows, lg.data(), 2.0, &total, nullptr);
    double want = 0;
    for (double v : lg) want += v;
    check(std::fabs(total - want / 2) <= 1e-12 * (std::fabs(want) + 1), "sum_doubles" + sz);
  }
  using L = adlk::LossKind;
  using R = adlk::Reduction;
  for (index_t n : {index_t(0), index_t(1), index_t(1000), index_t(4099)}) {
    const auto p = special_values<T>(n, rng), t = special_values<T>(n, rng);
    std::vector<double> partials(static_cast<std::size_t>(adlk::cuda::loss_partials(n)));
    for (L kind : {L::kMse, L::kL1, L::kHuber})
      for (R red : {R::kMean, R::kSum, R::kNone}) {
        const std::string name = "loss " + std::to_string(int(kind)) + " red " + std::to_string(int(red)) +
                                 " n" + std::to_string(n) + ty;
        std::vector<T> gc(static_cast<std::size_t>(n)), gg(static_cast<std::size_t>(n), T(-5)), lc(static_cast<std::size_t>(n)), lg(static_cast<std::size_t>(n), T(-5));
        const double want = adlk::elementwise_loss<T>(n, p.data(), t.data(), kind, red, 0.7, gc.data(), lc.data());
        double got = -1;
        adlk::cuda::elementwise_loss<T>(n, p.data(), t.data(), kind, red, 0.7, gg.data(), lg.data(),
                                        partials.data(), &got, nullptr);
        const bool exact = kind != L::kHuber;
        const std::vector<T> zeros(static_cast<std::size_t>(n));
        check(exact ? same_bits(gc, gg) && same_bits(lc, lg) : close(gc, gg, zeros) && close(lc, lg, zeros),
              name + " elements");
        const bool both_nan = std::isnan(want) && std::isnan(got);
        check(both_nan || got == want || std::fabs(got - want) <= 1e-12 * std::fabs(want), name + " total");
      }
  }
}

}  // namespace

template <typename T>
void run_optim_nn(std::mt19937_64& rng) {
  test_optimizers<T>(rng);
  test_norms<T>(rng);
  test_pointwise<T>(rng);
  test_rows_and_losses<T>(rng);
}

template void run_optim_nn<float>(std::mt19937_64&);
template void run_optim_nn<double>(std::mt19937_64&);
