// attention/blocked backward (flash attention 2, Dao 2023): the weights are recomputed block
// by block from the saved log-sum-exp, never stored whole. With Qs = scale q, S = Qs K^T,
// P = exp(S - lse) (causally masked), D_i = dOut_i . Out_i:
//   dV += P^T dOut,   dP = dOut V^T,   dS = P * (dP - D),   dK += dS^T Qs,   dQ += scale dS K.
// Blocks are kept transposed (keys x queries), as in the forward: S^T = K Qs^T and
// dP^T = V dOut^T read K and V in place, and the per-query lse and D are vectors across a row.
// Two passes, so that every output element has one owner and the sums run in a fixed order
// (the result does not depend on the thread count):
//   keys:    per (row, key/value head, key block): dK and dV of the block, over the query heads
//            of the group and the query blocks that see the block
//   queries: per (row, head, query block): dQ of the block, over the key blocks it sees
// The queries pass recomputes S and dP: 7 block products instead of 5, and no atomics. Every
// query block is packed once, before both passes (PackedQueries).
//
// Dimensions: B batch, L new tokens, H heads, Hkv key/value heads, hd head_dim, hdp hd padded
// to a vector, Bq query block, Bk key block.

#include <cmath>

#include "blocked_kernels.hpp"
#include "blocked_tiles.hpp"
#include "mambakit/sdk/workspace.hpp"

namespace mambakit::attention_blocked {

namespace {

/// Every query block of every (row, head), packed once before both passes: the scaled queries
/// and the output gradients, transposed (hd x Bq, the B operand of the score products) and as
/// rows (Bq x hdp, of dK and dV), and each query's lse and D (zero for padded queries).
template <class T>
class PackedQueries {
 public:
  struct QueryBlock {
    const T *queries_t, *grad_out_t, *queries, *grad_out, *lse, *delta;
  };

  PackedQueries(const sdk::Context& context, const sdk::AttentionBackwardArgs& args, std::int64_t hdp)
      : dims_(attention_common::dims_of(args.forward)), hdp_(hdp), blocks_((dims_.L + kBq - 1) / kBq),
        record_(2 * dims_.hd * kBq + 2 * kBq * hdp + 2 * kBq), storage_(context, dims_.B * dims_.H * blocks_ * record_) {
    const sdk::AttentionForwardArgs& in = args.forward;
    const Rows<const T> q(in.q), out(in.out), grad_out(args.grad_out);
    const T scale = static_cast<T>(in.softmax_scale);
    const Dims d = dims_;
#pragma omp parallel for num_threads(context.n_threads) schedule(static)
    for (std::int64_t index = 0; index < d.B * d.H * blocks_; ++index) {
      const std::int64_t b = index / (d.H * blocks_), h = index / blocks_ % d.H, i0 = index % blocks_ * kBq;
      const std::int64_t rows = std::min(kBq, d.L - i0);
      T* record = storage_.data() + index * record_;
      pack_transposed(record, q, b, i0, h, rows, scale);
      pack_transposed(record + d.hd * kBq, grad_out, b, i0, h, rows, T(1));
      pack_rows(record + 2 * d.hd * kBq, hdp, q, b, i0, h, rows, kBq, scale);
      pack_rows(record + 2 * d.hd * kBq + kBq * hdp, hdp, grad_out, b, i0, h, rows, kBq, T(1));
      T* lse = record + 2 * d.hd * kBq + 2 * kBq * hdp;
      T* delta = lse + kBq;
      const T* saved_lse = in.lse.as<const T>() + (b * d.H + h) * d.L + i0;
      for (std::int64_t r = 0; r < kBq; ++r) {
        T dot = 0;
        if (r < rows) {
          const T* o = out.at(b, i0 + r, h);
          const T* g = grad_out.at(b, i0 + r, h);
          for (std::int64_t e = 0; e < d.hd; ++e) dot += o[e] * g[e];
        }
        lse[r] = r < rows ? saved_lse[r] : T(0);
        delta[r] = dot;
      }
    }
  }

  [[nodiscard]] std::int64_t blocks() const { return blocks_; }

  [[nodiscard]] QueryBlock at(std::int64_t b, std::int64_t h, std::int64_t block) const {
    const T* record = storage_.data() + ((b * dims_.H + h) * blocks_ + block) * record_;
    const T* lse = record + 2 * dims_.hd * kBq + 2 * kBq * hdp_;
    return {record, record + dims_.hd * kBq, record + 2 * dims_.hd * kBq, record + 2 * dims_.hd * kBq + kBq * hdp_,
            lse, lse + kBq};
  }

