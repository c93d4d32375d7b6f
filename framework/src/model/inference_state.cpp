#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numeric>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "mambakit/error.hpp"
#include "mambakit/model.hpp"
#include "mambakit/safetensors.hpp"
#include "state_storage.hpp"

namespace mambakit {

namespace {

void check_index(std::int64_t layer, std::int64_t index, const std::vector<std::vector<FloatTensor>>& tensors) {
  if (layer < 0 || layer >= static_cast<std::int64_t>(tensors.size()) || index < 0 ||
      index >= static_cast<std::int64_t>(tensors[static_cast<std::size_t>(layer)].size())) {
    throw Error(fmt::format("the inference state has no tensor {} in layer {}", index, layer));
  }
}

/// Elements before and after `axis` of `shape`, and its extent: (outer, extent, inner).
struct AxisSplit {
  std::int64_t outer = 1, extent = 1, inner = 1;
};

AxisSplit split_at(const std::vector<std::int64_t>& shape, std::int32_t axis) {
  AxisSplit split;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    const auto position = static_cast<std::int32_t>(d);
    if (position < axis) split.outer *= shape[d];
    if (position == axis) split.extent = shape[d];
    if (position > axis) split.inner *= shape[d];
  }
  return split;
}

/// `tensor` with `extent` entries on token axis `axis`: the first min(old, new) kept in place,
/// the rest zero.
FloatTensor with_token_extent(const FloatTensor& tensor, std::int32_t axis, std::int64_t extent) {
  std::vector<std::int64_t> shape = tensor.shape;
  shape[static_cast<std::size_t>(axis)] = extent;
  FloatTensor resized(shape);
  const AxisSplit from = split_at(tensor.shape, axis);
  const std::int64_t kept = std::min(from.extent, extent) * from.inner;
  for (std::int64_t o = 0; o < from.outer; ++o) {
    const float* source = tensor.values.data() + o * from.extent * from.inner;
    std::copy(source, source + kept, resized.values.data() + o * extent * from.inner);
  }
  return resized;
}

/// `shape` with its token axis (when `axis` >= 0) set to `extent`.
std::vector<std::int64_t> with_axis(std::vector<std::int64_t> shape, std::int32_t axis, std::int64_t extent) {
  if (axis >= 0) shape[static_cast<std::size_t>(axis)] = extent;
  return shape;
}

}  // namespace

InferenceState::InferenceState() = default;

InferenceState::Storage& InferenceState::storage() const {
  if (!storage_) storage_ = std::make_unique<Storage>();
  return *storage_;
}
InferenceState::~InferenceState() = default;
InferenceState::InferenceState(InferenceState&& other) noexcept
    : batch_(std::exchange(other.batch_, 0)), storage_(std::move(other.storage_)) {}

InferenceState& InferenceState::operator=(InferenceState&& other) noexcept {
  batch_ = std::exchange(other.batch_, 0);
  storage_ = std::move(other.storage_);
  return *this;
}

InferenceState::InferenceState(const InferenceState& other)
    : batch_(other.batch_) {
  const Storage& from = other.storage();
  other.storage().sync_to_host();
  storage().tensors = from.tensors;
  storage().names = from.names;
  storage().token_axes = from.token_axes;
  storage().capacity = from.capacity;
  storage().positions = from.positions;
}

InferenceState& InferenceState::operator=(const InferenceState& other) {
  if (this != &other) *this = InferenceState(other);
  return *this;
}

std::int64_t InferenceState::n_layers() const { return static_cast<std::int64_t>(storage().tensors.size()); }

const FloatTensor& InferenceState::tensor(std::int64_t layer, std::int64_t index) const {
  check_index(layer, index, storage().tensors);
  storage().sync_to_host();
  return storage().tensors[static_cast<std::size_t>(layer)][static_cast<std::size_t>(index)];
}

