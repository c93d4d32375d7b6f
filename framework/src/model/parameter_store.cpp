#include "parameter_store.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <new>

#include "declaration_checks.hpp"
#include "mambakit/error.hpp"
#include "mambakit/half.hpp"
#include "mambakit/sdk/random.hpp"
#include "views.hpp"

namespace mambakit::model {

std::string format_shape(const std::vector<std::int64_t>& shape) { return fmt::format("({})", fmt::join(shape, ", ")); }

int ParameterStore::declare(const std::string& name, const sdk::ParamSpec& spec, const std::string& owner) {
  if (spec.tensor.dtype != sdk::DType::kF32) {
    throw Error(fmt::format("{} declares parameter {} as {}; this version holds parameters as f32", owner, name,
                            sdk::dtype_name(spec.tensor.dtype)));
  }
  const std::int64_t numel = checked_numel(spec.tensor, 1, owner, "parameter " + name);
  const std::vector<std::int64_t> shape(spec.tensor.shape, spec.tensor.shape + spec.tensor.rank);
  if (spec.init.kind < sdk::InitKind::kZeros || spec.init.kind > sdk::InitKind::kComponent) {
    throw Error(fmt::format("{} declares parameter {} with an unknown init kind {}", owner, name,
                            static_cast<int>(spec.init.kind)));
  }
  auto found = by_name_.find(name);
  if (found != by_name_.end()) {
    const auto& existing = entries_[static_cast<std::size_t>(found->second)];
    if (existing.shape != shape) {
      throw Error(fmt::format("{} declares parameter {} with shape {}, but it is already declared with shape {}", owner,
                              name, format_shape(shape), format_shape(existing.shape)));
    }
    entries_[static_cast<std::size_t>(found->second)].linear_weight |= spec.linear_weight && shape.size() == 2;
    return found->second;
  }
  if (!block_.empty()) throw Error("parameters declared after the parameter block was allocated");
  ParameterEntry entry;
  entry.name = name;
  entry.shape = shape;
  entry.init = spec.init;
  entry.weight_decay = spec.weight_decay;
  entry.linear_weight = spec.linear_weight && shape.size() == 2;
  entry.numel = numel;
  entries_.push_back(entry);
  by_name_.emplace(name, static_cast<int>(entries_.size() - 1));
  return static_cast<int>(entries_.size() - 1);
}

void ParameterStore::allocate() {
  const double gib = 1ull << 30;
  const auto memory_elements = static_cast<std::int64_t>(std::min<std::uint64_t>(physical_memory_bytes() / sizeof(float),
                                                                                  std::numeric_limits<std::int64_t>::max()));
  std::int64_t total = 0;
  for (auto& entry : entries_) {
    entry.offset = total;
    total += (entry.numel + 15) / 16 * 16;  // every tensor starts 64-byte aligned
    if (total > memory_elements) {  // each numel is at most memory_elements: no overflow
      throw Error(fmt::format("the parameters up to {} need more than this machine's memory ({:.1f} GiB)", entry.name,
                              static_cast<double>(physical_memory_bytes()) / gib));
    }
  }
  try {
    block_.assign(static_cast<std::size_t>(total), 0.0f);
  } catch (const std::bad_alloc&) {
    throw Error(fmt::format("out of memory for the parameters ({:.1f} GiB)",
                            static_cast<double>(total) * sizeof(float) / gib));
  }
}

const ParameterEntry* ParameterStore::find(const std::string& name) const {
  auto found = by_name_.find(name);
  return found == by_name_.end() ? nullptr : &entries_[static_cast<std::size_t>(found->second)];
}

const ParameterEntry& ParameterStore::f32_entry(int index) const {
  const ParameterEntry& entry = entries_[static_cast<std::size_t>(index)];
  if (entry.dtype != sdk::DType::kF32) {
    throw Error(fmt::format("parameter {} is held as {}, where f32 is needed", entry.name, sdk::dtype_name(entry.dtype)));
  }
  return entry;
}

sdk::TensorView ParameterStore::view(int index) const {
  const ParameterEntry& entry = entries_[static_cast<std::size_t>(index)];
  if (entry.dtype == sdk::DType::kF32) return contiguous_view(data(index), entry.shape);
  if (entry.dtype == sdk::DType::kQ8) {
    auto* matrix = const_cast<sdk::QuantizedMatrix*>(&quantized_[static_cast<std::size_t>(entry.offset)]);
    return sdk::make_view(matrix, sdk::DType::kQ8, sdk::Device{}, entry.shape.data(), 2);
  }
  auto* values = const_cast<std::uint16_t*>(halves_.data() + entry.offset);
  return sdk::make_view(values, entry.dtype, sdk::Device{}, entry.shape.data(), static_cast<std::int32_t>(entry.shape.size()));
}

std::vector<float> ParameterStore::values_f32(int index) const {
  const ParameterEntry& entry = entries_[static_cast<std::size_t>(index)];
  std::vector<float> values(static_cast<std::size_t>(entry.numel));
  if (entry.dtype == sdk::DType::kF32) {
    std::copy_n(data(index), entry.numel, values.data());
  } else if (entry.dtype == sdk::DType::kQ8) {
    const sdk::QuantizedMatrix& matrix = quantized(index);
    for (std::int64_t n = 0; n < matrix.rows; ++n) sdk::dequantize_row(matrix, n, values.data() + n * matrix.cols);
  } else {
    convert_to_f32(entry.dtype, halves_.data() + entry.offset, values.data(), entry.numel);
  }
  return values;
}

void ParameterStore::assign(int index, const float* values) {
  const ParameterEntry& entry = entries_[static_cast<std::size_t>(index)];
  if (entry.dtype == sdk::DType::kF32) {
    std::copy_n(values, entry.numel, data(index));
    return;
  }
  if (entry.dtype == sdk::DType::kQ8) {
    const sdk::QuantizedMatrix& matrix = quantized(index);
    auto* out = const_cast<std::int8_t*>(matrix.values);
    auto* scales = const_cast<float*>(matrix.scales);
    for (std::int64_t n = 0; n < matrix.rows; ++n) {
      sdk::quantize_row(values + n * matrix.cols, matrix.cols, matrix.group_size, out + n * matrix.row_stride,
                        scales + n * matrix.groups);
    }
    return;
  }
  std::uint16_t* out = halves_.data() + entry.offset;
  const bool bf16 = entry.dtype == sdk::DType::kBF16;
  for (std::int64_t i = 0; i < entry.numel; ++i) out[i] = bf16 ? f32_to_bf16(values[i]) : f32_to_f16(values[i]);
}

std::size_t ParameterStore::bytes() const {
  return block_.size() * sizeof(float) + halves_.size() * sizeof(std::uint16_t) + int8_values_.size() +
         int8_scales_.size() * sizeof(float);
}

const sdk::QuantizedMatrix& ParameterStore::quantized(int index) const {
  const ParameterEntry& entry = entries_[static_cast<std::size_t>(index)];
  if (entry.dtype != sdk::DType::kQ8) throw Error(fmt::format("parameter {} is not held as int8", entry.name));
  return quantized_[static_cast<std::size_t>(entry.offset)];
}

void ParameterStore::quantize(const std::vector<int>& indices, std::int64_t group_size,
                              const std::function<void(std::int64_t, std::int64_t)>& progress) {
  if (!sdk::valid_quant_group_size(group_size)) {
    throw Error(fmt::format("int8 group size {} is invalid: must be 32, 64 or 128", group_size));
  }
  if (weights_dtype_ != sdk::DType::kF32 || !gradients_.empty()) {
    throw Error("quantize: the parameters are already converted, or have gradients");
  }
  std::vector<ParameterEntry> converted = entries_;
  std::int64_t f32_total = 0, value_total = 0, scale_total = 0;
  std::vector<sdk::QuantizedMatrix> matrices;
  std::vector<std::int64_t> value_offsets, scale_offsets;  // pointers once the blocks exist
  for (std::size_t i = 0; i < converted.size(); ++i) {
    auto& entry = converted[i];
    if (std::find(indices.begin(), indices.end(), static_cast<int>(i)) == indices.end()) {
      entry.offset = f32_total;
      f32_total += (entry.numel + 15) / 16 * 16;  // every tensor starts 64-byte aligned
      continue;
    }
    if (entry.shape.size() != 2) {
      throw Error(fmt::format("parameter {} has shape {}: only matrices can be held as int8", entry.name,
                              format_shape(entry.shape)));
    }
    sdk::QuantizedMatrix matrix;
    matrix.rows = entry.shape[0];
    matrix.cols = entry.shape[1];
    matrix.group_size = group_size;
    matrix.groups = sdk::quant_groups(matrix.cols, group_size);
    matrix.row_stride = sdk::quant_row_stride(matrix.cols);
    value_offsets.push_back(value_total);
    scale_offsets.push_back(scale_total);
    value_total += matrix.rows * matrix.row_stride;
    scale_total += (matrix.rows * matrix.groups + 15) / 16 * 16;
    entry.dtype = sdk::DType::kQ8;
    entry.offset = static_cast<std::int64_t>(matrices.size());
    matrices.push_back(matrix);
  }
  std::vector<float> block(static_cast<std::size_t>(f32_total), 0.0f);
  int8_values_.assign(static_cast<std::size_t>(value_total), 0);
  int8_scales_.assign(static_cast<std::size_t>(scale_total), 0.0f);
  for (std::size_t j = 0; j < matrices.size(); ++j) {
    matrices[j].values = int8_values_.data() + value_offsets[j];
    matrices[j].scales = int8_scales_.data() + scale_offsets[j];
  }
  quantized_ = std::move(matrices);
  quant_group_size_ = group_size;
  for (std::size_t i = 0; i < converted.size(); ++i) {
    const float* source = block_.data() + entries_[i].offset;
    if (converted[i].dtype == sdk::DType::kF32) {
      std::copy_n(source, converted[i].numel, block.data() + converted[i].offset);
    }
  }
  const std::vector<float> old_block = std::move(block_);
  const std::vector<ParameterEntry> old_entries = std::move(entries_);
  entries_ = std::move(converted);
  block_ = std::move(block);
  weights_dtype_ = sdk::DType::kQ8;
  std::int64_t done = 0, total = 0;
  for (const auto& entry : entries_) total += entry.dtype == sdk::DType::kQ8 ? entry.numel : 0;
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].dtype != sdk::DType::kQ8) continue;
    assign(static_cast<int>(i), old_block.data() + old_entries[i].offset);
    done += entries_[i].numel;
    if (progress) progress(done, total);
  }
}

