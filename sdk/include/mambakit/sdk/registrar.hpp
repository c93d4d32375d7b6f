#pragma once
/// \file
/// Registrar: how a plugin tells the host which components it provides.

#include "mambakit/sdk/config_adapter.hpp"
#include "mambakit/sdk/head.hpp"
#include "mambakit/sdk/kernel.hpp"
#include "mambakit/sdk/mixer.hpp"
#include "mambakit/sdk/status.hpp"

namespace mambakit::sdk {

/// Keys the host puts in every mixer's config beside the layer's own options: "d_model",
/// "n_layer" and "layer_index". An option of the same name is refused by the host.
inline constexpr const char* kMixerHostKeys[] = {"d_model", "n_layer", "layer_index"};

/// Creates a mixer from `config_json`, a UTF-8 JSON object: the host keys (kMixerHostKeys)
/// and the options the model config gives the layer's mixer. The mixer defaults what is
/// absent and refuses an unknown key or an invalid value with kInvalidArgument, naming both
/// (the host adds the layer and the component). On success `*out` receives an object the
/// caller owns (delete it through its virtual destructor); on failure `*out` is untouched.
using MixerFactory = Status (*)(const char* config_json, Mixer** out) noexcept;

/// Keys the host puts in every head's config beside the head's own options: "d_model",
/// "vocab_size" (the embedding's rows, padded) and "tie_embeddings". An option of the same name
/// is refused by the host; a head ignores the host keys it does not use.
inline constexpr const char* kHeadHostKeys[] = {"d_model", "vocab_size", "tie_embeddings"};

/// Creates a head from `config_json`: the host keys (kHeadHostKeys) and the options the model
/// config gives the head. Options, errors and ownership as for MixerFactory.
using HeadFactory = Status (*)(const char* config_json, Head** out) noexcept;

/// Creates a kernel of the kind it is registered under from `config_json` (an object, often
/// empty). Ownership as for MixerFactory; the object must derive from the kind's interface
/// (a ScanBackend for kSelectiveScanKind).
using KernelFactory = Status (*)(const char* config_json, Kernel** out) noexcept;

/// Creates a config adapter from `config_json` (an object, often empty). Ownership as for
/// MixerFactory.
using ConfigAdapterFactory = Status (*)(const char* config_json, ConfigAdapter** out) noexcept;

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
  /// Registers a kernel of `kind` (e.g. kSelectiveScanKind); the host keys it "kind/name".
  /// Same rules as add_mixer(), for the kind too.
  virtual Status add_kernel(const char* kind, const char* name, const char* help, KernelFactory factory) noexcept = 0;
  /// Registers a config adapter (config_adapter.hpp), keyed "config/name". Same rules as
  /// add_mixer().
  virtual Status add_config_adapter(const char* name, const char* help, ConfigAdapterFactory factory) noexcept = 0;

 protected:
  ~Registrar() = default;
};

}  // namespace mambakit::sdk