FloatTensor& InferenceState::tensor(std::int64_t layer, std::int64_t index) {
  check_index(layer, index, storage().tensors);
  storage().use_on_host();
  return storage().tensors[static_cast<std::size_t>(layer)][static_cast<std::size_t>(index)];
}

const std::string& InferenceState::tensor_name(std::int64_t layer, std::int64_t index) const {
  check_index(layer, index, storage().tensors);
  return storage().names[static_cast<std::size_t>(layer)][static_cast<std::size_t>(index)];
}

std::int64_t InferenceState::tensor_count(std::int64_t layer) const {
  check_index(layer, 0, storage().tensors);
  return static_cast<std::int64_t>(storage().tensors[static_cast<std::size_t>(layer)].size());
}

const std::vector<std::int64_t>& InferenceState::positions() const { return storage().positions; }

std::int64_t InferenceState::seqlen_offset() const {
  const auto& positions = storage().positions;
  return positions.empty() ? 0 : *std::max_element(positions.begin(), positions.end());
}

std::int64_t InferenceState::capacity_tokens() const { return storage().capacity; }

std::size_t InferenceState::bytes_per_token() const {
  std::size_t total = 0;
  const Storage& held = storage();
  for (std::size_t layer = 0; layer < held.tensors.size(); ++layer) {
    for (std::size_t i = 0; i < held.tensors[layer].size(); ++i) {
      const auto axis = held.token_axes[layer][i];
      if (axis < 0) continue;
      const auto& shape = held.tensors[layer][i].shape;
      std::size_t per_token = sizeof(float);
      for (std::size_t d = 0; d < shape.size(); ++d) {
        if (static_cast<std::int32_t>(d) != axis) per_token *= static_cast<std::size_t>(shape[d]);
      }
      total += per_token;
    }
  }
  return total;
}

std::size_t InferenceState::bytes() const {
  std::size_t total = 0;
  for (const auto& layer : storage().tensors) {
    for (const auto& tensor : layer) total += tensor.values.size() * sizeof(float);
  }
  return total;
}

void InferenceState::reset() {
  storage().host_current = true;
  storage().device_current = false;
  for (auto& layer : storage().tensors) {
    for (auto& tensor : layer) std::fill(tensor.values.begin(), tensor.values.end(), 0.0f);
  }
  std::fill(storage().positions.begin(), storage().positions.end(), 0);
}

std::string InferenceState::info_json() const {
  std::int64_t tensors = 0;
  for (const auto& layer : storage().tensors) tensors += static_cast<std::int64_t>(layer.size());
  return nlohmann::json{{"layers", n_layers()},
                        {"tensors", tensors},
                        {"bytes", bytes()},
                        {"bytes_per_token", bytes_per_token()},
                        {"capacity_tokens", capacity_tokens()},
                        {"batch", batch_},
                        {"seqlen_offset", seqlen_offset()},
                        {"positions", positions()}}
      .dump();
}

namespace {

std::string state_tensor_key(std::int64_t layer, const std::string& name) { return fmt::format("layers.{}.{}", layer, name); }

}  // namespace

namespace {

/// The positions as "3,5,0".
std::string positions_text(const std::vector<std::int64_t>& positions) { return fmt::format("{}", fmt::join(positions, ",")); }

/// A non-negative integer, or -1.
std::int64_t parse_count(std::string_view text) {
  std::int64_t value = -1;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  return error == std::errc() && end == text.data() + text.size() && value >= 0 ? value : -1;
}

}  // namespace