void ParameterStore::assign_quantized(int index, const std::int8_t* values, const float* scales) {
  const sdk::QuantizedMatrix& matrix = quantized(index);
  auto* out = const_cast<std::int8_t*>(matrix.values);
  for (std::int64_t n = 0; n < matrix.rows; ++n) std::copy_n(values + n * matrix.cols, matrix.cols, out + n * matrix.row_stride);
  std::copy_n(scales, matrix.rows * matrix.groups, const_cast<float*>(matrix.scales));
}

void ParameterStore::hold_as(sdk::DType dtype, const std::vector<int>& keep_f32) {
  if (dtype == sdk::DType::kF32) return;
  if (dtype != sdk::DType::kF16 && dtype != sdk::DType::kBF16) {
    throw Error(fmt::format("weights can be held as f32, f16 or bf16, not {}", sdk::dtype_name(dtype)));
  }
  if (weights_dtype_ != sdk::DType::kF32 || !gradients_.empty()) {
    throw Error("hold_as: the parameters are already converted, or have gradients");
  }
  std::vector<ParameterEntry> converted = entries_;
  std::int64_t f32_total = 0, half_total = 0;
  for (std::size_t i = 0; i < converted.size(); ++i) {
    const bool keep = std::find(keep_f32.begin(), keep_f32.end(), static_cast<int>(i)) != keep_f32.end();
    auto& entry = converted[i];
    entry.dtype = keep ? sdk::DType::kF32 : dtype;
    std::int64_t& total = keep ? f32_total : half_total;
    entry.offset = total;
    total += (entry.numel + 31) / 32 * 32;  // every tensor starts 64-byte aligned
  }
  std::vector<float> block(static_cast<std::size_t>(f32_total), 0.0f);
  std::vector<std::uint16_t> halves(static_cast<std::size_t>(half_total), 0);
  for (std::size_t i = 0; i < converted.size(); ++i) {
    const float* source = block_.data() + entries_[i].offset;
    const auto& entry = converted[i];
    if (entry.dtype == sdk::DType::kF32) {
      std::copy_n(source, entry.numel, block.data() + entry.offset);
      continue;
    }
    std::uint16_t* out = halves.data() + entry.offset;
    for (std::int64_t j = 0; j < entry.numel; ++j) {
      out[j] = dtype == sdk::DType::kBF16 ? f32_to_bf16(source[j]) : f32_to_f16(source[j]);
    }
  }
  entries_ = std::move(converted);
  block_ = std::move(block);
  halves_ = std::move(halves);
  weights_dtype_ = dtype;
}

