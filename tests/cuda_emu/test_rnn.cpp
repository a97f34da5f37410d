// The CUDA LSTM and GRU step and additive attention launchers (cuda/rnn.cu) on CPU threads, against the CPU
// library's cells (adlk/rnn.h): the projections the kernels take from cuBLAS are plain
// loops here, so results agree to the rounding of those sums (a few eps of the inputs'
// scale), not bitwise.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "adlk/cuda/rnn.h"
#include "adlk/rnn.h"
#include "check.h"
#include "test_cuda_emu.h"

namespace {

using adlk::index_t;
using cuda_emu_test::check;

template <typename T>
using Vec = std::vector<T>;

template <typename T>
Vec<T> randoms(index_t n, double scale, std::mt19937_64& rng) {
  std::normal_distribution<double> d(0, scale);
  Vec<T> v(static_cast<std::size_t>(n));
  for (T& e : v) e = T(d(rng));
  return v;
}

// out (R, N) = a (R, K) b^T (b: (N, K)) [+ bias (N)], or a b (b: (K, N)) when !bt, in double.
template <typename T>
Vec<T> product(const Vec<T>& a, const Vec<T>& b, index_t R, index_t K, index_t N, bool bt,
               const T* bias = nullptr) {
  Vec<T> out(static_cast<std::size_t>(R * N));
  for (index_t r = 0; r < R; ++r)
    for (index_t n = 0; n < N; ++n) {
      double s = bias ? double(bias[n]) : 0.0;
      for (index_t k = 0; k < K; ++k) s += double(a[r * K + k]) * double(bt ? b[n * K + k] : b[k * N + n]);
      out[r * N + n] = T(s);
    }
  return out;
}

template <typename T>
Vec<T> column_sums(const Vec<T>& a, index_t R, index_t N) {
  Vec<T> out(static_cast<std::size_t>(N));
  for (index_t n = 0; n < N; ++n) {
    double s = 0;
    for (index_t r = 0; r < R; ++r) s += double(a[r * N + n]);
    out[n] = T(s);
  }
  return out;
}

template <typename T>
bool near(const Vec<T>& a, const Vec<T>& b, double scale) {
  if (a.size() != b.size()) return false;
  const double tol = 256 * std::numeric_limits<T>::epsilon();
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(std::fabs(double(a[i]) - double(b[i])) <= tol * (std::fabs(double(a[i])) + scale))) {
      std::printf("  differs at %zu: %.17g vs %.17g\n", i, double(a[i]), double(b[i]));
      return false;
    }
  return true;
}

template <typename T>
void test_lstm_step(index_t B, index_t I, index_t H, std::mt19937_64& rng) {
  const std::string name = "lstm step B" + std::to_string(B) + " I" + std::to_string(I) + " H" +
                           std::to_string(H) + (sizeof(T) == 4 ? " float" : " double");
  const index_t G = 4 * H;
  const auto x = randoms<T>(B * I, 1, rng), h = randoms<T>(B * H, 1, rng), c = randoms<T>(B * H, 1, rng);
  const auto w_ih = randoms<T>(G * I, 0.5, rng), w_hh = randoms<T>(G * H, 0.5, rng);
  const auto b_ih = randoms<T>(G, 0.5, rng), b_hh = randoms<T>(G, 0.5, rng);
  const auto dy = randoms<T>(B * H, 1, rng), dhn = randoms<T>(B * H, 1, rng), dcn = randoms<T>(B * H, 1, rng);
  const auto Bs = static_cast<std::size_t>(B * H);
  // the CPU cell: one step of lstm_forward / lstm_backward
  adlk::LstmGeom g{1, B, I, H, I, H};
  Vec<T> y(Bs), gates(static_cast<std::size_t>(B * G)), cells(Bs);
  adlk::lstm_forward<T>(g, x.data(), h.data(), c.data(), w_ih.data(), w_hh.data(), b_ih.data(), b_hh.data(),
                        false, y.data(), nullptr, nullptr, gates.data(), cells.data());
  Vec<T> gx(static_cast<std::size_t>(B * I)), gh(Bs), gc(Bs), gw_ih(w_ih.size()), gw_hh(w_hh.size()), gb(static_cast<std::size_t>(G));
  adlk::lstm_backward<T>(g, dy.data(), H, dhn.data(), dcn.data(), x.data(), h.data(), c.data(), w_ih.data(),
                         w_hh.data(), gates.data(), cells.data(), y.data(), false, gx.data(), gh.data(),
                         gc.data(), gw_ih.data(), gw_hh.data(), gb.data());
  // the kernels, with the projections as loops; h_next into rows of stride H + 3
  Vec<T> bias(static_cast<std::size_t>(G));
  for (index_t k = 0; k < G; ++k) bias[k] = b_ih[k] + b_hh[k];
  auto pre = product(x, w_ih, B, I, G, true, bias.data());
  const auto rec = product(h, w_hh, B, H, G, true);
  const index_t ldh = H + 3;
  Vec<T> c_next(Bs, T(-5)), h_rows(static_cast<std::size_t>(B * ldh), T(-5));
  adlk::cuda::lstm_step<T>(B, H, pre.data(), rec.data(), c.data(), c_next.data(), h_rows.data(), ldh, nullptr);
  Vec<T> h_next(Bs);
  bool pad_kept = true;
  for (index_t r = 0; r < B; ++r)
    for (index_t j = 0; j < ldh; ++j) {
      if (j < H) h_next[r * H + j] = h_rows[r * ldh + j];
      else pad_kept = pad_kept && h_rows[r * ldh + j] == T(-5);
    }
  check(near(gates, pre, 1) && near(cells, c_next, 1) && near(y, h_next, 1) && pad_kept, name + " forward");
  // backward: dc in place, dG; grad_h0 = dG W_hh, the bias gradient = dG's column sums
  Vec<T> dc = dcn, dG(static_cast<std::size_t>(B * G), T(-5));
  adlk::cuda::lstm_step_backward<T>(B, H, gates.data(), c.data(), cells.data(), dy.data(), H, dhn.data(),
                                    dc.data(), dG.data(), nullptr);
  check(near(gc, dc, 1) && near(gh, product(dG, w_hh, B, G, H, false), 4) && near(gb, column_sums(dG, B, G), 4),
        name + " backward");
}

