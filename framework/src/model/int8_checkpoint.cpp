// Int8 checkpoints (`mambakit quantize`): each quantized parameter is stored as `<name>` (I8,
// the parameter's shape) and `<name>_scale` (F32, (rows, groups)), with config.json's
// "quantization" giving the group size (sdk/quantized.hpp).

#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "mambakit/safetensors.hpp"
#include "model_impl.hpp"

namespace mambakit {

std::vector<int> Model::Impl::parameters_stored_int8(const SafetensorsFile& checkpoint,
                                                     const std::filesystem::path& file) const {
  std::vector<int> indices;
  for (std::size_t i = 0; i < store.entries().size(); ++i) {
    const auto& parameter = store.entries()[i];
    const SafetensorsEntry* stored = checkpoint.find(parameter.name);
    if (stored == nullptr || stored->dtype != sdk::DType::kI8) continue;
    if (config.quantization.scheme != "int8") {
      throw Error(fmt::format("{}: tensor {} is int8, but {} declares no int8 quantization (\"quantization\": "
                              "{{\"scheme\": \"int8\", \"group_size\": N}})",
                              file.string(), parameter.name, config.source));
    }
    if (!parameter.linear_weight) {
      throw Error(fmt::format("{}: tensor {} is int8, but the model reads it only as f32 (its component does not "
                              "declare it a linear weight)",
                              file.string(), parameter.name));
    }
    indices.push_back(static_cast<int>(i));
  }
  return indices;
}

const SafetensorsEntry& Model::Impl::stored_scales(const SafetensorsFile& checkpoint, const SafetensorsEntry& values,
                                                   const std::filesystem::path& file) const {
  const std::string name = values.name + "_scale";
  const SafetensorsEntry* scales = checkpoint.find(name);
  if (scales == nullptr) {
    throw Error(fmt::format("{}: int8 tensor {} has no scales ({}, F32)", file.string(), values.name, name));
  }
  if (config.quantization.scheme != "int8") {
    throw Error(fmt::format("{}: tensor {} is int8, but {} declares no int8 quantization", file.string(), values.name,
                            config.source));
  }
  const std::int64_t group_size = config.quantization.group_size;
  const std::vector<std::int64_t> expected{values.shape.at(0), sdk::quant_groups(values.shape.at(1), group_size)};
  if (scales->dtype != sdk::DType::kF32 || scales->shape != expected) {
    throw Error(fmt::format("{}: tensor {} is {} {}, but the scales of {} (groups of {}) are F32 {}", file.string(),
                            name, sdk::dtype_name(scales->dtype), model::format_shape(scales->shape), values.name,
                            group_size, model::format_shape(expected)));
  }
  return *scales;
}

std::vector<float> Model::Impl::read_int8(const SafetensorsFile& checkpoint, const SafetensorsEntry& values,
                                          const SafetensorsEntry& scales, int index,
                                          const std::filesystem::path& file) {
  const std::int64_t rows = values.shape.at(0), cols = values.shape.at(1);
  const std::int64_t group_size = config.quantization.group_size;
  std::vector<std::int8_t> stored(static_cast<std::size_t>(values.numel()));
  std::memcpy(stored.data(), checkpoint.data(values), stored.size());
  std::vector<float> scale_values(static_cast<std::size_t>(scales.numel()));
  checkpoint.read_f32(scales, scale_values.data());
  for (std::size_t j = 0; j < stored.size(); ++j) {
    if (stored[j] == -128) {
      throw Error(fmt::format("{}: int8 tensor {} holds -128 at element {}; int8 weights are in [-127, 127]",
                              file.string(), values.name, j));
    }
  }
  for (std::size_t j = 0; j < scale_values.size(); ++j) {
    if (!std::isfinite(scale_values[j]) || scale_values[j] < 0.0f) {
      throw Error(fmt::format("{}: tensor {} holds {} at element {}; scales are finite and >= 0", file.string(),
                              scales.name, scale_values[j], j));
    }
  }
  std::vector<float> dequantized(static_cast<std::size_t>(rows * cols));
  for (std::int64_t n = 0; n < rows; ++n) {
    for (std::int64_t k = 0; k < cols; ++k) {
      dequantized[static_cast<std::size_t>(n * cols + k)] =
          static_cast<float>(stored[static_cast<std::size_t>(n * cols + k)]) *
          scale_values[static_cast<std::size_t>(n * sdk::quant_groups(cols, group_size) + k / group_size)];
    }
  }
  if (store.entries()[static_cast<std::size_t>(index)].dtype == sdk::DType::kQ8 &&
      store.quant_group_size() == group_size) {
    store.assign_quantized(index, stored.data(), scale_values.data());
  } else {
    store.assign(index, dequantized.data());
  }
  return dequantized;
}

}  // namespace mambakit