void ParameterStore::ensure_gradients() {
  if (weights_dtype_ != sdk::DType::kF32) {
    throw Error(fmt::format("training needs f32 weights, but this model holds them as {}; load it with dtype f32",
                            sdk::dtype_name(weights_dtype_)));
  }
  if (gradients_.size() != block_.size()) gradients_.assign(block_.size(), 0.0f);
}

void ParameterStore::zero_gradients() {
  ensure_gradients();
  std::fill(gradients_.begin(), gradients_.end(), 0.0f);
}

sdk::TensorView ParameterStore::gradient_view(int index) const {
  return contiguous_view(gradient(index), entries_[static_cast<std::size_t>(index)].shape);
}

std::uint64_t component_seed(std::uint64_t model_seed, std::uint64_t stream) {
  sdk::Generator generator(model_seed ^ (0x9E3779B97F4A7C15ull * (stream + 1)));
  return generator.next();
}

void ParameterStore::initialize(std::uint64_t seed) {
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    const auto& entry = entries_[i];
    float* values = data(static_cast<int>(i));
    const sdk::Init& init = entry.init;
    sdk::Generator generator(component_seed(seed, i));  // one stream per parameter
    switch (init.kind) {
      case sdk::InitKind::kZeros: std::fill(values, values + entry.numel, 0.0f); break;
      case sdk::InitKind::kOnes: std::fill(values, values + entry.numel, 1.0f); break;
      case sdk::InitKind::kConstant: std::fill(values, values + entry.numel, static_cast<float>(init.a)); break;
      case sdk::InitKind::kUniform:
        for (std::int64_t j = 0; j < entry.numel; ++j) values[j] = static_cast<float>(generator.uniform(init.a, init.b));
        break;
      case sdk::InitKind::kNormal:
        for (std::int64_t j = 0; j < entry.numel; ++j) values[j] = static_cast<float>(generator.normal(init.a, init.b));
        break;
      case sdk::InitKind::kComponent: break;  // the declaring component's initialize() fills it
      default:
        throw Error(fmt::format("parameter {} has an unknown init kind {}", entry.name, static_cast<int>(init.kind)));
    }
  }
}

}  // namespace mambakit::model