void InferenceState::save(const std::filesystem::path& file) const {
  storage().sync_to_host();
  const Storage& held = storage();
  // Tensors that hold tokens are saved as far as the rows hold them.
  const std::int64_t tokens = held.positions.empty() ? 0 : *std::max_element(held.positions.begin(), held.positions.end());
  std::vector<FloatTensor> trimmed;
  trimmed.reserve(held.tensors.size() * 4);
  std::vector<SafetensorsTensor> tensors;
  for (std::size_t layer = 0; layer < held.tensors.size(); ++layer) {
    for (std::size_t i = 0; i < held.tensors[layer].size(); ++i) {
      const FloatTensor* tensor = &held.tensors[layer][i];
      if (held.token_axes[layer][i] >= 0) {
        trimmed.push_back(with_token_extent(*tensor, held.token_axes[layer][i], tokens));
        tensor = &trimmed.back();
      }
      tensors.push_back({state_tensor_key(static_cast<std::int64_t>(layer), held.names[layer][i]), sdk::DType::kF32,
                         tensor->shape, tensor->values.data()});
    }
  }
  write_safetensors(file, tensors,
                    {{"kind", "mambakit-inference-state"},
                     {"seqlen_offset", std::to_string(seqlen_offset())},
                     {"positions", positions_text(held.positions)},
                     {"batch", std::to_string(batch_)}});
}

void InferenceState::load(const std::filesystem::path& file) {
  const SafetensorsFile stored = SafetensorsFile::open(file);
  const auto& metadata = stored.metadata();
  if (!metadata.count("kind") || metadata.at("kind") != "mambakit-inference-state" || !metadata.count("seqlen_offset")) {
    throw Error(fmt::format("{}: not a mambakit inference state", file.string()));
  }
  const std::string& offset_text = metadata.at("seqlen_offset");
  const std::int64_t seqlen_offset = parse_count(offset_text);
  if (seqlen_offset < 0) {
    throw Error(fmt::format("{}: seqlen_offset '{}' is not a non-negative integer", file.string(), offset_text));
  }
  // Files written before rows had positions of their own hold seqlen_offset tokens in each row.
  std::vector<std::int64_t> positions(static_cast<std::size_t>(batch_), seqlen_offset);
  if (metadata.count("positions")) {
    const std::string& text = metadata.at("positions");
    std::size_t row = 0, start = 0;
    for (; row < positions.size() && start <= text.size(); ++row) {
      const std::size_t comma = std::min(text.find(',', start), text.size());
      positions[row] = parse_count(std::string_view(text).substr(start, comma - start));
      if (positions[row] < 0 || positions[row] > seqlen_offset) {
        throw Error(fmt::format("{}: positions '{}' is not a list of {} counts of at most seqlen_offset {}",
                                file.string(), text, batch_, seqlen_offset));
      }
      start = comma + 1;
    }
    if (row != positions.size() || start != text.size() + 1) {
      throw Error(fmt::format("{}: positions '{}' does not hold one count per row of {}", file.string(), text, batch_));
    }
    if (!positions.empty() && *std::max_element(positions.begin(), positions.end()) != seqlen_offset) {
      throw Error(fmt::format("{}: positions '{}' do not reach seqlen_offset {}, the most a row holds", file.string(),
                              text, seqlen_offset));
    }
  }
  // Every tensor is checked before any is read, so a file that fails leaves this state as it was.
  storage().use_on_host();
  Storage& held = storage();
  struct Read {
    const SafetensorsEntry* entry;
    std::size_t layer, index;
  };
  std::vector<Read> reads;
  std::int64_t tokens = -1;  // the file's token extent, the same for every tensor that holds tokens
  for (std::size_t layer = 0; layer < held.tensors.size(); ++layer) {
    for (std::size_t i = 0; i < held.tensors[layer].size(); ++i) {
      const std::string key = state_tensor_key(static_cast<std::int64_t>(layer), held.names[layer][i]);
      const auto& entry = stored.at(key);
      const std::int32_t axis = held.token_axes[layer][i];
      const auto& shape = held.tensors[layer][i].shape;
      const bool same_rank = entry.shape.size() == shape.size();
      const std::int64_t extent = axis >= 0 && same_rank ? entry.shape[static_cast<std::size_t>(axis)] : 0;
      if (!same_rank || entry.shape != with_axis(shape, axis, extent) || (axis >= 0 && tokens >= 0 && extent != tokens)) {
        throw Error(fmt::format("{}: {} has {} values in shape of rank {}, this model's state needs another shape "
                                "(batch {})",
                                file.string(), key, entry.numel(), entry.shape.size(), batch_));
      }
      if (axis >= 0) tokens = extent;
      if (entry.dtype == sdk::DType::kI32 || entry.dtype == sdk::DType::kI64 || entry.dtype == sdk::DType::kI8) {
        throw Error(fmt::format("{}: {} is stored as integers; a state holds floating-point values", file.string(), key));
      }
      reads.push_back({&entry, layer, i});
    }
  }
  if (stored.entries().size() != reads.size()) {
    throw Error(fmt::format("{}: the state holds {} tensors, this model's state has {}", file.string(),
                            stored.entries().size(), reads.size()));
  }
  if (tokens >= 0 && std::any_of(positions.begin(), positions.end(), [&](std::int64_t p) { return p > tokens; })) {
    throw Error(fmt::format("{}: its rows hold up to {} tokens but its tensors have room for {}", file.string(),
                            seqlen_offset, tokens));
  }
  std::vector<std::vector<float>> values(reads.size());
  for (std::size_t r = 0; r < reads.size(); ++r) {
    values[r].resize(static_cast<std::size_t>(reads[r].entry->numel()));
    stored.read_f32(*reads[r].entry, values[r].data());
    if (!std::all_of(values[r].begin(), values[r].end(), [](float v) { return std::isfinite(v); })) {
      throw Error(fmt::format("{}: {} holds NaN or Inf values", file.string(), reads[r].entry->name));
    }
  }
  if (tokens > held.capacity) model::StateAccess::reserve(*this, tokens);
  for (std::size_t r = 0; r < reads.size(); ++r) {
    FloatTensor& tensor = held.tensors[reads[r].layer][reads[r].index];
    const std::int32_t axis = held.token_axes[reads[r].layer][reads[r].index];
    FloatTensor read(reads[r].entry->shape);
    read.values = std::move(values[r]);
    tensor = axis >= 0 ? with_token_extent(read, axis, held.capacity) : std::move(read);
  }
  held.positions = std::move(positions);
}

