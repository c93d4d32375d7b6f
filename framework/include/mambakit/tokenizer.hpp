#pragma once
/// \file
/// Tokenizers: text <-> token ids. A byte-level tokenizer and Hugging Face `tokenizer.json`
/// byte-level BPE tokenizers (GPT-2, GPT-NeoX-20B, the tokenizer of state-spaces/mamba-*-hf),
/// plus incremental decoding for streaming generated text.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mambakit {

/// Text <-> token ids. Implementations are immutable after construction and thread-safe: any
/// number of threads may call the const methods of one tokenizer at once.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  /// The ids of `text` (UTF-8), without BOS/EOS. The text of a special token such as
  /// "<|endoftext|>" becomes that token's id. Bytes that are not valid UTF-8 are encoded as
  /// byte tokens and never throw.
  [[nodiscard]] virtual std::vector<std::int32_t> encode(std::string_view text) const = 0;

  /// The bytes of the decoded text: the concatenation of token_text() of each id. Invalid UTF-8
  /// sequences produced by partial byte tokens are kept as bytes (callers streaming text use a
  /// DecodeStream). Ids that name no token (e.g. the padding rows of a model's embedding) decode
  /// to nothing, as in Hugging Face `tokenizers`.
  [[nodiscard]] virtual std::string decode(const std::vector<std::int32_t>& ids) const = 0;

  /// The number of ids: the largest id + 1.
  [[nodiscard]] virtual std::int64_t vocab_size() const = 0;

  /// The id of "<|endoftext|>" when the vocabulary has it.
  [[nodiscard]] virtual std::optional<std::int32_t> eos_id() const = 0;

  /// The raw bytes of one token (possibly part of a UTF-8 character); empty for an id that names
  /// no token.
  [[nodiscard]] virtual std::string token_text(std::int32_t id) const = 0;
};

/// A byte-level tokenizer: ids 0..255 are the bytes, 256 is "<|endoftext|>" (EOS); vocab 257.
/// encode() maps the text "<|endoftext|>" to 256 and every other byte to its value.
[[nodiscard]] std::unique_ptr<Tokenizer> make_byte_tokenizer();

/// Loads a Hugging Face tokenizer.json of model type BPE with a ByteLevel pre-tokenizer and
/// decoder (GPT-2, GPT-NeoX), optional NFC/NFD/NFKC/NFKD normalizer, and added tokens. The
/// post-processor is ignored (encode() adds no BOS/EOS). Throws mambakit::Error naming the file
/// and the key for a file that cannot be read, is malformed, or uses an unsupported feature.
[[nodiscard]] std::unique_ptr<Tokenizer> load_tokenizer_json(const std::filesystem::path& file);

/// The tokenizer of a model folder: its tokenizer.json when present, else a byte tokenizer when
/// the folder holds a file named `byte_tokenizer`; nullptr when it has neither. Throws as
/// load_tokenizer_json() does.
[[nodiscard]] std::unique_ptr<Tokenizer> load_model_tokenizer(const std::filesystem::path& model_dir);

/// Incremental decoding for streaming: feed ids one at a time and get the text that is complete
/// so far. push() returns only whole UTF-8 characters and holds back the bytes of a character
/// that later tokens may complete; bytes that can never become a valid character are passed
/// through as they are. The concatenation of all push() results and finish() equals
/// tokenizer.decode(ids). Not thread-safe; the tokenizer must outlive the stream.
class DecodeStream {
 public:
  explicit DecodeStream(const Tokenizer& tokenizer);

  /// Appends the token `id` and returns the newly completed text (possibly empty).
  std::string push(std::int32_t id);

  /// Returns whatever is still held back (an incomplete character at the end) and resets.
  std::string finish();

 private:
  const Tokenizer* tokenizer_;
  std::string pending_;
};

}  // namespace mambakit
