#include "mambakit/input_limits.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <system_error>

#include "mambakit/error.hpp"

namespace mambakit {

std::string read_limited_file(const std::filesystem::path& file, std::uint64_t max_bytes, std::string_view what) {
  std::error_code error;
  const auto status = std::filesystem::status(file, error);
  if (error || !std::filesystem::exists(status)) {
    throw Error(fmt::format("{}: cannot open the {}: {}", file.string(), what,
                            error ? error.message() : std::string("no such file")));
  }
  if (!std::filesystem::is_regular_file(status)) {
    throw Error(fmt::format("{}: the {} is not a regular file", file.string(), what));
  }
  const auto size = std::filesystem::file_size(file, error);
  if (error) throw Error(fmt::format("{}: cannot read the {}: {}", file.string(), what, error.message()));
  if (size > max_bytes) {
    throw Error(fmt::format("{}: the {} is {} bytes, more than the limit of {} bytes", file.string(), what, size,
                            max_bytes));
  }
  std::ifstream stream(file, std::ios::binary);
  if (!stream) throw Error(fmt::format("{}: cannot open the {}: {}", file.string(), what, std::strerror(errno)));
  std::string text(static_cast<std::size_t>(size), '\0');
  stream.read(text.data(), static_cast<std::streamsize>(size));
  if (static_cast<std::uint64_t>(stream.gcount()) != size) {
    throw Error(fmt::format("{}: cannot read the {} (it changed while being read?)", file.string(), what));
  }
  return text;
}

void check_json_depth(std::string_view text, std::string_view source) {
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) {
        throw Error(fmt::format("{}: JSON nested more than {} levels deep (at byte {}); not a mambakit input", source,
                                kMaxJsonDepth, i));
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
}

}  // namespace mambakit
