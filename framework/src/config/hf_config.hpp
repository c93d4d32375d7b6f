#pragma once
// Reading a Hugging Face config.json of model_type "mamba" into an LmConfig.

#include <nlohmann/json.hpp>
#include <string>

#include "mambakit/config.hpp"

namespace mambakit {

/// Maps MambaConfig keys (hidden_size, state_size, ...) to an LmConfig. Keys Hugging Face
/// adds for other purposes are ignored; a model_type other than "mamba" is an error.
LmConfig parse_hf_config(const nlohmann::json& root, const std::string& source);

}  // namespace mambakit
