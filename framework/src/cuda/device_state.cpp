#include "device_state.hpp"

#include "device_guard.hpp"

namespace mambakit::cuda {

namespace {

std::size_t total_floats(const std::vector<std::vector<FloatTensor>>& tensors) {
  std::size_t total = 0;
  for (const auto& layer : tensors) {
    for (const auto& tensor : layer) total += tensor.values.size();
  }
  return total;
}

}  // namespace

DeviceState::DeviceState(const std::vector<std::vector<FloatTensor>>& tensors, sdk::Device device)
    : device_(device), buffer_(total_floats(tensors) * sizeof(float)) {
  float* next = buffer_.as<float>();
  for (const auto& layer : tensors) {
    std::vector<sdk::TensorView> views;
    for (const auto& tensor : layer) {
      views.push_back(sdk::make_view(next, sdk::DType::kF32, device_, tensor.shape.data(),
                                     static_cast<std::int32_t>(tensor.shape.size())));
      next += tensor.values.size();
    }
    views_.push_back(std::move(views));
  }
}

void DeviceState::download(std::vector<std::vector<FloatTensor>>& tensors) {
  DeviceGuard on(device_.index);
  for (std::size_t layer = 0; layer < tensors.size(); ++layer) {
    for (std::size_t i = 0; i < tensors[layer].size(); ++i) {
      auto& values = tensors[layer][i].values;
      MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpy(values.data(), views_[layer][i].data, values.size() * sizeof(float),
                                     cudaMemcpyDeviceToHost));
    }
  }
}

void DeviceState::upload(const std::vector<std::vector<FloatTensor>>& tensors) {
  DeviceGuard on(device_.index);
  for (std::size_t layer = 0; layer < tensors.size(); ++layer) {
    for (std::size_t i = 0; i < tensors[layer].size(); ++i) {
      const auto& values = tensors[layer][i].values;
      MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpy(views_[layer][i].data, values.data(), values.size() * sizeof(float),
                                     cudaMemcpyHostToDevice));
    }
  }
}

}  // namespace mambakit::cuda
