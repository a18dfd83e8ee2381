// Upload encodings: p̂ construction, payload sizes and bit-packed serialisation.
#include "method/upload.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cassert>
#include <cmath>
#include <cstring>
#include <numeric>

#include "method/options.h"

namespace hlm {
namespace {

constexpr size_t kHeaderBytes = 10;
constexpr int kMaxBits = 24;

uint32_t max_code(int bits) { return (uint32_t{1} << bits) - 1; }

// Bytes: std::vector<uint8_t> or std::string (a protobuf bytes field, filled in place).
template <class Bytes>
class BitWriter {
 public:
  explicit BitWriter(Bytes& out) : out_(out) {}
  void put(uint64_t value, int n) {  // n <= 32
    acc_ |= (value & ((uint64_t{1} << n) - 1)) << fill_;
    fill_ += n;
    while (fill_ >= 8) {
      out_.push_back(static_cast<typename Bytes::value_type>(acc_));
      acc_ >>= 8;
      fill_ -= 8;
    }
  }
  void flush() {
    if (fill_ > 0) out_.push_back(static_cast<typename Bytes::value_type>(acc_));
    acc_ = 0;
    fill_ = 0;
  }

 private:
  Bytes& out_;
  uint64_t acc_ = 0;
  int fill_ = 0;
};

class BitReader {
 public:
  explicit BitReader(std::span<const uint8_t> in) : in_(in) {}
  // The caller has checked the length, so reads never run past the end.
  uint32_t get(int n) {
    while (fill_ < n) {
      acc_ |= static_cast<uint64_t>(in_[pos_++]) << fill_;
      fill_ += 8;
    }
    const uint32_t v = static_cast<uint32_t>(acc_ & ((uint64_t{1} << n) - 1));
    acc_ >>= n;
    fill_ -= n;
    return v;
  }

 private:
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
  uint64_t acc_ = 0;
  int fill_ = 0;
};

template <class Bytes>
void put_u32(Bytes& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<typename Bytes::value_type>(v >> (8 * i)));
}
uint32_t get_u32(const uint8_t* p) {
  return p[0] | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}

uint64_t body_bits(Encoding kind, uint64_t n_vocab, uint64_t k, int bits) {
  switch (kind) {
    case Encoding::kFull:
      return 32 * n_vocab;
    case Encoding::kTopK:
      return k * (bits + index_bits(static_cast<int>(n_vocab)));
    case Encoding::kIds:
      return 0;
  }
  return 0;
}

}  // namespace

std::string to_string(const EncodingConfig& cfg) {
  switch (cfg.kind) {
    case Encoding::kFull:
      return "full";
    case Encoding::kIds:
      return "ids";
    case Encoding::kTopK:
      return fmt::format("topk:k={},bits={}{}", cfg.k, cfg.bits,
                         cfg.renormalize ? ",renorm=1" : "");
  }
  return "?";
}

EncodingConfig default_encoding() {
  auto cfg = parse_encoding(kDefaultEncoding);
  assert(cfg.ok());
  return *cfg;
}

Result<EncodingConfig> parse_encoding(std::string_view text) {
  auto opt = parse_option_string(text);
  if (!opt) return opt.error();
  EncodingConfig cfg;
  if (opt->name == "full" || opt->name == "ids") {
    if (!opt->positional.empty() || !opt->keyed.empty()) {
      return make_error("encoding '{}': {} takes no arguments", text, opt->name);
    }
    cfg.kind = opt->name == "full" ? Encoding::kFull : Encoding::kIds;
    return cfg;
  }
  if (opt->name != "topk") {
    return make_error("unknown encoding '{}': use full, topk, topk(k,bits) or ids", text);
  }
  cfg.kind = Encoding::kTopK;
  if (opt->positional.size() > 3) {
    return make_error("encoding '{}': topk(k, bits) or topk(k, bits, renorm)", text);
  }
  std::vector<std::pair<std::string, std::string>> kv = opt->keyed;
  if (opt->positional.size() >= 1) kv.emplace_back("k", opt->positional[0]);
  if (opt->positional.size() >= 2) kv.emplace_back("bits", opt->positional[1]);
  if (opt->positional.size() >= 3) {
    if (opt->positional[2] != "renorm") {
      return make_error("encoding '{}': the third argument of topk is 'renorm', not '{}'", text,
                        opt->positional[2]);
    }
    kv.emplace_back("renorm", "1");
  }
  for (const auto& [key, value] : kv) {
    if (key != "k" && key != "bits" && key != "renorm") {
      return make_error("encoding '{}': unknown key '{}' (valid: k, bits, renorm)", text, key);
    }
    auto v = parse_int(value, fmt::format("encoding topk {}", key));
    if (!v) return v.error();
    if (key == "renorm") {
      if (*v != 0 && *v != 1) {
        return make_error("encoding '{}': renorm = {} must be 0 or 1", text, *v);
      }
      cfg.renormalize = *v == 1;
    } else {
      (key == "k" ? cfg.k : cfg.bits) = *v;
    }
  }
  if (cfg.k < 1) return make_error("encoding '{}': k = {} must be >= 1", text, cfg.k);
  if (cfg.bits < 1 || cfg.bits > kMaxBits) {
    return make_error("encoding '{}': bits = {} must lie in [1, {}]", text, cfg.bits, kMaxBits);
  }
  return cfg;
}

