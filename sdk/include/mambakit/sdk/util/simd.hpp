#pragma once
// 64-byte SIMD vectors for the CPU scan backends (scan/fused, scan/chunked) and the S6 mixer's
// A = -exp(A_log), written with the GCC/Clang vector extensions: one vector is 16 f32 or 8 f64 lanes, one AVX-512 register where
// the target has AVX-512F (-march=native on the project's machines), and the compiler splits
// it into narrower registers or scalar code on any other target, so the same source is its own
// fallback. On top of the vectors: exp (Cephes' range reduction and polynomial/Pade forms,
// about 1 ulp; the f32 one rounds and scales with AVX-512F instructions where they exist, with
// portable bit arithmetic elsewhere), log (Cephes' logf), softplus, sigmoid, horizontal sums,
// and loads and stores of a partial vector of `count` lanes (the last channel block when E is
// not a multiple of the width), either contiguous or strided.
//
// Lanes are channels of the (B, L, E) layout, where channels are contiguous. Lanes past
// `count` are zero after a load, and computing on them yields finite values only (the backends
// rely on this: a zero lane stays zero through the recurrence).

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace mambakit::sdk::simd {

typedef float F32x16 __attribute__((vector_size(64)));
typedef double F64x8 __attribute__((vector_size(64)));
typedef std::int32_t I32x16 __attribute__((vector_size(64)));
typedef std::int64_t I64x8 __attribute__((vector_size(64)));
typedef float F32x8 __attribute__((vector_size(32)));
typedef float F32x4 __attribute__((vector_size(16)));
typedef double F64x4 __attribute__((vector_size(32)));
typedef double F64x2 __attribute__((vector_size(16)));

/// The vector of element type T, its integer twin and its width.
template <class T>
struct Lanes;
template <>
struct Lanes<float> {
  using V = F32x16;
  using I = I32x16;
  static constexpr int kWidth = 16;
};
template <>
struct Lanes<double> {
  using V = F64x8;
  using I = I64x8;
  static constexpr int kWidth = 8;
};

template <class T>
using Vec = typename Lanes<T>::V;

template <class T>
inline constexpr int kWidth = Lanes<T>::kWidth;

/// All lanes equal to `value`.
template <class T>
[[gnu::always_inline]] inline Vec<T> splat(T value) {
  return Vec<T>{} + value;
}

/// All lanes equal to *p, by one broadcast load. (splat(v) is computed as 0 + v, which the
/// compiler must keep for v = -0: a scalar add and a register shuffle per broadcast, measured a
/// third slower in attention/blocked's register-tiled products.)
template <class T>
[[gnu::always_inline]] inline Vec<T> broadcast(const T* p) {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4) {
    return _mm512_set1_ps(*p);
  } else {
    return _mm512_set1_pd(*p);
  }
#else
  return splat(*p);
#endif
}

#if defined(__AVX512F__)
/// The mask of lanes 0..count-1, 0 <= count <= 16.
[[gnu::always_inline]] inline __mmask16 lane_mask(int count) {
  return static_cast<__mmask16>(count >= 16 ? 0xffffu : (1u << count) - 1u);
}
#endif

/// Lanes 0..count-1 from p[0..count-1]; the rest zero. Reads nothing past p[count - 1]
/// (a masked load with AVX-512F).
template <class T>
[[gnu::always_inline]] inline Vec<T> load(const T* p, int count) {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4) {
    return _mm512_maskz_loadu_ps(lane_mask(count), p);
  } else {
    return _mm512_maskz_loadu_pd(static_cast<__mmask8>(lane_mask(count)), p);
  }
#else
  Vec<T> v{};
  if (count == kWidth<T>) {
    std::memcpy(&v, p, sizeof v);
  } else {
    for (int i = 0; i < count; ++i) v[i] = p[i];
  }
  return v;
#endif
}

/// Lanes 0..count-1 from p[0], p[stride], ...; the rest zero.
template <class T>
[[gnu::always_inline]] inline Vec<T> load_strided(const T* p, std::int64_t stride, int count) {
  Vec<T> v{};
  for (int i = 0; i < count; ++i) v[i] = p[i * stride];
  return v;
}

/// Writes lanes 0..count-1 to p[0..count-1] and nothing else.
template <class T>
[[gnu::always_inline]] inline void store(T* p, Vec<T> v, int count) {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4) {
    _mm512_mask_storeu_ps(p, lane_mask(count), v);
  } else {
    _mm512_mask_storeu_pd(p, static_cast<__mmask8>(lane_mask(count)), v);
  }