void InferenceState::copy_row(const InferenceState& source, std::int64_t source_row, std::int64_t row) {
  const Storage& from = source.storage();
  if (source_row < 0 || source_row >= source.batch_ || row < 0 || row >= batch_) {
    throw Error(fmt::format("copy_row: row {} of a state of {} rows into row {} of one of {}", source_row,
                            source.batch_, row, batch_));
  }
  auto same_model = [&] {
    if (from.names != storage().names || from.token_axes != storage().token_axes) return false;
    for (std::size_t layer = 0; layer < from.tensors.size(); ++layer) {
      for (std::size_t i = 0; i < from.tensors[layer].size(); ++i) {
        const std::int32_t axis = from.token_axes[layer][i];
        auto a = with_axis(from.tensors[layer][i].shape, axis, 0), b = with_axis(storage().tensors[layer][i].shape, axis, 0);
        a[0] = b[0] = 0;
        if (a != b) return false;
      }
    }
    return true;
  };
  if (!same_model()) throw Error("copy_row: the two inference states are not of the same model");
  source.storage().sync_to_host();
  const std::int64_t tokens = from.positions[static_cast<std::size_t>(source_row)];
  storage().use_on_host();
  if (tokens > storage().capacity) model::StateAccess::reserve(*this, tokens);
  Storage& to = storage();
  for (std::size_t layer = 0; layer < from.tensors.size(); ++layer) {
    for (std::size_t i = 0; i < from.tensors[layer].size(); ++i) {
      const FloatTensor& a = from.tensors[layer][i];
      FloatTensor& b = to.tensors[layer][i];
      const std::int32_t axis = from.token_axes[layer][i];
      // Per row: `outer` runs of `extent x inner` values, of which the first `kept x inner` are copied.
      const AxisSplit sa = split_at(a.shape, axis >= 0 ? axis : 1), sb = split_at(b.shape, axis >= 0 ? axis : 1);
      const std::int64_t outer = sa.outer / a.shape[0];
      const std::int64_t kept = (axis >= 0 ? tokens : sa.extent) * sa.inner;
      for (std::int64_t o = 0; o < outer; ++o) {
        const float* in = a.values.data() + (source_row * outer + o) * sa.extent * sa.inner;
        float* out = b.values.data() + (row * outer + o) * sb.extent * sb.inner;
        std::copy(in, in + kept, out);
        std::fill(out + kept, out + sb.extent * sb.inner, 0.0f);
      }
    }
  }
  to.positions[static_cast<std::size_t>(row)] = tokens;
}

}  // namespace mambakit

