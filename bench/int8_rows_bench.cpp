// The decode projection alone (sdk/util/few_rows.hpp) at the 130m shape's matrices, with f32,
// bf16 and int8 weights (each int8 path this CPU runs, groups of 32, 64 and 128): one input row
// (or a batch) against 24 layers' in_proj (3072 x 768) and out_proj (768 x 1536), 170 MB of f32
// weights, so every call streams its weights from memory as a decode step does. Reports the
// median time of a pass over all 48 matrices and the bytes per second read (weights and
// scales), to compare with memory_bandwidth's read-only figure.
//
//   int8_rows_bench [THREADS] [ROWS]

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "mambakit/sdk/half.hpp"
#include "mambakit/sdk/quantized.hpp"
#include "mambakit/sdk/util/few_rows.hpp"

namespace {

namespace sdk = mambakit::sdk;
namespace util = mambakit::sdk::util;

struct Shape {
  std::int64_t n, k;
};

/// One matrix in every weight format.
struct Matrix {
  Shape shape;
  std::vector<float> f32;
  std::vector<std::uint16_t> bf16;
  std::vector<std::int8_t> values;
  std::vector<float> scales;
  sdk::QuantizedMatrix quantized;

  void quantize(std::int64_t group_size) {
    quantized.rows = shape.n;
    quantized.cols = shape.k;
    quantized.group_size = group_size;
    quantized.groups = sdk::quant_groups(shape.k, group_size);
    quantized.row_stride = sdk::quant_row_stride(shape.k);
    values.assign(static_cast<std::size_t>(shape.n * quantized.row_stride), 0);
    scales.assign(static_cast<std::size_t>(shape.n * quantized.groups), 0.0f);
    for (std::int64_t r = 0; r < shape.n; ++r) {
      sdk::quantize_row(f32.data() + r * shape.k, shape.k, group_size, values.data() + r * quantized.row_stride,
                        scales.data() + r * quantized.groups);
    }
    quantized.values = values.data();
    quantized.scales = scales.data();
  }
};

template <class Body>
double median_seconds(Body&& body) {
  std::vector<double> seconds;
  for (int run = 0; run < 31; ++run) {
    const auto start = std::chrono::steady_clock::now();
    body();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(seconds.begin(), seconds.end());
  return seconds[seconds.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const std::int64_t rows = argc > 2 ? std::atoll(argv[2]) : 1;
  std::vector<Matrix> matrices;
  std::mt19937 generator(1);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  for (int layer = 0; layer < 24; ++layer) {
    for (const Shape shape : {Shape{3072, 768}, Shape{768, 1536}}) {
      Matrix matrix;
      matrix.shape = shape;
      matrix.f32.resize(static_cast<std::size_t>(shape.n * shape.k));
      for (auto& value : matrix.f32) value = normal(generator);
      for (const float value : matrix.f32) matrix.bf16.push_back(sdk::f32_to_bf16(value));
      matrices.push_back(std::move(matrix));
    }
  }
  std::vector<float> x(static_cast<std::size_t>(rows * 3072)), y(static_cast<std::size_t>(rows * 3072));
  for (auto& value : x) value = normal(generator);
  std::vector<util::SpeedShares> shares(matrices.size());

  auto pass = [&](auto view_of) {
    for (std::size_t i = 0; i < matrices.size(); ++i) {
      const Matrix& matrix = matrices[i];
      util::linear_few_rows(x.data(), matrix.shape.k, view_of(matrix), nullptr, y.data(), matrix.shape.n, rows,
                            matrix.shape.k, matrix.shape.n, threads, shares[i]);
    }
  };
  auto report = [&](const char* name, double bytes, double seconds) {
    std::printf("%-24s %d threads, %lld rows: %7.3f ms per pass, %6.1f GB/s\n", name, threads,
                static_cast<long long>(rows), seconds * 1e3, bytes / seconds / 1e9);
  };
  double elements = 0.0;
  for (const auto& matrix : matrices) elements += static_cast<double>(matrix.shape.n * matrix.shape.k);
  report("f32", elements * 4, median_seconds([&] {
           pass([](const Matrix& m) {
             return sdk::make_view(const_cast<float*>(m.f32.data()), sdk::DType::kF32, sdk::Device{},
                                   {m.shape.n, m.shape.k});
           });
         }));
  report("bf16", elements * 2, median_seconds([&] {
           pass([](const Matrix& m) {
             return sdk::make_view(const_cast<std::uint16_t*>(m.bf16.data()), sdk::DType::kBF16, sdk::Device{},
                                   {m.shape.n, m.shape.k});
           });
         }));
  for (const std::int64_t group_size : sdk::kQuantGroupSizes) {
    double bytes = 0.0;
    for (auto& matrix : matrices) {
      matrix.quantize(group_size);
      bytes += static_cast<double>(matrix.values.size() + 4 * matrix.scales.size());
    }
    char name[64];
    std::snprintf(name, sizeof name, "int8 g%lld %s", static_cast<long long>(group_size),
                  util::int8_path_name(util::best_int8_path()));
    report(name, bytes, median_seconds([&] {
             pass([](const Matrix& m) {
               return sdk::make_view(const_cast<sdk::QuantizedMatrix*>(&m.quantized), sdk::DType::kQ8, sdk::Device{},
                                     {m.shape.n, m.shape.k});
             });
           }));
  }
  return 0;
}
