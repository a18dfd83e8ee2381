// Model fingerprints (see fingerprint.h).
#include "models/fingerprint.h"

#include <algorithm>
#include <cstdint>

#include "gguf/gguf.h"
#include "models/sha256.h"

namespace hlm {
namespace {

constexpr size_t kSampleBytes = 256;

void put_u64(Sha256& h, uint64_t x) { h.update(&x, sizeof x); }

void put_string(Sha256& h, const std::string& s) {
  put_u64(h, s.size());
  h.update(s);
}

// Each value is tagged with its variant index, so that 1 (integer) and 1.0 (float) or a string
// and a one-element array never hash alike.
void put_value(Sha256& h, const GgufValue& v) {
  put_u64(h, v.v.index());
  if (const auto* u = std::get_if<uint64_t>(&v.v)) {
    put_u64(h, *u);
  } else if (const auto* i = std::get_if<int64_t>(&v.v)) {
    put_u64(h, static_cast<uint64_t>(*i));
  } else if (const auto* d = std::get_if<double>(&v.v)) {
    h.update(d, sizeof *d);
  } else if (const auto* b = std::get_if<bool>(&v.v)) {
    put_u64(h, *b ? 1 : 0);
  } else if (const auto* s = v.as_string()) {
    put_string(h, *s);
  } else if (const auto* a = v.as_array()) {
    put_u64(h, a->size());
    for (const GgufValue& e : *a) put_value(h, e);
  }
}

}  // namespace

std::string model_fingerprint(const GgufFile& file) {
  Sha256 h;
  h.update(std::string_view("hlm-model-fingerprint/1"));
  put_u64(h, file.version());
  put_u64(h, file.alignment());
  put_u64(h, file.metadata().size());
  for (const auto& [key, value] : file.metadata()) {
    put_string(h, key);
    put_value(h, value);
  }
  put_u64(h, file.tensors().size());
  for (const GgufTensor& t : file.tensors()) {
    put_string(h, t.name);
    put_u64(h, static_cast<uint64_t>(t.type));
    put_u64(h, t.shape.size());
    for (int64_t d : t.shape) put_u64(h, static_cast<uint64_t>(d));
    put_u64(h, t.offset);
    put_u64(h, t.n_bytes);
    const auto* data = static_cast<const uint8_t*>(t.data);
    if (t.n_bytes <= 3 * kSampleBytes) {
      h.update(data, t.n_bytes);
    } else {
      for (size_t at : {size_t{0}, (t.n_bytes - kSampleBytes) / 2, t.n_bytes - kSampleBytes}) {
        h.update(data + at, kSampleBytes);
      }
    }
  }
  return Sha256::hex(h.finish());
}

}  // namespace hlm
