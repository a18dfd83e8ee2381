// llama.cpp's file types (the "Q4_K_M" of a GGUF's name): which tensor type each weight of a
// model gets, by the rules llama.cpp's quantiser applies (llama-quant.cpp), so that a file written
// here has the same mix of types, and so the same bytes per token, as one llama.cpp would make.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "gguf/tensor_type.h"

namespace hlm {

// Values are llama.cpp's llama_ftype ids (the general.file_type metadata key).
enum class FileType { kQ4_0 = 2, kQ8_0 = 7, kQ4_K_M = 15 };

// "Q4_0", "Q8_0", "Q4_K_M" (case-insensitive); nullopt otherwise.
std::optional<FileType> parse_file_type(std::string_view name);
std::string_view file_type_name(FileType t);
// The names parse_file_type accepts, for error messages: "Q4_0, Q4_K_M, Q8_0".
std::string file_type_names();

// The type of weight matrix `name` (GGUF tensor name, e.g. "blk.3.attn_v.weight", "output.weight")
// with rows of `cols` elements in a model of n_layer blocks; tied: the token embedding is also the
// output matrix. Q4_0 and Q8_0 files are all that type except the output matrix (Q6_K in Q4_0
// files); Q4_K_M files are Q4_K except the output matrix and the attn_v and ffn_down matrices of
// the first and last eighth of the layers and every third layer between (Q6_K). A row length the
// chosen type cannot hold (not a multiple of 256 for the K types) takes llama.cpp's fallback
// (Q4_K -> Q5_0, Q6_K -> Q8_0, then F16).
TensorType file_type_tensor(FileType t, std::string_view name, int n_layer, int64_t cols,
                            bool tied);

}  // namespace hlm
