#pragma once
/// \file
/// Conversions between float32 and the 16-bit float formats checkpoints are stored in: the
/// SDK's exact scalar conversions (sdk/half.hpp) and a bulk conversion of whole tensors.

#include <cstdint>

#include "mambakit/sdk/dtype.hpp"
#include "mambakit/sdk/half.hpp"

namespace mambakit {

using sdk::bf16_to_f32;
using sdk::f16_to_f32;
using sdk::f32_to_bf16;
using sdk::f32_to_f16;

/// Converts `count` elements of type `from` at `src` into floats at `dst`. Accepts F32, F16,
/// BF16 and F64 (rounded to nearest); any other dtype throws mambakit::Error naming it.
/// `src` needs no alignment and holds little-endian values; `src` and `dst` must not overlap.
void convert_to_f32(sdk::DType from, const void* src, float* dst, std::int64_t count);

}  // namespace mambakit
