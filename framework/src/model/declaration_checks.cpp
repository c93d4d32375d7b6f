#include "declaration_checks.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "mambakit/error.hpp"
#include "parameter_store.hpp"

namespace mambakit::model {

std::int32_t checked_count(std::int32_t count, const std::string& owner, const char* what) {
  if (count < 0 || count > kMaxDeclaredTensors) {
    throw Error(fmt::format("{} declares {} {} (a component may declare 0 to {})", owner, count, what,
                            kMaxDeclaredTensors));
  }
  return count;
}

std::string checked_name(const sdk::TensorSpec& spec, const std::string& owner, const char* what, std::int32_t index) {
  const std::size_t length = strnlen(spec.name, sdk::kMaxNameLength);
  if (length == sdk::kMaxNameLength) {
    throw Error(fmt::format("{} declares {} {} with a name that is not zero-terminated within {} bytes", owner, what,
                            index, sdk::kMaxNameLength));
  }
  if (length == 0 || (length == 1 && spec.name[0] == '/')) {
    throw Error(fmt::format("{} declares {} {} without a name", owner, what, index));
  }
  return std::string(spec.name, length);
}

std::int64_t checked_numel(const sdk::TensorSpec& spec, std::int64_t min_extent, const std::string& owner,
                           const std::string& label) {
  if (spec.dtype != sdk::DType::kF32) {
    throw Error(fmt::format("{} declares {} as {}; this version holds it as f32", owner, label,
                            sdk::dtype_name(spec.dtype)));
  }
  if (spec.rank < 0 || spec.rank > sdk::kMaxRank) {
    throw Error(fmt::format("{} declares {} with rank {}, outside [0, {}]", owner, label, spec.rank, sdk::kMaxRank));
  }
  const std::int64_t* begin = spec.shape;
  const std::int64_t* end = spec.shape + spec.rank;
  auto shape = [&] { return format_shape(std::vector<std::int64_t>(begin, end)); };
  if (std::any_of(begin, end, [&](std::int64_t extent) { return extent < min_extent; })) {
    throw Error(fmt::format("{} declares {} with shape {} (every extent must be at least {})", owner, label, shape(),
                            min_extent));
  }
  if (std::find(begin, end, 0) != end) return 0;
  const std::int64_t limit = static_cast<std::int64_t>(
      std::min<std::uint64_t>(physical_memory_bytes(), std::numeric_limits<std::int64_t>::max()) / sizeof(float));
  std::int64_t numel = 1;
  for (const std::int64_t* extent = begin; extent != end; ++extent) {
    if (numel > limit / *extent) {
      throw Error(fmt::format("{} declares {} with shape {}, larger than this machine's memory ({:.1f} GiB)", owner,
                              label, shape(), static_cast<double>(physical_memory_bytes()) / (1ull << 30)));
    }
    numel *= *extent;
  }
  return numel;
}

std::uint64_t physical_memory_bytes() {
  static const std::uint64_t bytes = [] {
    const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page_size <= 0) return std::numeric_limits<std::uint64_t>::max();
    return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page_size);
  }();
  return bytes;
}

std::int32_t checked_token_axis(const MixerPtr& mixer, std::int32_t index, const sdk::TensorSpec& spec,
                                const std::string& owner, const std::string& name) {
  const std::int32_t axis = abi_minor(mixer) >= 3 ? mixer->state_token_axis(index) : -1;
  if (axis != -1 && (axis < 1 || axis >= spec.rank || spec.shape[axis] != 1)) {
    throw Error(fmt::format("{} declares token axis {} for state tensor {} of shape {}: it must be an axis after the "
                            "rows, declared with extent 1",
                            owner, axis, name, format_shape(std::vector<std::int64_t>(spec.shape, spec.shape + spec.rank))));
  }
  return axis;
}

}  // namespace mambakit::model
