#pragma once
// Helpers for tests that touch files: a temporary folder, raw file access, catching an Error.

#include <stdlib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>

#include "mambakit/error.hpp"

namespace mambakit::test {

/// A fresh folder under the system's temporary folder, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "mambakit-test-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

/// A fresh, empty folder `name` under the test binaries' scratch folder (left in place after the
/// test, for inspection).
inline std::filesystem::path scratch_dir(const std::string& name) {
  const std::filesystem::path dir = std::filesystem::path(MAMBAKIT_TEST_BINARY_DIR) / "scratch" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

/// Writes `lines` lines "`sentence` N." (N = line index % `variants`) to dir/corpus.txt; returns
/// its path.
inline std::filesystem::path write_corpus(const std::filesystem::path& dir, const std::string& sentence, int lines,
                                          int variants) {
  const std::filesystem::path path = dir / "corpus.txt";
  std::ofstream corpus(path);
  for (int i = 0; i < lines; ++i) corpus << sentence << ' ' << i % variants << ".\n";
  REQUIRE(corpus);
  return path;
}

inline std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream stream(path, std::ios::binary);
  REQUIRE(stream);
  return {std::istreambuf_iterator<char>(stream), std::istreambuf_iterator<char>()};
}

inline void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream stream(path, std::ios::binary | std::ios::trunc);
  stream.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(stream);
}

/// The message of the mambakit::Error that `action` throws; fails the test when it throws
/// nothing or something else.
template <class Action>
std::string error_message(Action&& action) {
  try {
    action();
  } catch (const mambakit::Error& error) {
    return error.what();
  }
  FAIL("no mambakit::Error was thrown");
  return {};
}

}  // namespace mambakit::test
