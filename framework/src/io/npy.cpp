#include "mambakit/npy.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "mambakit/atomic_file.hpp"
#include "mambakit/error.hpp"

namespace mambakit {

static_assert(std::endian::native == std::endian::little, "npy data is written and read as little-endian");

namespace {

constexpr std::string_view kMagic = "\x93NUMPY";
constexpr std::size_t kAlignment = 64;

// The Python repr of a shape tuple: (), (5,), (2, 3).
std::string shape_tuple(const std::vector<std::int64_t>& shape) {
  if (shape.size() == 1) {
    return fmt::format("({},)", shape[0]);
  }
  return fmt::format("({})", fmt::join(shape, ", "));
}

// Parses the header dictionary NumPy writes, a Python literal such as
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
class HeaderParser {
 public:
  HeaderParser(const std::filesystem::path& path, std::string_view text) : path_(path), text_(text) {}

  void parse(std::string& descr, bool& fortran_order, std::vector<std::int64_t>& shape) {
    bool has_descr = false;
    bool has_fortran_order = false;
    bool has_shape = false;
    expect('{');
    while (true) {
      skip_space();
      if (peek() == '}') {
        ++pos_;
        break;
      }
      const std::string key = string_literal();
      expect(':');
      if (key == "descr") {
        descr = string_literal();
        has_descr = true;
      } else if (key == "fortran_order") {
        fortran_order = boolean();
        has_fortran_order = true;
      } else if (key == "shape") {
        shape = tuple();
        has_shape = true;
      } else {
        fail(fmt::format("unexpected key '{}' in the header", key));
      }
      skip_space();
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != '}') {
        fail(fmt::format("expected ',' or '}}' at header byte {}", pos_));
      }
    }
    for (; pos_ < text_.size(); ++pos_) {
      if (text_[pos_] != ' ' && text_[pos_] != '\n') {
        fail(fmt::format("unexpected byte 0x{:02x} after the header dictionary",
                         static_cast<unsigned char>(text_[pos_])));
      }
    }
    if (!has_descr || !has_fortran_order || !has_shape) {
      fail("the header lacks one of the keys 'descr', 'fortran_order' and 'shape'");
    }
  }

 private:
  [[noreturn]] void fail(const std::string& problem) const {
    throw Error(fmt::format("{}: not a float32 .npy file: {}", path_.string(), problem));
  }
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n')) {
      ++pos_;
    }
  }
  void expect(char c) {
    skip_space();
    if (peek() != c) {
      fail(fmt::format("expected '{}' at header byte {}", c, pos_));
    }
    ++pos_;
  }
  std::string string_literal() {
    skip_space();
    const char quote = peek();
    if (quote != '\'' && quote != '"') {
      fail(fmt::format("expected a string at header byte {}", pos_));
    }
    const std::size_t end = text_.find(quote, pos_ + 1);
    if (end == std::string_view::npos) {
      fail("unterminated string in the header");
    }
    std::string value(text_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return value;
  }
  bool boolean() {
    skip_space();
    using namespace std::string_view_literals;
    for (const auto& [word, value] : {std::pair{"True"sv, true}, std::pair{"False"sv, false}}) {
      if (text_.substr(pos_, word.size()) == word) {
        pos_ += word.size();
        return value;
      }
    }
    fail(fmt::format("expected True or False at header byte {}", pos_));
  }
  std::vector<std::int64_t> tuple() {
    expect('(');
    std::vector<std::int64_t> values;
    while (true) {
      skip_space();
      if (peek() == ')') {
        ++pos_;
        return values;
      }
      if (std::isdigit(static_cast<unsigned char>(peek())) == 0) {
        fail(fmt::format("expected a non-negative dimension at header byte {}", pos_));
      }
      std::int64_t value = 0;
      while (std::isdigit(static_cast<unsigned char>(peek())) != 0) {
        const int digit = peek() - '0';
        if (value > (std::numeric_limits<std::int64_t>::max() - digit) / 10) {
          fail("a dimension of the shape is too large");
        }
        value = value * 10 + digit;
        ++pos_;
      }
      if (peek() == 'L') {  // Python 2's long suffix
        ++pos_;
      }
      values.push_back(value);
      skip_space();
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != ')') {
        fail(fmt::format("expected ',' or ')' in the shape at header byte {}", pos_));
      }
    }
  }

  const std::filesystem::path& path_;
  std::string_view text_;
  std::size_t pos_ = 0;
};

}  // namespace

