// Every kind of malformed safetensors file is refused with a mambakit::Error that names the
// file and the tensor or key at fault.

#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "io_test_support.hpp"
#include "mambakit/safetensors.hpp"

namespace fs = std::filesystem;
using mambakit::SafetensorsFile;
using mambakit::test::error_message;
using mambakit::test::TempDir;
using mambakit::test::write_bytes;
using Catch::Matchers::Contains;

namespace {

std::string length_prefix(std::uint64_t length) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) {
    bytes[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  }
  return bytes;
}

// A file whose header is `json` (unpadded) followed by `data_bytes` zero bytes.
std::string with_header(const std::string& json, std::size_t data_bytes) {
  return length_prefix(json.size()) + json + std::string(data_bytes, '\0');
}

struct BadFile {
  std::string name;
  std::string bytes;
  std::vector<std::string> expected;  // substrings of the message besides the path
};

std::vector<BadFile> bad_files() {
  return {
      {"empty", "", {"0 bytes", "shorter than the 8-byte"}},
      {"five_bytes", "abcde", {"5 bytes", "shorter"}},
      {"header_beyond_file", length_prefix(1000) + "{}", {"header length 1000", "exceeds"}},
      {"header_absurd", length_prefix(1ULL << 40) + std::string(64, ' '), {"1099511627776", "absurd"}},
      {"header_max", length_prefix(~0ULL) + "{}", {"absurd"}},
      {"header_empty", length_prefix(0), {"not valid JSON"}},
      {"not_json", with_header("{\"w\": {\"dtype\": ", 0), {"not valid JSON"}},
      {"binary_garbage", with_header(std::string("\xff\xfe\x00\x01", 4), 0), {"not valid JSON"}},
      {"array_header", with_header("[1, 2]", 0), {"not a JSON object", "array"}},
      {"string_header", with_header("\"hello\"", 0), {"not a JSON object", "string"}},
      {"entry_not_object", with_header(R"({"w": 5})", 0), {"tensor 'w'", "not an object"}},
      {"missing_dtype", with_header(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", 4), {"'w'", "\"dtype\""}},
      {"missing_shape", with_header(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", 4), {"'w'", "\"shape\""}},
      {"missing_offsets", with_header(R"({"w": {"dtype": "F32", "shape": [1]}})", 4), {"'w'", "\"data_offsets\""}},
      {"dtype_not_string", with_header(R"({"w": {"dtype": 7, "shape": [1], "data_offsets": [0, 4]}})", 4),
       {"'w'", "\"dtype\"", "not a string"}},
      {"dtype_unknown", with_header(R"({"w": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}})", 4),
       {"'w'", "U8", "unsupported"}},
      {"dtype_lowercase", with_header(R"({"w": {"dtype": "f32", "shape": [1], "data_offsets": [0, 4]}})", 4),
       {"'w'", "f32"}},
      {"shape_not_array", with_header(R"({"w": {"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}})", 4),
       {"'w'", "\"shape\"", "not an array"}},
      {"shape_negative", with_header(R"({"w": {"dtype": "F32", "shape": [2, -1], "data_offsets": [0, 4]}})", 4),
       {"'w'", "-1", "non-negative integer"}},
      {"shape_fraction", with_header(R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 4]}})", 4),
       {"'w'", "2.5", "non-negative integer"}},
      {"shape_float", with_header(R"({"w": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}})", 4),
       {"'w'", "non-negative integer"}},
      {"shape_string_dim", with_header(R"({"w": {"dtype": "F32", "shape": ["1"], "data_offsets": [0, 4]}})", 4),
       {"'w'", "non-negative integer"}},
      {"shape_beyond_int64",
       with_header(R"({"w": {"dtype": "F32", "shape": [18446744073709551615], "data_offsets": [0, 4]}})", 4),
       {"'w'", "non-negative integer"}},
      {"numel_overflow",
       with_header(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 4], "data_offsets": [0, 4]}})", 4),
       {"'w'", "overflow"}},
      {"bytes_overflow",
       with_header(R"({"w": {"dtype": "F64", "shape": [4611686018427387904], "data_offsets": [0, 4]}})", 4),
       {"'w'", "overflow"}},
      {"offsets_not_array", with_header(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": 4}})", 4),
       {"'w'", "data_offsets", "[begin, end]"}},
      {"offsets_one", with_header(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4]}})", 4),
       {"'w'", "[begin, end]"}},
      {"offsets_three", with_header(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}})", 8),
       {"'w'", "[begin, end]"}},
      {"offsets_negative", with_header(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", 4),
       {"'w'", "[begin, end]"}},
      {"offsets_float", with_header(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0.0, 4.0]}})", 4),
       {"'w'", "[begin, end]"}},
      {"offsets_reversed", with_header(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", 8),
       {"'w'", "[8, 4]", "begin after end"}},
      {"offsets_beyond_data", with_header(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8),
       {"'w'", "[0, 16]", "beyond the data section of 8 bytes"}},
      {"size_mismatch", with_header(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8),
       {"'w'", "8 bytes", "needs 12"}},
      {"size_mismatch_bf16", with_header(R"({"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 16]}})", 16),
       {"'w'", "BF16", "needs 8"}},
      {"overlap",
       with_header(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                   R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                   12),
       {"'a'", "'b'", "overlap"}},
      {"overlap_same_range",
       with_header(R"({"a": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]},)"
                   R"( "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
                   4),
       {"'a'", "'b'", "overlap"}},
      {"metadata_not_object", with_header(R"({"__metadata__": [1, 2]})", 0), {"__metadata__", "not an object"}},
      {"metadata_value_not_string", with_header(R"({"__metadata__": {"epoch": 3}})", 0),
       {"__metadata__", "'epoch'", "not a string"}},
      {"duplicate_tensor",
       with_header(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                   R"( "w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                   8),
       {"'w'", "twice"}},
      {"duplicate_field",
       with_header(R"({"w": {"dtype": "F32", "dtype": "F64", "shape": [1], "data_offsets": [0, 4]}})", 4),
       {"'w'", "'dtype'", "twice"}},
  };
}

}  // namespace