int index_bits(int n_vocab) {
  return n_vocab <= 1 ? 0 : std::bit_width(static_cast<uint32_t>(n_vocab - 1));
}

int kept_entries(const EncodingConfig& cfg, int n_vocab) { return std::min(cfg.k, n_vocab); }

uint64_t payload_bits(const EncodingConfig& cfg, int n_vocab) {
  return body_bits(cfg.kind, n_vocab, kept_entries(cfg, n_vocab), cfg.bits);
}

Payload encode(std::span<const float> p, const EncodingConfig& cfg) {
  Payload out;
  out.kind = cfg.kind;
  out.n_vocab = static_cast<int>(p.size());
  if (cfg.kind == Encoding::kFull) {
    out.probs.assign(p.begin(), p.end());
    return out;
  }
  if (cfg.kind == Encoding::kIds) return out;
  assert(cfg.bits >= 1 && cfg.bits <= kMaxBits && cfg.k >= 1);
  out.bits = cfg.bits;
  const int k = kept_entries(cfg, out.n_vocab);
  std::vector<int32_t> order(p.size());
  std::iota(order.begin(), order.end(), 0);
  auto larger = [&](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); };
  std::partial_sort(order.begin(), order.begin() + k, order.end(), larger);
  order.resize(k);
  std::sort(order.begin(), order.end());
  // Largest-remainder quantisation on the grid step = 1/(2^bits − 1); with renormalize, of
  // each kept entry's share of the kept mass (so the codes add up to the whole grid).
  const double units_per_one = max_code(cfg.bits);
  double mass = 0.0;
  std::vector<double> remainder(k);
  out.ids = order;
  out.codes.resize(k);
  double scale = 1.0;
  if (cfg.renormalize) {
    double kept = 0.0;
    for (int i = 0; i < k; ++i) kept += std::max(0.0f, p[order[i]]);
    if (kept > 0.0) scale = 1.0 / kept;
  }
  uint64_t floor_total = 0;
  for (int i = 0; i < k; ++i) {
    const double x = std::max(0.0, static_cast<double>(p[order[i]])) * scale * units_per_one;
    mass += std::max(0.0, static_cast<double>(p[order[i]])) * scale;
    const double f = std::min(std::floor(x), units_per_one);
    out.codes[i] = static_cast<uint32_t>(f);
    remainder[i] = x - f;
    floor_total += out.codes[i];
  }
  const uint64_t target = std::min<uint64_t>(
      static_cast<uint64_t>(std::llround(mass * units_per_one)), max_code(cfg.bits));
  if (target > floor_total) {
    std::vector<int> by_rem(k);
    std::iota(by_rem.begin(), by_rem.end(), 0);
    std::stable_sort(by_rem.begin(), by_rem.end(),
                     [&](int a, int b) { return remainder[a] > remainder[b]; });
    for (uint64_t i = 0; i < target - floor_total && i < static_cast<uint64_t>(k); ++i) {
      ++out.codes[by_rem[i]];
    }
  }
  return out;
}

std::vector<float> decode(const Payload& payload) {
  if (payload.kind == Encoding::kIds) return {};
  if (payload.kind == Encoding::kFull) return payload.probs;
  std::vector<float> out(static_cast<size_t>(payload.n_vocab));
  decode_into(payload, out);
  return out;
}

