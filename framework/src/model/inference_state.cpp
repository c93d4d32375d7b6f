#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numeric>
#include <utility>

#include <nlohmann/json.hpp>

#include "mambakit/error.hpp"
#include "mambakit/model.hpp"
#include "mambakit/safetensors.hpp"
#include "state_storage.hpp"

namespace mambakit {

namespace {

void check_index(std::int64_t layer, std::int64_t index, const std::vector<std::vector<FloatTensor>>& tensors) {
  if (layer < 0 || layer >= static_cast<std::int64_t>(tensors.size()) || index < 0 ||
      index >= static_cast<std::int64_t>(tensors[static_cast<std::size_t>(layer)].size())) {
    throw Error(fmt::format("the inference state has no tensor {} in layer {}", index, layer));
  }
}

}  // namespace

InferenceState::InferenceState() = default;

InferenceState::Storage& InferenceState::storage() const {
  if (!storage_) storage_ = std::make_unique<Storage>();
  return *storage_;
}
InferenceState::~InferenceState() = default;
InferenceState::InferenceState(InferenceState&& other) noexcept
    : batch_(std::exchange(other.batch_, 0)), seqlen_offset_(std::exchange(other.seqlen_offset_, 0)),
      storage_(std::move(other.storage_)) {}

InferenceState& InferenceState::operator=(InferenceState&& other) noexcept {
  batch_ = std::exchange(other.batch_, 0);
  seqlen_offset_ = std::exchange(other.seqlen_offset_, 0);
  storage_ = std::move(other.storage_);
  return *this;
}

InferenceState::InferenceState(const InferenceState& other)
    : batch_(other.batch_), seqlen_offset_(other.seqlen_offset_) {
  other.storage().sync_to_host();
  storage().tensors = other.storage().tensors;
  storage().names = other.storage().names;
}

InferenceState& InferenceState::operator=(const InferenceState& other) {
  if (this != &other) *this = InferenceState(other);
  return *this;
}

std::int64_t InferenceState::n_layers() const { return static_cast<std::int64_t>(storage().tensors.size()); }

const FloatTensor& InferenceState::tensor(std::int64_t layer, std::int64_t index) const {
  check_index(layer, index, storage().tensors);
  storage().sync_to_host();
  return storage().tensors[static_cast<std::size_t>(layer)][static_cast<std::size_t>(index)];
}

FloatTensor& InferenceState::tensor(std::int64_t layer, std::int64_t index) {
  check_index(layer, index, storage().tensors);
  storage().use_on_host();
  return storage().tensors[static_cast<std::size_t>(layer)][static_cast<std::size_t>(index)];
}

const std::string& InferenceState::tensor_name(std::int64_t layer, std::int64_t index) const {
  check_index(layer, index, storage().tensors);
  return storage().names[static_cast<std::size_t>(layer)][static_cast<std::size_t>(index)];
}

std::int64_t InferenceState::tensor_count(std::int64_t layer) const {
  check_index(layer, 0, storage().tensors);
  return static_cast<std::int64_t>(storage().tensors[static_cast<std::size_t>(layer)].size());
}

std::size_t InferenceState::bytes() const {
  std::size_t total = 0;
  for (const auto& layer : storage().tensors) {
    for (const auto& tensor : layer) total += tensor.values.size() * sizeof(float);
  }
  return total;
}

void InferenceState::reset() {
  storage().host_current = true;
  storage().device_current = false;
  for (auto& layer : storage().tensors) {
    for (auto& tensor : layer) std::fill(tensor.values.begin(), tensor.values.end(), 0.0f);
  }
  seqlen_offset_ = 0;
}

std::string InferenceState::info_json() const {
  std::int64_t tensors = 0;
  for (const auto& layer : storage().tensors) tensors += static_cast<std::int64_t>(layer.size());
  return nlohmann::json{{"layers", n_layers()},
                        {"tensors", tensors},
                        {"bytes", bytes()},
                        {"batch", batch_},
                        {"seqlen_offset", seqlen_offset_}}
      .dump();
}

namespace {

std::string state_tensor_key(std::int64_t layer, const std::string& name) { return fmt::format("layers.{}.{}", layer, name); }

}  // namespace

void InferenceState::save(const std::filesystem::path& file) const {
  storage().sync_to_host();
  const auto& held = storage().tensors;
  std::vector<SafetensorsTensor> tensors;
  for (std::size_t layer = 0; layer < held.size(); ++layer) {
    for (std::size_t i = 0; i < held[layer].size(); ++i) {
      tensors.push_back({state_tensor_key(static_cast<std::int64_t>(layer), storage().names[layer][i]),
                         sdk::DType::kF32, held[layer][i].shape, held[layer][i].values.data()});
    }
  }
  write_safetensors(file, tensors,
                    {{"kind", "mambakit-inference-state"}, {"seqlen_offset", std::to_string(seqlen_offset_)},
                     {"batch", std::to_string(batch_)}});
}

void InferenceState::load(const std::filesystem::path& file) {
  const SafetensorsFile stored = SafetensorsFile::open(file);
  const auto& metadata = stored.metadata();
  if (!metadata.count("kind") || metadata.at("kind") != "mambakit-inference-state" || !metadata.count("seqlen_offset")) {
    throw Error(fmt::format("{}: not a mambakit inference state", file.string()));
  }
  const std::string& offset_text = metadata.at("seqlen_offset");
  std::int64_t seqlen_offset = -1;
  const auto [end, error] = std::from_chars(offset_text.data(), offset_text.data() + offset_text.size(), seqlen_offset);
  if (error != std::errc() || end != offset_text.data() + offset_text.size() || seqlen_offset < 0) {
    throw Error(fmt::format("{}: seqlen_offset '{}' is not a non-negative integer", file.string(), offset_text));
  }
  // Every tensor is checked before any is read, so a file that fails leaves this state as it was.
  storage().use_on_host();
  auto& held = storage().tensors;
  std::vector<std::pair<const SafetensorsEntry*, FloatTensor*>> reads;
  for (std::size_t layer = 0; layer < held.size(); ++layer) {
    for (std::size_t i = 0; i < held[layer].size(); ++i) {
      const std::string key = state_tensor_key(static_cast<std::int64_t>(layer), storage().names[layer][i]);
      const auto& entry = stored.at(key);
      if (entry.shape != held[layer][i].shape) {
        throw Error(fmt::format("{}: {} has {} values in shape of rank {}, this model's state needs another shape "
                                "(batch {})",
                                file.string(), key, entry.numel(), entry.shape.size(), batch_));
      }
      if (entry.dtype == sdk::DType::kI32 || entry.dtype == sdk::DType::kI64 || entry.dtype == sdk::DType::kI8) {
        throw Error(fmt::format("{}: {} is stored as integers; a state holds floating-point values", file.string(), key));
      }
      reads.emplace_back(&entry, &held[layer][i]);
    }
  }
  if (stored.entries().size() != reads.size()) {
    throw Error(fmt::format("{}: the state holds {} tensors, this model's state has {}", file.string(),
                            stored.entries().size(), reads.size()));
  }
  std::vector<std::vector<float>> values(reads.size());
  for (std::size_t r = 0; r < reads.size(); ++r) {
    values[r].resize(reads[r].second->values.size());
    stored.read_f32(*reads[r].first, values[r].data());
    if (!std::all_of(values[r].begin(), values[r].end(), [](float v) { return std::isfinite(v); })) {
      throw Error(fmt::format("{}: {} holds NaN or Inf values", file.string(), reads[r].first->name));
    }
  }
  for (std::size_t r = 0; r < reads.size(); ++r) std::copy(values[r].begin(), values[r].end(), reads[r].second->values.begin());
  seqlen_offset_ = seqlen_offset;
}

}  // namespace mambakit

namespace mambakit::model {

InferenceState StateAccess::make(std::int64_t batch, std::vector<std::vector<FloatTensor>> tensors,
                                 std::vector<std::vector<std::string>> names) {
  InferenceState state;
  state.batch_ = batch;
  state.storage().tensors = std::move(tensors);
  state.storage().names = std::move(names);
  return state;
}

std::vector<std::vector<FloatTensor>>& StateAccess::host_tensors(InferenceState& state) {
  state.storage().use_on_host();
  return state.storage().tensors;
}

}  // namespace mambakit::model
