#include "fixtures.hpp"

#include "mambakit/config.hpp"
#include "mambakit/sdk/mixer.hpp"
#include "mambakit/sdk/ssd_kernel.hpp"

#include <map>
#include <memory>
#include <mutex>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace mambakit::test {

std::vector<std::filesystem::path> model_fixture_dirs() {
  std::vector<std::filesystem::path> dirs;
  for (const auto& entry : std::filesystem::directory_iterator(data_dir() / "models")) {
    if (entry.is_directory()) dirs.push_back(entry.path());
  }
  std::sort(dirs.begin(), dirs.end());
  if (dirs.empty()) throw std::runtime_error("no model fixtures under " + (data_dir() / "models").string());
  return dirs;
}

std::vector<std::filesystem::path> model_fixture_dirs_on(sdk::DeviceType device) {
  std::vector<std::filesystem::path> dirs;
  for (const auto& dir : model_fixture_dirs()) {
    const ModelConfig config = load_model_config(dir / "config.json", in_tree_plugins());
    bool runs = true;
    for (std::int64_t layer = 0; layer < config.n_layer && runs; ++layer) {
      sdk::MixerCapabilities capabilities;
      in_tree_plugins().create_mixer(config.mixer_of_layer(layer).name, mixer_config_json(config, layer))
          ->capabilities(&capabilities);
      runs = (capabilities.devices & sdk::device_bit(device)) != 0;
    }
    if (runs) dirs.push_back(dir);
  }
  return dirs;
}

const PluginHost& in_tree_plugins() {
  static PluginHost host;
  static const bool loaded = [] {
    host.load_directory(PluginHost::default_plugin_dir());
    if (!host.failures().empty()) throw std::runtime_error("in-tree plugin failed: " + host.failures().front().reason);
    return true;
  }();
  (void)loaded;
  return host;
}

std::vector<std::string> cpu_scan_names() {
  std::vector<std::string> names;
  for (const auto& name : scan_names(in_tree_plugins())) {
    sdk::ScanCapabilities capabilities;
    create_scan(in_tree_plugins(), name)->capabilities(&capabilities);
    if ((capabilities.devices & sdk::device_bit(sdk::DeviceType::kCpu)) != 0) names.push_back(name);
  }
  return names;
}

std::vector<KernelChoice> cpu_kernel_choices() {
  std::vector<KernelChoice> choices;
  for (const auto& name : cpu_scan_names()) {
    choices.push_back({std::string(sdk::kSelectiveScanKind) + "/" + name, scan_choice(name)});
  }
  for (const auto& name : in_tree_plugins().kernel_names(sdk::kSsdKind)) {  // all run on the CPU
    choices.push_back({std::string(sdk::kSsdKind) + "/" + name, {{sdk::kSsdKind, name}}});
  }
  return choices;
}

double max_abs_difference(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) {
    throw std::runtime_error("compared arrays differ in size: " + std::to_string(a.size()) + " vs " +
                             std::to_string(b.size()));
  }
  double worst = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double difference = std::abs(static_cast<double>(a[i]) - b[i]);
    worst = std::isnan(difference) ? INFINITY : std::max(worst, difference);
  }
  return worst;
}

TokenBatch fixture_tokens(const SafetensorsFile& expected, std::int64_t length) {
  const std::string name = "tokens.L" + std::to_string(length);
  const auto& entry = expected.at(name);
  TokenBatch tokens{entry.shape[0], entry.shape[1], {}};
  for (float v : expected.read_f32(name)) tokens.ids.push_back(static_cast<std::int32_t>(v));
  return tokens;
}

TokenBatch two_row_prompt(std::int64_t vocab) {
  TokenBatch tokens{2, 9, {}};
  for (int i = 0; i < 18; ++i) tokens.ids.push_back(static_cast<std::int32_t>((i * 5 + 1) % vocab));
  return tokens;
}

TokenBatch slice(const TokenBatch& tokens, std::int64_t begin, std::int64_t end) {
  TokenBatch part{tokens.batch, end - begin, {}};
  for (std::int64_t b = 0; b < tokens.batch; ++b) {
    for (std::int64_t t = begin; t < end; ++t) part.ids.push_back(tokens.ids[static_cast<std::size_t>(b * tokens.length + t)]);
  }
  return part;
}

std::vector<std::string> scan_names(const PluginHost& host) { return host.kernel_names(sdk::kSelectiveScanKind); }

ScanPtr create_scan(const PluginHost& host, const std::string& name, const std::string& config_json) {
  return kernel_as<sdk::ScanBackend>(host.create_kernel(sdk::kSelectiveScanKind, name, config_json));
}

namespace {

class FixedKernel final : public sdk::KernelProvider {
 public:
  explicit FixedKernel(sdk::Kernel* kernel) : kernel_(kernel) {}
  sdk::Status find(const char*, const sdk::KernelProblem&, sdk::Kernel** out) noexcept override {
    *out = kernel_;
    return sdk::Status::success();
  }

 private:
  sdk::Kernel* kernel_;
};

}  // namespace

sdk::KernelProvider* fixed_kernels(sdk::Kernel* kernel) {
  static std::mutex mutex;
  static std::map<sdk::Kernel*, std::unique_ptr<FixedKernel>> providers;
  const std::lock_guard<std::mutex> lock(mutex);
  auto& provider = providers[kernel];
  if (!provider) provider = std::make_unique<FixedKernel>(kernel);
  return provider.get();
}

sdk::Context kernel_context(sdk::Kernel& kernel, sdk::WorkspaceAllocator& workspace, int threads) {
  sdk::Context context;
  context.kernels = fixed_kernels(&kernel);
  context.workspace = &workspace;
  context.n_threads = threads;
  return context;
}

std::map<std::string, std::string> scan_choice(const std::string& name) { return {{sdk::kSelectiveScanKind, name}}; }

}  // namespace mambakit::test