void decode_into(const Payload& payload, std::span<float> out) {
  assert(out.size() == static_cast<size_t>(payload.n_vocab));
  switch (payload.kind) {
    case Encoding::kFull:
      std::copy(payload.probs.begin(), payload.probs.end(), out.begin());
      return;
    case Encoding::kIds:
      return;
    case Encoding::kTopK:
      break;
  }
  const int n = payload.n_vocab;
  const size_t k = payload.ids.size();
  const double step = 1.0 / max_code(payload.bits);
  uint64_t total_codes = 0;
  for (uint32_t c : payload.codes) total_codes += c;
  const double kept = total_codes * step;
  if (k < static_cast<size_t>(n)) {
    // A full code total leaves nothing (not a rounding residue) for the other entries.
    const double leftover = total_codes >= max_code(payload.bits) ? 0.0 : 1.0 - kept;
    const float rest = static_cast<float>(std::max(0.0, leftover) / (n - k));
    std::fill(out.begin(), out.end(), rest);
    for (size_t i = 0; i < k; ++i)
      out[payload.ids[i]] = static_cast<float>(payload.codes[i] * step);
  } else {
    std::fill(out.begin(), out.end(), 0.0f);
    const double scale = total_codes > 0 ? 1.0 / total_codes : 0.0;
    for (size_t i = 0; i < k; ++i)
      out[payload.ids[i]] = static_cast<float>(payload.codes[i] * scale);
  }
}

namespace {

template <class Bytes>
void serialize_into(const Payload& payload, Bytes& out) {
  out.clear();
  const uint32_t k =
      payload.kind == Encoding::kTopK ? static_cast<uint32_t>(payload.ids.size()) : 0;
  out.reserve(kHeaderBytes + (body_bits(payload.kind, payload.n_vocab, k, payload.bits) + 7) / 8);
  using Byte = typename Bytes::value_type;
  out.push_back(static_cast<Byte>(payload.kind));
  out.push_back(static_cast<Byte>(payload.kind == Encoding::kTopK ? payload.bits : 0));
  put_u32(out, static_cast<uint32_t>(payload.n_vocab));
  put_u32(out, k);
  if (payload.kind == Encoding::kFull) {
    assert(payload.probs.size() == static_cast<size_t>(payload.n_vocab));
    // The wire format is little-endian f32, the host's own layout on the usual CPUs: one copy
    // of V floats rather than 4 V byte appends.
    if constexpr (std::endian::native == std::endian::little) {
      const auto* bytes = reinterpret_cast<const Byte*>(payload.probs.data());
      out.insert(out.end(), bytes, bytes + payload.probs.size() * 4);
    } else {
      for (float v : payload.probs) put_u32(out, std::bit_cast<uint32_t>(v));
    }
  } else if (payload.kind == Encoding::kTopK) {
    assert(payload.codes.size() == k);
    const int ib = index_bits(payload.n_vocab);
    BitWriter<Bytes> w(out);
    for (uint32_t i = 0; i < k; ++i) {
      w.put(static_cast<uint32_t>(payload.ids[i]), ib);
      w.put(payload.codes[i], payload.bits);
    }
    w.flush();
  }
}

}  // namespace

std::vector<uint8_t> serialize(const Payload& payload) {
  std::vector<uint8_t> out;
  serialize_into(payload, out);
  return out;
}

void serialize(const Payload& payload, std::string& out) { serialize_into(payload, out); }

