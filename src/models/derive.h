// build_student: rebuilds hlm's device model (SLM) from the cloud model's GGUF plus the small
// "delta" GGUF that tools/distill/distill.py produces (the distilled layers and final norm).
//
// The student is the teacher's metadata (tokenizer, chat template, hyper-parameters) with
// llama.block_count = m (taken from the delta), the teacher's token_embd requantised to Q4_1
// (row by row: ops::dequantize_row, then ops::quantize_row; deterministic), then the delta's
// tensors (blk.0..m-1.*, output_norm.weight) copied byte for byte. The output is written
// atomically and is byte-identical for the same inputs, so it can be checked by sha256.
#pragma once

#include <string>

#include "util/result.h"

namespace hlm {

class GgufFile;
class GgufWriter;

// Fills `out` with the student's metadata and tensors (exposed for tests).
Status assemble_student(const GgufFile& teacher, const GgufFile& delta, GgufWriter& out);

Status build_student(const std::string& teacher_gguf, const std::string& delta_gguf,
                     const std::string& out_gguf);

}  // namespace hlm
