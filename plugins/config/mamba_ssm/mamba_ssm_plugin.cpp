// The config/mamba_ssm plugin: registers the config adapter of state-spaces/mamba's layout.

#include "mamba_ssm_config_adapter.hpp"
#include "mambakit/sdk/plugin.hpp"

namespace mambakit::config_mamba_ssm {

namespace {

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  return registrar.add_config_adapter(
      "mamba-ssm",
      "state-spaces/mamba config.json (MambaConfig: Mamba1/Mamba2 layers, attention layers, gated MLP; mixer/s6, "
      "mixer/mamba2, mixer/attention, mixer/gated_mlp)",
      &sdk::create_component<sdk::ConfigAdapter, MambaSsmConfigAdapter>);
}

}  // namespace
}  // namespace mambakit::config_mamba_ssm

MAMBAKIT_PLUGIN("config-mamba_ssm", "0.1.0", mambakit::config_mamba_ssm::register_components)
