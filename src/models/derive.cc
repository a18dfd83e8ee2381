// build_student: teacher GGUF + distilled delta GGUF(s) -> student GGUF (see derive.h).
#include "models/derive.h"

#include <cstdint>
#include <map>
#include <utility>
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

// "a.gguf" or "a.gguf + b.gguf + ...": the delta as a whole, for errors about all its parts.
std::string part_list(std::span<const GgufFile* const> deltas) {
  std::string s;
  for (const GgufFile* d : deltas) s += (s.empty() ? "" : " + ") + d->path();
  return s;
}

}  // namespace

Status assemble_student(const GgufFile& teacher, std::span<const GgufFile* const> deltas,
                        GgufWriter& out) {
  if (teacher.get_string("general.architecture").value_or("") != "llama") {
    return make_error("{}: teacher is not a llama-architecture GGUF", teacher.path());
  }
  if (deltas.empty()) return make_error("no delta GGUF given");
  const std::string parts = part_list(deltas);

  // llama.block_count: given by at least one part, the same in every part that gives it.
  const int64_t n_teacher = teacher.get_int("llama.block_count").value_or(0);
  const GgufFile* m_from = nullptr;
  int64_t m = 0;
  for (const GgufFile* d : deltas) {
    if (const auto arch = d->get_string("general.architecture"); arch && *arch != "llama") {
      return make_error("{}: a delta part for a llama teacher, but general.architecture is {}",
                        d->path(), *arch);
    }
    // tools/distill's export records how many parts it wrote: a forgotten part (say, the one
    // holding output.weight) would otherwise give a valid but different student.
    if (const auto n = d->get_int("hlm.delta.part_count");
        n && *n != static_cast<int64_t>(deltas.size())) {
      return make_error(
          "{}: part {} of a delta in {} parts, but {} part(s) were given: pass them all", d->path(),
          d->get_int("hlm.delta.part_index").value_or(0), *n, deltas.size());
    }
    const auto v = d->get_int("llama.block_count");
    if (!v) continue;
    if (!m_from) {
      m_from = d;
      m = *v;
    } else if (*v != m) {
      return make_error("delta parts disagree on llama.block_count: {} in {}, {} in {}", m,
                        m_from->path(), *v, d->path());
    }
  }
  if (!m_from) return make_error("{}: no delta part sets llama.block_count", parts);
  if (m <= 0 || m > n_teacher) {
    return make_error("{}: llama.block_count {} not in [1, {}] (teacher layers)", m_from->path(), m,
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

  // Every delta tensor with the part that holds it; a name in two parts is an error.
  struct Held {
    const GgufTensor* tensor;
    const GgufFile* part;
  };
  std::map<std::string, Held> held;
  for (const GgufFile* d : deltas) {
    for (const GgufTensor& t : d->tensors()) {
      auto [it, fresh] = held.try_emplace(t.name, Held{&t, d});
      if (!fresh) {
        return make_error("tensor {} is in two delta parts: {} and {}", t.name,
                          it->second.part->path(), d->path());
      }
    }
  }

  // Delta tensors must exist with the teacher's shapes (layer i of the delta is checked against
  // layer i of the teacher: the student keeps the first m layers' geometry). Each one taken is
  // removed from `held`, so what remains afterwards is unexpected.
  std::vector<const GgufTensor*> body;
  auto take = [&](const std::string& name, const std::string& teacher_name) -> Status {
    auto it = held.find(name);
    const GgufTensor* t = teacher.tensor(teacher_name);
    if (it == held.end()) return make_error("{}: missing tensor {}", parts, name);
    if (!t) return make_error("{}: missing tensor {}", teacher.path(), teacher_name);
    const GgufTensor* d = it->second.tensor;
    if (d->shape != t->shape) {
      return make_error("{}: tensor {} has a shape different from the teacher's {}",
                        it->second.part->path(), name, teacher_name);
    }
    body.push_back(d);
    held.erase(it);
    return ok_status();
  };
  // A shortlist head: the ids its rows score, from the one part that sets kOutputTokenIdsKey
  // (the student's loader checks them against the vocabulary).
  std::vector<int32_t> head_ids;
  const GgufFile* ids_from = nullptr;
  for (const GgufFile* d : deltas) {
    const GgufValue* v = d->find(kOutputTokenIdsKey);
    if (!v) continue;
    if (ids_from) {
      return make_error("{} is set in two delta parts: {} and {}", kOutputTokenIdsKey,
                        ids_from->path(), d->path());
    }
    ids_from = d;
    if (v->as_array()) {
      for (const GgufValue& e : *v->as_array())
        head_ids.push_back(int32_t(e.as_int().value_or(-1)));
    }
    if (head_ids.empty()) {
      return make_error("{}: {} must be a non-empty array of token ids", d->path(),
                        kOutputTokenIdsKey);
    }
  }
  // An output head of its own: the teacher's (tied) embedding's shape (one row per shortlisted id
  // for a shortlist head), a type hlm computes with.
  if (auto it = held.find("output.weight"); it != held.end()) {
    const GgufTensor* o = it->second.tensor;
    if (!info(o->type).supported) {
      return make_error("{}: output.weight has type {}, which hlm cannot compute with",
                        it->second.part->path(), info(o->type).name);
    }
    if (head_ids.empty()) {
      if (auto s = take("output.weight", "token_embd.weight"); !s) return s;
    } else {
      if (o->shape != std::vector<int64_t>{embd->shape[0], int64_t(head_ids.size())}) {
        return make_error("{}: output.weight must have {} rows of {}, one per id of {} in {}",
                          it->second.part->path(), head_ids.size(), embd->shape[0],
                          kOutputTokenIdsKey, ids_from->path());
      }
      body.push_back(o);
      held.erase(it);
    }
  } else if (ids_from) {
    return make_error("{}: {} is set but no part holds output.weight, the rows it names",
                      ids_from->path(), kOutputTokenIdsKey);
  }
  for (int64_t l = 0; l < m; ++l) {
    for (const char* suffix : kLayerTensors) {
      const std::string name = "blk." + std::to_string(l) + "." + suffix;
      if (auto s = take(name, name); !s) return s;
    }
  }
  if (auto s = take("output_norm.weight", "output_norm.weight"); !s) return s;
  if (!held.empty()) {
    const auto& [name, h] = *held.begin();
    return make_error(
        "{}: unexpected tensor {} (a delta holds blk.0..{}.*, output_norm.weight and optionally "
        "output.weight, nothing else)",
        h.part->path(), name, m - 1);
  }

  out.copy_metadata(teacher);
  out.set_u32("llama.block_count", static_cast<uint32_t>(m));
  out.set_string("general.name", teacher.get_string("general.name").value_or("teacher") +
                                     " (hlm SLM: first " + std::to_string(m) +
                                     " layers, distilled)");
  out.set_u32("general.file_type", 3);  // LLAMA_FTYPE_MOSTLY_Q4_1
  if (!head_ids.empty()) out.set_i32s(kOutputTokenIdsKey, head_ids);

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

Status build_student(const std::string& teacher_gguf, const std::vector<std::string>& delta_ggufs,
                     const std::string& out_gguf) {
  auto teacher = GgufFile::open(teacher_gguf);
  if (!teacher) return teacher.error();
  std::vector<GgufFile> parts;
  parts.reserve(delta_ggufs.size());
  for (const std::string& path : delta_ggufs) {
    auto delta = GgufFile::open(path);
    if (!delta) return delta.error();
    parts.push_back(std::move(*delta));
  }
  std::vector<const GgufFile*> ptrs;
  for (const GgufFile& p : parts) ptrs.push_back(&p);
  GgufWriter w;
  if (auto s = assemble_student(*teacher, ptrs, w); !s) return s;
  return w.write(out_gguf);
}

}  // namespace hlm
