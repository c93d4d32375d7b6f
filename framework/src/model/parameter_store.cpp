#include "parameter_store.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

#include "mambakit/error.hpp"
#include "mambakit/half.hpp"
#include "mambakit/sdk/random.hpp"
#include "views.hpp"

namespace mambakit::model {

std::string format_shape(const std::vector<std::int64_t>& shape) { return fmt::format("({})", fmt::join(shape, ", ")); }

int ParameterStore::declare(const std::string& name, const sdk::ParamSpec& spec, const std::string& owner) {
  std::vector<std::int64_t> shape(spec.tensor.shape, spec.tensor.shape + spec.tensor.rank);
  if (spec.tensor.dtype != sdk::DType::kF32) {
    throw Error(fmt::format("{} declares parameter {} as {}; this version holds parameters as f32", owner, name,
                            sdk::dtype_name(spec.tensor.dtype)));
  }
  for (auto extent : shape) {
    if (extent < 1) throw Error(fmt::format("{} declares parameter {} with shape {}", owner, name, format_shape(shape)));
  }
  auto found = by_name_.find(name);
  if (found != by_name_.end()) {
    const auto& existing = entries_[static_cast<std::size_t>(found->second)];
    if (existing.shape != shape) {
      throw Error(fmt::format("{} declares parameter {} with shape {}, but it is already declared with shape {}", owner,
                              name, format_shape(shape), format_shape(existing.shape)));
    }
    return found->second;
  }
  if (!block_.empty()) throw Error("parameters declared after the parameter block was allocated");
  ParameterEntry entry;
  entry.name = name;
  entry.shape = shape;
  entry.init = spec.init;
  entry.weight_decay = spec.weight_decay;
  entry.numel = spec.tensor.numel();
  entries_.push_back(entry);
  by_name_.emplace(name, static_cast<int>(entries_.size() - 1));
  return static_cast<int>(entries_.size() - 1);
}

void ParameterStore::allocate() {
  std::int64_t total = 0;
  for (auto& entry : entries_) {
    entry.offset = total;
    total += (entry.numel + 15) / 16 * 16;  // every tensor starts 64-byte aligned
  }
  block_.assign(static_cast<std::size_t>(total), 0.0f);
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
  auto* values = const_cast<std::uint16_t*>(halves_.data() + entry.offset);
  return sdk::make_view(values, entry.dtype, sdk::Device{}, entry.shape.data(), static_cast<std::int32_t>(entry.shape.size()));
}

std::vector<float> ParameterStore::values_f32(int index) const {
  const ParameterEntry& entry = entries_[static_cast<std::size_t>(index)];
  std::vector<float> values(static_cast<std::size_t>(entry.numel));
  if (entry.dtype == sdk::DType::kF32) {
    std::copy_n(data(index), entry.numel, values.data());
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
  std::uint16_t* out = halves_.data() + entry.offset;
  const bool bf16 = entry.dtype == sdk::DType::kBF16;
  for (std::int64_t i = 0; i < entry.numel; ++i) out[i] = bf16 ? f32_to_bf16(values[i]) : f32_to_f16(values[i]);
}

std::size_t ParameterStore::bytes() const {
  return block_.size() * sizeof(float) + halves_.size() * sizeof(std::uint16_t);
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
