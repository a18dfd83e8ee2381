// TensorType: the ggml tensor encodings a GGUF file may hold, with their block geometry.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string_view>

namespace hlm {

// Values are the on-disk ggml_type ids.
enum class TensorType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  BF16 = 30,
};

struct TensorTypeInfo {
  std::string_view name;
  int block_size;  // elements per block
  int type_size;   // bytes per block
  bool supported;  // hlm can compute with it
};

namespace detail {
// Indexed by ggml_type id; entries with an empty name are ids hlm does not know.
inline constexpr TensorTypeInfo kTypeTable[] = {
    {"F32", 1, 4, true},       {"F16", 1, 2, true},      {"Q4_0", 32, 18, true},
    {"Q4_1", 32, 20, true},    {"", 0, 0, false},        {"", 0, 0, false},
    {"Q5_0", 32, 22, true},    {"Q5_1", 32, 24, true},   {"Q8_0", 32, 34, true},
    {"Q8_1", 32, 36, false},   {"Q2_K", 256, 84, false}, {"Q3_K", 256, 110, false},
    {"Q4_K", 256, 144, true},  {"Q5_K", 256, 176, true}, {"Q6_K", 256, 210, true},
    {"Q8_K", 256, 292, false},
};
inline constexpr TensorTypeInfo kBF16Info{"BF16", 1, 2, true};
}  // namespace detail

// Returns nullptr for ids hlm does not know at all.
constexpr const TensorTypeInfo* tensor_type_info(uint32_t id) {
  if (id == 30) return &detail::kBF16Info;
  if (id < std::size(detail::kTypeTable) && !detail::kTypeTable[id].name.empty()) {
    return &detail::kTypeTable[id];
  }
  return nullptr;
}

inline const TensorTypeInfo& info(TensorType t) {
  return *tensor_type_info(static_cast<uint32_t>(t));
}

// Bytes taken by a row of n elements (n must be a multiple of the block size).
inline size_t row_bytes(TensorType t, int64_t n) {
  const auto& i = info(t);
  return static_cast<size_t>(n / i.block_size) * static_cast<size_t>(i.type_size);
}

}  // namespace hlm
