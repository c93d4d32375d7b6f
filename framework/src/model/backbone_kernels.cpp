#include "backbone_kernels.hpp"

#include <algorithm>
#include <cmath>

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

void add_in_place(float* x, const float* y, std::int64_t count, int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (std::int64_t i = 0; i < count; ++i) x[i] += y[i];
}

}  // namespace mambakit::model
