// mambakit::check_component (`mambakit check-plugin`): every in-tree mixer and head conforms,
// and each flaw of test_flawed fails the check that holds its contract (and only the checks
// that follow from it).

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "fixtures.hpp"
#include "mambakit/conformance.hpp"
#include "mambakit/plugin_host.hpp"

using Catch::Matchers::Contains;

namespace {

std::string failed_checks(const std::vector<mambakit::ConformanceCheck>& checks) {
  std::string names;
  for (const auto& check : checks) {
    if (!check.passed) names += "[" + check.name + ": " + check.detail + "]";
  }
  return names;
}

}  // namespace

TEST_CASE("every in-tree mixer and head conforms") {
  const auto& host = mambakit::test::in_tree_plugins();
  for (const auto& kind : {mambakit::ComponentKind::kMixer, mambakit::ComponentKind::kHead}) {
    for (const auto& name : host.names(kind)) {
      const std::string key = std::string(mambakit::component_kind_name(kind)) + "/" + name;
      INFO(key);
      mambakit::ConformanceSetup setup;
      // Mamba-2's default head_dim (64) exceeds the check's d_inner (16).
      if (key == "mixer/mamba2") setup.options = R"({"head_dim": 4, "d_state": 8, "n_groups": 2})";
      // The options these mixers require: the MLP's width, the attention's heads (GQA, rotary).
      if (key == "mixer/gated_mlp") setup.options = R"({"d_intermediate": 12, "multiple_of": 4})";
      if (key == "mixer/attention") {
        setup.options = R"({"num_heads": 4, "num_heads_kv": 2, "rotary_emb_dim": 2, "causal": true})";
      }
      const auto checks = mambakit::check_component(host, key, setup);
      CHECK(checks.size() >= 5);
      CHECK(failed_checks(checks).empty());
    }
  }
  // Other options of mixer/s6: biases, no conv bias, a given rank and state size.
  mambakit::ConformanceSetup setup;
  setup.options = R"({"d_state": 4, "bias": true, "conv_bias": false, "dt_rank": 3, "d_conv": 3})";
  CHECK(failed_checks(mambakit::check_component(host, "mixer/s6", setup)).empty());
}

TEST_CASE("mixer/mamba2 conforms with biases, one group, an active dt clamp, and across chunks") {
  const auto& host = mambakit::test::in_tree_plugins();
  mambakit::ConformanceSetup setup;
  setup.options = R"({"head_dim": 8, "d_state": 4, "bias": true, "conv_bias": false, "d_conv": 3,
                      "dt_limit_min": 0.004, "dt_limit_max": 0.05})";
  CHECK(failed_checks(mambakit::check_component(host, "mixer/mamba2", setup)).empty());
  // 70 tokens: the chunked SSD kernel's chunks are 64 long.
  setup.options = R"({"head_dim": 4, "d_state": 4, "n_groups": 4})";
  setup.length = 70;
  setup.batch = 1;
  CHECK(failed_checks(mambakit::check_component(host, "mixer/mamba2", setup)).empty());
}

TEST_CASE("each flaw of a mixer fails the check of its contract") {
  mambakit::PluginHost host;
  host.load_standard_locations();
  REQUIRE(host.load_directory(std::filesystem::path(MAMBAKIT_FIXTURE_PLUGIN_DIR) / "flawed") == 1);
  auto failures = [&](const std::string& flaw) {
    mambakit::ConformanceSetup setup;
    setup.options = R"({"flaw": ")" + flaw + R"("})";
    return failed_checks(mambakit::check_component(host, "mixer/test_flawed", setup));
  };
  CHECK(failures("none").empty());
  CHECK_THAT(failures("gradient"), Contains("finite differences"));
  CHECK_THAT(failures("accumulate"), Contains("accumulate (+=)"));
  CHECK_THAT(failures("step"), Contains("step equals forward"));
  CHECK_THAT(failures("hidden_state"), Contains("chunked prefill") && Contains("restored"));
  CHECK_THAT(failures("threads"), Contains("1 and 2 threads"));
  CHECK_THAT(failures("lenient"), Contains("unknown option"));
  CHECK_THROWS_WITH(mambakit::check_component(host, "scan/sequential"), Contains("mixer or head"));
  const auto missing = mambakit::check_component(host, "mixer/no_such_mixer");
  REQUIRE(missing.size() == 1);
  CHECK_THAT(missing[0].detail, Contains("unknown mixer 'no_such_mixer'"));
}
