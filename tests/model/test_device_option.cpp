// ModelOptions::device as text: parse_device() and device_name(), in every build.

#include <catch2/catch.hpp>

#include "fixtures.hpp"
#include "mambakit/error.hpp"
#include "mambakit/model.hpp"

using Catch::Matchers::Contains;
namespace sdk = mambakit::sdk;

TEST_CASE("devices parse from cpu, cuda and cuda:INDEX and print back") {
  CHECK(mambakit::parse_device("cpu") == sdk::Device{});
  CHECK(mambakit::parse_device("cuda") == sdk::Device{sdk::DeviceType::kCuda, 0});
  CHECK(mambakit::parse_device("cuda:2") == sdk::Device{sdk::DeviceType::kCuda, 2});
  CHECK(mambakit::device_name(sdk::Device{}) == "cpu");
  CHECK(mambakit::device_name(sdk::Device{sdk::DeviceType::kCuda, 1}) == "cuda:1");
  for (const char* bad : {"gpu", "", "cuda:", "cuda:-1", "cuda:1x", "CPU", "cuda:99999999"}) {
    INFO(bad);
    CHECK_THROWS_WITH(mambakit::parse_device(bad), Contains(std::string("'") + bad + "'"));
  }
}

TEST_CASE("the CUDA tests' fixtures are those whose mixers declare CUDA: none of the Mamba-2 ones") {
  const auto all = mambakit::test::model_fixture_dirs();
  CHECK(mambakit::test::model_fixture_dirs_on(mambakit::sdk::DeviceType::kCpu) == all);
  for (const auto& dir : mambakit::test::model_fixture_dirs_on(mambakit::sdk::DeviceType::kCuda)) {
    CHECK(dir.filename().string().rfind("mamba2", 0) == std::string::npos);
  }
}
