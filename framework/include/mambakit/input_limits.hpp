#pragma once
/// \file
/// Limits on what mambakit reads from files, checked before anything large is allocated or
/// parsed, so a damaged or hostile file gets an error that names it instead of exhausting
/// memory or the stack. docs/RELIABILITY.md lists every limit.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace mambakit {

/// JSON documents (configs, tokenizer.json, token files, safetensors headers) may nest arrays
/// and objects at most this deep; real ones nest under 10 levels.
inline constexpr std::size_t kMaxJsonDepth = 128;

/// The largest model config or run config file read (real ones are a few kB).
inline constexpr std::uint64_t kMaxConfigFileBytes = 16ull << 20;
/// The largest tokenizer.json read (GPT-NeoX-20B's is 2.1 MB).
inline constexpr std::uint64_t kMaxTokenizerFileBytes = 512ull << 20;
/// The largest token-id JSON file read (`--input`).
inline constexpr std::uint64_t kMaxTokenFileBytes = 1ull << 30;

/// The whole of `file`, which must be a regular file of at most `max_bytes`. Throws
/// mambakit::Error naming the file and `what` (e.g. "config file") when it is missing,
/// unreadable, not a regular file, or larger than the limit.
std::string read_limited_file(const std::filesystem::path& file, std::uint64_t max_bytes, std::string_view what);

/// Throws mambakit::Error naming `source` when `text`, read as JSON, opens more than
/// kMaxJsonDepth arrays and objects at once (strings and escapes are skipped; the text need not
/// be valid JSON, which the parser checks afterwards).
void check_json_depth(std::string_view text, std::string_view source);

}  // namespace mambakit
