#pragma once
// UTF-8 decoding, the character classes of the GPT-2 pre-tokenizer pattern and Unicode
// normalization, all from utf8proc's tables. Bytes that are not valid UTF-8 are reported as such
// and never throw.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mambakit::unicode {

/// The classes the GPT-2 pattern distinguishes: \p{L}, \p{N}, \s (Unicode White_Space), and
/// everything else (including bytes that are not valid UTF-8).
enum class CharClass : std::uint8_t { kLetter, kNumber, kWhitespace, kOther };

/// One decoded character: its code point (-1 for an invalid byte), its length in bytes (1 for an
/// invalid byte) and class.
struct Char {
  std::int32_t code_point = -1;
  std::uint32_t length = 1;
  CharClass char_class = CharClass::kOther;
};

/// The character starting at byte `pos` < text.size().
Char char_at(std::string_view text, std::size_t pos);

/// Rust's char::is_alphanumeric, approximated by the categories L* and N*.
bool is_alphanumeric(std::int32_t code_point);

/// Unicode normalization forms.
enum class NormalForm : std::uint8_t { kNFC, kNFD, kNFKC, kNFKD };

/// `text` in normal form `form`. Bytes that are not valid UTF-8 are copied unchanged and
/// normalization proceeds on either side of them; ASCII stretches are copied without a lookup.
std::string normalize(std::string_view text, NormalForm form);

}  // namespace mambakit::unicode
