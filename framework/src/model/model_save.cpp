// Saving a model folder atomically: config.json and model.safetensors (f32, f16 or bf16).

#include <fmt/format.h>

#include <filesystem>

#include "mambakit/atomic_file.hpp"
#include "mambakit/half.hpp"
#include "mambakit/safetensors.hpp"
#include "model_impl.hpp"

namespace mambakit {

namespace fs = std::filesystem;

void Model::write_weights(const fs::path& file, sdk::DType weights_dtype) const {
  if (weights_dtype != sdk::DType::kF32 && weights_dtype != sdk::DType::kF16 && weights_dtype != sdk::DType::kBF16) {
    throw Error(fmt::format("weights can be saved as f32, f16 or bf16, not {}", sdk::dtype_name(weights_dtype)));
  }
  const auto& store = impl_->store;
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

void Model::save(const fs::path& dir, sdk::DType weights_dtype) const {
  const std::string config_text = to_json(impl_->config);
  write_folder_atomically(dir, [&](const fs::path& staging) {
    write_file_atomically(staging / "config.json", [&](std::ostream& out) { out << config_text << "\n"; });
    write_weights(staging / "model.safetensors", weights_dtype);
  });
}

}  // namespace mambakit
