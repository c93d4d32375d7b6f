#pragma once
// Typed reads of a JSON object's keys with errors that name the source, the key and the bad
// value; remembers which keys were read so unknown ones can be rejected.

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "mambakit/error.hpp"

namespace mambakit::config_json {

class Fields {
 public:
  Fields(const nlohmann::json& object, std::string source) : object_(object), source_(std::move(source)) {}

  /// Reads `key` into `value` when present; throws when its type does not fit.
  template <class T>
  void read(const char* key, T& value) {
    const nlohmann::json* item = take(key);
    if (item == nullptr) return;
    if constexpr (std::is_same_v<T, bool>) {
      if (!item->is_boolean()) fail(key, *item, "must be true or false");
      value = item->get<bool>();
    } else if constexpr (std::is_integral_v<T>) {
      if (!is_integer(*item)) fail(key, *item, "must be an integer");
      // Within T's range before the cast (a cast of an out-of-range double is undefined).
      const double number = item->get<double>();
      const double bound = std::ldexp(1.0, std::numeric_limits<T>::digits);
      if (!(number < bound && number >= (std::is_signed_v<T> ? -bound : 0.0))) {
        fail(key, *item, fmt::format("must be an integer in [{}, {}]", std::numeric_limits<T>::min(),
                                     std::numeric_limits<T>::max()));
      }
      value = static_cast<T>(number);
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!item->is_number()) fail(key, *item, "must be a number");
      value = item->get<T>();
    } else {
      if (!item->is_string()) fail(key, *item, "must be a string");
      value = item->get<std::string>();
    }
  }

  /// Reads an object whose values are all strings.
  void read_string_map(const char* key, std::map<std::string, std::string>& values) {
    const nlohmann::json* item = take(key);
    if (item == nullptr) return;
    if (!item->is_object()) fail(key, *item, "must be an object of strings");
    for (const auto& [name, value] : item->items()) {
      if (!value.is_string()) fail(key, *item, "must be an object of strings");
      values[name] = value.get<std::string>();
    }
  }

  /// Reads an object and keeps its JSON text.
  void read_object_text(const char* key, std::string& text) {
    const nlohmann::json* item = take(key);
    if (item == nullptr) return;
    if (!item->is_object()) fail(key, *item, "must be a JSON object");
    text = item->dump();
  }

  /// Marks keys as known without reading them.
  void ignore(std::initializer_list<const char*> keys) {
    for (const char* key : keys) read_keys_.insert(key);
  }

  /// Throws naming the first key that nothing read.
  void reject_unread() const {
    for (const auto& [key, value] : object_.items()) {
      if (read_keys_.count(key) == 0) {
        throw Error(fmt::format("{}: unknown key \"{}\" (value {})", source_, key, value.dump()));
      }
    }
  }

  [[noreturn]] void fail(const char* key, const nlohmann::json& value, std::string_view rule) const {
    throw Error(fmt::format("{}: {} = {} is invalid: {}", source_, key, value.dump(), rule));
  }

 private:
  static bool is_integer(const nlohmann::json& item) {
    return item.is_number_integer() || (item.is_number_float() && std::floor(item.get<double>()) == item.get<double>());
  }

  const nlohmann::json* take(const char* key) {
    read_keys_.insert(key);
    auto found = object_.find(key);
    return found == object_.end() ? nullptr : &*found;
  }

  const nlohmann::json& object_;
  std::string source_;
  std::set<std::string> read_keys_;
};

}  // namespace mambakit::config_json
