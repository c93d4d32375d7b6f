// attention/blocked forward over several new tokens (flash attention, Dao et al. 2022): per
// (row, head, block of Bq queries), the keys 0 .. p_b + i stream through in blocks of Bk; each
// block's scores, kept transposed (keys x queries: S^T = K (scale Q)^T, so that the keys are
// read in place from the cache and every softmax step is a vector op across queries), are
// masked causally and folded into a running softmax per query:
//   m' = max(m, max_j S_j),  l' = l e^(m - m') + sum_j e^(S_j - m'),  O' = O e^(m - m') + e^(S - m') V
// and at the end out = O / l, lse = m + log l. Memory per task is O(Bq hd + Bk Bq), never
// L x L. Tasks run on the context's threads, the longest (the last query blocks) first; each
// writes its own outputs, so the result does not depend on the thread count.
//
// Dimensions: B batch, L new tokens, H heads, hd head_dim, hdp hd padded to a vector,
// Bq query block, Bk key block.

#include <cmath>
#include <limits>

#include "blocked_kernels.hpp"
#include "blocked_tiles.hpp"

namespace mambakit::attention_blocked {

namespace {

/// A thread's blocks: the scaled queries transposed, the scores (transposed), the running
/// accumulator, max, sum and rescaling factors, the last partial key tile, and the values.
template <class T>
struct PrefillScratch {
  Block<T> queries_t, scores_t, accum, row_max, row_sum, alpha, keys, values;
  PrefillScratch(std::int64_t hd, std::int64_t hdp)
      : queries_t(hd * kQueryBlock<T>), scores_t(kKeyBlock * kQueryBlock<T>), accum(kQueryBlock<T> * hdp),
        row_max(kQueryBlock<T>), row_sum(kQueryBlock<T>), alpha(kQueryBlock<T>), keys(kTileRows * hd),
        values(kKeyBlock * hdp) {}
};

/// Folds the block's transposed scores s (tiles x Bq) into the queries' running max m, sum l;
/// s becomes the weights e^(S - m'), alpha the factors e^(m - m') for the accumulator rows.
template <class T>
void fold_scores(T* s, std::int64_t tiles, T* m, T* l, T* alpha) {
  using V = simd::Vec<T>;
  constexpr int kWidth = simd::kWidth<T>;
  constexpr std::int64_t kBq = kQueryBlock<T>;
  for (std::int64_t v = 0; v < kBq; v += kWidth) {
    V largest = simd::splat(-std::numeric_limits<T>::infinity());
    for (std::int64_t j = 0; j < tiles; ++j) largest = vmax<T>(largest, simd::load(s + j * kBq + v, kWidth));
    const V m_old = simd::load(m + v, kWidth);
    const V m_new = vmax<T>(m_old, largest);
    const V factor = simd::exp(m_old - m_new);
    V sum = simd::splat(T(0));
    for (std::int64_t j = 0; j < tiles; ++j) {
      const V weight = simd::exp(simd::load(s + j * kBq + v, kWidth) - m_new);
      simd::store(s + j * kBq + v, weight, kWidth);
      sum += weight;
    }
    simd::store(l + v, simd::load(l + v, kWidth) * factor + sum, kWidth);
    simd::store(m + v, m_new, kWidth);
    simd::store(alpha + v, factor, kWidth);
  }
}

}  // namespace

template <class T>
void blocked_prefill(const sdk::AttentionForwardArgs& args, int n_threads) {
  using V = simd::Vec<T>;
  constexpr int kWidth = simd::kWidth<T>;
  constexpr std::int64_t kBq = kQueryBlock<T>;
  const Dims d = attention_common::dims_of(args);
  const Rows<const T> q(args.q), k(args.k), v(args.v);
  const Rows<T> out(args.out);
  T* lse = args.lse.as<T>();
  const T scale = static_cast<T>(args.softmax_scale);
  const std::int64_t blocks = (d.L + kBq - 1) / kBq, hdp = padded_head_dim<T>(d.hd);
  const std::int64_t tasks = d.B * d.H * blocks;
#pragma omp parallel num_threads(n_threads)
  {
    PrefillScratch<T> s(d.hd, hdp);
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t task = 0; task < tasks; ++task) {
      const auto [b, h, kv, p, block, i0, rows] = query_block_task<T>(d, args, blocks, task);
      const std::int64_t query_tiles = tile_rows(rows);
      pack_transposed(s.queries_t.data(), q, b, i0, h, rows, scale);
      std::fill(s.accum.data(), s.accum.data() + kBq * hdp, T(0));
      std::fill(s.row_max.data(), s.row_max.data() + kBq, -std::numeric_limits<T>::infinity());
      std::fill(s.row_sum.data(), s.row_sum.data() + kBq, T(0));
      // Query r sees keys 0 .. p + i0 + r (padded queries see the last one's).
      const std::int64_t keys = p + i0 + rows;
      for (std::int64_t j0 = 0; j0 < keys; j0 += kKeyBlock) {
        const std::int64_t count = std::min(kKeyBlock, keys - j0), key_tiles = tile_rows(count);
        for (std::int64_t jr = 0; jr < key_tiles; jr += kTileRows) {
          const auto [key, key_stride] = tile_operand(k, b, j0 + jr, kv, j0 + count, s.keys.data());
          product_tile(key, key_stride, std::int64_t{1}, d.hd, s.queries_t.data(), kBq, kBq,
                       s.scores_t.data() + jr * kBq, kBq, false);
        }
        // Key j0 + j is masked for queries r < j0 + j - p - i0, and padded keys for all.
        for (std::int64_t j = 0; j < key_tiles; ++j) {
          const std::int64_t hidden = j < count ? std::min(kBq, j0 + j - p - i0) : kBq;
          if (hidden > 0) std::fill_n(s.scores_t.data() + j * kBq, hidden, -std::numeric_limits<T>::infinity());
        }
        fold_scores(s.scores_t.data(), key_tiles, s.row_max.data(), s.row_sum.data(), s.alpha.data());
        for (std::int64_t r = 0; r < query_tiles; ++r) {
          const T factor = s.alpha[r];
          if (factor == T(1)) continue;
          T* o = s.accum.data() + r * hdp;
          for (std::int64_t e = 0; e < hdp; e += kWidth) {
            simd::store(o + e, simd::load(o + e, kWidth) * simd::splat(factor), kWidth);
          }
        }
        // The values are copied into a contiguous block: every query tile reads all of them, and
        // read in place (rows a whole cache row apart) they ran a third slower, measured.
        pack_rows(s.values.data(), hdp, v, b, j0, kv, count, count, T(1));
        for (std::int64_t r = 0; r < query_tiles; r += kTileRows) {
          product_tile(s.scores_t.data() + r, std::int64_t{1}, kBq, count, s.values.data(), hdp, hdp,
                       s.accum.data() + r * hdp, hdp, true);
        }
      }
      for (std::int64_t r = 0; r < rows; ++r) {
        const T sum = s.row_sum[r];
        const T* o = s.accum.data() + r * hdp;
        T* target = out.at(b, i0 + r, h);
        const V inverse = simd::splat(T(1) / sum);
        for (std::int64_t e = 0; e < d.hd; e += kWidth) {
          const int lanes = static_cast<int>(std::min<std::int64_t>(kWidth, d.hd - e));
          simd::store(target + e, simd::load(o + e, lanes) * inverse, lanes);
        }
        if (lse != nullptr) lse[(b * d.H + h) * d.L + i0 + r] = s.row_max[r] + std::log(sum);
      }
    }
  }
}

template void blocked_prefill<float>(const sdk::AttentionForwardArgs&, int);
template void blocked_prefill<double>(const sdk::AttentionForwardArgs&, int);

}  // namespace mambakit::attention_blocked
