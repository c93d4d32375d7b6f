// Saving a model folder atomically: config.json and model.safetensors (f32, f16, bf16, or int8
// linear weights with their scales beside f32 others).

#include <fmt/format.h>

#include <filesystem>

#include "mambakit/atomic_file.hpp"
#include "mambakit/half.hpp"
#include "mambakit/safetensors.hpp"
#include "model_impl.hpp"

namespace mambakit {

namespace fs = std::filesystem;

void Model::write_weights(const fs::path& file, sdk::DType weights_dtype) const {
  if (weights_dtype != sdk::DType::kF32 && weights_dtype != sdk::DType::kF16 && weights_dtype != sdk::DType::kBF16 &&
      weights_dtype != sdk::DType::kQ8) {
    throw Error(fmt::format("weights can be saved as f32, f16, bf16 or int8, not {}", sdk::dtype_name(weights_dtype)));
  }
  const auto& store = impl_->store;
  if (weights_dtype == sdk::DType::kQ8) {
    if (store.weights_dtype() != sdk::DType::kQ8) {
      throw Error("weights can be saved as int8 only by a model that holds them so (load or quantize it with dtype int8)");
    }
    write_int8_weights(file);
    return;
  }
  std::vector<std::vector<std::uint16_t>> halves;
  std::vector<std::vector<float>> widened;  // parameters held in 16 bits, as f32
  std::vector<SafetensorsTensor> tensors;
  halves.reserve(store.entries().size());
  widened.reserve(store.entries().size());
  for (std::size_t i = 0; i < store.entries().size(); ++i) {
    const auto& entry = store.entries()[i];
    if (entry.dtype != sdk::DType::kF32) widened.push_back(store.values_f32(static_cast<int>(i)));
    const float* values = entry.dtype == sdk::DType::kF32 ? store.data(static_cast<int>(i)) : widened.back().data();
    if (weights_dtype == sdk::DType::kF32) {
      tensors.push_back({entry.name, sdk::DType::kF32, entry.shape, values});
      continue;
    }
    std::vector<std::uint16_t> converted(static_cast<std::size_t>(entry.numel));
    for (std::int64_t j = 0; j < entry.numel; ++j) {
      converted[static_cast<std::size_t>(j)] =
          weights_dtype == sdk::DType::kF16 ? f32_to_f16(values[j]) : f32_to_bf16(values[j]);
    }
    halves.push_back(std::move(converted));
    tensors.push_back({entry.name, weights_dtype, entry.shape, halves.back().data()});
  }

  write_safetensors(file, tensors, {{"format", "pt"}, {"writer", "mambakit"}});
}

void Model::write_int8_weights(const fs::path& file) const {
  const auto& store = impl_->store;
  std::vector<std::vector<std::int8_t>> dense;  // the int8 values without the rows' padding
  std::vector<std::vector<float>> scales;
  std::vector<SafetensorsTensor> tensors;
  dense.reserve(store.entries().size());
  scales.reserve(store.entries().size());
  for (std::size_t i = 0; i < store.entries().size(); ++i) {
    const auto& entry = store.entries()[i];
    if (entry.dtype != sdk::DType::kQ8) {
      tensors.push_back({entry.name, sdk::DType::kF32, entry.shape, store.data(static_cast<int>(i))});
      continue;
    }
    const sdk::QuantizedMatrix& matrix = store.quantized(static_cast<int>(i));
    std::vector<std::int8_t> values(static_cast<std::size_t>(matrix.rows * matrix.cols));
    for (std::int64_t n = 0; n < matrix.rows; ++n) {
      std::copy_n(matrix.values + n * matrix.row_stride, matrix.cols, values.data() + n * matrix.cols);
    }
    dense.push_back(std::move(values));
    scales.emplace_back(matrix.scales, matrix.scales + matrix.rows * matrix.groups);
    tensors.push_back({entry.name, sdk::DType::kI8, entry.shape, dense.back().data()});
    tensors.push_back({entry.name + "_scale", sdk::DType::kF32, {matrix.rows, matrix.groups}, scales.back().data()});
  }
  write_safetensors(file, tensors,
                    {{"format", "pt"},
                     {"writer", "mambakit"},
                     {"quantization", fmt::format("int8, group_size {}", store.quant_group_size())}});
}

void Model::save(const fs::path& dir, sdk::DType weights_dtype) const {
  ModelConfig config = impl_->config;
  if (weights_dtype != sdk::DType::kQ8) config.quantization = {};
  const std::string config_text = to_json(config);
  write_folder_atomically(dir, [&](const fs::path& staging) {
    write_file_atomically(staging / "config.json", [&](std::ostream& out) { out << config_text << "\n"; });
    write_weights(staging / "model.safetensors", weights_dtype);
  });
}

}  // namespace mambakit
