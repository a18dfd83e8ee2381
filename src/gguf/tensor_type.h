// TensorType: the ggml tensor encodings a GGUF file may hold, with their block geometry.
#pragma once

#include <cstddef>
#include <cstdint>
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
  int block_size;     // elements per block
  int type_size;      // bytes per block
  bool supported;     // hlm can compute with it
};

// Returns nullptr for ids hlm does not know at all.
constexpr const TensorTypeInfo* tensor_type_info(uint32_t id) {
  constexpr TensorTypeInfo kF32{"F32", 1, 4, true}, kF16{"F16", 1, 2, true},
      kQ4_0{"Q4_0", 32, 18, true}, kQ4_1{"Q4_1", 32, 20, true}, kQ5_0{"Q5_0", 32, 22, true},
      kQ5_1{"Q5_1", 32, 24, true}, kQ8_0{"Q8_0", 32, 34, true}, kQ8_1{"Q8_1", 32, 36, false},
      kQ2_K{"Q2_K", 256, 84, false}, kQ3_K{"Q3_K", 256, 110, false},
      kQ4_K{"Q4_K", 256, 144, true}, kQ5_K{"Q5_K", 256, 176, true},
      kQ6_K{"Q6_K", 256, 210, true}, kQ8_K{"Q8_K", 256, 292, false}, kBF16{"BF16", 1, 2, true};
  switch (id) {
    case 0: return &kF32;
    case 1: return &kF16;
    case 2: return &kQ4_0;
    case 3: return &kQ4_1;
    case 6: return &kQ5_0;
    case 7: return &kQ5_1;
    case 8: return &kQ8_0;
    case 9: return &kQ8_1;
    case 10: return &kQ2_K;
    case 11: return &kQ3_K;
    case 12: return &kQ4_K;
    case 13: return &kQ5_K;
    case 14: return &kQ6_K;
    case 15: return &kQ8_K;
    case 30: return &kBF16;
    default: return nullptr;
  }
}

inline const TensorTypeInfo& info(TensorType t) { return *tensor_type_info(static_cast<uint32_t>(t)); }

// Bytes taken by a row of n elements (n must be a multiple of the block size).
inline size_t row_bytes(TensorType t, int64_t n) {
  const auto& i = info(t);
  return static_cast<size_t>(n / i.block_size) * static_cast<size_t>(i.type_size);
}

}  // namespace hlm
