// Tokenizer: text <-> token ids from a GGUF vocabulary. SentencePiece-style ("llama": Llama,
// TinyLlama, Mistral) and byte-level BPE ("gpt2" with the model's pre-tokenizer, e.g. SmolLM2's
// "smollm"); control tokens are matched in text when asked; decoding streams valid UTF-8.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/gguf.h"
#include "util/result.h"

namespace hlm {

class Tokenizer {
 public:
  // Reads tokenizer.ggml.* metadata. Errors name the file and the missing/invalid key.
  static Result<Tokenizer> from_gguf(const GgufFile& file);

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
  std::string decode(std::span<const int32_t> ids, bool special = false) const;

  int32_t n_vocab() const;
  int32_t bos() const;  // -1 when the vocabulary has none
  int32_t eos() const;
  bool is_eog(int32_t id) const;  // end of generation: eos, eot, <|im_end|> and the like
  bool add_bos() const;
  const std::string& model_type() const;  // "llama" or "gpt2"
  const std::string& pre_type() const;    // pre-tokenizer name, e.g. "smollm"
  const std::string& token_text(int32_t id) const;

  // A hash over the token texts and types: equal fingerprints mean two models share a vocabulary.
  uint64_t fingerprint() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Feeds token pieces and returns only complete UTF-8 sequences, holding back a partial one.
class Utf8Stream {
 public:
  std::string push(std::string_view bytes);
  std::string flush();  // whatever is left, with invalid bytes replaced by U+FFFD

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

enum class ChatFormat { ChatML, Llama2, Zephyr, Mistral, Llama3 };

class ChatTemplate {
 public:
  // Detects the format from the template text (and falls back to the vocabulary's specials).
  static Result<ChatTemplate> from_gguf(const GgufFile& file, const Tokenizer& tok);
  explicit ChatTemplate(ChatFormat f, std::string default_system = {})
      : format_(f), default_system_(std::move(default_system)) {}

  ChatFormat format() const { return format_; }
  // The prompt text for these messages, ending with the assistant turn's opening.
  std::string apply(const std::vector<ChatMessage>& messages, bool add_generation_prompt = true) const;

 private:
  ChatFormat format_;
  std::string default_system_;
};

}  // namespace hlm
