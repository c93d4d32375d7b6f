#include "fuzz_support.hpp"

#include <unistd.h>

#include <cstdio>
#include <fstream>

namespace mambakit::fuzz {

ScratchFile::ScratchFile(const std::string& suffix)
    : path_(std::filesystem::temp_directory_path() /
            ("mambakit-fuzz-" + std::to_string(::getpid()) + "-" + suffix)) {}

ScratchFile::~ScratchFile() {
  std::error_code ignored;
  std::filesystem::remove(path_, ignored);
}

const std::filesystem::path& ScratchFile::write(std::string_view bytes) {
  std::ofstream out(path_, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  require(static_cast<bool>(out), "cannot write the scratch file");
  return path_;
}

void require(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "fuzz property violated: %s\n", what);
  std::abort();
}

std::filesystem::path built_plugin_dir() { return MAMBAKIT_FUZZ_PLUGIN_DIR; }

std::filesystem::path test_data_dir() { return MAMBAKIT_FUZZ_TEST_DATA_DIR; }

}  // namespace mambakit::fuzz
