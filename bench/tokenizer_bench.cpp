// Tokenizer throughput: loads a tokenizer.json (GPT-NeoX-20B's by default) and encodes a large
// text (the files given, else /usr/share/common-licenses/* concatenated and repeated to at
// least 16 MB), printing load time, encode and decode MB/s.
//
//   tokenizer_bench [--tokenizer tokenizer.json] [--mb N] [file...]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "mambakit/tokenizer.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

std::string read_file(const fs::path& path) {
  std::ifstream stream(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(stream), std::istreambuf_iterator<char>()};
}

}  // namespace

int main(int argc, char** argv) {
  try {
    fs::path tokenizer_path = fs::path(MAMBAKIT_SOURCE_DIR) / "tests/data/tokenizers/gpt-neox-20b/tokenizer.json";
    double target_mb = 16;
    std::vector<fs::path> files;
    for (int i = 1; i < argc; ++i) {
      const std::string_view arg = argv[i];
      if (arg == "--tokenizer" && i + 1 < argc) {
        tokenizer_path = argv[++i];
      } else if (arg == "--mb" && i + 1 < argc) {
        target_mb = std::atof(argv[++i]);
      } else {
        files.emplace_back(arg);
      }
    }
    if (files.empty()) {
      for (const auto& entry : fs::directory_iterator("/usr/share/common-licenses")) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
      std::sort(files.begin(), files.end());
    }
    std::string corpus;
    for (const fs::path& file : files) corpus += read_file(file);
    if (corpus.empty()) {
      std::fprintf(stderr, "tokenizer_bench: no text to encode\n");
      return 1;
    }
    const std::size_t unique_bytes = corpus.size();
    const auto target_bytes = static_cast<std::size_t>(target_mb * 1e6);
    std::string text;
    while (text.size() < target_bytes) text += corpus;

    const auto load_start = Clock::now();
    const auto tokenizer = mambakit::load_tokenizer_json(tokenizer_path);
    const double load_s = seconds_since(load_start);

    const auto cold_start = Clock::now();
    const std::size_t cold_tokens = tokenizer->encode(corpus).size();
    const double cold_s = seconds_since(cold_start);

    const auto encode_start = Clock::now();
    const std::vector<std::int32_t> ids = tokenizer->encode(text);
    const double encode_s = seconds_since(encode_start);

    const auto decode_start = Clock::now();
    const std::string decoded = tokenizer->decode(ids);
    const double decode_s = seconds_since(decode_start);

    std::printf("tokenizer   %s (load %.3f s)\n", tokenizer_path.string().c_str(), load_s);
    std::printf("first pass  %.2f MB of distinct text, %zu tokens: %.1f MB/s (cold word cache)\n", unique_bytes / 1e6,
                cold_tokens, unique_bytes / 1e6 / cold_s);
    std::printf("encode      %.2f MB, %zu tokens, %.3f s: %.1f MB/s, %.2f M tokens/s\n", text.size() / 1e6, ids.size(),
                encode_s, text.size() / 1e6 / encode_s, ids.size() / 1e6 / encode_s);
    std::printf("decode      %.3f s: %.1f MB/s%s\n", decode_s, decoded.size() / 1e6 / decode_s,
                decoded == text ? "" : " (the text changed: the tokenizer normalizes it)");
    return 0;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "tokenizer_bench: %s\n", error.what());
    return 1;
  }
}
