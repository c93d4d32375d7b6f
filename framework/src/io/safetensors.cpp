#include "mambakit/safetensors.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

#include "mambakit/atomic_file.hpp"
#include "mambakit/error.hpp"
#include "mambakit/half.hpp"
#include "mambakit/input_limits.hpp"

namespace mambakit {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian and read in place");

namespace {

using nlohmann::json;

// A header larger than this is not a checkpoint header but a damaged or hostile file.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
constexpr std::string_view kMetadataKey = "__metadata__";

std::optional<sdk::DType> parse_dtype(std::string_view name) {
  if (name == "F32") return sdk::DType::kF32;
  if (name == "F16") return sdk::DType::kF16;
  if (name == "BF16") return sdk::DType::kBF16;
  if (name == "F64") return sdk::DType::kF64;
  if (name == "I32") return sdk::DType::kI32;
  if (name == "I64") return sdk::DType::kI64;
  if (name == "I8") return sdk::DType::kI8;
  return std::nullopt;
}

const char* dtype_string(sdk::DType dtype) {
  switch (dtype) {
    case sdk::DType::kF32: return "F32";
    case sdk::DType::kF16: return "F16";
    case sdk::DType::kBF16: return "BF16";
    case sdk::DType::kF64: return "F64";
    case sdk::DType::kI32: return "I32";
    case sdk::DType::kI64: return "I64";
    case sdk::DType::kI8: return "I8";
    default: return nullptr;
  }
}

// The product of `shape`, or nullopt when it does not fit in int64 (a zero dimension wins).
std::optional<std::int64_t> checked_numel(const std::vector<std::int64_t>& shape) {
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) {
    return 0;
  }
  std::int64_t numel = 1;
  for (const std::int64_t dim : shape) {
    if (dim < 0 || numel > std::numeric_limits<std::int64_t>::max() / dim) {
      return std::nullopt;
    }
    numel *= dim;
  }
  return numel;
}

std::string shape_text(const std::vector<std::int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

// A short, bounded rendering of a JSON value for error messages.
std::string json_text(const json& value) {
  std::string text = value.dump(-1, ' ', true, json::error_handler_t::replace);
  if (text.size() > 60) {
    text = text.substr(0, 57) + "...";
  }
  return text;
}

// Validates the header while it is parsed for what the DOM loses: keys given twice.
class DuplicateKeyCheck {
 public:
  bool operator()(int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start: keys_.emplace_back(); break;
      case json::parse_event_t::object_end:
        if (!keys_.empty()) keys_.pop_back();
        break;
      case json::parse_event_t::key: {
        const auto& key = parsed.get_ref<const std::string&>();
        if (depth == 1) {
          tensor_ = key;
        }
        if (!keys_.empty() && !keys_.back().insert(key).second && !duplicate_) {
          duplicate_ = depth == 1 ? fmt::format("key '{}' appears twice in the header", key)
                                  : fmt::format("'{}': key '{}' appears twice", tensor_, key);
        }
        break;
      }
      default: break;
    }
    return true;
  }
  [[nodiscard]] const std::optional<std::string>& duplicate() const { return duplicate_; }

 private:
  std::vector<std::set<std::string>> keys_;
  std::string tensor_;
  std::optional<std::string> duplicate_;
};

}  // namespace

std::int64_t SafetensorsEntry::numel() const {
  std::int64_t numel = 1;
  for (const std::int64_t dim : shape) {
    numel *= dim;
  }
  return numel;
}

struct SafetensorsFile::Impl {
  std::filesystem::path path;
  const unsigned char* mapping = nullptr;
  std::size_t mapping_size = 0;
  std::size_t data_start = 0;  // 8 + header length
  std::size_t data_size = 0;
  std::vector<SafetensorsEntry> entries;
  std::map<std::string, std::string> metadata;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {
    if (mapping != nullptr) {
      ::munmap(const_cast<unsigned char*>(mapping), mapping_size);
    }
  }

  [[noreturn]] void fail(const std::string& problem) const {
    throw Error(fmt::format("{}: {}", path.string(), problem));
  }
  [[noreturn]] void fail_tensor(const std::string& name, const std::string& problem) const {
    throw Error(fmt::format("{}: tensor '{}': {}", path.string(), name, problem));
  }

  void map_file();
  void parse_header();
  void parse_metadata(const json& value);
  SafetensorsEntry parse_entry(const std::string& name, const json& value) const;
  void check_overlaps() const;
};

