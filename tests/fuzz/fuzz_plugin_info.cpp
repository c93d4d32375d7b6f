// Fuzz target: what the host checks of a plugin before and while registering it: the
// PluginInfo its entry returns (ABI, toolchain, names) and the component names and kinds its
// register function passes. The input is split into fields; any of them may be missing.

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "../../framework/src/plugins/plugin_library.hpp"
#include "../../framework/src/plugins/staging_registrar.hpp"
#include "fuzz_support.hpp"

namespace {

namespace sdk = mambakit::sdk;

// Reads the input as fields separated by NUL bytes; a field that starts with 0x01 is absent
// (a null pointer).
class Fields {
 public:
  Fields(const std::uint8_t* data, std::size_t size) : text_(mambakit::fuzz::as_text(data, size)) {}

  std::optional<std::string> next() {
    if (at_ > text_.size()) return std::nullopt;
    const auto end = std::min(text_.find('\0', at_), text_.size());
    std::string field(text_.substr(at_, end - at_));
    at_ = end + 1;
    if (!field.empty() && field[0] == '\x01') return std::nullopt;
    return field;
  }
  std::uint32_t number() {
    const auto field = next();
    std::uint32_t value = 0;
    if (field) for (const char c : *field) value = value * 31 + static_cast<unsigned char>(c);
    return value;
  }

 private:
  std::string_view text_;
  std::size_t at_ = 0;
};

const char* c_str(const std::optional<std::string>& field) { return field ? field->c_str() : nullptr; }

sdk::Status refuse_mixer(const char*, sdk::Mixer**) noexcept {
  return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "not made");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Fields fields(data, size);
  const auto toolchain = fields.next(), name = fields.next(), version = fields.next();
  const std::uint32_t abi = fields.number();
  sdk::PluginInfo info;
  info.abi_major = (abi & 1) ? abi >> 1 : sdk::kAbiMajor;
  info.abi_minor = (abi & 2) ? abi >> 2 : sdk::kAbiMinor;
  info.toolchain = (toolchain && toolchain->empty()) ? MAMBAKIT_TOOLCHAIN_TAG : c_str(toolchain);
  info.name = c_str(name);
  info.version = c_str(version);
  info.register_components = [](sdk::Registrar&) noexcept { return sdk::Status::success(); };
  mambakit::fuzz::expect_clean_errors([&] { mambakit::plugins::check_plugin_info(info); });

  mambakit::ComponentInfo plugin;
  plugin.plugin_name = name.value_or("fuzz");
  mambakit::plugins::StagingRegistrar registrar(plugin);
  while (true) {
    const auto kind = fields.next();
    if (!kind) break;
    const auto kernel_kind = fields.next(), component = fields.next(), help = fields.next();
    const bool has_factory = !kind->empty() && (static_cast<unsigned char>(kind->front()) & 1) != 0;
    switch (kind->empty() ? 0 : static_cast<unsigned char>(kind->front()) % 4) {
      case 0:
        (void)registrar.add_mixer(c_str(component), c_str(help),
                                  has_factory ? &refuse_mixer : nullptr);
        break;
      case 1: (void)registrar.add_head(c_str(component), c_str(help), nullptr); break;
      case 2: (void)registrar.add_kernel(c_str(kernel_kind), c_str(component), c_str(help), nullptr); break;
      default: (void)registrar.add_config_adapter(c_str(component), c_str(help), nullptr); break;
    }
  }
  for (const auto& staged : registrar.staged()) {
    mambakit::fuzz::require(!staged.info.name.empty(), "a staged component has a name");
  }
  return 0;
}
