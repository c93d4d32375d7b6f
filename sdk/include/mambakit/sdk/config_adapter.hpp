#pragma once
/// \file
/// ConfigAdapter: translates a checkpoint format's config.json (Hugging Face's, an older
/// mambakit format, ...) into mambakit's native model config, so that the plugin that
/// implements a format's mixers also owns the reading of its configs.
///
/// The native format (docs/CONFIG.md) is a JSON object with "format": "mambakit-2", the
/// backbone's keys, "mixer" (the default mixer of every layer: {"name": ..., "options": {...}}),
/// optional "layers" (per-layer overrides, by layer index) and the head's keys. The host reads
/// a config as follows: text with "format": "mambakit-2" is parsed directly; any other text is
/// offered to every registered adapter, and the highest score translates it.

#include <cstddef>
#include <cstdint>

#include "mambakit/sdk/status.hpp"

namespace mambakit::sdk {

/// Where a plugin writes text for the host. Implemented by the host, valid for the call it is
/// passed to. Not thread-safe.
class TextSink {
 public:
  /// Appends `size` bytes from `text` (copied).
  virtual void append(const char* text, std::size_t size) noexcept = 0;

 protected:
  ~TextSink() = default;
};

/// One config format's reader. Created by a plugin factory (see registrar.hpp), owned by the
/// host. Thread-safe: keeps no per-call state.
class ConfigAdapter {
 public:
  virtual ~ConfigAdapter() = default;

  /// How surely `config_json` (a UTF-8 JSON object's text) is this adapter's format: 0 means
  /// not at all; the host takes the highest score. Never fails.
  virtual std::int32_t score(const char* config_json) const noexcept = 0;

  /// Writes the native-format translation of `config_json` to `out`. On failure the Status
  /// names the key and value it cannot translate (an unknown key is such a failure).
  virtual Status translate(const char* config_json, TextSink* out) const noexcept = 0;
};

}  // namespace mambakit::sdk
