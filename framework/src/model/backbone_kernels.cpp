#include "backbone_kernels.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "mambakit/half.hpp"
#include "mambakit/sdk/quantized.hpp"

namespace mambakit::model {

namespace {

/// Below this many elements a loop runs on the calling thread: waking the other threads costs
/// more than the work (decode steps touch one row of d_model per sequence).
constexpr std::int64_t kParallelElements = 1 << 15;

/// body(i) for i in [0, count): in parallel when the loop touches at least kParallelElements
/// elements, otherwise as a plain loop. (An OpenMP region with a false `if` clause still costs
/// about 2 us per call here, 10% of a decode step's per-layer overhead.)
template <class Body>
void for_each_index(std::int64_t count, std::int64_t elements, int n_threads, Body&& body) {
  if (elements < kParallelElements || n_threads <= 1) {
    for (std::int64_t i = 0; i < count; ++i) body(i);
    return;
  }
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (std::int64_t i = 0; i < count; ++i) body(i);
}

}  // namespace

template <class T>
void embedding_lookup(const std::int32_t* ids, const T* table, T* out, std::int64_t rows, std::int64_t d_model,
                      int n_threads) {
  for_each_index(rows, rows * d_model, n_threads, [&](std::int64_t r) {
    const T* source = table + static_cast<std::int64_t>(ids[r]) * d_model;
    std::copy(source, source + d_model, out + r * d_model);
  });
}

void embedding_lookup(const std::int32_t* ids, const sdk::TensorView& table, float* out, std::int64_t rows,
                      std::int64_t d_model, int n_threads) {
  if (table.dtype == sdk::DType::kF32) {
    embedding_lookup(ids, table.as<const float>(), out, rows, d_model, n_threads);
    return;
  }
  if (table.dtype == sdk::DType::kQ8) {
    const auto& matrix = *table.as<const sdk::QuantizedMatrix>();
    for (std::int64_t r = 0; r < rows; ++r) sdk::dequantize_row(matrix, ids[r], out + r * d_model);
    return;
  }
  const auto* bits = table.as<const std::uint16_t>();
  for (std::int64_t r = 0; r < rows; ++r) {
    convert_to_f32(table.dtype, bits + static_cast<std::int64_t>(ids[r]) * d_model, out + r * d_model, d_model);
  }
}

template <class T>
void rms_norm(const T* x, const T* weight, T* out, std::int64_t rows, std::int64_t d_model, double eps,
              int n_threads) {
  for_each_index(rows, rows * d_model, n_threads, [&](std::int64_t r) {
    const T* row = x + r * d_model;
    double sum_squares = 0.0;
    for (std::int64_t d = 0; d < d_model; ++d) sum_squares += static_cast<double>(row[d]) * row[d];
    const T scale = static_cast<T>(1.0 / std::sqrt(sum_squares / static_cast<double>(d_model) + eps));
    T* result = out + r * d_model;
    for (std::int64_t d = 0; d < d_model; ++d) result[d] = row[d] * scale * weight[d];
  });
}

template <class T>
void rms_norm_backward(const T* x, const T* weight, const T* grad_out, T* grad_x, T* grad_weight,
                       std::int64_t rows, std::int64_t d_model, double eps, int n_threads) {
  // y = x r w with r = (mean(x^2) + eps)^-1/2:  dx = r (g w) - x r^3 <g w, x> / D,  dw = sum_rows g x r.
  // dx in parallel over rows, keeping each row's r; then dw in parallel over blocks of columns,
  // each summed over the rows in order, so that its bits do not depend on the thread count.
  std::vector<double> scales(static_cast<std::size_t>(rows));
  for_each_index(rows, rows * d_model, n_threads, [&](std::int64_t r) {
    const T* row = x + r * d_model;
    const T* g = grad_out + r * d_model;
    double sum_squares = 0.0, dot = 0.0;
    for (std::int64_t d = 0; d < d_model; ++d) {
      sum_squares += static_cast<double>(row[d]) * row[d];
      dot += static_cast<double>(g[d]) * weight[d] * row[d];
    }
    const double scale = 1.0 / std::sqrt(sum_squares / static_cast<double>(d_model) + eps);
    const double correction = scale * scale * scale * dot / static_cast<double>(d_model);
    T* out = grad_x + r * d_model;
    for (std::int64_t d = 0; d < d_model; ++d) out[d] += static_cast<T>(scale * g[d] * weight[d] - row[d] * correction);
    scales[static_cast<std::size_t>(r)] = scale;
  });
  constexpr std::int64_t kColumns = 16;
  for_each_index((d_model + kColumns - 1) / kColumns, rows * d_model, n_threads, [&](std::int64_t block) {
    const std::int64_t d0 = block * kColumns, width = std::min(kColumns, d_model - d0);
    double sums[kColumns] = {};
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* row = x + r * d_model + d0;
      const T* g = grad_out + r * d_model + d0;
      const double scale = scales[static_cast<std::size_t>(r)];
      for (std::int64_t i = 0; i < width; ++i) sums[i] += static_cast<double>(g[i]) * row[i] * scale;
    }
    for (std::int64_t i = 0; i < width; ++i) grad_weight[d0 + i] += static_cast<T>(sums[i]);
  });
}