template <typename T>
void test_gru_step(index_t B, index_t I, index_t H, std::mt19937_64& rng) {
  const std::string name = "gru step B" + std::to_string(B) + " I" + std::to_string(I) + " H" +
                           std::to_string(H) + (sizeof(T) == 4 ? " float" : " double");
  const index_t G = 3 * H;
  const auto x = randoms<T>(B * I, 1, rng), h = randoms<T>(B * H, 1, rng);
  const auto w_ih = randoms<T>(G * I, 0.5, rng), w_hh = randoms<T>(G * H, 0.5, rng);
  const auto b_ih = randoms<T>(G, 0.5, rng), b_hh = randoms<T>(G, 0.5, rng), dh = randoms<T>(B * H, 1, rng);
  const auto Bs = static_cast<std::size_t>(B * H), Gs = static_cast<std::size_t>(B * G);
  adlk::CellGeom g{B, I, H};
  Vec<T> h_next(Bs), gates(Gs), hn(Bs);
  adlk::gru_cell_forward<T>(g, x.data(), h.data(), w_ih.data(), w_hh.data(), b_ih.data(), b_hh.data(),
                            h_next.data(), gates.data(), hn.data());
  Vec<T> gx(static_cast<std::size_t>(B * I)), gh(Bs), gw_ih(w_ih.size()), gw_hh(w_hh.size()),
      gb_ih(static_cast<std::size_t>(G)), gb_hh(static_cast<std::size_t>(G));
  adlk::gru_cell_backward<T>(g, dh.data(), x.data(), h.data(), w_ih.data(), w_hh.data(), gates.data(), hn.data(),
                             gx.data(), gh.data(), gw_ih.data(), gw_hh.data(), gb_ih.data(), gb_hh.data());
  auto gi = product(x, w_ih, B, I, G, true, b_ih.data());
  const auto ghp = product(h, w_hh, B, H, G, true, b_hh.data());
  Vec<T> hn_g(Bs, T(-5)), h_next_g(Bs, T(-5));
  adlk::cuda::gru_step<T>(B, H, gi.data(), ghp.data(), h.data(), hn_g.data(), h_next_g.data(), nullptr);
  check(near(gates, gi, 1) && near(hn, hn_g, 1) && near(h_next, h_next_g, 1), name + " forward");
  Vec<T> dgi(Gs, T(-5)), dgh(Gs, T(-5)), gh_direct(Bs, T(-5));
  adlk::cuda::gru_step_backward<T>(B, H, gates.data(), hn.data(), h.data(), dh.data(), dgi.data(), dgh.data(),
                                   gh_direct.data(), nullptr);
  auto gh_g = product(dgh, w_hh, B, G, H, false);
  for (std::size_t k = 0; k < Bs; ++k) gh_g[k] += gh_direct[k];
  check(near(gb_ih, column_sums(dgi, B, G), 4) && near(gb_hh, column_sums(dgh, B, G), 4) && near(gh, gh_g, 4) &&
            near(gx, product(dgi, w_ih, B, G, I, false), 4),
        name + " backward");
}

