// make_cuda_ops in a build without CUDA (MAMBAKIT_CUDA=OFF or no toolkit found): every request
// for a CUDA model gets a clear error.

#include <fmt/format.h>

#include "device_ops.hpp"
#include "mambakit/error.hpp"

namespace mambakit::model {

std::unique_ptr<DeviceOps> make_cuda_ops(Model::Impl&, sdk::Device device) {
  throw Error(fmt::format("device {} was requested, but this build of mambakit has no CUDA support (configure it with "
                          "-DMAMBAKIT_CUDA=ON on a machine with the CUDA toolkit)",
                          device_name(device)));
}

}  // namespace mambakit::model
