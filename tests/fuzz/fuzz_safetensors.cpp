// Fuzz target: the safetensors reader. Any bytes as a file: open() validates the header, then
// every entry is read (as floats where its dtype converts) and must lie inside the mapping.

#include <vector>

#include "fuzz_support.hpp"
#include "mambakit/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static mambakit::fuzz::ScratchFile scratch("input.safetensors");
  const auto& path = scratch.write(mambakit::fuzz::as_text(data, size));
  mambakit::fuzz::expect_clean_errors([&] {
    const auto file = mambakit::SafetensorsFile::open(path);
    std::vector<float> values;
    for (const auto& entry : file.entries()) {
      mambakit::fuzz::require(file.find(entry.name) == &entry, "find() returns the listed entry");
      const auto numel = static_cast<std::size_t>(entry.numel());
      mambakit::fuzz::require(numel * mambakit::sdk::dtype_size(entry.dtype) == entry.size_bytes,
                              "an entry's size matches its dtype and shape");
      values.resize(numel);
      mambakit::fuzz::expect_clean_errors([&] { file.read_f32(entry, values.data()); });
    }
    for (const auto& [key, value] : file.metadata()) {
      mambakit::fuzz::require(key.size() + value.size() <= size, "metadata lies inside the header");
    }
  });
  return 0;
}
