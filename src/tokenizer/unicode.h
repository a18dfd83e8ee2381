// Unicode helpers for the tokenizers: lenient UTF-8 decoding, codepoint classes (from the
// generated unicode_table.cc) and the BPE pre-tokenizers that split text into words.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hlm::unicode {

// Codepoint class: the first letter of the Unicode general category, plus a White_Space bit.
enum CpClass : uint8_t {
  kUndefined = 0,  // unassigned (Cn)
  kNumber = 1,     // \p{N}
  kLetter = 2,     // \p{L}
  kSeparator = 3,  // \p{Z}
  kMark = 4,       // \p{M}
  kPunct = 5,      // \p{P}
  kSymbol = 6,     // \p{S}
  kControl = 7,    // \p{C} other than Cn
};
constexpr uint8_t kClassMask = 7;
constexpr uint8_t kWhitespaceBit = 8;

struct CpRange {
  uint32_t first;
  uint8_t value;  // CpClass | kWhitespaceBit
};
extern const CpRange kCpRanges[];  // sorted by first, ends with {0x110000, 0}
extern const size_t kCpRangesSize;

// Class and whitespace bit of a codepoint; kUndefined above U+10FFFF.
uint8_t cp_flags(uint32_t cp);

// Length of the UTF-8 sequence a lead byte announces, from its high nibble (1 for stray bytes).
inline size_t utf8_len(uint8_t lead) {
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[lead >> 4];
}

// Decodes leniently: each byte that does not start a well-formed sequence becomes U+FFFD.
std::vector<uint32_t> decode_utf8(std::string_view s);
void append_utf8(std::string& out, uint32_t cp);

// The pre-tokenizer regexes llama.cpp applies for a BPE vocabulary's tokenizer.ggml.pre.
enum class PreTokenizer {
  kDefault,  // [\p{P}\$\+<=>\^~\|]+, then GPT-2, then \p{N}+, then [0-9][0-9][0-9]
  kGpt2,     // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
  kDigits,   // \p{N} (every digit alone), then GPT-2: smollm, starcoder, refact, codeshell...
  kLlama3,   // (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|...
  kQwen2,    // as kLlama3 with \p{N} instead of \p{N}{1,3}
};

// Splits text into pre-tokenizer words (UTF-8; invalid bytes become U+FFFD).
std::vector<std::string> pre_tokenize(std::string_view text, PreTokenizer pre);

}  // namespace hlm::unicode