 private:
  static constexpr std::int64_t kBq = kQueryBlock<T>;
  Dims dims_;
  std::int64_t hdp_, blocks_, record_;
  sdk::WorkspaceArray<T> storage_;
};

/// A thread's blocks: the weights and score gradients (transposed), the gradients being
/// accumulated, the key rows of a partial tile, and a block of keys.
template <class T>
struct BackwardScratch {
  Block<T> weights_t, grad_scores_t, grad_a, grad_b, tile, keys;
  BackwardScratch(std::int64_t hd, std::int64_t hdp)
      : weights_t(kKeyBlock * kQueryBlock<T>), grad_scores_t(kKeyBlock * kQueryBlock<T>),
        grad_a(std::max(kKeyBlock, kQueryBlock<T>) * hdp), grad_b(kKeyBlock * hdp), tile(kTileRows * hd),
        keys(kKeyBlock * hdp) {}
};

/// For the query block `qb` (query r at absolute position p + i0 + r, `rows` of them) against
/// keys [j0, j0 + count): the transposed weights P^T and score gradients dS^T (key_tiles x Bq).
/// Masked entries, padded keys and padded queries get P = dS = 0.
template <class T>
void weights_and_grad_scores(BackwardScratch<T>& s, const typename PackedQueries<T>::QueryBlock& qb,
                             const Rows<const T>& k, const Rows<const T>& v, std::int64_t b, std::int64_t kv,
                             std::int64_t p, std::int64_t i0, std::int64_t rows, std::int64_t j0, std::int64_t count) {
  using V = simd::Vec<T>;
  constexpr int kWidth = simd::kWidth<T>;
  constexpr std::int64_t kBq = kQueryBlock<T>;
  const std::int64_t hd = k.head_dim, key_tiles = tile_rows(count);
  for (std::int64_t jr = 0; jr < key_tiles; jr += kTileRows) {
    const auto [key, key_stride] = tile_operand(k, b, j0 + jr, kv, j0 + count, s.tile.data());
    product_tile(key, key_stride, std::int64_t{1}, hd, qb.queries_t, kBq, kBq, s.weights_t.data() + jr * kBq, kBq,
                 false);
    const auto [value, value_stride] = tile_operand(v, b, j0 + jr, kv, j0 + count, s.tile.data());
    product_tile(value, value_stride, std::int64_t{1}, hd, qb.grad_out_t, kBq, kBq, s.grad_scores_t.data() + jr * kBq,
                 kBq, false);
  }
  for (std::int64_t j = 0; j < key_tiles; ++j) {
    T* w = s.weights_t.data() + j * kBq;
    T* g = s.grad_scores_t.data() + j * kBq;
    for (std::int64_t r = 0; r < kBq; r += kWidth) {
      const V weight = simd::exp(simd::load(w + r, kWidth) - simd::load(qb.lse + r, kWidth));
      simd::store(w + r, weight, kWidth);
      simd::store(g + r, weight * (simd::load(g + r, kWidth) - simd::load(qb.delta + r, kWidth)), kWidth);
    }
    // Key j0 + j is hidden from queries r < j0 + j - p - i0; padded keys and queries from all.
    const std::int64_t hidden = j < count ? std::clamp<std::int64_t>(j0 + j - p - i0, 0, kBq) : kBq;
    std::fill_n(w, hidden, T(0));
    std::fill_n(g, hidden, T(0));
    std::fill(w + std::max(hidden, rows), w + kBq, T(0));
    std::fill(g + std::max(hidden, rows), g + kBq, T(0));
  }
}

/// dK and dV of the key blocks, per (row, key/value head, key block).
template <class T>
void key_gradients(const sdk::AttentionBackwardArgs& args, const PackedQueries<T>& packed, std::int64_t hdp,
                   int n_threads) {
  constexpr std::int64_t kBq = kQueryBlock<T>;
  const sdk::AttentionForwardArgs& in = args.forward;
  const Dims d = attention_common::dims_of(in);
  const Rows<const T> k(in.k), v(in.v);
  const Rows<T> grad_k(args.grad_k), grad_v(args.grad_v);
  std::int64_t longest = 0;
  for (std::int64_t b = 0; b < d.B; ++b) longest = std::max(longest, attention_common::position(in, b) + d.L);
  const std::int64_t key_blocks = (longest + kKeyBlock - 1) / kKeyBlock, tasks = d.B * d.Hkv * key_blocks;
#pragma omp parallel num_threads(n_threads)
  {
    BackwardScratch<T> s(d.hd, hdp);
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t task = 0; task < tasks; ++task) {
      // Early key blocks are seen by more queries: they go first.
      const std::int64_t block = task / (d.B * d.Hkv), b = task % (d.B * d.Hkv) / d.Hkv, kv = task % d.Hkv;
      const std::int64_t p = attention_common::position(in, b), keys = p + d.L, j0 = block * kKeyBlock;
      if (j0 >= keys) continue;
      const std::int64_t count = std::min(kKeyBlock, keys - j0), key_tiles = tile_rows(count);
      T* grad_keys = s.grad_a.data();
      T* grad_values = s.grad_b.data();
      std::fill(grad_keys, grad_keys + kKeyBlock * hdp, T(0));
      std::fill(grad_values, grad_values + kKeyBlock * hdp, T(0));
      // Query i sees key j0 when p + i >= j0: the blocks from the one holding i = j0 - p.
      const std::int64_t first_block = std::max<std::int64_t>(0, j0 - p) / kBq;
      for (std::int64_t h = kv * d.group(); h < (kv + 1) * d.group(); ++h) {
        for (std::int64_t block_q = first_block; block_q < packed.blocks(); ++block_q) {
          const std::int64_t i0 = block_q * kBq, rows = std::min(kBq, d.L - i0);
          const auto qb = packed.at(b, h, block_q);
          weights_and_grad_scores(s, qb, k, v, b, kv, p, i0, rows, j0, count);
          for (std::int64_t jr = 0; jr < key_tiles; jr += kTileRows) {
            product_tile(s.weights_t.data() + jr * kBq, kBq, std::int64_t{1}, rows, qb.grad_out, hdp, hdp,
                         grad_values + jr * hdp, hdp, true);
            product_tile(s.grad_scores_t.data() + jr * kBq, kBq, std::int64_t{1}, rows, qb.queries, hdp, hdp,
                         grad_keys + jr * hdp, hdp, true);
          }
        }
      }
      for (std::int64_t j = 0; j < count; ++j) {
        if (grad_k.present()) {
          T* target = grad_k.at(b, j0 + j, kv);
          for (std::int64_t e = 0; e < d.hd; ++e) target[e] += grad_keys[j * hdp + e];
        }
        if (grad_v.present()) {
          T* target = grad_v.at(b, j0 + j, kv);
          for (std::int64_t e = 0; e < d.hd; ++e) target[e] += grad_values[j * hdp + e];
        }
      }
    }
  }
}

/// dQ of the query blocks, per (row, head, query block).
template <class T>
void query_gradients(const sdk::AttentionBackwardArgs& args, const PackedQueries<T>& packed, std::int64_t hdp,
                     int n_threads) {
  constexpr std::int64_t kBq = kQueryBlock<T>;
  const sdk::AttentionForwardArgs& in = args.forward;
  const Dims d = attention_common::dims_of(in);
  const Rows<const T> k(in.k), v(in.v);
  const Rows<T> grad_q(args.grad_q);
  const T scale = static_cast<T>(in.softmax_scale);
  const std::int64_t blocks = (d.L + kBq - 1) / kBq, tasks = d.B * d.H * blocks;
#pragma omp parallel num_threads(n_threads)
  {
    BackwardScratch<T> s(d.hd, hdp);
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t task = 0; task < tasks; ++task) {
      const auto [b, h, kv, p, block, i0, rows] = query_block_task<T>(d, in, blocks, task);
      const std::int64_t query_tiles = tile_rows(rows);
      const auto qb = packed.at(b, h, block);
      T* grad_queries = s.grad_a.data();
      std::fill(grad_queries, grad_queries + kBq * hdp, T(0));
      const std::int64_t keys = p + i0 + rows;
      for (std::int64_t j0 = 0; j0 < keys; j0 += kKeyBlock) {
        const std::int64_t count = std::min(kKeyBlock, keys - j0);
        weights_and_grad_scores(s, qb, k, v, b, kv, p, i0, rows, j0, count);
        pack_rows(s.keys.data(), hdp, k, b, j0, kv, count, count, T(1));  // read by every query tile
        for (std::int64_t r = 0; r < query_tiles; r += kTileRows) {
          product_tile(s.grad_scores_t.data() + r, std::int64_t{1}, kBq, count, s.keys.data(), hdp, hdp,
                       grad_queries + r * hdp, hdp, true);
        }
      }
      for (std::int64_t r = 0; r < rows; ++r) {
        T* target = grad_q.at(b, i0 + r, h);
        for (std::int64_t e = 0; e < d.hd; ++e) target[e] += scale * grad_queries[r * hdp + e];
      }
    }
  }
}

}  // namespace

template <class T>
void blocked_backward(const sdk::Context& context, const sdk::AttentionBackwardArgs& args) {
  const Dims d = attention_common::dims_of(args.forward);
  const std::int64_t hdp = padded_head_dim<T>(d.hd);
  const PackedQueries<T> packed(context, args, hdp);
  if (args.grad_k.present() || args.grad_v.present()) key_gradients<T>(args, packed, hdp, context.n_threads);
  if (args.grad_q.present()) query_gradients<T>(args, packed, hdp, context.n_threads);
}

template void blocked_backward<float>(const sdk::Context&, const sdk::AttentionBackwardArgs&);
template void blocked_backward<double>(const sdk::Context&, const sdk::AttentionBackwardArgs&);

}  // namespace mambakit::attention_blocked