void write_npy_f32(const std::filesystem::path& path, const float* data, const std::vector<std::int64_t>& shape) {
  std::size_t numel = 1;
  for (const std::int64_t dim : shape) {
    if (dim < 0) {
      throw Error(fmt::format("{}: cannot write an array of shape {} (negative dimension)", path.string(),
                              shape_tuple(shape)));
    }
    const auto size = static_cast<std::size_t>(dim);
    if (size != 0 && numel > std::numeric_limits<std::size_t>::max() / sizeof(float) / size) {
      throw Error(fmt::format("{}: shape {} has too many elements", path.string(), shape_tuple(shape)));
    }
    numel *= size;
  }
  if (numel > 0 && data == nullptr) {
    throw Error(fmt::format("{}: no data for an array of shape {}", path.string(), shape_tuple(shape)));
  }
  std::string header = fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': {}, }}", shape_tuple(shape));
  // magic (6) + version (2) + header length (2) + header + spaces + '\n', to a multiple of 64.
  const std::size_t unpadded = kMagic.size() + 4 + header.size() + 1;
  header.append((kAlignment - unpadded % kAlignment) % kAlignment, ' ');
  header.push_back('\n');
  if (header.size() > std::numeric_limits<std::uint16_t>::max()) {
    throw Error(fmt::format("{}: the header for shape {} is {} bytes, more than format 1.0 allows", path.string(),
                            shape_tuple(shape), header.size()));
  }
  write_file_atomically(path, [&](std::ostream& stream) {
    stream.write(kMagic.data(), static_cast<std::streamsize>(kMagic.size()));
    const char prefix[4] = {1, 0, static_cast<char>(header.size() & 0xff), static_cast<char>(header.size() >> 8)};
    stream.write(prefix, sizeof prefix);
    stream.write(header.data(), static_cast<std::streamsize>(header.size()));
    if (numel > 0) {
      stream.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(numel * sizeof(float)));
    }
  });
}

std::vector<float> read_npy_f32(const std::filesystem::path& path, std::vector<std::int64_t>* shape) {
  const auto fail = [&](const std::string& problem) {
    throw Error(fmt::format("{}: not a float32 .npy file: {}", path.string(), problem));
  };
  std::ifstream stream(path, std::ios::binary);
  if (!stream) {
    throw Error(fmt::format("{}: cannot open: {}", path.string(), std::strerror(errno)));
  }
  const std::string bytes((std::istreambuf_iterator<char>(stream)), std::istreambuf_iterator<char>());
  if (stream.bad()) {
    throw Error(fmt::format("{}: reading failed", path.string()));
  }
  if (bytes.size() < kMagic.size() + 2 || std::string_view(bytes).substr(0, kMagic.size()) != kMagic) {
    fail("it does not start with the magic string \\x93NUMPY");
  }
  const auto byte = [&](std::size_t i) { return static_cast<std::size_t>(static_cast<unsigned char>(bytes[i])); };
  const std::size_t major = byte(6);
  std::size_t length_size = 0;
  if (major == 1) {
    length_size = 2;
  } else if (major == 2 || major == 3) {
    length_size = 4;
  } else {
    fail(fmt::format("unsupported format version {}.{}", major, byte(7)));
  }
  const std::size_t header_start = 8 + length_size;
  if (bytes.size() < header_start) {
    fail("the file ends inside the header length");
  }
  std::size_t header_size = 0;
  for (std::size_t i = 0; i < length_size; ++i) {
    header_size |= byte(8 + i) << (8 * i);
  }
  if (header_size > bytes.size() - header_start) {
    fail(fmt::format("header length {} exceeds the file", header_size));
  }
  std::string descr;
  bool fortran_order = false;
  std::vector<std::int64_t> dims;
  HeaderParser(path, std::string_view(bytes).substr(header_start, header_size)).parse(descr, fortran_order, dims);
  if (descr != "<f4") {
    fail(fmt::format("dtype '{}', not '<f4'", descr));
  }
  if (fortran_order) {
    fail("the array is in Fortran order, not C order");
  }
  const std::size_t data_size = bytes.size() - header_start - header_size;
  std::size_t numel = std::find(dims.begin(), dims.end(), 0) != dims.end() ? 0 : 1;
  for (const std::int64_t dim : dims) {
    const auto size = static_cast<std::size_t>(dim);
    if (numel != 0 && size > std::numeric_limits<std::size_t>::max() / sizeof(float) / numel) {
      fail(fmt::format("shape {} needs more bytes of data than any file holds; the file has {}", shape_tuple(dims),
                       data_size));
    }
    numel *= size;
  }
  if (numel * sizeof(float) != data_size) {
    fail(fmt::format("shape {} needs {} bytes of data but the file has {}", shape_tuple(dims), numel * sizeof(float),
                     data_size));
  }
  std::vector<float> values(numel);
  if (numel > 0) {
    std::memcpy(values.data(), bytes.data() + header_start + header_size, data_size);
  }
  if (shape != nullptr) {
    *shape = std::move(dims);
  }
  return values;
}

}  // namespace mambakit