void SafetensorsFile::Impl::map_file() {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    fail(fmt::format("cannot open: {}", std::strerror(error)));
  }
  struct stat status {};
  if (::fstat(fd, &status) != 0) {
    const int error = errno;
    ::close(fd);
    fail(fmt::format("cannot stat: {}", std::strerror(error)));
  }
  if (!S_ISREG(status.st_mode)) {
    ::close(fd);
    fail("not a regular file");
  }
  const auto size = static_cast<std::size_t>(status.st_size);
  if (size < 8) {
    ::close(fd);
    fail(fmt::format("the file is {} bytes long, shorter than the 8-byte header length of a safetensors file", size));
  }
  void* mapped = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int error = errno;
  ::close(fd);
  if (mapped == MAP_FAILED) {
    fail(fmt::format("cannot map {} bytes: {}", size, std::strerror(error)));
  }
  mapping = static_cast<const unsigned char*>(mapped);
  mapping_size = size;
}

void SafetensorsFile::Impl::parse_header() {
  std::uint64_t header_size = 0;
  std::memcpy(&header_size, mapping, sizeof header_size);
  if (header_size > kMaxHeaderBytes) {
    fail(fmt::format("header length {} is absurd (the limit is {} bytes); not a safetensors file?", header_size,
                     kMaxHeaderBytes));
  }
  if (header_size > mapping_size - 8) {
    fail(fmt::format("header length {} exceeds the {} bytes that follow it; the file is truncated or not a "
                     "safetensors file",
                     header_size, mapping_size - 8));
  }
  data_start = 8 + static_cast<std::size_t>(header_size);
  data_size = mapping_size - data_start;

  try {
    check_json_depth({reinterpret_cast<const char*>(mapping) + 8, static_cast<std::size_t>(header_size)}, "the header");
  } catch (const Error& error) {
    fail(error.what());
  }
  DuplicateKeyCheck duplicate_check;
  json header;
  try {
    header = json::parse(mapping + 8, mapping + data_start, std::ref(duplicate_check));
  } catch (const json::exception& error) {
    fail(fmt::format("the header is not valid JSON: {}", error.what()));
  }
  if (!header.is_object()) {
    fail(fmt::format("the header is not a JSON object but {} {}", header.type_name(), json_text(header)));
  }
  if (duplicate_check.duplicate()) {
    fail(*duplicate_check.duplicate());
  }
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      parse_metadata(value);
    } else {
      entries.push_back(parse_entry(key, value));
    }
  }
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  check_overlaps();
}

void SafetensorsFile::Impl::parse_metadata(const json& value) {
  if (value.is_null()) {
    return;
  }
  if (!value.is_object()) {
    fail(fmt::format("\"__metadata__\" is not an object of strings but {} {}", value.type_name(), json_text(value)));
  }
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) {
      fail(fmt::format("\"__metadata__\" key '{}' is {} {}, not a string", key, item.type_name(), json_text(item)));
    }
    metadata.emplace(key, item.get<std::string>());
  }
}

