// llama.cpp's per-tensor type rules for the file types hlm writes (see file_type.h).
#include "engine/file_type.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace hlm {
namespace {

struct Named {
  FileType type;
  std::string_view name;
};
constexpr Named kNames[] = {
    {FileType::kQ4_0, "Q4_0"}, {FileType::kQ4_K_M, "Q4_K_M"}, {FileType::kQ8_0, "Q8_0"}};

bool has(std::string_view name, std::string_view part) {
  return name.find(part) != std::string_view::npos;
}

// The layer of a "blk.N." tensor, or -1.
int layer_of(std::string_view name) {
  if (name.substr(0, 4) != "blk.") return -1;
  int layer = -1;
  std::from_chars(name.data() + 4, name.data() + name.size(), layer);
  return layer;
}

// llama.cpp gives these layers' most sensitive matrices more bits: the first and last eighth,
// and every third one between.
bool more_bits(int layer, int n_layer) {
  return layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2;
}

// A type whose blocks fit rows of `cols` elements, as llama.cpp falls back.
TensorType fit(TensorType t, int64_t cols) {
  if (cols % info(t).block_size == 0) return t;
  const TensorType smaller = t == TensorType::Q4_K   ? TensorType::Q5_0
                             : t == TensorType::Q6_K ? TensorType::Q8_0
                                                     : t;
  return cols % info(smaller).block_size == 0 ? smaller : TensorType::F16;
}

}  // namespace

std::optional<FileType> parse_file_type(std::string_view name) {
  for (const Named& n : kNames) {
    if (std::equal(name.begin(), name.end(), n.name.begin(), n.name.end(),
                   [](char a, char b) { return std::toupper(a) == b; })) {
      return n.type;
    }
  }
  return std::nullopt;
}

std::string_view file_type_name(FileType t) {
  for (const Named& n : kNames) {
    if (n.type == t) return n.name;
  }
  return "?";
}

std::string file_type_names() {
  std::string out;
  for (const Named& n : kNames) out += (out.empty() ? "" : ", ") + std::string(n.name);
  return out;
}

TensorType file_type_tensor(FileType t, std::string_view name, int n_layer, int64_t cols,
                            bool tied) {
  const TensorType base = t == FileType::kQ4_0   ? TensorType::Q4_0
                          : t == FileType::kQ8_0 ? TensorType::Q8_0
                                                 : TensorType::Q4_K;
  if (name == "output.weight" || (tied && name == "token_embd.weight")) {
    // llama.cpp checks the row length against the base type before choosing Q6_K.
    if (cols % info(base).block_size != 0) return fit(TensorType::Q8_0, cols);
    return base == TensorType::Q8_0 ? base : fit(TensorType::Q6_K, cols);
  }
  if (t == FileType::kQ4_K_M && (has(name, "attn_v.weight") || has(name, "ffn_down")) &&
      more_bits(layer_of(name), n_layer)) {
    return fit(TensorType::Q6_K, cols);
  }
  return fit(base, cols);
}

}  // namespace hlm
