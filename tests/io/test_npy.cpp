// NumPy .npy (format 1.0) float32 files: exact header bytes per the format spec, round trips,
// and the reader's refusals.

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "io_test_support.hpp"
#include "mambakit/npy.hpp"

namespace fs = std::filesystem;
using mambakit::read_npy_f32;
using mambakit::write_npy_f32;
using mambakit::test::error_message;
using mambakit::test::read_bytes;
using mambakit::test::TempDir;
using mambakit::test::write_bytes;
using Catch::Matchers::Contains;

namespace {

std::string float_bytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

}  // namespace

TEST_CASE("npy header bytes follow the NumPy 1.0 format spec") {
  TempDir dir;
  // Magic "\x93NUMPY", version 1.0, a little-endian uint16 header length, then the dict literal,
  // padded with spaces and ended by '\n' so that the data starts at a multiple of 64 bytes.
  // shape (2, 3): the dict is 59 bytes, 10 + 59 + 58 spaces + 1 = 128, so HEADER_LEN = 118 = 0x76.
  const std::vector<float> values = {1, 2, 3, 4, 5, 6};
  write_npy_f32(dir / "a.npy", values.data(), {2, 3});
  const std::string expected_header = std::string("\x93NUMPY\x01\x00\x76\x00", 10) +
                                      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" +
                                      std::string(58, ' ') + "\n";
  CHECK(read_bytes(dir / "a.npy") == expected_header + float_bytes(values));

  // A 1-d shape is written with the trailing comma Python uses: (5,), 57 + 60 spaces.
  const std::vector<float> five = {0.5f, -1, 2, 1e-3f, 7};
  write_npy_f32(dir / "b.npy", five.data(), {5});
  CHECK(read_bytes(dir / "b.npy") == std::string("\x93NUMPY\x01\x00\x76\x00", 10) +
                                         "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }" +
                                         std::string(60, ' ') + "\n" + float_bytes(five));

  // A scalar has shape (): 55 + 62 spaces.
  const float scalar = 3.5f;
  write_npy_f32(dir / "c.npy", &scalar, {});
  CHECK(read_bytes(dir / "c.npy") == std::string("\x93NUMPY\x01\x00\x76\x00", 10) +
                                         "{'descr': '<f4', 'fortran_order': False, 'shape': (), }" +
                                         std::string(62, ' ') + "\n" + float_bytes({scalar}));

  // A long shape needs a longer header, still aligned to 64.
  const std::vector<std::int64_t> many(20, 1);
  write_npy_f32(dir / "d.npy", &scalar, many);
  const std::string bytes = read_bytes(dir / "d.npy");
  const std::size_t header_len = static_cast<unsigned char>(bytes[8]) | static_cast<unsigned char>(bytes[9]) << 8;
  CHECK((10 + header_len) % 64 == 0);
  CHECK(bytes[10 + header_len - 1] == '\n');
  CHECK(bytes.size() == 10 + header_len + 4);
}

TEST_CASE("npy round trips") {
  TempDir dir;
  const auto round_trip = [&](const std::vector<std::int64_t>& shape, std::size_t count) {
    std::vector<float> values(count);
    for (std::size_t i = 0; i < count; ++i) values[i] = static_cast<float>(i) * 0.25f - 3.0f;
    const fs::path file = dir / "x.npy";
    write_npy_f32(file, values.data(), shape);
    std::vector<std::int64_t> read_shape = {99};
    CHECK(read_npy_f32(file, &read_shape) == values);
    CHECK(read_shape == shape);
    CHECK(read_npy_f32(file, nullptr) == values);
  };
  round_trip({2, 3, 4}, 24);
  round_trip({7}, 7);
  round_trip({}, 1);
  round_trip({0, 3}, 0);
  round_trip({1000, 3}, 3000);
  write_npy_f32(dir / "empty.npy", nullptr, {4, 0});
}

