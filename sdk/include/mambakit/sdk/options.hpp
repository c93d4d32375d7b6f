#pragma once
/// \file
/// Options: a component's JSON config read inside its plugin, with typed values, defaults, and
/// std::invalid_argument naming the component, the key and the value when one is missing, of
/// the wrong type, or unknown (create_component() turns that into a kInvalidArgument Status).
/// Plugin-side only (it uses nlohmann-json, which the mambakit package finds); nothing of it
/// crosses the boundary.
///
///   const sdk::Options options(config_json, "mixer/my_mixer");
///   const std::int64_t d_model = options.integer("d_model", 1);
///   const double decay = options.number("decay", 0.9);
///   options.reject_unknown();  // after every read: an unread key is an error

#include <cstdint>
#include <algorithm>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace mambakit::sdk {

/// Reads one component config. Not thread-safe (it records which keys were read).
class Options {
 public:
  /// Parses `text` (a JSON object); `component` (e.g. "mixer/s6") starts every message.
  Options(const char* text, std::string component) : component_(std::move(component)) {
    root_ = nlohmann::json::parse(text ? text : "", nullptr, false);
    if (root_.is_discarded() || !root_.is_object()) {
      throw std::invalid_argument(component_ + ": the config is not a JSON object");
    }
  }

  /// An integer >= `minimum`; `fallback` when absent and a fallback is given.
  std::int64_t integer(const char* key, std::int64_t minimum, const std::int64_t* fallback = nullptr) const {
    const auto found = find(key);
    if (found == root_.end()) {
      if (fallback != nullptr) return *fallback;
      throw std::invalid_argument(component_ + ": config lacks \"" + key + "\"");
    }
    if (!found->is_number_integer() || found->get<std::int64_t>() < minimum) {
      throw std::invalid_argument(component_ + ": \"" + key + "\" = " + found->dump() + " is invalid: must be an integer >= " +
                                  std::to_string(minimum));
    }
    return found->get<std::int64_t>();
  }

  double number(const char* key, double fallback) const {
    const auto found = find(key);
    if (found == root_.end()) return fallback;
    if (!found->is_number()) {
      throw std::invalid_argument(component_ + ": \"" + key + "\" = " + found->dump() + " is invalid: must be a number");
    }
    return found->get<double>();
  }

  bool boolean(const char* key, bool fallback) const {
    const auto found = find(key);
    if (found == root_.end()) return fallback;
    if (!found->is_boolean()) {
      throw std::invalid_argument(component_ + ": \"" + key + "\" = " + found->dump() + " is invalid: must be true or false");
    }
    return found->get<bool>();
  }

  std::string string(const char* key, const std::string& fallback) const {
    const auto found = find(key);
    if (found == root_.end()) return fallback;
    if (!found->is_string()) {
      throw std::invalid_argument(component_ + ": \"" + key + "\" = " + found->dump() + " is invalid: must be a string");
    }
    return found->get<std::string>();
  }

  /// A list of strings; empty when absent.
  std::vector<std::string> strings(const char* key) const {
    const auto found = find(key);
    std::vector<std::string> values;
    if (found == root_.end()) return values;
    const bool ok = found->is_array() &&
                    std::all_of(found->begin(), found->end(), [](const nlohmann::json& item) { return item.is_string(); });
    if (!ok) {
      throw std::invalid_argument(component_ + ": \"" + key + "\" = " + found->dump() +
                                  " is invalid: must be a list of strings");
    }
    for (const auto& item : *found) values.push_back(item.get<std::string>());
    return values;
  }

  /// The text of a string value, or "" for an integer (read it with integer()); `fallback`
  /// when absent. Throws for any other type.
  std::string string_or_integer(const char* key, const std::string& fallback) const {
    const auto found = find(key);
    if (found == root_.end()) return fallback;
    if (found->is_string()) return found->get<std::string>();
    if (found->is_number_integer()) return "";
    throw std::invalid_argument(component_ + ": \"" + key + "\" = " + found->dump() +
                                " is invalid: must be an integer or a string");
  }

  /// Whether `key` is present (it counts as read).
  bool has(const char* key) const { return find(key) != root_.end(); }

  /// Throws naming the first key that nothing read and that is not in `also_known`.
  void reject_unknown(std::initializer_list<const char*> also_known = {}) const {
    for (const auto& [key, value] : root_.items()) {
      bool known = read_.count(key) != 0;
      for (const char* other : also_known) known = known || key == other;
      if (!known) {
        throw std::invalid_argument(component_ + ": unknown option \"" + key + "\" (value " + value.dump() + ")");
      }
    }
  }

 private:
  nlohmann::json::const_iterator find(const char* key) const {
    read_.insert(key);
    return root_.find(key);
  }

  nlohmann::json root_;
  std::string component_;
  mutable std::set<std::string> read_;
};

}  // namespace mambakit::sdk
