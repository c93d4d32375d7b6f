#include "device_gradients.hpp"

namespace mambakit::cuda {

DeviceGradients::DeviceGradients(model::ParameterStore& store, sdk::Device device)
    : store_(store), device_(device), block_(store.f32_block().size() * sizeof(float)) {}

void DeviceGradients::zero(cudaStream_t stream) {
  if (block_.bytes() > 0) MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemsetAsync(block_.data(), 0, block_.bytes(), stream));
}

float* DeviceGradients::data(int index) const {
  return block_.as<float>() + store_.entries()[static_cast<std::size_t>(index)].offset;
}

sdk::TensorView DeviceGradients::view(int index) const {
  const model::ParameterEntry& entry = store_.entries()[static_cast<std::size_t>(index)];
  return sdk::make_view(data(index), sdk::DType::kF32, device_, entry.shape.data(),
                        static_cast<std::int32_t>(entry.shape.size()));
}

void DeviceGradients::add_to_host(cudaStream_t stream) {
  std::vector<float>& host = store_.gradient_block();
  downloaded_.resize(host.size());
  if (block_.bytes() > 0) {
    MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpyAsync(downloaded_.data(), block_.data(), block_.bytes(), cudaMemcpyDeviceToHost, stream));
  }
  MAMBAKIT_CUDA_THROW_IF_ERROR(cudaStreamSynchronize(stream));
  for (std::size_t i = 0; i < host.size(); ++i) host[i] += downloaded_[i];
}

}  // namespace mambakit::cuda