template <typename T>
void test_attention(index_t B, index_t Tn, index_t Dq, index_t Dk, index_t A, bool masked, std::mt19937_64& rng) {
  const std::string name = "attention B" + std::to_string(B) + " T" + std::to_string(Tn) + " Dk" +
                           std::to_string(Dk) + " A" + std::to_string(A) + (masked ? " masked" : "") +
                           (sizeof(T) == 4 ? " float" : " double");
  const index_t R = Tn * B;
  const auto q = randoms<T>(B * Dq, 1, rng), keys = randoms<T>(R * Dk, 1, rng);
  const auto wq = randoms<T>(A * Dq, 0.5, rng), wk = randoms<T>(A * Dk, 0.5, rng), v = randoms<T>(A, 1, rng);
  const auto gc = randoms<T>(B * Dk, 1, rng), gw = randoms<T>(B * Tn, 1, rng);
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(B * Tn), 1);
  if (masked)
    for (index_t i = 0; i < B * Tn; ++i) mask[i] = (i % Tn == 0) || (i * 7 % 5 < 3);
  const std::uint8_t* pm = masked ? mask.data() : nullptr;
  const adlk::AttentionGeom g{B, Tn, Dq, Dk, A};
  Vec<T> ctx(static_cast<std::size_t>(B * Dk)), w(static_cast<std::size_t>(B * Tn)), e(static_cast<std::size_t>(R * A));
  adlk::additive_attention_forward<T>(g, q.data(), keys.data(), wq.data(), wk.data(), v.data(), pm, ctx.data(),
                                      w.data(), e.data());
  // the kernels, the projections as loops
  const auto qp = product(q, wq, B, Dq, A, true);
  auto eg = product(keys, wk, R, Dk, A, true);
  Vec<T> wg(w.size(), T(-5)), ctxg(ctx.size(), T(-5));
  adlk::cuda::attention_scores<T>(B, Tn, A, eg.data(), qp.data(), v.data(), wg.data(), nullptr);
  adlk::cuda::attention_softmax_context<T>(B, Tn, Dk, wg.data(), pm, keys.data(), ctxg.data(), nullptr);
  check(near(e, eg, 1) && near(w, wg, 1) && near(ctx, ctxg, 1), name + " forward");
  Vec<T> gq(q.size()), gk(keys.size()), gwq(wq.size()), gwk(wk.size()), gv(v.size());
  adlk::additive_attention_backward<T>(g, gc.data(), gw.data(), q.data(), keys.data(), wq.data(), wk.data(),
                                       v.data(), e.data(), w.data(), gq.data(), gk.data(), gwq.data(),
                                       gwk.data(), gv.data());
  Vec<T> ds(w.size(), T(-5)), gkg(keys.size(), T(-5)), da(e.size(), T(-5));
  adlk::cuda::attention_backward_pointwise<T>(B, Tn, Dk, A, gc.data(), gw.data(), keys.data(), w.data(), e.data(),
                                              v.data(), ds.data(), gkg.data(), da.data(), nullptr);
  const auto dak = product(da, wk, R, A, Dk, false);
  for (std::size_t i = 0; i < gkg.size(); ++i) gkg[i] += dak[i];
  Vec<T> gvg(v.size());  // sum over r = (t, b) of dscore[b, t] * e[r]
  for (index_t a = 0; a < A; ++a) {
    double acc = 0;
    for (index_t r = 0; r < R; ++r) acc += double(ds[(r % B) * Tn + r / B]) * double(e[r * A + a]);
    gvg[a] = T(acc);
  }
  check(near(gk, gkg, 4) && near(gv, gvg, 4), name + " backward");
}

}  // namespace

template <typename T>
void run_rnn(std::mt19937_64& rng) {
  // B * H around the block size and the small configuration's grid cap; B = 0
  test_lstm_step<T>(3, 5, 7, rng);
  test_lstm_step<T>(9, 4, 33, rng);
  test_lstm_step<T>(0, 3, 4, rng);
  test_gru_step<T>(3, 5, 7, rng);
  test_gru_step<T>(9, 4, 33, rng);
  test_gru_step<T>(0, 3, 4, rng);
  // rows (B for the softmax, T*B for the scores) around the warps of a block; masks
  test_attention<T>(3, 5, 4, 3, 6, false, rng);
  test_attention<T>(9, 40, 3, 37, 5, true, rng);
  test_attention<T>(0, 3, 2, 2, 2, true, rng);
}

template void run_rnn<float>(std::mt19937_64&);
template void run_rnn<double>(std::mt19937_64&);