#else
  if (count == kWidth<T>) {
    std::memcpy(p, &v, sizeof v);
  } else {
    for (int i = 0; i < count; ++i) p[i] = v[i];
  }
#endif
}

/// Writes lanes 0..count-1 to p[0], p[stride], ...
template <class T>
[[gnu::always_inline]] inline void store_strided(T* p, std::int64_t stride, Vec<T> v, int count) {
  for (int i = 0; i < count; ++i) p[i * stride] = v[i];
}

/// Sum of all lanes, by halving (vextract + add on AVX-512).
[[gnu::always_inline]] inline float hsum(F32x16 v) {
  F32x8 lo, hi;
  std::memcpy(&lo, &v, sizeof lo);
  std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof lo, sizeof hi);
  const F32x8 s8 = lo + hi;
  F32x4 a, b;
  std::memcpy(&a, &s8, sizeof a);
  std::memcpy(&b, reinterpret_cast<const char*>(&s8) + sizeof a, sizeof b);
  const F32x4 s4 = a + b;
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

[[gnu::always_inline]] inline double hsum(F64x8 v) {
  F64x4 lo, hi;
  std::memcpy(&lo, &v, sizeof lo);
  std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof lo, sizeof hi);
  const F64x4 s4 = lo + hi;
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

/// exp(x) per lane, f32: x = n ln2 + r with |r| <= ln2/2 (Cody-Waite split of ln2), e^r by
/// Cephes' degree-7 expf polynomial, then 2^n applied. About 1 ulp for x in [-87.3, 88.7],
/// gradual underflow to 0 below, +inf above, NaN stays NaN. With AVX-512F, the rounding and
/// the scaling by 2^n are single instructions (vrndscaleps, vscalefps, which also handle
/// overflow and denormals); elsewhere 2^n is built in the exponent bits, in two halves so that
/// n = 128 and denormal results work.
[[gnu::always_inline]] inline F32x16 exp(F32x16 x) {
  constexpr float kHi = 88.7228391116729996f;  // log(FLT_MAX)
  constexpr float kLo = -103.972076416f;       // below: 0
#if defined(__AVX512F__)
  // The masked forms with every lane selected: the unmasked intrinsics of GCC 12 start from
  // _mm512_undefined_ps(), which trips -Wuninitialized. vminps/vmaxps return their second
  // operand when either is NaN, so NaN passes through the clamp.
  F32x16 xc = _mm512_mask_min_ps(x, 0xffff, splat(kHi), x);
  xc = _mm512_mask_max_ps(xc, 0xffff, splat(kLo), xc);
  const F32x16 scaled = xc * 1.44269504088896341f;
  const F32x16 nf =
      _mm512_mask_roundscale_ps(scaled, 0xffff, scaled, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#else
  F32x16 xc = kHi < x ? splat(kHi) : x;
  xc = kLo > xc ? splat(kLo) : xc;
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const F32x16 nf = (xc * 1.44269504088896341f + kMagic) - kMagic;
#endif
  F32x16 r = xc - nf * 0.693359375f;
  r = r - nf * -2.12194440e-4f;
  F32x16 p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
#if defined(__AVX512F__)
  return _mm512_mask_scalef_ps(p, 0xffff, p, nf);
#else
  const I32x16 n = __builtin_convertvector(nf, I32x16);
  const I32x16 n1 = n >> 1;
  const F32x16 scale1 = std::bit_cast<F32x16>((n1 + 127) << 23);
  const F32x16 scale2 = std::bit_cast<F32x16>((n - n1 + 127) << 23);
  const F32x16 result = (p * scale1) * scale2;
  return x > kHi ? splat(HUGE_VALF) : (x < kLo ? F32x16{} : result);
#endif
}

/// exp(x) per lane, f64: the same reduction with Cephes' Pade form of e^r. About 1 ulp for x
/// in [-708.3, 709.7], gradual underflow to 0 below, +inf above.
[[gnu::always_inline]] inline F64x8 exp(F64x8 x) {
  constexpr double kHi = 709.782712893383973096;  // log(DBL_MAX)
  constexpr double kLo = -745.1332191019412;       // below: 0
  constexpr double kMagic = 6755399441055744.0;    // 1.5 * 2^52
  const F64x8 xc = x > kHi ? splat(kHi) : (x < kLo ? splat(kLo) : x);
  const F64x8 nf = (xc * 1.4426950408889634073599 + kMagic) - kMagic;
  F64x8 r = xc - nf * 6.93145751953125e-1;
  r = r - nf * 1.42860682030941723212e-6;
  const F64x8 rr = r * r;
  F64x8 p = splat(1.26177193074810590878e-4);
  p = p * rr + 3.02994407707441961300e-2;
  p = p * rr + 9.99999999999999999910e-1;
  p = p * r;
  F64x8 q = splat(3.00198505138664455042e-6);
  q = q * rr + 2.52448340349684104192e-3;
  q = q * rr + 2.27265548208155028766e-1;
  q = q * rr + 2.00000000000000000009e0;
  const F64x8 er = 1.0 + 2.0 * (p / (q - p));
  const I64x8 n = __builtin_convertvector(nf, I64x8);
  const I64x8 n1 = n >> 1;
  const F64x8 scale1 = std::bit_cast<F64x8>((n1 + 1023) << 52);
  const F64x8 scale2 = std::bit_cast<F64x8>((n - n1 + 1023) << 52);
  const F64x8 result = (er * scale1) * scale2;
  return x > kHi ? splat(HUGE_VAL) : (x < kLo ? F64x8{} : result);
}

/// log(x) per lane for normal positive x (Cephes' logf): x = m 2^e with m in [sqrt(1/2),
/// sqrt(2)), log(m) by a degree-9 polynomial in m - 1. About 1 ulp.
[[gnu::always_inline]] inline F32x16 log(F32x16 x) {
  const I32x16 bits = std::bit_cast<I32x16>(x);
  I32x16 e = ((bits >> 23) & 0xff) - 126;
  F32x16 m = std::bit_cast<F32x16>((bits & 0x007fffff) | 0x3f000000);  // in [0.5, 1)
  const I32x16 small = m < 0.707106781186547524f;                      // -1 where true
  e = e + small;
  m = small ? m + m - 1.0f : m - 1.0f;
  const F32x16 z = m * m;
  F32x16 y = splat(7.0376836292e-2f);
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  const F32x16 fe = __builtin_convertvector(e, F32x16);
  y = y + fe * -2.12194440e-4f;
  y = y - 0.5f * z;
  return (m + y) + fe * 0.693359375f;
}

/// softplus(v) = log(1 + exp(v)), and v above 20 (the scan's convention). f32: log1p by
/// Kahan's trick log1p(w) = log(1 + w) * w / ((1 + w) - 1), accurate for tiny w as well.
[[gnu::always_inline]] inline F32x16 softplus(F32x16 v) {
  const F32x16 w = exp(v > 20.0f ? F32x16{} : v);
  const F32x16 u = 1.0f + w;
  const F32x16 d = u - 1.0f;
  const F32x16 lg = log(u) * (w / (d == 0.0f ? splat(1.0f) : d));
  const F32x16 r = d == 0.0f ? w : lg;
  return v > 20.0f ? v : r;
}

/// softplus for f64 lanes, through libm's log1p and exp lane by lane (it runs once per
/// (t, e), not per state, and f64 is the accuracy path).
[[gnu::always_inline]] inline F64x8 softplus(F64x8 v) {
  F64x8 r;
  for (int i = 0; i < 8; ++i) r[i] = v[i] > 20.0 ? v[i] : std::log1p(std::exp(v[i]));
  return r;
}

/// 1 / v per lane. f32 with AVX-512F: the 14-bit estimate (vrcp14ps) and one Newton step,
/// within about 2 ulp of the division and several times its throughput; elsewhere, and for
/// f64, the division.
[[gnu::always_inline]] inline F32x16 reciprocal(F32x16 v) {
#if defined(__AVX512F__)
  const F32x16 r = reinterpret_cast<F32x16>(_mm512_rcp14_ps(reinterpret_cast<__m512>(v)));
  return r * (2.0f - v * r);
#else
  return 1.0f / v;
#endif
}
[[gnu::always_inline]] inline F64x8 reciprocal(F64x8 v) { return 1.0 / v; }

/// silu(v) = v / (1 + exp(-v)) per lane, through reciprocal().
template <class V>
[[gnu::always_inline]] inline V silu(V v) {
  return v * reciprocal(1 + exp(-v));
}

/// sigmoid(v) = 1 / (1 + exp(-v)) per lane.
[[gnu::always_inline]] inline F32x16 sigmoid(F32x16 v) { return 1.0f / (1.0f + exp(-v)); }
[[gnu::always_inline]] inline F64x8 sigmoid(F64x8 v) { return 1.0 / (1.0 + exp(-v)); }

}  // namespace mambakit::sdk::simd
