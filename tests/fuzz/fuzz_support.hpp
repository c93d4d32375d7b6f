#pragma once
// What every fuzz target shares: the contract it checks (a malformed input may only end in a
// mambakit::Error; any other exception, a crash or a sanitizer report is a finding) and a
// scratch file for the readers that take a path.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include "mambakit/error.hpp"

namespace mambakit::fuzz {

/// Runs `body`; a mambakit::Error is the expected answer to bad input and is swallowed.
/// Anything else escapes and is reported by libFuzzer (or by the replay driver) as a finding.
template <class Body>
void expect_clean_errors(Body&& body) {
  try {
    body();
  } catch (const mambakit::Error&) {
  }
}

/// The bytes of one input as text.
inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

/// A file in the temporary folder, unique to this process, that each input overwrites (the
/// readers under test take paths). Removed when the process ends normally.
class ScratchFile {
 public:
  explicit ScratchFile(const std::string& suffix);
  ~ScratchFile();
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;

  /// Replaces the file's contents with `bytes` and returns its path.
  const std::filesystem::path& write(std::string_view bytes);
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

/// Aborts with `what` when `condition` is false: a property the target checks (libFuzzer
/// reports the abort with the input).
void require(bool condition, const char* what);

/// The in-tree plugins' folder of this build (the fuzz targets live in bin/).
std::filesystem::path built_plugin_dir();

/// The repository's test data folder (tests/data).
std::filesystem::path test_data_dir();

}  // namespace mambakit::fuzz
