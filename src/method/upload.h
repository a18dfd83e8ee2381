// Upload: what an upload carries about the draft distribution (SPEC §6): full (V float32),
// topk(k, bits) (a quantised top-k with the rest spread evenly) or ids (nothing); the p̂ the
// device must draw d from, payload sizes for the channel model, and bit-packed serialisation.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace hlm {

enum class Encoding : uint8_t { kFull = 0, kTopK = 1, kIds = 2 };

struct EncodingConfig {
  Encoding kind = Encoding::kFull;  // the standard-HLM baseline
  // topk defaults: 8-bit probabilities as in CU-HLM; k = 32 covers the sampler's default
  // top-k = 40 cut to within a few low-probability entries and costs 32·(8 + 16) = 768 bits
  // at V = 49152 (0.05 % of full).
  int k = 32;
  int bits = 8;
  // topk: quantise each kept entry's share of the kept mass instead of its probability, so the
  // codes add up to 2^bits − 1 and p̂ is p restricted to its top k and renormalised: nothing is
  // left for the other V − k entries, so the device never drafts (or keeps unverified) a token
  // outside its own top k. The wire form is the same; decode() reads a full code total as "no
  // leftover". Verification stays exact because the device draws d from this p̂.
  bool renormalize = false;
};

std::string to_string(const EncodingConfig& cfg);

// The encoding uploads use unless told otherwise (`--encoding`, RunConfig): chosen by the sweep
// on the dev split in docs/encoding.md: 1400x fewer uplink bytes per request than `full` at
// V = 49152, with the acceptance of `full` (the plain top-k, which spreads the leftover mass
// over the tail, lost 2-4 points); `full` stays available as the standard-HLM baseline.
inline constexpr std::string_view kDefaultEncoding = "topk(32,8,renorm)";
EncodingConfig default_encoding();
// "full", "ids", "topk", "topk(k,bits)", "topk(k,bits,renorm)" or "topk:k=32,bits=8,renorm=1";
// validated (1 <= k, 1 <= bits <= 24, renorm 0 or 1).
Result<EncodingConfig> parse_encoding(std::string_view text);

// ceil(log2 V): the bits of one token index (0 for V = 1).
int index_bits(int n_vocab);
// The entries topk keeps: min(k, V).
int kept_entries(const EncodingConfig& cfg, int n_vocab);
// payload(p̂) of SPEC §7 in bits: full 32·V; topk k·(bits + ceil(log2 V)); ids 0.
uint64_t payload_bits(const EncodingConfig& cfg, int n_vocab);

// The transmitted description of p̂.
struct Payload {
  Encoding kind = Encoding::kFull;
  int n_vocab = 0;
  int bits = 0;                 // topk: bits per probability code
  std::vector<int32_t> ids;     // topk: kept token ids, strictly increasing
  std::vector<uint32_t> codes;  // topk: p̂(ids[i]) = codes[i] / (2^bits − 1)
  std::vector<float> probs;     // full: p̂ itself
};

// Encodes p (a distribution over V = p.size() >= 1 entries). topk keeps the k largest entries
// (ties: lower id) and quantises them on the grid 1/(2^bits − 1) by largest remainder, so each
// kept p̂ is within one step of p (|p̂ − p| < 1/(2^bits − 1)) and the kept codes add up to
// round(kept mass / step) <= 2^bits − 1.
Payload encode(std::span<const float> p, const EncodingConfig& cfg);

// The dense p̂ over V entries: full as sent; topk with the leftover mass 1 − Σ p̂_kept spread
// evenly over the V − k others (none when the codes add up to 2^bits − 1; if k = V,
// renormalised over the kept entries); empty for ids.
std::vector<float> decode(const Payload& payload);
// The same into out (n_vocab entries; left as is for ids), without allocating.
void decode_into(const Payload& payload, std::span<float> out);

// decode(encode(p)): the distribution the device draws d from.
inline std::vector<float> build_p_hat(std::span<const float> p, const EncodingConfig& cfg) {
  return decode(encode(p, cfg));
}

// Wire form: a 10-byte header {u8 encoding, u8 bits, u32 V, u32 k} (little-endian; counted in
// the protocol header H) and the body, bit-packed LSB first and padded to a byte: full V
// float32; topk k × (index: ceil(log2 V) bits, code: `bits` bits); ids empty.
std::vector<uint8_t> serialize(const Payload& payload);
// The same into out (replacing its contents): a protobuf bytes field is filled in place.
void serialize(const Payload& payload, std::string& out);
// Checks everything before use: known encoding, V equal to `expected_vocab` (both sides must
// share the vocabulary), k <= V, bits in [1, 24], the exact byte length (truncated or trailing
// bytes are refused), ids in range and increasing, codes summing to at most 2^bits − 1, and
// full probabilities finite, non-negative and summing to 1 within 1e-3.
Result<Payload> deserialize(std::span<const uint8_t> bytes, int expected_vocab);

}  // namespace hlm
