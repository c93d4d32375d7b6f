#include <fmt/format.h>

#include <algorithm>

#include "mambakit/error.hpp"
#include "mambakit/model.hpp"

namespace mambakit {

namespace {

void check_index(std::int64_t layer, std::int64_t index, const std::vector<std::vector<FloatTensor>>& tensors) {
  if (layer < 0 || layer >= static_cast<std::int64_t>(tensors.size()) || index < 0 ||
      index >= static_cast<std::int64_t>(tensors[static_cast<std::size_t>(layer)].size())) {
    throw Error(fmt::format("the inference state has no tensor {} in layer {}", index, layer));
  }
}

}  // namespace

const FloatTensor& InferenceState::tensor(std::int64_t layer, std::int64_t index) const {
  check_index(layer, index, tensors_);
  return tensors_[static_cast<std::size_t>(layer)][static_cast<std::size_t>(index)];
}

FloatTensor& InferenceState::tensor(std::int64_t layer, std::int64_t index) {
  check_index(layer, index, tensors_);
  return tensors_[static_cast<std::size_t>(layer)][static_cast<std::size_t>(index)];
}

const std::string& InferenceState::tensor_name(std::int64_t layer, std::int64_t index) const {
  check_index(layer, index, tensors_);
  return names_[static_cast<std::size_t>(layer)][static_cast<std::size_t>(index)];
}

std::int64_t InferenceState::tensor_count(std::int64_t layer) const {
  check_index(layer, 0, tensors_);
  return static_cast<std::int64_t>(tensors_[static_cast<std::size_t>(layer)].size());
}

std::size_t InferenceState::bytes() const {
  std::size_t total = 0;
  for (const auto& layer : tensors_) {
    for (const auto& tensor : layer) total += tensor.values.size() * sizeof(float);
  }
  return total;
}

void InferenceState::reset() {
  for (auto& layer : tensors_) {
    for (auto& tensor : layer) std::fill(tensor.values.begin(), tensor.values.end(), 0.0f);
  }
  seqlen_offset_ = 0;
}

}  // namespace mambakit
