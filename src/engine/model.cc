// Model loading: hyper-parameters and weight views from a llama-family GGUF, validated up front
// so that the forward pass never meets a missing tensor or a mismatched shape.
#include "engine/model.h"

#include <fmt/ranges.h>

namespace hlm {
namespace {

struct Loader {
  const GgufFile& f;
  const std::string& path;
  std::string error;

  // Looks up a tensor and checks its shape (ggml order) and, for norms, that it is F32.
  const GgufTensor* get(const std::string& name, std::vector<int64_t> shape, bool must_be_f32) {
    if (!error.empty()) return nullptr;
    const GgufTensor* t = f.tensor(name);
    if (!t) {
      error = fmt::format("{}: missing tensor '{}' (not a complete llama-architecture model?)",
                          path, name);
      return nullptr;
    }
    const TensorTypeInfo& ti = info(t->type);
    if (!ti.supported) {
      error = fmt::format(
          "{}: tensor '{}' has type {}, which hlm does not support (supported: F32, F16, BF16, "
          "Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)",
          path, name, ti.name);
      return nullptr;
    }
    if (t->shape != shape) {
      error = fmt::format("{}: tensor '{}' has shape [{}], expected [{}]", path, name,
                          fmt::join(t->shape, ", "), fmt::join(shape, ", "));
      return nullptr;
    }
    if (must_be_f32 && t->type != TensorType::F32) {
      error = fmt::format("{}: tensor '{}' has type {}, expected F32", path, name, ti.name);
      return nullptr;
    }
    return t;
  }

  Weight weight(const std::string& name, int64_t rows, int64_t cols) {
    const GgufTensor* t = get(name, {cols, rows}, false);
    if (!t) return {};
    return Weight{t->type, t->data, rows, cols};
  }
  const float* norm(const std::string& name, int64_t n) {
    const GgufTensor* t = get(name, {n}, true);
    return t ? static_cast<const float*>(t->data) : nullptr;
  }
};

}  // namespace

size_t Model::weight_bytes() const {
  size_t n = 0;
  for (const auto& t : file_.tensors()) n += t.n_bytes;
  return n;
}

Result<std::shared_ptr<const Model>> Model::load(const std::string& path) {
  auto file = GgufFile::open(path);
  if (!file) return file.error();
  auto m = std::shared_ptr<Model>(new Model());
  m->path_ = path;
  m->file_ = std::move(file).value();
  const GgufFile& f = m->file_;
  ModelConfig& c = m->config_;

  c.arch = f.get_string("general.architecture").value_or("");
  if (c.arch != "llama" && c.arch != "mistral") {
    return make_error(
        "{}: architecture '{}' is not supported (hlm runs llama-family models: "
        "general.architecture must be 'llama' or 'mistral')",
        path, c.arch.empty() ? "<missing>" : c.arch);
  }
  c.name = f.get_string("general.name").value_or(path);
  auto need = [&](const std::string& key) -> Result<int64_t> {
    auto v = f.get_int(c.arch + "." + key);
    if (!v || *v <= 0)
      return make_error("{}: missing or invalid metadata '{}.{}'", path, c.arch, key);
    return *v;
  };
  for (auto [key, out] : {std::pair{"embedding_length", &c.n_embd},
                          {"block_count", &c.n_layer},
                          {"feed_forward_length", &c.n_ff},
                          {"attention.head_count", &c.n_head}}) {
    auto v = need(key);
    if (!v) return v.error();
    *out = static_cast<int>(*v);
  }
  c.n_head_kv = static_cast<int>(f.get_int(c.arch + ".attention.head_count_kv").value_or(c.n_head));
  if (c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0 || c.n_embd % c.n_head != 0) {
    return make_error("{}: inconsistent head counts (n_embd {}, heads {}, kv heads {})", path,
                      c.n_embd, c.n_head, c.n_head_kv);
  }
  c.head_dim = c.n_embd / c.n_head;
  c.n_rot = static_cast<int>(f.get_int(c.arch + ".rope.dimension_count").value_or(c.head_dim));
  if (c.n_rot <= 0 || c.n_rot > c.head_dim || c.n_rot % 2) {
    return make_error("{}: rope.dimension_count {} invalid for head size {}", path, c.n_rot,
                      c.head_dim);
  }
  c.n_ctx_train = static_cast<int>(f.get_int(c.arch + ".context_length").value_or(2048));
  c.rope_base = static_cast<float>(f.get_float(c.arch + ".rope.freq_base").value_or(10000.0));
  c.rms_eps =
      static_cast<float>(f.get_float(c.arch + ".attention.layer_norm_rms_epsilon").value_or(1e-5));

  auto tok = Tokenizer::from_gguf(f);
  if (!tok) return tok.error();
  m->tokenizer_ = std::move(tok).value();
  c.n_vocab = m->tokenizer_.n_vocab();
  m->chat_ = std::make_unique<Result<ChatTemplate>>(ChatTemplate::from_gguf(f, m->tokenizer_));

  Loader L{f, path, {}};
  const int64_t kv_dim = int64_t{c.n_head_kv} * c.head_dim;
  m->token_embd_ = L.weight("token_embd.weight", c.n_vocab, c.n_embd);
  m->output_norm_ = L.norm("output_norm.weight", c.n_embd);
  if (L.error.empty() && f.tensor("output.weight")) {
    m->output_ = L.weight("output.weight", c.n_vocab, c.n_embd);
  } else {
    m->output_ = m->token_embd_;  // tied embeddings (SmolLM2)
  }
  m->layers_.resize(c.n_layer);
  for (int i = 0; i < c.n_layer; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    LayerWeights& lw = m->layers_[i];
    lw.attn_norm = L.norm(b + "attn_norm.weight", c.n_embd);
    lw.wq = L.weight(b + "attn_q.weight", c.n_embd, c.n_embd);
    lw.wk = L.weight(b + "attn_k.weight", kv_dim, c.n_embd);
    lw.wv = L.weight(b + "attn_v.weight", kv_dim, c.n_embd);
    lw.wo = L.weight(b + "attn_output.weight", c.n_embd, c.n_embd);
    lw.ffn_norm = L.norm(b + "ffn_norm.weight", c.n_embd);
    lw.w_gate = L.weight(b + "ffn_gate.weight", c.n_ff, c.n_embd);
    lw.w_up = L.weight(b + "ffn_up.weight", c.n_ff, c.n_embd);
    lw.w_down = L.weight(b + "ffn_down.weight", c.n_embd, c.n_ff);
  }
  if (!L.error.empty()) return Error{L.error};
  // The matrices the forward multiplies by, tiled for this CPU where its kernels read tiles
  // (the embedding rows are read from the file: a tied output matrix gets a copy of its own).
  // A tiled matrix's bytes in the file are not read again, so its pages leave resident memory
  // as soon as its tiles exist: the process holds about one copy of the weights, not two.
  const auto tile = [&](Weight& w) {
    ops::TiledWeights t = ops::tile_weights(w.type, w.data, w.rows, w.cols);
    if (!t) return;
    w.tiles = t.data();
    m->tiled_.push_back(std::move(t));
    if (w.data != m->token_embd_.data) {
      m->file_.release(w.data, size_t(w.rows) * row_bytes(w.type, w.cols));
    }
  };
  for (LayerWeights& lw : m->layers_) {
    for (Weight* w : {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down}) tile(*w);
  }
  tile(m->output_);
  return std::shared_ptr<const Model>(std::move(m));
}

}  // namespace hlm
