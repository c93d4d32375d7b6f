// Fuzz target: token-input JSON files (`forward --input`, `generate --input`), equal-length and
// ragged.

#include "../../apps/mambakit/token_input.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static mambakit::fuzz::ScratchFile scratch("tokens.json");
  const auto& path = scratch.write(mambakit::fuzz::as_text(data, size));
  mambakit::fuzz::expect_clean_errors([&] {
    const auto tokens = mambakit::cli::read_token_file(path);
    mambakit::fuzz::require(tokens.batch > 0 && tokens.length > 0, "a token batch is never empty");
    mambakit::fuzz::require(static_cast<std::int64_t>(tokens.ids.size()) == tokens.batch * tokens.length,
                            "a token batch holds batch x length ids");
  });
  mambakit::fuzz::expect_clean_errors([&] {
    for (const auto& row : mambakit::cli::read_ragged_token_file(path)) {
      mambakit::fuzz::require(!row.empty(), "a ragged row is never empty");
    }
  });
  return 0;
}
