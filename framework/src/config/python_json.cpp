#include "python_json.hpp"

#include <fmt/format.h>

#include <cstring>

#include "mambakit/error.hpp"

namespace mambakit::config {

std::string with_python_infinities(const std::string& text, const std::string& source) {
  constexpr const char* kLargest = "1.7976931348623157e308";
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) {
        out += text[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (text.compare(i, 8, "Infinity") == 0) {
      out += kLargest;
      i += 7;
      continue;
    } else if (text.compare(i, 3, "NaN") == 0) {
      throw Error(fmt::format("{}: NaN at byte {} is not a value a config can hold", source, i));
    }
    out += c;
  }
  return out;
}

}  // namespace mambakit::config
