#pragma once
// The chunked (state-space dual) form of the SSD scan, forward and backward, for T = float or
// double. Within a chunk of q <= kChunk tokens of one (row, head), with a_s = dt_s A and
// cs_t = a_0 + ... + a_t (cumulative log-decay, <= 0):
//
//   Xd = diag(dt) X                                  (q, P)
//   M  = (C B^T) o Lmask,  Lmask_ts = exp(cs_t - cs_s) for s <= t, else 0     (q, q)
//   Y  = M Xd + diag(exp(cs)) C S^T + D X            (q, P)   S: the state entering the chunk
//   S' = exp(cs_last) S + (diag(w) Xd)^T B,  w_s = exp(cs_last - cs_s)        (P, N)
//
// so the work is matrix products and the recurrence only runs between chunks. The forward
// applies M diag(dt) + D I to X in one product and keeps the state
// transposed, S^T (N, P), so that its three products per chunk are panel products
// (sdk/util/panel_product.hpp) on row-major operands; the backward uses Eigen's products. Every
// exponent is <= 0, so nothing overflows. C B^T depends on the group, not the head, and is
// computed once per (row, group, chunk).
//
// Backward walks the chunks in reverse with dS, the gradient of the state leaving the chunk,
// from the states entering each chunk (recomputed by a forward pass over the chunk states):
//   dM = dY Xd^T,  dXd = M^T dY,  d(C B^T) = dM o Lmask,  dcs from dM o M (rows +, columns -)
//   Z = C S^T:  dC += diag(exp(cs)) dY S,  dS_in = diag(exp(cs)) dY)^T C + exp(cs_last) dS
//   state:  dXd += diag(w) B dS^T,  dB += diag(w) Xd dS,  dcs via w and exp(cs_last)
//   then da = reverse cumsum of dcs, ddt = da A + rowdot(dXd, X),  dA += da . dt,
//   dX += diag(dt) dXd + D dY.
//
// Dimensions: B batch, L length, H heads, P head_dim, G groups, N d_state, q chunk length.

#include <Eigen/Core>

#include <algorithm>
#include <cstdint>

#include "mambakit/sdk/util/simd.hpp"

#include "mambakit/sdk/context.hpp"
#include "mambakit/sdk/ssd_kernel.hpp"
#include "mambakit/sdk/workspace.hpp"
#include "ssd_common.hpp"

namespace mambakit::ssd_chunked {

/// Tokens per chunk. The result does not depend on it (beyond rounding); 64 keeps the (q, q)
/// products small against the (q, P) and (P, N) ones at Mamba-2's P = 64, N = 128.
inline constexpr std::int64_t kChunk = 64;

template <class T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;
template <class T>
using RowsMap = Eigen::Map<Matrix<T>, 0, Eigen::OuterStride<>>;
template <class T>
using ConstRowsMap = Eigen::Map<const Matrix<T>, 0, Eigen::OuterStride<>>;

/// Rows [t0, t0 + q) of (row b) of `rows`, columns [offset, offset + width).
template <class T>
ConstRowsMap<T> rows_block(const ssd_common::Rows<const T>& rows, std::int64_t b, std::int64_t t0,
                           std::int64_t offset, std::int64_t q, std::int64_t width) {
  return ConstRowsMap<T>(rows.at(b, t0) + offset, q, width, Eigen::OuterStride<>(rows.row_stride));
}
template <class T>
RowsMap<T> rows_block(const ssd_common::Rows<T>& rows, std::int64_t b, std::int64_t t0, std::int64_t offset,
                      std::int64_t q, std::int64_t width) {
  return RowsMap<T>(rows.at(b, t0) + offset, q, width, Eigen::OuterStride<>(rows.row_stride));
}

/// C B^T of every (row, group, chunk), (q, q) each in a kChunk x kChunk slot.
template <class T>
class GroupProducts {
 public:
  GroupProducts(const sdk::Context& context, const ssd_common::Dims& d, const sdk::SsdForwardArgs& args)
      : chunks_((d.L + kChunk - 1) / kChunk), groups_(d.G), data_(context, d.B * d.G * chunks_ * kChunk * kChunk) {
    const ssd_common::Rows<const T> Bm(args.B), Cm(args.C);
    const std::int64_t tasks = d.B * d.G * chunks_;
#pragma omp parallel for num_threads(context.n_threads) schedule(static)
    for (std::int64_t task = 0; task < tasks; ++task) {
      const std::int64_t c = task % chunks_, g = (task / chunks_) % d.G, b = task / (chunks_ * d.G);
      const std::int64_t t0 = c * kChunk, q = std::min(kChunk, d.L - t0);
      RowsMap<T> out(data_.data() + task * kChunk * kChunk, q, q, Eigen::OuterStride<>(kChunk));
      out.noalias() = rows_block(Cm, b, t0, g * d.N, q, d.N) * rows_block(Bm, b, t0, g * d.N, q, d.N).transpose();
    }
  }

  /// C B^T of (row b, group g, chunk c), q x q.
  [[nodiscard]] ConstRowsMap<T> at(std::int64_t b, std::int64_t g, std::int64_t c, std::int64_t q) const {
    return ConstRowsMap<T>(data_.data() + ((b * groups_ + g) * chunks_ + c) * kChunk * kChunk, q, q,
                           Eigen::OuterStride<>(kChunk));
  }
  [[nodiscard]] std::int64_t chunks() const { return chunks_; }

 private:
  std::int64_t chunks_, groups_;
  sdk::WorkspaceArray<T> data_;
};

/// The decay factors of one chunk of one (row, head).
template <class T>
struct ChunkDecay {
  Vector<T> dt, cs, exp_cs, w;  // (q) each: dt_s, cumulative a, exp(cs_t), exp(cs_last - cs_s)
  Matrix<T> mask;               // (q, q): exp(cs_t - cs_s) for s <= t, else 0
  T exp_last = 0;               // exp(cs_last)

  /// The factors of chunk [t0, t0 + q) of (row b, head h); the (q, q) mask only `with_mask`.
  void prepare(const ssd_common::Rows<const T>& dt_rows, std::int64_t b, std::int64_t h, T A, std::int64_t t0,
               std::int64_t q, bool with_mask = true) {
    dt.resize(q);
    cs.resize(q);
    T sum = 0;
    for (std::int64_t s = 0; s < q; ++s) {
      dt[s] = dt_rows.at(b, t0 + s)[h];
      sum += dt[s] * A;
      cs[s] = sum;
    }
    exp_cs = cs.array().exp();
    exp_last = exp_cs[q - 1];
    w = (cs[q - 1] - cs.array()).exp();
    if (!with_mask) return;
    mask.resize(q, q);
    namespace simd = sdk::simd;
    constexpr int kWidth = simd::kWidth<T>;
    for (std::int64_t t = 0; t < q; ++t) {
      T* row = mask.data() + t * q;
      const simd::Vec<T> last = simd::splat(cs[t]);
      for (std::int64_t s = 0; s <= t; s += kWidth) {
        const int lanes = static_cast<int>(std::min<std::int64_t>(kWidth, t + 1 - s));
        simd::store(row + s, simd::exp(last - simd::load(cs.data() + s, lanes)), lanes);
      }
      std::fill(row + t + 1, row + q, T(0));
    }
  }
};

template <class T>
void chunked_forward(const sdk::Context& context, const sdk::SsdForwardArgs& args);

template <class T>
void chunked_backward(const sdk::Context& context, const sdk::SsdBackwardArgs& args);

}  // namespace mambakit::ssd_chunked