SafetensorsEntry SafetensorsFile::Impl::parse_entry(const std::string& name, const json& value) const {
  if (!value.is_object()) {
    fail_tensor(name, fmt::format("the entry is {} {}, not an object", value.type_name(), json_text(value)));
  }
  SafetensorsEntry entry;
  entry.name = name;

  const auto dtype_item = value.find("dtype");
  if (dtype_item == value.end()) {
    fail_tensor(name, "the entry lacks the key \"dtype\"");
  }
  if (!dtype_item->is_string()) {
    fail_tensor(name, fmt::format("\"dtype\" is {} {}, not a string", dtype_item->type_name(), json_text(*dtype_item)));
  }
  const auto& dtype_name = dtype_item->get_ref<const std::string&>();
  const auto dtype = parse_dtype(dtype_name);
  if (!dtype) {
    fail_tensor(name, fmt::format("unsupported dtype \"{}\" (supported: F32, F16, BF16, F64, I32, I64, I8)", dtype_name));
  }
  entry.dtype = *dtype;

  const auto shape_item = value.find("shape");
  if (shape_item == value.end()) {
    fail_tensor(name, "the entry lacks the key \"shape\"");
  }
  if (!shape_item->is_array()) {
    fail_tensor(name, fmt::format("\"shape\" is {} {}, not an array", shape_item->type_name(), json_text(*shape_item)));
  }
  for (std::size_t i = 0; i < shape_item->size(); ++i) {
    const json& dim = (*shape_item)[i];
    constexpr auto kMaxDim = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    if (!dim.is_number_unsigned() || dim.get<std::uint64_t>() > kMaxDim) {
      fail_tensor(name, fmt::format("shape {} has dimension {} = {}, not a non-negative integer below 2^63",
                                    json_text(*shape_item), i, json_text(dim)));
    }
    entry.shape.push_back(static_cast<std::int64_t>(dim.get<std::uint64_t>()));
  }
  const auto numel = checked_numel(entry.shape);
  const std::size_t element_size = sdk::dtype_size(entry.dtype);
  if (!numel || static_cast<std::uint64_t>(*numel) > std::numeric_limits<std::size_t>::max() / element_size) {
    fail_tensor(name, fmt::format("shape {} has too many elements (overflow)", shape_text(entry.shape)));
  }

  const auto offsets_item = value.find("data_offsets");
  if (offsets_item == value.end()) {
    fail_tensor(name, "the entry lacks the key \"data_offsets\"");
  }
  if (!offsets_item->is_array() || offsets_item->size() != 2 || !(*offsets_item)[0].is_number_unsigned() ||
      !(*offsets_item)[1].is_number_unsigned()) {
    fail_tensor(name, fmt::format("\"data_offsets\" is {}, not [begin, end] with non-negative integers",
                                  json_text(*offsets_item)));
  }
  const auto begin = (*offsets_item)[0].get<std::uint64_t>();
  const auto end = (*offsets_item)[1].get<std::uint64_t>();
  if (begin > end) {
    fail_tensor(name, fmt::format("data_offsets [{}, {}] begin after end", begin, end));
  }
  if (end > data_size) {
    fail_tensor(name, fmt::format("data_offsets [{}, {}] end beyond the data section of {} bytes (file truncated?)",
                                  begin, end, data_size));
  }
  entry.offset = static_cast<std::size_t>(begin);
  entry.size_bytes = static_cast<std::size_t>(end - begin);
  const std::size_t expected = static_cast<std::size_t>(*numel) * element_size;
  if (entry.size_bytes != expected) {
    fail_tensor(name, fmt::format("data_offsets [{}, {}] hold {} bytes, but {} {} needs {} ({} elements of {} bytes)",
                                  begin, end, entry.size_bytes, dtype_name, shape_text(entry.shape), expected, *numel,
                                  element_size));
  }
  return entry;
}

void SafetensorsFile::Impl::check_overlaps() const {
  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& entry : entries) {
    if (entry.size_bytes > 0) {
      by_offset.push_back(&entry);
    }
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto* a, const auto* b) { return std::tie(a->offset, a->name) < std::tie(b->offset, b->name); });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    const auto& previous = *by_offset[i - 1];
    const auto& current = *by_offset[i];
    if (current.offset < previous.offset + previous.size_bytes) {
      fail(fmt::format("tensors '{}' (bytes [{}, {})) and '{}' (bytes [{}, {})) overlap", previous.name,
                       previous.offset, previous.offset + previous.size_bytes, current.name, current.offset,
                       current.offset + current.size_bytes));
    }
  }
}

SafetensorsFile::SafetensorsFile(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SafetensorsFile::~SafetensorsFile() = default;
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->map_file();
  impl->parse_header();
  return SafetensorsFile(std::move(impl));
}

const std::filesystem::path& SafetensorsFile::path() const { return impl_->path; }

const std::vector<SafetensorsEntry>& SafetensorsFile::entries() const { return impl_->entries; }

const SafetensorsEntry* SafetensorsFile::find(std::string_view name) const {
  const auto& entries = impl_->entries;
  const auto before = [](const SafetensorsEntry& entry, std::string_view key) { return entry.name < key; };
  const auto it = std::lower_bound(entries.begin(), entries.end(), name, before);
  return it != entries.end() && it->name == name ? &*it : nullptr;
}

const SafetensorsEntry& SafetensorsFile::at(std::string_view name) const {
  if (const auto* entry = find(name)) {
    return *entry;
  }
  impl_->fail_tensor(std::string(name), fmt::format("no such tensor in the file ({} tensors)", impl_->entries.size()));
}

const std::map<std::string, std::string>& SafetensorsFile::metadata() const { return impl_->metadata; }

