// build_student: teacher GGUF + distilled delta GGUF -> student GGUF (see derive.h).
#include "models/derive.h"

#include <cstdint>
#include <vector>

#include "gguf/gguf.h"
#include "gguf/gguf_writer.h"
#include "ops/ops.h"

namespace hlm {
namespace {

constexpr TensorType kEmbedType = TensorType::Q4_1;

// Per-layer tensors of a llama block, in the order the teacher GGUF stores them.
constexpr const char* kLayerTensors[] = {"attn_norm.weight",   "ffn_down.weight", "ffn_gate.weight",
                                         "ffn_up.weight",      "ffn_norm.weight", "attn_k.weight",
                                         "attn_output.weight", "attn_q.weight",   "attn_v.weight"};

}  // namespace

Status assemble_student(const GgufFile& teacher, const GgufFile& delta, GgufWriter& out) {
  if (teacher.get_string("general.architecture").value_or("") != "llama") {
    return make_error("{}: teacher is not a llama-architecture GGUF", teacher.path());
  }
  const int64_t n_teacher = teacher.get_int("llama.block_count").value_or(0);
  const int64_t m = delta.get_int("llama.block_count").value_or(0);
  if (m <= 0 || m > n_teacher) {
    return make_error("{}: llama.block_count {} not in [1, {}] (teacher layers)", delta.path(), m,
                      n_teacher);
  }
  const GgufTensor* embd = teacher.tensor("token_embd.weight");
  if (!embd || embd->shape.size() != 2) {
    return make_error("{}: missing 2-D tensor token_embd.weight", teacher.path());
  }
  if (!info(embd->type).supported || embd->shape[0] % 32 != 0) {
    return make_error("{}: token_embd.weight has type {} / row length {} that hlm cannot decode",
                      teacher.path(), info(embd->type).name, embd->shape[0]);
  }

  // Delta tensors must exist with the teacher's shapes (layer i of the delta is checked against
  // layer i of the teacher: the student keeps the first m layers' geometry).
  std::vector<const GgufTensor*> body;
  auto take = [&](const std::string& name, const std::string& teacher_name) -> Status {
    const GgufTensor* d = delta.tensor(name);
    const GgufTensor* t = teacher.tensor(teacher_name);
    if (!d) return make_error("{}: missing tensor {}", delta.path(), name);
    if (!t) return make_error("{}: missing tensor {}", teacher.path(), teacher_name);
    if (d->shape != t->shape) {
      return make_error("{}: tensor {} has a shape different from the teacher's {}", delta.path(),
                        name, teacher_name);
    }
    body.push_back(d);
    return ok_status();
  };
  for (int64_t l = 0; l < m; ++l) {
    for (const char* suffix : kLayerTensors) {
      const std::string name = "blk." + std::to_string(l) + "." + suffix;
      if (auto s = take(name, name); !s) return s;
    }
  }
  if (auto s = take("output_norm.weight", "output_norm.weight"); !s) return s;
  const size_t expected = static_cast<size_t>(m) * std::size(kLayerTensors) + 1;
  if (delta.tensors().size() != expected) {
    return make_error("{}: {} tensors, expected {} (blk.0..{}.* and output_norm.weight only)",
                      delta.path(), delta.tensors().size(), expected, m - 1);
  }

  out.copy_metadata(teacher);
  out.set_u32("llama.block_count", static_cast<uint32_t>(m));
  out.set_string("general.name", teacher.get_string("general.name").value_or("teacher") +
                                     " (hlm SLM: first " + std::to_string(m) +
                                     " layers, distilled)");
  out.set_u32("general.file_type", 3);  // LLAMA_FTYPE_MOSTLY_Q4_1

  // token_embd: teacher type -> f32 -> Q4_1, row by row.
  const int64_t cols = embd->shape[0], rows = embd->rows();
  const size_t in_row = row_bytes(embd->type, cols), out_row = row_bytes(kEmbedType, cols);
  std::vector<uint8_t> q(out_row * static_cast<size_t>(rows));
  std::vector<float> f(static_cast<size_t>(cols));
  const auto* src = static_cast<const uint8_t*>(embd->data);
  for (int64_t r = 0; r < rows; ++r) {
    ops::dequantize_row(embd->type, src + r * in_row, f.data(), cols);
    ops::quantize_row(kEmbedType, f.data(), q.data() + r * out_row, cols);
  }
  out.add_tensor("token_embd.weight", kEmbedType, embd->shape, q.data(), q.size());
  for (const GgufTensor* t : body) out.add_tensor(t->name, t->type, t->shape, t->data, t->n_bytes);
  return ok_status();
}

Status build_student(const std::string& teacher_gguf, const std::string& delta_gguf,
                     const std::string& out_gguf) {
  auto teacher = GgufFile::open(teacher_gguf);
  if (!teacher) return teacher.error();
  auto delta = GgufFile::open(delta_gguf);
  if (!delta) return delta.error();
  GgufWriter w;
  if (auto s = assemble_student(*teacher, *delta, w); !s) return s;
  return w.write(out_gguf);
}

}  // namespace hlm
