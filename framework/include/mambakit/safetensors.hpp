#pragma once
/// \file
/// Reading and writing safetensors files (https://github.com/huggingface/safetensors): an 8-byte
/// little-endian header length n, n bytes of JSON naming each tensor's dtype, shape and byte
/// range, then the raw little-endian data. Supported dtypes: F32, F16, BF16, F64, I32, I64, I8.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mambakit/sdk/dtype.hpp"

namespace mambakit {

/// One tensor listed in a safetensors header.
struct SafetensorsEntry {
  std::string name;
  sdk::DType dtype = sdk::DType::kF32;
  std::vector<std::int64_t> shape;
  std::size_t offset = 0;      ///< from the start of the data section
  std::size_t size_bytes = 0;  ///< numel() * dtype_size(dtype)

  /// The product of `shape` (1 for a scalar, shape []).
  [[nodiscard]] std::int64_t numel() const;
};

/// A safetensors file opened read-only and memory-mapped. The header is validated completely by
/// open(); afterwards every entry lies inside the data section, entries do not overlap, and each
/// entry's size matches its dtype and shape. Movable, not copyable; a moved-from object may only
/// be destroyed or assigned to. All const methods are thread-safe.
class SafetensorsFile {
 public:
  /// Opens and maps `path` and validates its header. Throws mambakit::Error naming the file and
  /// the problem (and the tensor or key involved) when it cannot be read or is malformed.
  static SafetensorsFile open(const std::filesystem::path& path);

  /// The path it was opened with.
  [[nodiscard]] const std::filesystem::path& path() const;

  /// Every tensor in the file, sorted by name (byte order).
  [[nodiscard]] const std::vector<SafetensorsEntry>& entries() const;

  /// The entry called `name`, or nullptr when there is none. Valid as long as this object.
  [[nodiscard]] const SafetensorsEntry* find(std::string_view name) const;

  /// The entry called `name`; throws mambakit::Error naming the file and the tensor when absent.
  [[nodiscard]] const SafetensorsEntry& at(std::string_view name) const;

  /// The string pairs under "__metadata__" (empty when the file has none).
  [[nodiscard]] const std::map<std::string, std::string>& metadata() const;

  /// The entry's raw little-endian bytes, inside the mapping: valid as long as this object.
  /// Aligned to the dtype only when the writer aligned it (writers normally do; do not rely on
  /// it, or copy). `entry` must come from this file.
  [[nodiscard]] const void* data(const SafetensorsEntry& entry) const;

  /// Writes entry.numel() floats to `out`, converting F16, BF16 and F64; throws mambakit::Error
  /// naming the file and the tensor for I32, I64 and I8.
  void read_f32(const SafetensorsEntry& entry, float* out) const;

  /// The tensor called `name` as floats (see above); throws when absent.
  [[nodiscard]] std::vector<float> read_f32(std::string_view name) const;

  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

 private:
  struct Impl;
  explicit SafetensorsFile(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// A tensor to write: `data` points to numel * dtype_size bytes, little-endian, C order (it may
/// be null when there are none). Only read, and only during write_safetensors.
struct SafetensorsTensor {
  std::string name;
  sdk::DType dtype = sdk::DType::kF32;
  std::vector<std::int64_t> shape;
  const void* data = nullptr;
};

/// Writes tensors (in name order) and metadata atomically.
///
/// The layout is the one Hugging Face's writer produces: compact JSON with "__metadata__" first
/// (only when non-empty), then each tensor in name order as {"dtype","shape","data_offsets"},
/// padded with spaces to a multiple of 8, then the data in the same order. Throws
/// mambakit::Error naming the file (and the tensor) for duplicate or reserved names, negative
/// dimensions, unknown dtypes, missing data, or any I/O failure; `path` is then untouched.
void write_safetensors(const std::filesystem::path& path, const std::vector<SafetensorsTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace mambakit
