#pragma once
// Finite-difference gradient checks for the backward tests.
//
// The components compute in f32, so the differences are taken of an f32 computation: the loss
// is summed in double from f32 outputs, whose rounding leaves noise of about delta = 1e-7 in a
// loss of order 1 (unit roundoff, measured: 7e-5 * 2e-3). A difference quotient with step h
// carries noise of order delta / h, plus its truncation error. Measured on mixer/s6, the
// tensors on the dt path (dt_proj.*, A_log) have largest gradients of only 5e-3 to 1e-2, so
// the textbook central difference with h = 1e-3 (noise ~7e-5) cannot check them to better
// than ~1%. We therefore use the fourth-order stencil with h = 3e-2: noise ~5e-6, truncation
// O(h^4) = 1e-6 relative. With it the measured errors shrink as h grows from 1e-3 to 4e-2
// (noise-dominated, no systematic part), and sit 5x or more below the tolerance.
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

inline constexpr double kGradientRtol = 2e-3;
inline constexpr double kGradientAtol = 1e-5;
inline constexpr double kFiniteDifferenceStep = 3e-2;

/// Fourth-order central differences of `loss()` with respect to each element of `values`
/// (changed and restored in place), with step h:
///   f' = (f(v - 2h) - 8 f(v - h) + 8 f(v + h) - f(v + 2h)) / (12 h) + O(h^4).
/// The steps are the f32 values actually set, so rounding v +- h to f32 costs nothing.
template <class Loss>
std::vector<double> finite_differences(std::vector<float>& values, Loss&& loss, double h = kFiniteDifferenceStep) {
  std::vector<double> result(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    const float original = values[i];
    auto at = [&](double offset, double& actual_offset) {
      values[i] = static_cast<float>(original + offset);
      actual_offset = static_cast<double>(values[i]) - static_cast<double>(original);
      return loss();
    };
    double h1 = 0, h2 = 0, m1 = 0, m2 = 0;
    const double plus = at(h, h1), minus = at(-h, m1), plus2 = at(2 * h, h2), minus2 = at(-2 * h, m2);
    values[i] = original;
    // Up to f32 rounding of the steps, h1 = -m1 = h and h2 = -m2 = 2h; use their mean sizes.
    const double step = 0.25 * (h1 - m1 + 0.5 * (h2 - m2));
    result[i] = (minus2 - 8.0 * minus + 8.0 * plus - plus2) / (12.0 * step);
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

inline GradientComparison compare_gradient(const std::vector<float>& analytic, const std::vector<double>& numeric) {
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

/// sum_i a_i * w_i in double.
inline double weighted_sum(const std::vector<float>& a, const std::vector<float>& w) {
  double sum = 0.0;
  for (std::size_t i = 0; i < a.size() && i < w.size(); ++i) sum += static_cast<double>(a[i]) * w[i];
  return sum;
}

}  // namespace mambakit::test
