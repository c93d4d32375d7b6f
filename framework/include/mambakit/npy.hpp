#pragma once
/// \file
/// NumPy .npy files (format 1.0) of float32 arrays, for dumping activations and results that
/// Python tools read with numpy.load.

#include <cstdint>
#include <filesystem>
#include <vector>

namespace mambakit {

/// Writes a float32 little-endian C-order NumPy .npy file (format 1.0) atomically.
/// `data` holds the product of `shape` floats (none for a zero dimension; a scalar for shape {}).
/// The header is padded so that the data starts at a multiple of 64 bytes. Throws
/// mambakit::Error naming the file for a negative dimension, a header beyond format 1.0's
/// 65535 bytes, or an I/O failure; `path` is then untouched.
void write_npy_f32(const std::filesystem::path& path, const float* data, const std::vector<std::int64_t>& shape);

/// Reads a float32 .npy file written as above (for tests and tools); throws Error naming the file on anything else.
/// Accepts any header layout NumPy writes for a '<f4' C-order array (versions 1.0, 2.0 and 3.0).
/// Stores the shape in `*shape` unless `shape` is null; returns the values in C order.
std::vector<float> read_npy_f32(const std::filesystem::path& path, std::vector<std::int64_t>* shape);

}  // namespace mambakit
