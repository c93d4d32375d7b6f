#pragma once
// Paths of the golden fixtures written by tools/make_fixtures.py, and a plugin host loaded
// once per test binary.

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "mambakit/model.hpp"
#include "mambakit/plugin_host.hpp"
#include "mambakit/safetensors.hpp"
#include "mambakit/sdk/scan_backend.hpp"

namespace mambakit::test {

inline std::filesystem::path data_dir() { return MAMBAKIT_TEST_DATA_DIR; }

/// The model fixture folders under tests/data/models, sorted.
std::vector<std::filesystem::path> model_fixture_dirs();

/// The model fixtures whose every mixer declares `device` (e.g. the CUDA tests leave out the
/// Mamba-2 ones, whose mixer runs on the CPU only).
std::vector<std::filesystem::path> model_fixture_dirs_on(sdk::DeviceType device);

/// A PluginHost with the in-tree plugins loaded (shared by the tests of one binary).
const PluginHost& in_tree_plugins();

/// A selective-scan kernel as its interface, owned like any plugin object.
using ScanPtr = PluginPtr<sdk::ScanBackend>;

/// The names of the loaded selective-scan kernels.
std::vector<std::string> scan_names(const PluginHost& host);

/// Creates selective-scan kernel `name` of `host` from `config_json`.
ScanPtr create_scan(const PluginHost& host, const std::string& name, const std::string& config_json = "{}");

/// A KernelProvider that hands out `kernel` for every request (stays valid for the test binary's
/// life), for contexts that run one chosen kernel.
sdk::KernelProvider* fixed_kernels(sdk::Kernel* kernel);

/// A CPU context that runs `kernel` (fixed_kernels), with `workspace` and `threads` threads.
sdk::Context kernel_context(sdk::Kernel& kernel, sdk::WorkspaceAllocator& workspace, int threads);

/// {{"selective_scan", name}}: ModelOptions::kernels that name the selective scan.
std::map<std::string, std::string> scan_choice(const std::string& name);

/// The names of the loaded scan backends that run on the CPU (all but GPU ones like scan/cuda),
/// for tests that run whole models on the CPU with every backend.
std::vector<std::string> cpu_scan_names();

/// One named CPU kernel: ModelOptions::kernels that name it, and "kind/name" for messages.
struct KernelChoice {
  std::string label;
  std::map<std::string, std::string> kernels;
};

/// Every CPU kernel of the kinds whole models use (the selective scan of Mamba-1 and the SSD
/// of Mamba-2), one choice each; the other kinds stay `auto`. For tests that run every
/// fixture with every kernel.
std::vector<KernelChoice> cpu_kernel_choices();

/// The token batch `tokens.L<length>` of a fixture's expected.safetensors.
TokenBatch fixture_tokens(const SafetensorsFile& expected, std::int64_t length);

/// Two rows of 9 token ids spread over [0, vocab): a prompt for comparing two models.
TokenBatch two_row_prompt(std::int64_t vocab);

/// Positions [begin, end) of every row of `tokens`.
TokenBatch slice(const TokenBatch& tokens, std::int64_t begin, std::int64_t end);

/// max |a - b| over two equally long arrays (throws when the sizes differ).
double max_abs_difference(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace mambakit::test