namespace {

/// A row's mean and 1 / sqrt(variance + eps), in f64.
template <class T>
std::pair<double, double> row_moments(const T* row, std::int64_t d_model, double eps) {
  double sum = 0.0;
  for (std::int64_t d = 0; d < d_model; ++d) sum += static_cast<double>(row[d]);
  const double mean = sum / static_cast<double>(d_model);
  double sum_squares = 0.0;
  for (std::int64_t d = 0; d < d_model; ++d) sum_squares += (row[d] - mean) * (row[d] - mean);
  return {mean, 1.0 / std::sqrt(sum_squares / static_cast<double>(d_model) + eps)};
}

}  // namespace

template <class T>
void layer_norm(const T* x, const T* weight, const T* bias, T* out, std::int64_t rows, std::int64_t d_model,
                double eps, int n_threads) {
  for_each_index(rows, rows * d_model, n_threads, [&](std::int64_t r) {
    const T* row = x + r * d_model;
    const auto [mean, scale] = row_moments(row, d_model, eps);
    T* result = out + r * d_model;
    for (std::int64_t d = 0; d < d_model; ++d) {
      result[d] = static_cast<T>((row[d] - mean) * scale) * weight[d] + bias[d];
    }
  });
}

template <class T>
void layer_norm_backward(const T* x, const T* weight, const T* grad_out, T* grad_x, T* grad_weight, T* grad_bias,
                         std::int64_t rows, std::int64_t d_model, double eps, int n_threads) {
  // y = xhat w + b with xhat = (x - mean) r:  dx = r (gw - mean(gw) - xhat mean(gw xhat)),
  // dw = sum_rows g xhat, db = sum_rows g. As in rms_norm_backward, the parameter gradients are
  // summed over the rows in order, per block of columns, whatever the thread count.
  std::vector<std::pair<double, double>> moments(static_cast<std::size_t>(rows));
  const double width = static_cast<double>(d_model);
  for_each_index(rows, rows * d_model, n_threads, [&](std::int64_t r) {
    const T* row = x + r * d_model;
    const T* g = grad_out + r * d_model;
    const auto [mean, scale] = row_moments(row, d_model, eps);
    double sum_gw = 0.0, sum_gw_xhat = 0.0;
    for (std::int64_t d = 0; d < d_model; ++d) {
      const double gw = static_cast<double>(g[d]) * weight[d];
      sum_gw += gw;
      sum_gw_xhat += gw * (row[d] - mean) * scale;
    }
    T* out = grad_x + r * d_model;
    for (std::int64_t d = 0; d < d_model; ++d) {
      const double xhat = (row[d] - mean) * scale;
      out[d] += static_cast<T>(scale * (static_cast<double>(g[d]) * weight[d] - sum_gw / width - xhat * sum_gw_xhat / width));
    }
    moments[static_cast<std::size_t>(r)] = {mean, scale};
  });
  constexpr std::int64_t kColumns = 16;
  for_each_index((d_model + kColumns - 1) / kColumns, rows * d_model, n_threads, [&](std::int64_t block) {
    const std::int64_t d0 = block * kColumns, count = std::min(kColumns, d_model - d0);
    double weight_sums[kColumns] = {}, bias_sums[kColumns] = {};
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* row = x + r * d_model + d0;
      const T* g = grad_out + r * d_model + d0;
      const auto [mean, scale] = moments[static_cast<std::size_t>(r)];
      for (std::int64_t i = 0; i < count; ++i) {
        weight_sums[i] += static_cast<double>(g[i]) * (row[i] - mean) * scale;
        bias_sums[i] += static_cast<double>(g[i]);
      }
    }
    for (std::int64_t i = 0; i < count; ++i) {
      grad_weight[d0 + i] += static_cast<T>(weight_sums[i]);
      grad_bias[d0 + i] += static_cast<T>(bias_sums[i]);
    }
  });
}

template <class T>
void embedding_backward(const std::int32_t* ids, const T* grad_out, T* grad_table, std::int64_t rows,
                        std::int64_t d_model) {
  for (std::int64_t r = 0; r < rows; ++r) {
    T* target = grad_table + static_cast<std::int64_t>(ids[r]) * d_model;
    const T* source = grad_out + r * d_model;
    for (std::int64_t d = 0; d < d_model; ++d) target[d] += source[d];
  }
}

void add_in_place(float* x, const float* y, std::int64_t count, int n_threads) {
  for_each_index(count, count, n_threads, [&](std::int64_t i) { x[i] += y[i]; });
}

#define MAMBAKIT_INSTANTIATE_BACKBONE(T)                                                                          \
  template void embedding_lookup<T>(const std::int32_t*, const T*, T*, std::int64_t, std::int64_t, int);              \
  template void rms_norm<T>(const T*, const T*, T*, std::int64_t, std::int64_t, double, int);                        \
  template void rms_norm_backward<T>(const T*, const T*, const T*, T*, T*, std::int64_t, std::int64_t, double, int); \
  template void layer_norm<T>(const T*, const T*, const T*, T*, std::int64_t, std::int64_t, double, int);          \
  template void layer_norm_backward<T>(const T*, const T*, const T*, T*, T*, T*, std::int64_t, std::int64_t, double, \
                                       int);                                                                        \
  template void embedding_backward<T>(const std::int32_t*, const T*, T*, std::int64_t, std::int64_t);
MAMBAKIT_INSTANTIATE_BACKBONE(float)
MAMBAKIT_INSTANTIATE_BACKBONE(double)
#undef MAMBAKIT_INSTANTIATE_BACKBONE

}  // namespace mambakit::model
