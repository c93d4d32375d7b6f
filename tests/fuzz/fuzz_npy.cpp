// Fuzz target: the .npy reader. Any bytes as a file; a successful read returns exactly the
// product of the shape it reports.

#include <cstdint>
#include <vector>

#include "fuzz_support.hpp"
#include "mambakit/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static mambakit::fuzz::ScratchFile scratch("input.npy");
  const auto& path = scratch.write(mambakit::fuzz::as_text(data, size));
  mambakit::fuzz::expect_clean_errors([&] {
    std::vector<std::int64_t> shape;
    const auto values = mambakit::read_npy_f32(path, &shape);
    std::uint64_t numel = 1;
    for (const auto dim : shape) numel *= static_cast<std::uint64_t>(dim);
    mambakit::fuzz::require(values.size() == numel, "the values match the reported shape");
    mambakit::fuzz::require(values.size() * sizeof(float) <= size, "the values come from the file");
  });
  return 0;
}
