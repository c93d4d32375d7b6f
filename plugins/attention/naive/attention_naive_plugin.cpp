// attention/naive: the reference attention kernel, the definition of attention_kernel.hpp
// written out one query at a time: the full row of scores, its maximum, then the softmax
// weights and their sum of values (two passes over the keys). f32 and f64, forward and
// backward, on the CPU, in parallel over (row, head) pairs. Slow and obviously right; `auto`
// picks it only when nothing faster can run.
//
// Backward, per query i with P_j = exp(s_j - lse_i) and D_i = dOut_i . Out_i:
//   dV_j += P_j dOut_i,   dS_j = P_j (dOut_i . v_j - D_i),
//   dQ_i += scale sum_j dS_j k_j,   dK_j += scale dS_j q_i.
// Each task owns a (row, key/value head) pair: its keys' and values' gradients and the query
// gradients of the query heads that read it, so nothing is shared between threads.
//
// Dimensions: B batch, L new tokens, H query heads, Hkv key/value heads, hd head_dim.

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "attention_common.hpp"
#include "mambakit/sdk/plugin.hpp"

namespace mambakit::attention_naive {

namespace {

using attention_common::Dims;
using attention_common::Rows;

template <class T>
T dot(const T* a, const T* b, std::int64_t n) {
  T sum = 0;
  for (std::int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

/// scores[j] = scale * q . k_j for the n keys of head `kv` of row b; returns their maximum.
template <class T>
T score_row(const T* q, const Rows<const T>& k, std::int64_t b, std::int64_t kv, std::int64_t n, T scale,
            std::vector<T>& scores) {
  T largest = -std::numeric_limits<T>::infinity();
  for (std::int64_t j = 0; j < n; ++j) {
    scores[static_cast<std::size_t>(j)] = scale * dot(q, k.at(b, j, kv), k.head_dim);
    largest = std::max(largest, scores[static_cast<std::size_t>(j)]);
  }
  return largest;
}

template <class T>
void forward(const sdk::AttentionForwardArgs& args, int n_threads) {
  const Dims d = attention_common::dims_of(args);
  const Rows<const T> q(args.q), k(args.k), v(args.v);
  const Rows<T> out(args.out);
  T* lse = args.lse.as<T>();
  const T scale = static_cast<T>(args.softmax_scale);
#pragma omp parallel for num_threads(n_threads) schedule(dynamic)
  for (std::int64_t task = 0; task < d.B * d.H; ++task) {
    const std::int64_t b = task / d.H, h = task % d.H, kv = d.kv_head(h);
    const std::int64_t p = attention_common::position(args, b);
    std::vector<T> scores(static_cast<std::size_t>(p + d.L));
    for (std::int64_t i = 0; i < d.L; ++i) {
      const std::int64_t n = p + i + 1;
      const T largest = score_row(q.at(b, i, h), k, b, kv, n, scale, scores);
      T sum = 0;
      for (std::int64_t j = 0; j < n; ++j) {
        scores[static_cast<std::size_t>(j)] = std::exp(scores[static_cast<std::size_t>(j)] - largest);
        sum += scores[static_cast<std::size_t>(j)];
      }
      T* o = out.at(b, i, h);
      std::fill(o, o + d.hd, T(0));
      for (std::int64_t j = 0; j < n; ++j) {
        const T weight = scores[static_cast<std::size_t>(j)] / sum;
        const T* value = v.at(b, j, kv);
        for (std::int64_t e = 0; e < d.hd; ++e) o[e] += weight * value[e];
      }
      if (lse != nullptr) lse[(b * d.H + h) * d.L + i] = largest + std::log(sum);
    }
  }
}

template <class T>
void backward(const sdk::AttentionBackwardArgs& args, int n_threads) {
  const sdk::AttentionForwardArgs& in = args.forward;
  const Dims d = attention_common::dims_of(in);
  const Rows<const T> q(in.q), k(in.k), v(in.v), out(in.out), grad_out(args.grad_out);
  const Rows<T> grad_q(args.grad_q), grad_k(args.grad_k), grad_v(args.grad_v);
  const T* lse = in.lse.as<const T>();
  const T scale = static_cast<T>(in.softmax_scale);
#pragma omp parallel for num_threads(n_threads) schedule(dynamic)
  for (std::int64_t task = 0; task < d.B * d.Hkv; ++task) {
    const std::int64_t b = task / d.Hkv, kv = task % d.Hkv;
    const std::int64_t p = attention_common::position(in, b);
    std::vector<T> scores(static_cast<std::size_t>(p + d.L));
    for (std::int64_t h = kv * d.group(); h < (kv + 1) * d.group(); ++h) {
      for (std::int64_t i = 0; i < d.L; ++i) {
        const std::int64_t n = p + i + 1;
        const T* qi = q.at(b, i, h);
        const T* gi = grad_out.at(b, i, h);
        score_row(qi, k, b, kv, n, scale, scores);
        const T row_lse = lse[(b * d.H + h) * d.L + i];
        const T delta = dot(gi, out.at(b, i, h), d.hd);
        for (std::int64_t j = 0; j < n; ++j) {
          const T weight = std::exp(scores[static_cast<std::size_t>(j)] - row_lse);
          const T grad_score = weight * (dot(gi, v.at(b, j, kv), d.hd) - delta);
          if (grad_v.present()) {
            T* gv = grad_v.at(b, j, kv);
            for (std::int64_t e = 0; e < d.hd; ++e) gv[e] += weight * gi[e];
          }
          if (grad_k.present()) {
            T* gk = grad_k.at(b, j, kv);
            for (std::int64_t e = 0; e < d.hd; ++e) gk[e] += scale * grad_score * qi[e];
          }
          if (grad_q.present()) {
            T* gq = grad_q.at(b, i, h);
            const T* kj = k.at(b, j, kv);
            for (std::int64_t e = 0; e < d.hd; ++e) gq[e] += scale * grad_score * kj[e];
          }
        }
      }
    }
  }
}

class NaiveAttention final : public attention_common::CpuAttentionKernel {
 public:
  explicit NaiveAttention(const char* /*config_json*/) : CpuAttentionKernel(1) {}

  sdk::Status forward(const sdk::Context& context, const sdk::AttentionForwardArgs& args) noexcept override {
    return attention_common::by_dtype(
        args.q.dtype, [&](auto zero) { attention_naive::forward<decltype(zero)>(args, context.n_threads); });
  }

  sdk::Status backward(const sdk::Context& context, const sdk::AttentionBackwardArgs& args) noexcept override {
    return attention_common::by_dtype(
        args.forward.q.dtype, [&](auto zero) { attention_naive::backward<decltype(zero)>(args, context.n_threads); });
  }
};

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  return registrar.add_kernel(sdk::kAttentionKind, "naive",
                              "reference causal attention, full score rows per query (f32, f64; CPU)",
                              &sdk::create_component<sdk::Kernel, NaiveAttention>);
}

}  // namespace
}  // namespace mambakit::attention_naive

MAMBAKIT_PLUGIN("attention-naive", "0.1.0", mambakit::attention_naive::register_components)
