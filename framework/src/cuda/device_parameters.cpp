#include "device_parameters.hpp"

#include <fmt/format.h>

#include "mambakit/error.hpp"

namespace mambakit::cuda {

DeviceParameters::DeviceParameters(const model::ParameterStore& store, sdk::Device device)
    : store_(store),
      device_(device),
      f32_(store.f32_block().size() * sizeof(float)),
      halves_(store.half_block().size() * sizeof(std::uint16_t)) {}

void DeviceParameters::upload() {
  if (store_.f32_block().size() * sizeof(float) != f32_.bytes() ||
      store_.half_block().size() * sizeof(std::uint16_t) != halves_.bytes()) {
    throw Error("the parameter blocks changed size after the device copy was made");
  }
  if (f32_.bytes() > 0) {
    MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpy(f32_.data(), store_.f32_block().data(), f32_.bytes(), cudaMemcpyHostToDevice));
  }
  if (halves_.bytes() > 0) {
    MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpy(halves_.data(), store_.half_block().data(), halves_.bytes(), cudaMemcpyHostToDevice));
  }
}

sdk::TensorView DeviceParameters::view(int index) const {
  const model::ParameterEntry& entry = store_.entries()[static_cast<std::size_t>(index)];
  void* data = entry.dtype == sdk::DType::kF32 ? static_cast<void*>(f32_.as<float>() + entry.offset)
                                               : static_cast<void*>(halves_.as<std::uint16_t>() + entry.offset);
  return sdk::make_view(data, entry.dtype, device_, entry.shape.data(), static_cast<std::int32_t>(entry.shape.size()));
}

const float* DeviceParameters::f32_data(int index) const {
  const model::ParameterEntry& entry = store_.entries()[static_cast<std::size_t>(index)];
  if (entry.dtype != sdk::DType::kF32) {
    throw Error(fmt::format("parameter {} is held as {}, where f32 is needed", entry.name, sdk::dtype_name(entry.dtype)));
  }
  return f32_.as<float>() + entry.offset;
}

}  // namespace mambakit::cuda
