#pragma once
// Published config.json files are written by Python's json module, which writes the
// non-finite floats as the bare words Infinity, -Infinity and NaN (not JSON). Hugging Face
// configs carry them, e.g. a default time-step limit of [0.0, Infinity].

#include <string>

namespace mambakit::config {

/// `text` with each Infinity or -Infinity outside strings replaced by the largest finite
/// double (+-1.7976931348623157e308, which components read as unbounded). Throws
/// mambakit::Error naming `source` for a NaN, which no config value can mean.
std::string with_python_infinities(const std::string& text, const std::string& source);

}  // namespace mambakit::config