const void* SafetensorsFile::data(const SafetensorsEntry& entry) const {
  if (entry.offset > impl_->data_size || entry.size_bytes > impl_->data_size - entry.offset) {
    impl_->fail_tensor(entry.name, fmt::format("bytes [{}, {}) are outside the data section of {} bytes; the entry "
                                               "does not belong to this file",
                                               entry.offset, entry.offset + entry.size_bytes, impl_->data_size));
  }
  return impl_->mapping + impl_->data_start + entry.offset;
}

void SafetensorsFile::read_f32(const SafetensorsEntry& entry, float* out) const {
  if (entry.dtype == sdk::DType::kI32 || entry.dtype == sdk::DType::kI64 || entry.dtype == sdk::DType::kI8) {
    impl_->fail_tensor(entry.name, fmt::format("dtype {} is an integer type; read_f32 converts only F32, F16, BF16 "
                                               "and F64",
                                               dtype_string(entry.dtype)));
  }
  const void* bytes = data(entry);
  convert_to_f32(entry.dtype, bytes, out, entry.numel());
}

std::vector<float> SafetensorsFile::read_f32(std::string_view name) const {
  const auto& entry = at(name);
  std::vector<float> values(static_cast<std::size_t>(entry.numel()));
  read_f32(entry, values.data());
  return values;
}

void write_safetensors(const std::filesystem::path& path, const std::vector<SafetensorsTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const auto fail_tensor = [&](const std::string& name, const std::string& problem) {
    throw Error(fmt::format("{}: tensor '{}': {}", path.string(), name, problem));
  };
  std::vector<const SafetensorsTensor*> sorted;
  sorted.reserve(tensors.size());
  for (const auto& tensor : tensors) {
    sorted.push_back(&tensor);
  }
  std::sort(sorted.begin(), sorted.end(), [](const auto* a, const auto* b) { return a->name < b->name; });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    header[std::string(kMetadataKey)] = metadata;
  }
  std::vector<std::size_t> sizes;
  sizes.reserve(sorted.size());
  std::size_t offset = 0;
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    const auto& tensor = *sorted[i];
    if (tensor.name == kMetadataKey) {
      fail_tensor(tensor.name, "the name is reserved for the metadata");
    }
    if (i > 0 && sorted[i - 1]->name == tensor.name) {
      fail_tensor(tensor.name, "the name is given twice");
    }
    const char* dtype = dtype_string(tensor.dtype);
    if (dtype == nullptr) {
      fail_tensor(tensor.name, fmt::format("unknown dtype value {}", static_cast<int>(tensor.dtype)));
    }
    const auto numel = checked_numel(tensor.shape);
    if (std::any_of(tensor.shape.begin(), tensor.shape.end(), [](std::int64_t dim) { return dim < 0; })) {
      fail_tensor(tensor.name, fmt::format("shape {} has a negative dimension", shape_text(tensor.shape)));
    }
    const std::size_t element_size = sdk::dtype_size(tensor.dtype);
    if (!numel || static_cast<std::uint64_t>(*numel) > std::numeric_limits<std::size_t>::max() / element_size) {
      fail_tensor(tensor.name, fmt::format("shape {} has too many elements (overflow)", shape_text(tensor.shape)));
    }
    const std::size_t size = static_cast<std::size_t>(*numel) * element_size;
    if (size > 0 && tensor.data == nullptr) {
      fail_tensor(tensor.name, fmt::format("no data for {} bytes", size));
    }
    if (size > std::numeric_limits<std::size_t>::max() - offset) {
      fail_tensor(tensor.name, "the data section would overflow");
    }
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = dtype;
    entry["shape"] = tensor.shape;
    entry["data_offsets"] = {offset, offset + size};
    header[tensor.name] = std::move(entry);
    offset += size;
    sizes.push_back(size);
  }

  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const nlohmann::json::exception& error) {
    throw Error(fmt::format("{}: cannot encode the header (a name or metadata string is not UTF-8?): {}", path.string(),
                            error.what()));
  }
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  write_file_atomically(path, [&](std::ostream& stream) {
    unsigned char length[8];
    std::uint64_t header_size = header_text.size();
    std::memcpy(length, &header_size, sizeof length);
    stream.write(reinterpret_cast<const char*>(length), sizeof length);
    stream.write(header_text.data(), static_cast<std::streamsize>(header_text.size()));
    for (std::size_t i = 0; i < sorted.size(); ++i) {
      if (sizes[i] > 0) {
        stream.write(static_cast<const char*>(sorted[i]->data), static_cast<std::streamsize>(sizes[i]));
      }
    }
  });
}

}  // namespace mambakit