TEST_CASE("npy reader accepts headers as NumPy writes them") {
  TempDir dir;
  // NumPy >= 1.24 adds spare spaces after the dict; version 2.0 has a 4-byte length.
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const std::string v1 = std::string("\x93NUMPY\x01\x00\x76\x00", 10) + dict + std::string(117 - dict.size(), ' ') +
                         "\n" + float_bytes({1, 2});
  write_bytes(dir / "v1.npy", v1);
  std::vector<std::int64_t> shape;
  CHECK(read_npy_f32(dir / "v1.npy", &shape) == std::vector<float>{1, 2});
  CHECK(shape == std::vector<std::int64_t>{2});

  const std::string v2 = std::string("\x93NUMPY\x02\x00\x74\x00\x00\x00", 12) + dict +
                         std::string(115 - dict.size(), ' ') + "\n" + float_bytes({3, 4});
  write_bytes(dir / "v2.npy", v2);
  CHECK(read_npy_f32(dir / "v2.npy", nullptr) == std::vector<float>{3, 4});
}

TEST_CASE("npy reader refuses anything but a float32 C-order array, naming the file") {
  TempDir dir;
  const auto file_with = [](const std::string& dict, const std::string& data) {
    std::string header = dict + std::string(117 - dict.size(), ' ') + "\n";
    return std::string("\x93NUMPY\x01\x00\x76\x00", 10) + header + data;
  };
  struct Bad {
    std::string name;
    std::string bytes;
    std::string expected;
  };
  const std::vector<Bad> cases = {
      {"empty", "", "magic"},
      {"magic", "\x93NUMPZ\x01\x00\x76\x00", "magic"},
      {"version", std::string("\x93NUMPY\x04\x00\x76\x00", 10), "version 4.0"},
      {"truncated_length", std::string("\x93NUMPY\x02\x00\x76", 9), "header length"},
      {"header_beyond", std::string("\x93NUMPY\x01\x00\xff\x00{}", 12), "header length 255"},
      {"f8", file_with("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", std::string(8, '\0')), "<f8"},
      {"big_endian", file_with("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", std::string(4, '\0')),
       ">f4"},
      {"fortran", file_with("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", std::string(16, '\0')),
       "Fortran"},
      {"short_data", file_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", std::string(12, '\0')),
       "needs 16 bytes"},
      {"long_data", file_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", std::string(12, '\0')),
       "needs 8 bytes"},
      {"huge_shape",
       file_with("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }", ""),
       "needs more"},
      {"negative", file_with("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", ""), "dimension"},
      {"missing_key", file_with("{'descr': '<f4', 'shape': (1,), }", std::string(4, '\0')), "lacks"},
      {"extra_key", file_with("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", std::string(4, '\0')),
       "'x'"},
      {"not_a_dict", file_with("['<f4']", ""), "expected '{'"},
  };
  for (const auto& bad : cases) {
    const fs::path file = dir / (bad.name + ".npy");
    write_bytes(file, bad.bytes);
    const std::string message = error_message([&] { (void)read_npy_f32(file, nullptr); });
    INFO("case " << bad.name << ": " << message);
    CHECK_THAT(message, Contains(file.string()) && Contains(bad.expected));
  }
  CHECK_THAT(error_message([&] { (void)read_npy_f32(dir / "absent.npy", nullptr); }),
             Contains((dir / "absent.npy").string()));
}

TEST_CASE("npy writer refuses negative dimensions and missing data, naming the file") {
  TempDir dir;
  const float one = 1;
  CHECK_THAT(error_message([&] { write_npy_f32(dir / "n.npy", &one, {2, -1}); }),
             Contains((dir / "n.npy").string()) && Contains("negative"));
  CHECK_THAT(error_message([&] { write_npy_f32(dir / "m.npy", nullptr, {2}); }),
             Contains((dir / "m.npy").string()) && Contains("no data"));
  CHECK_FALSE(fs::exists(dir / "n.npy"));
  CHECK_FALSE(fs::exists(dir / "m.npy"));
}
