#include "unicode.hpp"

#include <utf8proc.h>

#include <array>
#include <cstdlib>
#include <memory>

namespace mambakit::unicode {

namespace {

constexpr std::array<CharClass, 128> make_ascii_classes() {
  std::array<CharClass, 128> classes{};
  for (std::size_t c = 0; c < classes.size(); ++c) {
    classes[c] = CharClass::kOther;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) classes[c] = CharClass::kLetter;
    if (c >= '0' && c <= '9') classes[c] = CharClass::kNumber;
    if ((c >= 0x09 && c <= 0x0D) || c == ' ') classes[c] = CharClass::kWhitespace;
  }
  return classes;
}

constexpr std::array<CharClass, 128> kAsciiClasses = make_ascii_classes();

CharClass class_of(std::int32_t code_point) {
  if (code_point < 0x80) return kAsciiClasses[static_cast<std::size_t>(code_point)];
  // White_Space beyond ASCII: U+0085 and the separators Zs, Zl, Zp.
  if (code_point == 0x85) return CharClass::kWhitespace;
  switch (utf8proc_category(code_point)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: return CharClass::kLetter;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return CharClass::kNumber;
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: return CharClass::kWhitespace;
    default: return CharClass::kOther;
  }
}

bool is_ascii(char c) { return static_cast<unsigned char>(c) < 0x80; }

int map_options(NormalForm form) {
  switch (form) {
    case NormalForm::kNFC: return UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    case NormalForm::kNFD: return UTF8PROC_STABLE | UTF8PROC_DECOMPOSE;
    case NormalForm::kNFKC: return UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    case NormalForm::kNFKD: return UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
  }
  return 0;
}

// Appends the normal form of `text`, valid UTF-8, to `out`.
void append_normalized_valid(std::string_view text, int options, std::string& out) {
  if (text.empty()) return;
  utf8proc_uint8_t* mapped = nullptr;
  const utf8proc_ssize_t length =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()), static_cast<utf8proc_ssize_t>(text.size()),
                   &mapped, static_cast<utf8proc_option_t>(options));
  const std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owner(mapped, &std::free);
  if (length < 0) {
    out.append(text);  // unreachable for valid UTF-8 short of running out of memory
    return;
  }
  out.append(reinterpret_cast<const char*>(mapped), static_cast<std::size_t>(length));
}

// Appends the normal form of `text`, which may hold invalid bytes, to `out`.
void append_normalized(std::string_view text, int options, std::string& out) {
  std::size_t valid_start = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const Char c = char_at(text, pos);
    if (c.code_point < 0) {
      append_normalized_valid(text.substr(valid_start, pos - valid_start), options, out);
      out.push_back(text[pos]);
      valid_start = pos + 1;
    }
    pos += c.length;
  }
  append_normalized_valid(text.substr(valid_start), options, out);
}

}  // namespace

Char char_at(std::string_view text, std::size_t pos) {
  const auto byte = static_cast<unsigned char>(text[pos]);
  if (byte < 0x80) return {byte, 1, kAsciiClasses[byte]};
  utf8proc_int32_t code_point = -1;
  const utf8proc_ssize_t length = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + pos),
                                                   static_cast<utf8proc_ssize_t>(text.size() - pos), &code_point);
  if (length <= 0 || code_point < 0) return {};
  return {code_point, static_cast<std::uint32_t>(length), class_of(code_point)};
}

bool is_alphanumeric(std::int32_t code_point) {
  const CharClass c = class_of(code_point);
  return c == CharClass::kLetter || c == CharClass::kNumber;
}

std::string normalize(std::string_view text, NormalForm form) {
  const int options = map_options(form);
  std::string out;
  out.reserve(text.size());
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = pos;
    while (end < text.size() && is_ascii(text[end])) ++end;
    if (end == text.size()) {
      out.append(text.substr(pos));
      break;
    }
    // An ASCII character is a starter that never decomposes and composes only with what follows
    // it, so the stretch to normalize starts at the last ASCII character before the non-ASCII run.
    const std::size_t run_start = end > pos ? end - 1 : end;
    out.append(text.substr(pos, run_start - pos));
    std::size_t run_end = end;
    while (run_end < text.size() && !is_ascii(text[run_end])) ++run_end;
    append_normalized(text.substr(run_start, run_end - run_start), options, out);
    pos = run_end;
  }
  return out;
}

}  // namespace mambakit::unicode
