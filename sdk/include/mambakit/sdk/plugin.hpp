#pragma once
/// \file
/// The plugin entry point: one exported Boost.DLL alias returning a versioned PluginInfo.
///
/// A plugin source file does:
///   static mambakit::sdk::Status register_components(mambakit::sdk::Registrar& registrar) noexcept {
///     return registrar.add_mixer("my_mixer", "one line of help",
///                                &mambakit::sdk::create_component<mambakit::sdk::Mixer, MyMixer>);
///   }
///   MAMBAKIT_PLUGIN("my_plugin", "1.0.0", register_components)

#include <boost/dll/alias.hpp>
#include <cstdint>

#include "mambakit/sdk/guard.hpp"
#include "mambakit/sdk/registrar.hpp"
#include "mambakit/sdk/status.hpp"

namespace mambakit::sdk {

/// ABI major version: changes when an interface changes incompatibly. The host refuses a
/// plugin whose major differs from its own.
inline constexpr std::uint32_t kAbiMajor = 2;
/// ABI minor version: grows when something is appended. The host refuses a plugin built
/// against a newer minor than its own, records each plugin's minor, and never calls a method
/// appended after it. History of major 2: 2.0 the interfaces; 2.1 Mixer::initialize(),
/// Head::initialize() and Head::class_name(); 2.2 ParamSpec::linear_weight and int8 weights
/// (DType::kI8, DType::kQ8, quantized.hpp); 2.3 state that grows with the sequence
/// (Mixer::state_token_axis()) and the rows' positions in the mixers' arguments.
inline constexpr std::uint32_t kAbiMinor = 3;

#define MAMBAKIT_SDK_STRINGIFY_INNER(x) #x
#define MAMBAKIT_SDK_STRINGIFY(x) MAMBAKIT_SDK_STRINGIFY_INNER(x)
#if defined(__x86_64__)
#define MAMBAKIT_SDK_ARCH "x86_64"
#elif defined(__aarch64__)
#define MAMBAKIT_SDK_ARCH "aarch64"
#else
#define MAMBAKIT_SDK_ARCH "unknown-arch"
#endif
#if defined(__GXX_ABI_VERSION)
/// What decides whether vtables match across the boundary: the C++ ABI family and the CPU.
#define MAMBAKIT_TOOLCHAIN_TAG "itanium-c++abi/" MAMBAKIT_SDK_ARCH
#elif defined(_MSC_VER)
#define MAMBAKIT_TOOLCHAIN_TAG "msvc-c++abi/" MAMBAKIT_SDK_ARCH
#else
#define MAMBAKIT_TOOLCHAIN_TAG "unknown-c++abi/" MAMBAKIT_SDK_ARCH
#endif

/// What a plugin's entry returns. The host reads abi_major, abi_minor and toolchain before
/// anything else and calls no function of a plugin whose numbers do not match its own.
/// All pointers refer to static storage in the plugin.
struct PluginInfo {
  std::uint32_t abi_major = 0;
  std::uint32_t abi_minor = 0;
  const char* toolchain = nullptr;  ///< MAMBAKIT_TOOLCHAIN_TAG at the plugin's build
  const char* name = nullptr;       ///< the plugin's name, e.g. "s6"
  const char* version = nullptr;    ///< the plugin's own version, e.g. "1.2.0"
  /// Registers the plugin's components; called once per load, from the loading thread.
  Status (*register_components)(Registrar& registrar) noexcept = nullptr;
};

/// Signature of the exported entry.
using PluginEntry = const PluginInfo*();

/// Name of the exported Boost.DLL alias of the entry.
inline constexpr const char* kPluginEntrySymbol = "mambakit_plugin_info";

}  // namespace mambakit::sdk

/// Defines and exports the plugin entry. NAME and VERSION are string literals; REGISTER is a
/// function `mambakit::sdk::Status (mambakit::sdk::Registrar&) noexcept`. Use once per plugin.
#define MAMBAKIT_PLUGIN(NAME, VERSION, REGISTER)                                                      \
  namespace mambakit_plugin_entry {                                                                   \
  const ::mambakit::sdk::PluginInfo* plugin_info() {                                                  \
    static const ::mambakit::sdk::PluginInfo info{::mambakit::sdk::kAbiMajor, ::mambakit::sdk::kAbiMinor, \
                                                  MAMBAKIT_TOOLCHAIN_TAG, NAME, VERSION, &REGISTER};  \
    return &info;                                                                                     \
  }                                                                                                   \
  }                                                                                                   \
  BOOST_DLL_ALIAS(mambakit_plugin_entry::plugin_info, mambakit_plugin_info)
