// build_student: rebuilds hlm's device model (SLM) from the cloud model's GGUF plus the small
// "delta" that tools/distill/distill.py produces (the distilled layers and final norm, and
// optionally an output head of its own), shipped as one GGUF or split into several ("parts", so
// that no committed file exceeds 20 MB).
//
// The student is the teacher's metadata (tokenizer, chat template, hyper-parameters) with
// llama.block_count = m (taken from the delta), the teacher's token_embd requantised to Q4_1
// (row by row: ops::dequantize_row, then ops::quantize_row; deterministic), then the delta's
// tensors copied byte for byte, in a fixed order that does not depend on how they are split
// into parts:
//
//   token_embd.weight, [output.weight], blk.0.* .. blk.<m-1>.*, output_norm.weight
//
// (output.weight, when the delta has one, sits beside the embedding, where llama.cpp's loader and
// hlm's own writer put it; each block's tensors are in the teacher's order; output_norm stays
// last so a delta without output.weight gives the same bytes as before parts existed).
//
// The parts' tensors together must be exactly blk.0..m-1.*, output_norm.weight and optionally
// output.weight (shape = the teacher's token_embd.weight, a type hlm decodes), each in exactly
// one part. llama.block_count must be set by at least one part and agree across the parts that
// set it; a part that records hlm.delta.part_count (tools/distill's export does) must be given
// with that many parts. The output is written atomically and is byte-identical for the same inputs,
// so it can be checked by sha256.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "util/result.h"

namespace hlm {

class GgufFile;
class GgufWriter;

// Fills `out` with the student's metadata and tensors (exposed for tests). `deltas` are the
// parts, in any order; errors name the part (its path) and the tensor at fault.
Status assemble_student(const GgufFile& teacher, std::span<const GgufFile* const> deltas,
                        GgufWriter& out);

Status build_student(const std::string& teacher_gguf, const std::vector<std::string>& delta_ggufs,
                     const std::string& out_gguf);

}  // namespace hlm
