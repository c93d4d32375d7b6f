#pragma once
// Helpers shared by the tokenizer tests: the committed tokenizer fixtures and UTF-8 validity
// (files and errors: tests/support/test_files.hpp).

#include <stdlib.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <system_error>

#include "fixtures.hpp"
#include "test_files.hpp"
#include "mambakit/error.hpp"

namespace mambakit::test {

/// tests/data/tokenizers/<name>/<file>: the copies of shared/tokenizers (see the README there).
inline std::filesystem::path tokenizer_file(const std::string& name, const std::string& file) {
  return data_dir() / "tokenizers" / name / file;
}

/// Whether `text` is well-formed UTF-8 (no overlong forms, surrogates or values above U+10FFFF).
inline bool is_valid_utf8(std::string_view text) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    const auto lead = static_cast<unsigned char>(text[pos]);
    std::size_t length = 0;
    std::uint32_t code_point = 0;
    if (lead < 0x80) {
      length = 1;
      code_point = lead;
    } else if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
      code_point = lead & 0x1Fu;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      code_point = lead & 0x0Fu;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      code_point = lead & 0x07u;
    } else {
      return false;
    }
    if (pos + length > text.size()) return false;
    for (std::size_t i = 1; i < length; ++i) {
      const auto byte = static_cast<unsigned char>(text[pos + i]);
      if ((byte & 0xC0) != 0x80) return false;
      code_point = (code_point << 6) | (byte & 0x3Fu);
    }
    const std::uint32_t minimum = length == 2 ? 0x80 : length == 3 ? 0x800 : length == 4 ? 0x10000 : 0;
    if (code_point < minimum || code_point > 0x10FFFF || (code_point >= 0xD800 && code_point <= 0xDFFF)) return false;
    pos += length;
  }
  return true;
}

}  // namespace mambakit::test
