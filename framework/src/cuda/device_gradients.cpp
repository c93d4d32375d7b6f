#include "device_gradients.hpp"

#include <fmt/format.h>

#include "mambakit/error.hpp"

namespace mambakit::cuda {

DeviceGradients::DeviceGradients(const model::ParameterStore& store, sdk::Device device)
    : store_(store), device_(device), block_(store.f32_block().size() * sizeof(float)) {}

void DeviceGradients::zero(cudaStream_t stream) {
  if (block_.bytes() > 0) MAMBAKIT_CUDA_CHECK(cudaMemsetAsync(block_.data(), 0, block_.bytes(), stream));
}

float* DeviceGradients::data(int index) const {
  const model::ParameterEntry& entry = store_.entries()[static_cast<std::size_t>(index)];
  if (entry.dtype != sdk::DType::kF32) {
    throw Error(fmt::format("parameter {} is held as {}; training needs f32 weights", entry.name,
                            sdk::dtype_name(entry.dtype)));
  }
  return block_.as<float>() + entry.offset;
}

sdk::TensorView DeviceGradients::view(int index) const {
  const model::ParameterEntry& entry = store_.entries()[static_cast<std::size_t>(index)];
  return sdk::make_view(data(index), sdk::DType::kF32, device_, entry.shape.data(),
                        static_cast<std::int32_t>(entry.shape.size()));
}

void DeviceGradients::add_to_host(model::ParameterStore& store, cudaStream_t stream) {
  if (block_.bytes() != store.f32_block().size() * sizeof(float)) {
    throw Error("the parameter block changed size after the device gradients were made");
  }
  downloaded_.resize(store.f32_block().size());
  if (block_.bytes() > 0) {
    MAMBAKIT_CUDA_CHECK(cudaMemcpyAsync(downloaded_.data(), block_.data(), block_.bytes(), cudaMemcpyDeviceToHost, stream));
  }
  MAMBAKIT_CUDA_CHECK(cudaStreamSynchronize(stream));
  const auto& entries = store.entries();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    float* host = store.gradient(static_cast<int>(i));
    const float* device = downloaded_.data() + entries[i].offset;
    for (std::int64_t j = 0; j < entries[i].numel; ++j) host[j] += device[j];
  }
}

}  // namespace mambakit::cuda
