// Tokenizer: text <-> token ids from a GGUF vocabulary. SentencePiece-style ("llama": Llama,
// TinyLlama, Mistral) and byte-level BPE ("gpt2" with the model's pre-tokenizer, e.g. SmolLM2's
// "smollm"); control tokens are matched in text when asked; decoding streams valid UTF-8.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/gguf.h"
#include "util/result.h"

namespace hlm {

// GGUF token types (tokenizer.ggml.token_type).
enum TokenType : int32_t {
  kTokenUndefined = 0,
  kTokenNormal = 1,
  kTokenUnknown = 2,
  kTokenControl = 3,
  kTokenUserDefined = 4,
  kTokenUnused = 5,
  kTokenByte = 6,
};

// A vocabulary given field by field: what from_gguf reads from tokenizer.ggml.*, and what tests
// build by hand. Unset optionals take llama.cpp's defaults for the model type.
struct VocabSpec {
  std::string name;                 // for error messages (the file path for GGUF vocabularies)
  std::string model = "llama";      // "llama" (SentencePiece) or "gpt2" (byte-level BPE)
  std::string pre;                  // gpt2 pre-tokenizer: "smollm", "gpt-2", "llama3", "default"
  std::vector<std::string> tokens;  // id -> text
  std::vector<float> scores;        // llama: merge priority (higher first); empty = all 0
  std::vector<int32_t> types;       // TokenType per id; empty = all normal
  std::vector<std::string> merges;  // gpt2: "left right", rank = index
  std::optional<int32_t> bos, eos, unk, eot, eom, pad;
  std::optional<bool> add_bos, add_eos, add_space_prefix;
};

class Tokenizer {
 public:
  // Reads tokenizer.ggml.* metadata. Errors name the file and the missing/invalid key.
  static Result<Tokenizer> from_gguf(const GgufFile& file);
  // Builds a tokenizer from an explicit vocabulary. Errors name spec.name and the problem.
  static Result<Tokenizer> from_vocab(VocabSpec spec);

  Tokenizer();
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // add_special: prepend BOS (and append EOS) as the vocabulary's add_bos/add_eos flags say.
  // parse_special: recognise control tokens such as "<|im_start|>" written in the text.
  // Same contract as llama.cpp's llama_tokenize(add_special, parse_special).
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

  // The raw bytes a token stands for (byte tokens become their byte; SentencePiece's U+2581
  // becomes a space). Control tokens render as their text only when `special` is true.
  std::string token_to_piece(int32_t id, bool special = false) const;
  // As llama_detokenize(remove_special=false, unparse_special=special): SentencePiece's prefix
  // space is dropped from the first token, and BPE vocabularies whose pre-tokenizer asks for it
  // get llama.cpp's space clean-up (" ." -> "."). decode(encode(s, false, ...)) == s otherwise.
  std::string decode(std::span<const int32_t> ids, bool special = false) const;

  int32_t n_vocab() const;
  int32_t bos() const;  // -1 when the vocabulary has none
  int32_t eos() const;
  int32_t eot() const;            // -1 when none (e.g. <|im_end|>, <|eot_id|> detected by text)
  bool is_eog(int32_t id) const;  // end of generation: eos, eot, <|im_end|> and the like
  bool add_bos() const;
  // llama.cpp's space clean-up on decode (" ." -> "."), on for most BPE vocabularies.
  bool clean_spaces() const;
  const std::string& model_type() const;  // "llama" or "gpt2"
  const std::string& pre_type() const;    // pre-tokenizer name, e.g. "smollm"
  const std::string& token_text(int32_t id) const;
  int32_t token_type(int32_t id) const;  // TokenType as stored (kTokenUndefined if bad id)
  int32_t find_token(std::string_view text) const;  // exact text -> id, or -1

  // A hash over the token texts and types: equal fingerprints mean two models share a vocabulary.
  uint64_t fingerprint() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Feeds token pieces and returns only complete UTF-8 sequences, holding back a partial one at
// the end. Bytes that can never form a valid sequence are replaced by U+FFFD as they are seen.
class Utf8Stream {
 public:
  std::string push(std::string_view bytes);
  std::string flush();  // whatever is left, with invalid bytes replaced by U+FFFD
  bool has_pending() const { return !pending_.empty(); }

 private:
  std::string pending_;
};

// Vocabulary compatibility between two models (same size, same texts and types, same specials).
// Error names both files and the first difference.
Status check_vocab_compatible(const Tokenizer& a, const std::string& a_name, const Tokenizer& b,
                              const std::string& b_name);

// Chat templates for the supported families, detected from tokenizer.chat_template.
struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

enum class ChatFormat { ChatML, Llama2, Zephyr, Mistral, Llama3, Gemma };

class ChatTemplate {
 public:
  // Detects the format from the template text (and falls back to the vocabulary's specials).
  static Result<ChatTemplate> from_gguf(const GgufFile& file, const Tokenizer& tok);
  // Detects the format from template text alone; `name` is used in the error message.
  static Result<ChatTemplate> from_template(const std::string& tmpl, const std::string& name);
  // default_system: inserted as the first message when the conversation has no system message
  // (SmolLM2's template does this). eos_text: Zephyr's end-of-turn ("</s>" for TinyLlama).
  explicit ChatTemplate(ChatFormat f, std::string default_system = {},
                        std::string eos_text = "</s>")
      : format_(f), default_system_(std::move(default_system)), eos_text_(std::move(eos_text)) {}

  ChatFormat format() const { return format_; }
  const std::string& default_system() const { return default_system_; }
  // The prompt text for these messages, ending with the assistant turn's opening. Matches
  // llama.cpp's llama_chat_apply_template for the detected variant; BOS is not included (the
  // tokenizer adds it when the vocabulary asks).
  std::string apply(const std::vector<ChatMessage>& messages,
                    bool add_generation_prompt = true) const;

 private:
  // Variants within a family, as llama.cpp tells them apart.
  enum class Variant {
    kPlain,
    kLlama2Sys,
    kLlama2SysBos,
    kLlama2SysStrip,
    kMistralV1,
    kMistralV3,
    kMistralV3Tekken,
    kMistralV7
  };
  ChatFormat format_;
  std::string default_system_;
  std::string eos_text_;
  Variant variant_ = Variant::kPlain;
};

}  // namespace hlm