TEST_CASE("malformed safetensors files are refused, naming the file and the fault") {
  TempDir dir;
  for (const auto& bad : bad_files()) {
    const fs::path file = dir / (bad.name + ".safetensors");
    write_bytes(file, bad.bytes);
    const std::string message = error_message([&] { (void)SafetensorsFile::open(file); });
    INFO("case " << bad.name << ": " << message);
    CHECK_THAT(message, Contains(file.string()));
    for (const auto& part : bad.expected) {
      CHECK_THAT(message, Contains(part));
    }
  }
}

TEST_CASE("unreadable paths are refused, naming the path") {
  TempDir dir;
  const auto missing = error_message([&] { (void)SafetensorsFile::open(dir / "absent.safetensors"); });
  CHECK_THAT(missing, Contains((dir / "absent.safetensors").string()) && Contains("cannot open"));
  const auto folder = error_message([&] { (void)SafetensorsFile::open(dir.path()); });
  CHECK_THAT(folder, Contains(dir.path().string()) && Contains("not a regular file"));
}

TEST_CASE("unusual but valid safetensors files are accepted") {
  TempDir dir;
  SECTION("no tensors, no padding") {
    write_bytes(dir / "a", with_header("{}", 0));
    CHECK(SafetensorsFile::open(dir / "a").entries().empty());
  }
  SECTION("null metadata, zero-size tensors sharing an offset, holes, trailing spaces, any key order") {
    write_bytes(dir / "b", with_header(R"({"z": {"data_offsets": [4, 4], "shape": [0], "dtype": "F32"},)"
                                       R"( "e": {"dtype": "I64", "shape": [3, 0], "data_offsets": [4, 4]},)"
                                       R"( "__metadata__": null,)"
                                       R"( "s": {"dtype": "I32", "shape": [], "data_offsets": [8, 12]}}   )",
                                       16));
    const auto st = SafetensorsFile::open(dir / "b");
    REQUIRE(st.entries().size() == 3);
    CHECK(st.entries()[0].name == "e");
    CHECK(st.at("s").numel() == 1);
    CHECK(st.at("z").size_bytes == 0);
    CHECK(st.metadata().empty());
  }
}