namespace mambakit::model {

InferenceState StateAccess::make(std::int64_t batch, std::vector<std::vector<FloatTensor>> tensors,
                                 std::vector<std::vector<std::string>> names,
                                 std::vector<std::vector<std::int32_t>> token_axes) {
  InferenceState state;
  state.batch_ = batch;
  InferenceState::Storage& storage = state.storage();
  storage.tensors = std::move(tensors);
  storage.names = std::move(names);
  storage.token_axes = std::move(token_axes);
  storage.positions.assign(static_cast<std::size_t>(batch), 0);
  for (std::size_t layer = 0; layer < storage.tensors.size(); ++layer) {
    for (std::size_t i = 0; i < storage.tensors[layer].size(); ++i) {
      const std::int32_t axis = storage.token_axes[layer][i];
      if (axis >= 0) storage.tensors[layer][i] = FloatTensor(with_axis(storage.tensors[layer][i].shape, axis, 0));
    }
  }
  return state;
}

void StateAccess::reserve(InferenceState& state, std::int64_t tokens) {
  InferenceState::Storage& storage = state.storage();
  if (tokens <= storage.capacity) return;
  const bool holds_tokens = std::any_of(storage.token_axes.begin(), storage.token_axes.end(), [](const auto& axes) {
    return std::any_of(axes.begin(), axes.end(), [](std::int32_t axis) { return axis >= 0; });
  });
  if (!holds_tokens) return;
  // Room for a quarter more than the state held, and at least 256 tokens more than asked, in
  // steps of 256 tokens: a prefill leaves room for the decode that follows, decode grows it
  // rarely, and memory stays within 1.25x (+ 512 tokens) of what the rows hold.
  constexpr std::int64_t kStep = 256;
  const std::int64_t wanted = std::max(tokens + kStep, storage.capacity + storage.capacity / 4);
  const std::int64_t capacity = (wanted + kStep - 1) / kStep * kStep;
  storage.sync_to_host();
  for (std::size_t layer = 0; layer < storage.tensors.size(); ++layer) {
    for (std::size_t i = 0; i < storage.tensors[layer].size(); ++i) {
      const std::int32_t axis = storage.token_axes[layer][i];
      if (axis >= 0) storage.tensors[layer][i] = with_token_extent(storage.tensors[layer][i], axis, capacity);
    }
  }
  storage.capacity = capacity;
  storage.device.reset();  // made again, of the new shapes, by the next device call
  storage.device_current = false;
  storage.host_current = true;
}

const std::vector<std::vector<std::int32_t>>& StateAccess::token_axes(const InferenceState& state) {
  return state.storage().token_axes;
}

void StateAccess::advance(InferenceState& state, std::int64_t tokens) {
  for (auto& position : state.storage().positions) position += tokens;
}

std::vector<std::vector<FloatTensor>>& StateAccess::host_tensors(InferenceState& state) {
  state.storage().use_on_host();
  return state.storage().tensors;
}

}  // namespace mambakit::model
