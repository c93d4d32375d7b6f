#pragma once
/// \file
/// Registrar: how a plugin tells the host which components it provides.

#include "mambakit/sdk/head.hpp"
#include "mambakit/sdk/mixer.hpp"
#include "mambakit/sdk/scan_backend.hpp"
#include "mambakit/sdk/status.hpp"

namespace mambakit::sdk {

/// Creates a mixer from `config_json`, a UTF-8 JSON object. The host always provides
/// "d_model", "n_layer", "layer_index" and the model's SSM keys ("d_state", "d_conv",
/// "expand", "dt_rank", "conv_bias", "bias", "dt_min", "dt_max", "dt_init", "dt_init_floor",
/// "dt_scale", "norm_eps"), plus whatever the model config's mixer section holds. On success
/// `*out` receives an object the caller owns (delete it through its virtual destructor); on
/// failure `*out` is untouched and the Status names the bad key and value.
using MixerFactory = Status (*)(const char* config_json, Mixer** out) noexcept;

/// Creates a head from `config_json` ("d_model", "vocab_size", "tie_embeddings",
/// "num_labels", "pooling", plus the model config's head section). Ownership as for
/// MixerFactory.
using HeadFactory = Status (*)(const char* config_json, Head** out) noexcept;

/// Creates a scan backend from `config_json` (an object, often empty). Ownership as for
/// MixerFactory.
using ScanFactory = Status (*)(const char* config_json, ScanBackend** out) noexcept;

/// Host-owned registry interface passed to a plugin's register callback, valid only during
/// that call. `name` is the component's short name (e.g. "s6"); the host keys it by kind
/// ("mixer/s6"). `help` is one line for `mambakit plugins`. Both strings are copied.
/// Factories must stay callable while the plugin is loaded. Not thread-safe.
class Registrar {
 public:
  /// Registers a mixer. Fails when the name is empty or not [a-z0-9_.-].
  virtual Status add_mixer(const char* name, const char* help, MixerFactory factory) noexcept = 0;
  /// Registers a head. Same rules as add_mixer().
  virtual Status add_head(const char* name, const char* help, HeadFactory factory) noexcept = 0;
  /// Registers a scan backend. Same rules as add_mixer().
  virtual Status add_scan(const char* name, const char* help, ScanFactory factory) noexcept = 0;

 protected:
  ~Registrar() = default;
};

}  // namespace mambakit::sdk
