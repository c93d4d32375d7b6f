#pragma once
/// \file
/// The host's exception type. Inside the host errors are exceptions whose message carries the
/// values involved and the file or key they came from.

#include <stdexcept>
#include <string>

namespace mambakit {

/// Any failure the host reports to its caller: bad input, a plugin's failed Status, I/O.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace mambakit
