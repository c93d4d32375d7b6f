#include "backbone_kernels.hpp"

#include <algorithm>
#include <cmath>
#include <omp.h>
#include <vector>

namespace mambakit::model {

void embedding_lookup(const std::int32_t* ids, const float* table, float* out, std::int64_t rows, std::int64_t d_model,
                      int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* source = table + static_cast<std::int64_t>(ids[r]) * d_model;
    std::copy(source, source + d_model, out + r * d_model);
  }
}

void rms_norm(const float* x, const float* weight, float* out, std::int64_t rows, std::int64_t d_model, double eps,
              int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * d_model;
    double sum_squares = 0.0;
    for (std::int64_t d = 0; d < d_model; ++d) sum_squares += static_cast<double>(row[d]) * row[d];
    const float scale = static_cast<float>(1.0 / std::sqrt(sum_squares / static_cast<double>(d_model) + eps));
    float* result = out + r * d_model;
    for (std::int64_t d = 0; d < d_model; ++d) result[d] = row[d] * scale * weight[d];
  }
}

void rms_norm_backward(const float* x, const float* weight, const float* grad_out, float* grad_x, float* grad_weight,
                       std::int64_t rows, std::int64_t d_model, double eps, int n_threads) {
  // y = x r w with r = (mean(x^2) + eps)^-1/2:  dx = r (g w) - x r^3 <g w, x> / D,  dw = sum_rows g x r.
  std::vector<double> weight_sums(static_cast<std::size_t>(d_model) * static_cast<std::size_t>(n_threads), 0.0);
#pragma omp parallel num_threads(n_threads)
  {
    double* my_sums = weight_sums.data() + static_cast<std::size_t>(omp_get_thread_num()) * static_cast<std::size_t>(d_model);
#pragma omp for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* row = x + r * d_model;
      const float* g = grad_out + r * d_model;
      double sum_squares = 0.0, dot = 0.0;
      for (std::int64_t d = 0; d < d_model; ++d) {
        sum_squares += static_cast<double>(row[d]) * row[d];
        dot += static_cast<double>(g[d]) * weight[d] * row[d];
      }
      const double scale = 1.0 / std::sqrt(sum_squares / static_cast<double>(d_model) + eps);
      const double correction = scale * scale * scale * dot / static_cast<double>(d_model);
      float* out = grad_x + r * d_model;
      for (std::int64_t d = 0; d < d_model; ++d) {
        out[d] += static_cast<float>(scale * g[d] * weight[d] - row[d] * correction);
        my_sums[d] += static_cast<double>(g[d]) * row[d] * scale;
      }
    }
  }
  for (int t = 0; t < n_threads; ++t) {
    for (std::int64_t d = 0; d < d_model; ++d) grad_weight[d] += static_cast<float>(weight_sums[static_cast<std::size_t>(t * d_model + d)]);
  }
}

void embedding_backward(const std::int32_t* ids, const float* grad_out, float* grad_table, std::int64_t rows,
                        std::int64_t d_model) {
  for (std::int64_t r = 0; r < rows; ++r) {
    float* target = grad_table + static_cast<std::int64_t>(ids[r]) * d_model;
    const float* source = grad_out + r * d_model;
    for (std::int64_t d = 0; d < d_model; ++d) target[d] += source[d];
  }
}

void add_in_place(float* x, const float* y, std::int64_t count, int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (std::int64_t i = 0; i < count; ++i) x[i] += y[i];
}

}  // namespace mambakit::model
