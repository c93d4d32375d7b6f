#pragma once
// The rotary position embedding of flash-attn's RotaryEmbedding, as the official MHA applies it
// to q and k (not v) on the first R = rotary_emb_dim dimensions of every head, at the absolute
// position t of the token:
//   inv_freq_i = 1 / base^(2i / R)  (f32, as torch computes it),  angle = f32(t) * inv_freq_i (f32),
//   cos_i, sin_i of that f32 angle (computed in double, rounded to T);  for i < R / 2:
//   non-interleaved (GPT-NeoX, rotate-half): the pair (x_i, x_{i + R/2});
//   interleaved (GPT-J): the pair (x_{2i}, x_{2i+1});
//   (a, b) -> (a cos - b sin, b cos + a sin).
// The backward is the inverse rotation (the transpose): (a, b) -> (a cos + b sin, b cos - a sin).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace mambakit::mixer_attention {

class Rotary {
 public:
  Rotary(std::int64_t dim, double base, bool interleaved) : dim_(dim), interleaved_(interleaved) {
    for (std::int64_t i = 0; i < dim / 2; ++i) {
      const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
      inverse_frequency_.push_back(1.0f / std::pow(static_cast<float>(base), exponent));
    }
  }

  [[nodiscard]] std::int64_t dim() const { return dim_; }

  /// cos and sin (count x R/2) of positions first .. first + count - 1.
  template <class T>
  void table(std::int64_t first, std::int64_t count, std::vector<T>& cos, std::vector<T>& sin) const {
    const std::int64_t half = dim_ / 2;
    cos.resize(static_cast<std::size_t>(count * half));
    sin.resize(cos.size());
    for (std::int64_t t = 0; t < count; ++t) {
      const float position = static_cast<float>(first + t);
      for (std::int64_t i = 0; i < half; ++i) {
        const double angle = static_cast<double>(position * inverse_frequency_[static_cast<std::size_t>(i)]);
        cos[static_cast<std::size_t>(t * half + i)] = static_cast<T>(std::cos(angle));
        sin[static_cast<std::size_t>(t * half + i)] = static_cast<T>(std::sin(angle));
      }
    }
  }

  /// Rotates one head x (its first R elements) by the angles cos, sin (R/2 each); `inverse`
  /// rotates back (the backward of the rotation).
  template <class T>
  void rotate(T* x, const T* cos, const T* sin, bool inverse) const {
    const std::int64_t half = dim_ / 2;
    const T sign = inverse ? T(-1) : T(1);
    for (std::int64_t i = 0; i < half; ++i) {
      T& a = x[interleaved_ ? 2 * i : i];
      T& b = x[interleaved_ ? 2 * i + 1 : i + half];
      const T c = cos[i], s = sign * sin[i];
      const T a0 = a, b0 = b;
      a = a0 * c - b0 * s;
      b = b0 * c + a0 * s;
    }
  }

 private:
  std::int64_t dim_;
  bool interleaved_;
  std::vector<float> inverse_frequency_;
};

/// Rotates the first `heads` heads of hd elements starting at column `offset` of every row of
/// x (B, L, width; row stride ld) at positions positions[b] + t (or back, `inverse`), in
/// parallel over rows.
template <class T>
void rotate_rows(const Rotary& rotary, T* x, std::int64_t ld, std::int64_t offset, std::int64_t heads,
                 std::int64_t head_dim, const std::vector<std::int64_t>& positions, std::int64_t length, bool inverse,
                 int n_threads) {
  if (rotary.dim() == 0) return;
  const std::int64_t batch = static_cast<std::int64_t>(positions.size());
  const std::int64_t first = *std::min_element(positions.begin(), positions.end());
  const std::int64_t count = *std::max_element(positions.begin(), positions.end()) + length - first;
  std::vector<T> cos, sin;
  rotary.table(first, count, cos, sin);
  const std::int64_t half = rotary.dim() / 2;
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (std::int64_t m = 0; m < batch * length; ++m) {
    const std::int64_t b = m / length, t = m % length;
    const std::int64_t at = (positions[static_cast<std::size_t>(b)] + t - first) * half;
    T* row = x + m * ld + offset;
    for (std::int64_t h = 0; h < heads; ++h) {
      rotary.rotate(row + h * head_dim, cos.data() + at, sin.data() + at, inverse);
    }
  }
}

}  // namespace mambakit::mixer_attention