Result<Payload> deserialize(std::span<const uint8_t> bytes, int expected_vocab) {
  if (bytes.size() < kHeaderBytes) {
    return make_error("upload payload truncated: {} bytes, the header alone needs {}", bytes.size(),
                      kHeaderBytes);
  }
  Payload out;
  const uint8_t kind = bytes[0];
  if (kind > static_cast<uint8_t>(Encoding::kIds)) {
    return make_error("upload payload: unknown encoding {} (expected 0 full, 1 topk, 2 ids)", kind);
  }
  out.kind = static_cast<Encoding>(kind);
  const int bits = bytes[1];
  const uint32_t n_vocab = get_u32(bytes.data() + 2);
  const uint32_t k = get_u32(bytes.data() + 6);
  if (n_vocab != static_cast<uint32_t>(expected_vocab)) {
    return make_error(
        "upload payload is for a vocabulary of {} entries but this model has {}: device and "
        "cloud must use the same tokenizer",
        n_vocab, expected_vocab);
  }
  out.n_vocab = expected_vocab;
  if (out.kind == Encoding::kTopK) {
    if (bits < 1 || bits > kMaxBits) {
      return make_error("upload payload: topk bits = {} outside [1, {}]", bits, kMaxBits);
    }
    if (k < 1 || k > n_vocab) {
      return make_error("upload payload: topk k = {} outside [1, V = {}]", k, n_vocab);
    }
  } else if (bits != 0 || k != 0) {
    return make_error("upload payload: bits and k must be 0 outside topk (got {}, {})", bits, k);
  }
  const uint64_t expect = kHeaderBytes + (body_bits(out.kind, n_vocab, k, bits) + 7) / 8;
  if (bytes.size() < expect) {
    return make_error("upload payload truncated: {} bytes, expected {}", bytes.size(), expect);
  }
  if (bytes.size() > expect) {
    return make_error("upload payload oversized: {} bytes, expected {} ({} trailing)", bytes.size(),
                      expect, bytes.size() - expect);
  }
  const std::span<const uint8_t> body = bytes.subspan(kHeaderBytes);
  if (out.kind == Encoding::kFull) {
    out.probs.resize(n_vocab);
    if constexpr (std::endian::native == std::endian::little) {
      std::memcpy(out.probs.data(), body.data(), size_t(n_vocab) * 4);
    } else {
      for (uint32_t i = 0; i < n_vocab; ++i)
        out.probs[i] = std::bit_cast<float>(get_u32(body.data() + 4 * size_t(i)));
    }
    // One branch-free pass (every entry finite and >= 0: below +inf's bits, or -0) with eight
    // partial sums; the slow search for the culprit runs only when that pass fails.
    uint32_t bad = 0;
    double part[8] = {};
    uint32_t i = 0;
    for (; i + 8 <= n_vocab; i += 8) {
      for (int l = 0; l < 8; ++l) {
        const float v = out.probs[i + l];
        const uint32_t b = std::bit_cast<uint32_t>(v);
        bad |= uint32_t(b >= 0x7f800000u) & uint32_t(b != 0x80000000u);
        part[l] += v;
      }
    }
    double total = 0.0;
    for (double p : part) total += p;
    for (; i < n_vocab; ++i) {
      const uint32_t b = std::bit_cast<uint32_t>(out.probs[i]);
      bad |= uint32_t(b >= 0x7f800000u) & uint32_t(b != 0x80000000u);
      total += out.probs[i];
    }
    if (bad) {
      for (uint32_t j = 0; j < n_vocab; ++j) {
        const float v = out.probs[j];
        if (!std::isfinite(v) || v < 0.0f) {
          return make_error("upload payload: probability {} of token {} is not a finite value >= 0",
                            v, j);
        }
      }
    }
    if (std::abs(total - 1.0) > 1e-3) {
      return make_error("upload payload: probabilities sum to {}, expected 1", total);
    }
  } else if (out.kind == Encoding::kTopK) {
    out.bits = bits;
    out.ids.resize(k);
    out.codes.resize(k);
    const int ib = index_bits(static_cast<int>(n_vocab));
    BitReader r(body);
    uint64_t total = 0;
    for (uint32_t i = 0; i < k; ++i) {
      const uint32_t id = r.get(ib);
      if (id >= n_vocab) {
        return make_error("upload payload: topk id {} out of range (V = {})", id, n_vocab);
      }
      if (i > 0 && id <= static_cast<uint32_t>(out.ids[i - 1])) {
        return make_error("upload payload: topk ids not strictly increasing at entry {}", i);
      }
      out.ids[i] = static_cast<int32_t>(id);
      out.codes[i] = r.get(bits);
      total += out.codes[i];
    }
    if (total > max_code(bits)) {
      return make_error("upload payload: topk codes sum to {} > {}: not a distribution", total,
                        max_code(bits));
    }
    if (k == n_vocab && total == 0) {
      return make_error("upload payload: topk keeps every token with zero mass");
    }
  }
  return out;
}

}  // namespace hlm
