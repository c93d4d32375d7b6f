#pragma once
// Named model shapes for benchmarks: the Mamba-1 family of state-spaces/mamba-*-hf and the
// Mamba-2 family of state-spaces/mamba2-*.

#include <string>

#include "mambakit/config.hpp"

namespace mambakit::cli {

/// The causal-LM config of shape `name` ("130m", "370m", "790m", "1.4b", "2.8b", "mamba2-130m",
/// "mamba2-370m", "mamba2-1.3b"; "kjv", the bundled
/// byte-level model's shape; or "tiny" for quick checks). Throws mambakit::Error listing the known names.
ModelConfig model_shape(const std::string& name);

}  // namespace mambakit::cli
