#pragma once
// Finite-difference gradient checks for the backward tests, in double precision.
//
// The components run entirely in f64 for these checks (f64 parameters make a mixer or head
// compute in f64; see sdk/mixer.hpp), so the loss carries rounding noise of about
// delta = 1e-16 * |loss|. The fourth-order central stencil with step h = 1e-3 has truncation
// error O(h^4) and noise delta / h = 1e-13. Measured (the tests print it): errors of 1e-13 to
// 1e-11 of each tensor's largest gradient, up to 7e-9 for A_log, whose exp makes the O(h^4)
// term largest; the tolerance leaves a margin of more than 10x over that. The production f32
// path is then checked against the f64 gradients of the same problem: measured up to 1.6e-6,
// tolerance kPrecisionRtol.
//
// A tensor's analytic gradient g passes against the difference quotients f when
//     max_i |g_i - f_i| <= kGradientRtol * max_i |f_i| + kGradientAtol,
// i.e. the tolerance is relative to the tensor's largest gradient, not to each element (an
// element whose gradient is a cancellation of large terms is only known to the precision of
// those terms). A wrong formula (a dropped term, a wrong index, a missing factor) gives errors
// of the order of the gradient itself, far above this.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace mambakit::test {

inline constexpr double kGradientRtol = 1e-7;
inline constexpr double kGradientAtol = 1e-12;
inline constexpr double kFiniteDifferenceStep = 1e-3;
/// f32 gradients against the f64 ones of the same problem, relative to the largest element:
/// f32 rounding through a few layers of arithmetic, with margin.
inline constexpr double kPrecisionRtol = 2e-5;

/// Fourth-order central differences of `loss()` with respect to each element of `values`
/// (changed and restored in place), with step h:
///   f' = (f(v - 2h) - 8 f(v - h) + 8 f(v + h) - f(v + 2h)) / (12 h) + O(h^4).
template <class Loss>
std::vector<double> finite_differences(std::vector<double>& values, Loss&& loss, double h = kFiniteDifferenceStep) {
  std::vector<double> result(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    const double original = values[i];
    auto at = [&](double offset) {
      values[i] = original + offset;
      return loss();
    };
    const double plus = at(h), minus = at(-h), plus2 = at(2 * h), minus2 = at(-2 * h);
    values[i] = original;
    result[i] = (minus2 - 8.0 * minus + 8.0 * plus - plus2) / (12.0 * h);
  }
  return result;
}

/// How an analytic gradient compares with finite differences.
struct GradientComparison {
  double max_error = 0.0;     ///< max |analytic - numeric|
  double max_gradient = 0.0;  ///< max |numeric|

  [[nodiscard]] double tolerance() const { return kGradientRtol * max_gradient + kGradientAtol; }
  [[nodiscard]] bool passes() const { return max_error <= tolerance(); }
  /// max_error relative to the largest gradient (the number the report tables show).
  [[nodiscard]] double relative() const { return max_error / std::max(max_gradient, 1e-30); }
};

template <class T>
GradientComparison compare_gradient(const std::vector<T>& analytic, const std::vector<double>& numeric) {
  GradientComparison comparison;
  if (analytic.size() != numeric.size()) {
    comparison.max_error = std::numeric_limits<double>::infinity();
    return comparison;
  }
  for (std::size_t i = 0; i < analytic.size(); ++i) {
    const double error = std::fabs(static_cast<double>(analytic[i]) - numeric[i]);
    comparison.max_error = std::isnan(error) ? std::numeric_limits<double>::infinity()
                                             : std::max(comparison.max_error, error);
    comparison.max_gradient = std::max(comparison.max_gradient, std::fabs(numeric[i]));
  }
  return comparison;
}

/// max |f32_i - f64_i| / max |f64_i|: how far the f32 path's gradient is from the f64 one.
inline double precision_error(const std::vector<float>& f32, const std::vector<double>& f64) {
  double error = f32.size() == f64.size() ? 0.0 : std::numeric_limits<double>::infinity(), largest = 0.0;
  for (std::size_t i = 0; i < f32.size() && i < f64.size(); ++i) {
    const double difference = std::fabs(static_cast<double>(f32[i]) - f64[i]);
    error = std::isnan(difference) ? std::numeric_limits<double>::infinity() : std::max(error, difference);
    largest = std::max(largest, std::fabs(f64[i]));
  }
  return error / std::max(largest, 1e-30);
}

/// sum_i a_i * w_i in double.
template <class T>
double weighted_sum(const std::vector<T>& a, const std::vector<T>& w) {
  double sum = 0.0;
  for (std::size_t i = 0; i < a.size() && i < w.size(); ++i) sum += static_cast<double>(a[i]) * w[i];
  return sum;
}

}  // namespace mambakit::test
