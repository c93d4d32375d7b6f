// attention/blocked forward of one new token per row (decode), split over the keys
// (flash-decoding): each row's n = p_b + 1 held entries are cut into chunks of kChunk tokens;
// a task takes one chunk of one row for every head, reading the chunk's cache rows (all
// key/value heads of a token are contiguous) front to back, keys then values, so the cache is
// streamed once, in address order, by all threads at once. Per chunk c and head h it leaves
//   m_c = max_j s_j,   l_c = sum_j e^(s_j - m_c),   o_c = sum_j e^(s_j - m_c) v_j
// (s_j = scale q . k_j), and a second pass merges the chunks of a (row, head) in order:
//   m = max_c m_c,  l = sum_c l_c e^(m_c - m),  out = sum_c o_c e^(m_c - m) / l,  lse = m + log l.
// The chunks do not depend on the thread count, nor does the result. Memory-bound by design.
//
// Dimensions: B batch, H heads, Hkv key/value heads, G = H / Hkv, hd head_dim, n held keys.

#include <cmath>
#include <limits>
#include <vector>

#include "blocked_kernels.hpp"
#include "blocked_tiles.hpp"
#include "mambakit/sdk/workspace.hpp"

namespace mambakit::attention_blocked {

namespace {

/// Tokens per chunk of a row's cache.
constexpr std::int64_t kChunk = 128;
/// How far ahead of the row being read the cache is prefetched, in bytes.
constexpr std::int64_t kPrefetchBytes = 8192;

/// Prefetches `bytes` bytes from `p` on, one cache line at a time, non-temporal: the cache is
/// read once per step. (The hardware prefetchers alone leave the loads waiting: measured here,
/// one thread read 4.4 GB/s without it and 19-26 GB/s with it, a plain read loop 21-25.)
inline void prefetch(const void* p, std::int64_t bytes) {
  for (std::int64_t offset = 0; offset < bytes; offset += 64) {
    __builtin_prefetch(static_cast<const char*>(p) + offset, 0, 0);
  }
}

/// A chunk of a row's cache: tokens [begin, end) of row b.
struct Chunk {
  std::int64_t b = 0, begin = 0, end = 0;
};

}  // namespace

template <class T>
void blocked_decode(const sdk::Context& context, const sdk::AttentionForwardArgs& args) {
  using V = simd::Vec<T>;
  constexpr int kWidth = simd::kWidth<T>;
  const Dims d = attention_common::dims_of(args);
  const Rows<const T> q(args.q), k(args.k), v(args.v);
  const Rows<T> out(args.out);
  T* lse = args.lse.as<T>();
  const T scale = static_cast<T>(args.softmax_scale);
  const std::int64_t G = d.group(), vectors = (d.hd + kWidth - 1) / kWidth, hdp = vectors * kWidth;
  const int tail = static_cast<int>(d.hd - (vectors - 1) * kWidth);  // lanes of a head's last vector
  auto lanes = [&](std::int64_t c) { return c + 1 == vectors ? tail : kWidth; };

  std::vector<Chunk> chunks;
  std::vector<std::int64_t> first_chunk(static_cast<std::size_t>(d.B + 1));
  for (std::int64_t b = 0; b < d.B; ++b) {
    first_chunk[static_cast<std::size_t>(b)] = static_cast<std::int64_t>(chunks.size());
    const std::int64_t n = attention_common::position(args, b) + 1;
    for (std::int64_t j = 0; j < n; j += kChunk) chunks.push_back({b, j, std::min(n, j + kChunk)});
  }
  first_chunk[static_cast<std::size_t>(d.B)] = static_cast<std::int64_t>(chunks.size());
  const std::int64_t count = static_cast<std::int64_t>(chunks.size());
  // Per (chunk, head): m, l, then o (hdp).
  const std::int64_t partial = hdp + 2;
  sdk::WorkspaceArray<T> partials(context, count * d.H * partial);

#pragma omp parallel num_threads(context.n_threads)
  {
    std::vector<V> queries(static_cast<std::size_t>(d.H * vectors)), sums(queries.size());
    std::vector<T> weights(static_cast<std::size_t>(d.H * kChunk));
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t c = 0; c < count; ++c) {
      const Chunk chunk = chunks[static_cast<std::size_t>(c)];
      const std::int64_t b = chunk.b, n = chunk.end - chunk.begin;
      for (std::int64_t h = 0; h < d.H; ++h) {
        const T* query = q.at(b, 0, h);
        for (std::int64_t e = 0; e < vectors; ++e) {
          queries[static_cast<std::size_t>(h * vectors + e)] = simd::load(query + e * kWidth, lanes(e)) * simd::splat(scale);
        }
      }
      // Scores, one cache row (every key/value head of a token) at a time.
      const std::int64_t row_bytes = d.Hkv * d.hd * std::int64_t{sizeof(T)};
      const std::int64_t ahead = std::max<std::int64_t>(1, kPrefetchBytes / row_bytes);
      for (std::int64_t j = 0; j < n; ++j) {
        // The key row `ahead` on, or the first value rows near the end.
        prefetch(j + ahead < n ? k.at(b, chunk.begin + j + ahead, 0) : v.at(b, chunk.begin + j + ahead - n, 0), row_bytes);
        for (std::int64_t kv = 0; kv < d.Hkv; ++kv) {
          const T* key = k.at(b, chunk.begin + j, kv);
          V key_vectors[4];
          for (std::int64_t e0 = 0; e0 < vectors; e0 += 4) {
            const std::int64_t block = std::min<std::int64_t>(4, vectors - e0);
            for (std::int64_t e = 0; e < block; ++e) key_vectors[e] = simd::load(key + (e0 + e) * kWidth, lanes(e0 + e));
            for (std::int64_t g = 0; g < G; ++g) {
              const std::int64_t h = kv * G + g;
              V acc = queries[static_cast<std::size_t>(h * vectors + e0)] * key_vectors[0];
              for (std::int64_t e = 1; e < block; ++e) acc += queries[static_cast<std::size_t>(h * vectors + e0 + e)] * key_vectors[e];
              T& score = weights[static_cast<std::size_t>(h * kChunk + j)];
              score = (e0 == 0 ? T(0) : score) + simd::hsum(acc);
            }
          }
        }
      }
      // Each head's chunk max, weights e^(s - m) and their sum.
      T* chunk_partials = partials.data() + c * d.H * partial;
      const std::int64_t full = n - n % kWidth;
      for (std::int64_t h = 0; h < d.H; ++h) {
        T* w = weights.data() + h * kChunk;
        V largest = simd::splat(-std::numeric_limits<T>::infinity());
        for (std::int64_t j = 0; j < full; j += kWidth) largest = vmax<T>(largest, simd::load(w + j, kWidth));
        T m = hmax<T>(largest);
        for (std::int64_t j = full; j < n; ++j) m = std::max(m, w[j]);
        V total = simd::splat(T(0));
        for (std::int64_t j = 0; j < full; j += kWidth) {
          const V e = simd::exp(simd::load(w + j, kWidth) - simd::splat(m));
          simd::store(w + j, e, kWidth);
          total += e;
        }
        T sum = simd::hsum(total);
        for (std::int64_t j = full; j < n; ++j) sum += (w[j] = std::exp(w[j] - m));
        chunk_partials[h * partial] = m;
        chunk_partials[h * partial + 1] = sum;
      }
      // Weighted sums of the values, one cache row at a time.
      std::fill(sums.begin(), sums.end(), simd::splat(T(0)));
      for (std::int64_t j = 0; j < n; ++j) {
        if (j + ahead < n) prefetch(v.at(b, chunk.begin + j + ahead, 0), row_bytes);
        for (std::int64_t kv = 0; kv < d.Hkv; ++kv) {
          const T* value = v.at(b, chunk.begin + j, kv);
          for (std::int64_t e = 0; e < vectors; ++e) {
            const V x = simd::load(value + e * kWidth, lanes(e));
            for (std::int64_t g = 0; g < G; ++g) {
              const std::int64_t h = kv * G + g;
              sums[static_cast<std::size_t>(h * vectors + e)] += simd::splat(weights[static_cast<std::size_t>(h * kChunk + j)]) * x;
            }
          }
        }
      }
      for (std::int64_t h = 0; h < d.H; ++h) {
        for (std::int64_t e = 0; e < vectors; ++e) {
          simd::store(chunk_partials + h * partial + 2 + e * kWidth, sums[static_cast<std::size_t>(h * vectors + e)], kWidth);
        }
      }
    }

    // Merge each (row, head)'s chunks in order.
#pragma omp for schedule(static)
    for (std::int64_t bh = 0; bh < d.B * d.H; ++bh) {
      const std::int64_t b = bh / d.H, h = bh % d.H;
      const std::int64_t c0 = first_chunk[static_cast<std::size_t>(b)], c1 = first_chunk[static_cast<std::size_t>(b + 1)];
      T m = -std::numeric_limits<T>::infinity();
      for (std::int64_t c = c0; c < c1; ++c) m = std::max(m, partials[(c * d.H + h) * partial]);
      T sum = 0;
      std::vector<V>& merged = sums;
      for (std::int64_t e = 0; e < vectors; ++e) merged[static_cast<std::size_t>(e)] = simd::splat(T(0));
      for (std::int64_t c = c0; c < c1; ++c) {
        const T* chunk_partial = partials.data() + (c * d.H + h) * partial;
        const T factor = std::exp(chunk_partial[0] - m);
        sum += chunk_partial[1] * factor;
        for (std::int64_t e = 0; e < vectors; ++e) {
          merged[static_cast<std::size_t>(e)] += simd::load(chunk_partial + 2 + e * kWidth, kWidth) * simd::splat(factor);
        }
      }
      T* target = out.at(b, 0, h);
      for (std::int64_t e = 0; e < vectors; ++e) {
        simd::store(target + e * kWidth, merged[static_cast<std::size_t>(e)] / simd::splat(sum), lanes(e));
      }
      if (lse != nullptr) lse[b * d.H + h] = m + std::log(sum);
    }
  }
}

template void blocked_decode<float>(const sdk::Context&, const sdk::AttentionForwardArgs&);
template void blocked_decode<double>(const sdk::Context&, const sdk::AttentionForwardArgs&);

}  // namespace mambakit::attention_blocked
