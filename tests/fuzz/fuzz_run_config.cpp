// Fuzz target: run configs (`mambakit train --config`), parsed from any text.

#include "fuzz_support.hpp"
#include "mambakit/trainer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(mambakit::fuzz::as_text(data, size));
  mambakit::fuzz::expect_clean_errors([&] { (void)mambakit::parse_run_config(text, "fuzz run config"); });
  return 0;
}
