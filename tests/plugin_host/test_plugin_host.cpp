// The plugin host: loading, ABI checks, registration rules, errors, auto selection, lifetime.

#include <catch2/catch.hpp>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "mambakit/config.hpp"
#include "mambakit/error.hpp"
#include "mambakit/model.hpp"
#include "mambakit/plugin_host.hpp"
#include "mambakit/sdk/plugin.hpp"
#include "fixtures.hpp"
#include "mambakit/sdk/plugin.hpp"
#include "mambakit/sdk/scan_calls.hpp"

namespace fs = std::filesystem;
using mambakit::ComponentKind;
using mambakit::PluginHost;
using Catch::Matchers::Contains;

namespace {

fs::path fixture_dir(const std::string& name) { return fs::path(MAMBAKIT_FIXTURE_PLUGIN_DIR) / name; }

bool has_component(const PluginHost& host, ComponentKind kind, const std::string& name) {
  const auto names = kind == ComponentKind::kKernel ? host.kernel_names(mambakit::sdk::kSelectiveScanKind) : host.names(kind);
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::string only_failure(const PluginHost& host) {
  REQUIRE(host.failures().size() == 1);
  return host.failures().front().reason;
}

mambakit::sdk::KernelProblem cpu_problem(std::int64_t length) {
  return mambakit::sdk::selective_scan_problem(mambakit::sdk::Device{}, mambakit::sdk::DType::kF32, 1, length, 8, 4);
}

mambakit::KernelChoice choose_scan(const PluginHost& host, const std::string& name,
                                   const mambakit::sdk::KernelProblem& problem) {
  return host.choose_kernel(mambakit::sdk::kSelectiveScanKind, name, problem);
}

}  // namespace

TEST_CASE("the in-tree plugins load from the default folder beside the library") {
  PluginHost host;
  REQUIRE(fs::is_directory(PluginHost::default_plugin_dir()));
  host.load_directory(PluginHost::default_plugin_dir());
  CHECK(host.failures().empty());
  CHECK(has_component(host, ComponentKind::kKernel, "sequential"));
}

TEST_CASE("a good plugin's components are listed with their file and version") {
  PluginHost host;
  REQUIRE(host.load_directory(fixture_dir("good")) == 1);
  CHECK(host.failures().empty());
  const auto components = host.components();
  REQUIRE(components.size() == 2);
  CHECK(components[0].key() == "mixer/test_affine");
  CHECK(components[1].key() == "selective_scan/test_scored");
  CHECK(components[1].abi_minor == mambakit::sdk::kAbiMinor);
  CHECK(components[0].plugin_name == "test-good");
  CHECK(components[0].plugin_version == "2.3.4");
  CHECK(components[0].file.filename() == "libmambakit-test-good.so");
  CHECK(components[0].help == "test: y = w x + b");
}

TEST_CASE("a plugin built for another ABI major is refused with both versions named") {
  PluginHost host;
  CHECK(host.load_directory(fixture_dir("wrong_abi")) == 0);
  const std::string reason = only_failure(host);
  const std::string own = "ABI " + std::to_string(mambakit::sdk::kAbiMajor) + "." + std::to_string(mambakit::sdk::kAbiMinor);
  CHECK_THAT(reason, Contains("ABI 3.0") && Contains(own));
  CHECK(host.components().empty());
}

TEST_CASE("a library without the entry symbol is reported and skipped") {
  PluginHost host;
  CHECK(host.load_directory(fixture_dir("no_entry")) == 0);
  CHECK_THAT(only_failure(host), Contains("mambakit_plugin_info"));
  CHECK(host.components().empty());
}

TEST_CASE("a file that is not a shared library is reported and skipped") {
  PluginHost host;
  host.load_directory(fixture_dir("not_a_library"));
  CHECK_THAT(only_failure(host), Contains("not a shared library (the file is not an ELF object)"));
  host.load_directory(fixture_dir("good"));
  CHECK(has_component(host, ComponentKind::kMixer, "test_affine"));
}

TEST_CASE("missing files and folders are reported, not fatal") {
  PluginHost host;
  CHECK_FALSE(host.load_file(fixture_dir("good") / "no-such-plugin.so"));
  CHECK(host.load_directory(fixture_dir("no-such-folder")) == 0);
  CHECK(host.failures().size() == 2);
}

TEST_CASE("a throwing factory becomes an error and the host survives") {
  PluginHost host;
  host.load_directory(fixture_dir("throwing"));
  host.load_directory(PluginHost::default_plugin_dir());
  REQUIRE(host.failures().empty());
  CHECK_THROWS_WITH(mambakit::test::create_scan(host, "test_throwing"),
                    Contains("scan/test_throwing") && Contains("constructor exploded"));
  CHECK_THROWS_WITH(mambakit::test::create_scan(host, "test_rejecting", R"({"width": 3})"),
                    Contains("bad key 'width'") && Contains(R"({"width": 3})"));
  CHECK(mambakit::test::create_scan(host, "sequential") != nullptr);
}

TEST_CASE("a duplicate key refuses the second plugin, naming both files") {
  PluginHost host;
  host.load_directory(PluginHost::default_plugin_dir());
  host.load_directory(fixture_dir("duplicate"));
  const std::string reason = only_failure(host);
  CHECK_THAT(reason, Contains("scan/sequential") && Contains("libmambakit-scan-sequential.so") &&
                         Contains("libmambakit-test-duplicate.so"));
  CHECK_FALSE(has_component(host, ComponentKind::kKernel, "test_unique_before_duplicate"));
}

TEST_CASE("a registration that fails halfway registers nothing") {
  PluginHost host;
  host.load_directory(fixture_dir("failing_registration"));
  CHECK_THAT(only_failure(host), Contains("Bad Name!"));
  CHECK(host.components().empty());
}

TEST_CASE("loading the same file twice registers it once") {
  PluginHost host;
  host.load_directory(fixture_dir("good"));
  CHECK(host.load_file(fixture_dir("good") / "libmambakit-test-good.so"));
  CHECK(host.failures().empty());
  CHECK(host.components().size() == 2);
}

TEST_CASE("MAMBAKIT_PLUGIN_PATH folders are loaded with the standard locations") {
  const std::string value = fixture_dir("good").string() + ":" + fixture_dir("no-such-folder").string();
  REQUIRE(setenv("MAMBAKIT_PLUGIN_PATH", value.c_str(), 1) == 0);
  PluginHost host;
  host.load_standard_locations();
  unsetenv("MAMBAKIT_PLUGIN_PATH");
  CHECK(has_component(host, ComponentKind::kMixer, "test_affine"));
  CHECK(has_component(host, ComponentKind::kKernel, "sequential"));
  CHECK_THAT(only_failure(host), Contains("does not exist"));
}

TEST_CASE("an unknown component name lists the available ones") {
  PluginHost host;
  host.load_directory(PluginHost::default_plugin_dir());
  host.load_directory(fixture_dir("good"));
  CHECK_THROWS_WITH(mambakit::test::create_scan(host, "warp"), Contains("unknown selective_scan kernel 'warp'") && Contains("sequential") &&
                                                  Contains("test_scored"));
  PluginHost only_good;
  only_good.load_directory(fixture_dir("good"));
  CHECK_THROWS_WITH(only_good.create_head("lm", "{}"), Contains("unknown head 'lm'") && Contains("(none"));
}

TEST_CASE("auto picks the highest-scoring backend that can run the problem") {
  PluginHost host;
  host.load_file(PluginHost::default_plugin_dir() / "libmambakit-scan-sequential.so");
  host.load_directory(fixture_dir("good"));
  CHECK(choose_scan(host, "auto", cpu_problem(50)).name == "sequential");
  CHECK(choose_scan(host, "auto", cpu_problem(500)).name == "test_scored");
  CHECK(choose_scan(host, "sequential", cpu_problem(500)).name == "sequential");

  auto on_gpu = cpu_problem(500);
  on_gpu.device.type = mambakit::sdk::DeviceType::kCuda;
  CHECK_THROWS_WITH(choose_scan(host, "auto", on_gpu), Contains("sequential=0") && Contains("test_scored=0"));
  CHECK_THROWS_WITH(choose_scan(host, "sequential", on_gpu),
                    Contains("no selective_scan kernel can run") && Contains("sequential=0"));
}

TEST_CASE("an older-minor plugin is recorded as such and never called past its minor") {
  PluginHost host;
  host.load_standard_locations();
  REQUIRE(host.load_directory(fixture_dir("older_minor")) == 1);
  const auto components = host.components();
  const auto old = std::find_if(components.begin(), components.end(),
                                [](const mambakit::ComponentInfo& info) { return info.name == "test_old_minor"; });
  REQUIRE(old != components.end());
  CHECK(old->abi_minor == 0);
  CHECK(mambakit::abi_minor(host.create_mixer("s6", R"({"d_model": 8})")) == mambakit::sdk::kAbiMinor);
  CHECK(mambakit::abi_minor(host.create_mixer("test_old_minor", R"({"d_model": 8})")) == 0);

  mambakit::ModelConfig config;
  config.head = {"lm", "{}"};
  config.d_model = 8;
  config.n_layer = 2;
  config.vocab_size = 16;
  config.mixer = {"test_old_minor", "{}"};
  // Nothing to initialise itself: the model is made, and initialize() (which aborts) is not called.
  auto model = mambakit::Model::create(config, host);
  CHECK(model.parameter_values("backbone.layers.1.mixer.weight") == std::vector<float>(8, 1.0f));
  // A parameter only initialize() can fill: refused with the plugin's minor, not called.
  config.mixer = {"test_old_minor", R"({"self_init":true})"};
  CHECK_THROWS_WITH(mambakit::Model::create(config, host),
                    Contains("layer 0 mixer/test_old_minor") && Contains("ABI minor 0") && Contains("initialize()"));
}

TEST_CASE("objects keep their plugin loaded after the host is gone") {
  auto host = std::make_unique<PluginHost>();
  host->load_directory(fixture_dir("good"));
  host->load_directory(PluginHost::default_plugin_dir());
  mambakit::MixerPtr mixer = host->create_mixer("test_affine", R"({"d_model": 2})");
  mambakit::test::ScanPtr scan = mambakit::test::create_scan(*host, "sequential");
  host.reset();

  // The mixer still runs: y = w x + b per channel.
  float weight[2] = {2.0f, -1.0f}, bias[2] = {0.5f, 0.25f}, x[4] = {1, 2, 3, 4}, y[4] = {};
  const mambakit::sdk::TensorView params[2] = {mambakit::sdk::make_view(weight, {2}),
                                               mambakit::sdk::make_view(bias, {2})};
  mambakit::sdk::MixerForwardArgs mixer_args;
  mixer_args.params = params;
  mixer_args.x = mambakit::sdk::make_view(x, {1, 2, 2});
  mixer_args.y = mambakit::sdk::make_view(y, {1, 2, 2});
  REQUIRE(mixer->forward(mambakit::sdk::Context{}, mixer_args).ok());
  CHECK(y[0] == 2.5f);
  CHECK(y[1] == -1.75f);
  CHECK(y[3] == -3.75f);

  // So does the scan: one channel, one state, no softplus, two steps (worked by hand):
  // h0 = 0.5*2*1 = 1, y0 = 3*1 + 0.1*1 = 3.1; h1 = exp(-0.5)*1 + 0.5*2*1, y1 = 3 h1 + 0.1.
  float u[2] = {1, 1}, delta[2] = {0.5f, 0.5f}, a[1] = {-1}, b[2] = {2, 2}, c[2] = {3, 3}, d[1] = {0.1f}, out[2] = {};
  mambakit::sdk::ScanForwardArgs scan_args;
  scan_args.u = mambakit::sdk::make_view(u, {1, 2, 1});
  scan_args.delta = mambakit::sdk::make_view(delta, {1, 2, 1});
  scan_args.A = mambakit::sdk::make_view(a, {1, 1});
  scan_args.B = mambakit::sdk::make_view(b, {1, 2, 1});
  scan_args.C = mambakit::sdk::make_view(c, {1, 2, 1});
  scan_args.D = mambakit::sdk::make_view(d, {1});
  scan_args.delta_softplus = false;
  scan_args.y = mambakit::sdk::make_view(out, {1, 2, 1});
  mambakit::sdk::Context context;
  context.kernels = mambakit::test::fixed_kernels(scan.get());
  REQUIRE(mambakit::sdk::selective_scan_forward(context, scan_args).ok());
  CHECK(out[0] == Approx(3.1));
  CHECK(out[1] == Approx(3.0 * (std::exp(-0.5) + 1.0) + 0.1));

  mixer.reset();
  scan.reset();
}
