#pragma once
// Checks of what a component declares about itself through methods that cannot fail (its
// counts) or whose output the host trusts (its tensor specs): a faulty plugin becomes an error
// naming the component before the host loops, allocates or reads past an array on its word.
// Each check runs where the host reads the declaration, once per model or per pass, never per
// element.

#include <cstdint>
#include <string>

#include "mambakit/plugin_host.hpp"
#include "mambakit/sdk/tensor_spec.hpp"

namespace mambakit::model {

/// Most tensors of one kind (parameters, state tensors, saved activations) a component may
/// declare.
inline constexpr std::int32_t kMaxDeclaredTensors = 1 << 16;

/// Returns `count`, the number of `what` (e.g. "parameters") that `owner` declares; throws
/// naming both unless 0 <= count <= kMaxDeclaredTensors.
std::int32_t checked_count(std::int32_t count, const std::string& owner, const char* what);

/// The name in `spec`, `what` number `index` of `owner` (e.g. "parameter", 0); throws unless it
/// is zero-terminated within kMaxNameLength bytes and not empty.
std::string checked_name(const sdk::TensorSpec& spec, const std::string& owner, const char* what, std::int32_t index);

/// The number of elements of `spec`, which `owner` declares for the host to hold as f32;
/// throws naming `owner` and `label` (e.g. "state tensor conv_state") unless its dtype is f32,
/// its rank in [0, kMaxRank], every extent at least `min_extent`, and its size no more than
/// this machine's memory (which also rules out an overflowing element count).
std::int64_t checked_numel(const sdk::TensorSpec& spec, std::int64_t min_extent, const std::string& owner,
                           const std::string& label);

/// The token axis `mixer` declares for its state tensor `index` (-1 for a plugin built before
/// ABI 2.3, which has no state that grows), declared by `owner` with `spec`, named `name`;
/// throws unless it is -1 or an axis after the rows with extent 1.
std::int32_t checked_token_axis(const MixerPtr& mixer, std::int32_t index, const sdk::TensorSpec& spec,
                                const std::string& owner, const std::string& name);

/// Bytes of physical memory of this machine (read once).
std::uint64_t physical_memory_bytes();

}  // namespace mambakit::model
