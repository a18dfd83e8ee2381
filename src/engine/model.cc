// Model loading: hyper-parameters and weight views from a GGUF of one of the supported
// architectures, validated up front so that the forward pass never meets a missing tensor or a
// mismatched shape, and the per-architecture choices resolved here rather than per token.
#include "engine/model.h"

#include <fmt/ranges.h>

#include <cmath>

namespace hlm {
namespace {

struct Loader {
  const GgufFile& f;
  const std::string& path;
  const std::string& arch;
  std::string error;

  // Looks up a tensor and checks its shape (ggml order) and, for norms, that it is F32.
  const GgufTensor* get(const std::string& name, std::vector<int64_t> shape, bool must_be_f32) {
    if (!error.empty()) return nullptr;
    const GgufTensor* t = f.tensor(name);
    if (!t) {
      error = fmt::format("{}: missing tensor '{}' (not a complete {}-architecture model?)", path,
                          name, arch);
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

// Resolves general.architecture to what the forward pass does differently for it.
Result<Arch> arch_of(const std::string& name, const std::string& path) {
  if (name == "llama" || name == "mistral") return Arch::kLlama;
  if (name == "qwen2") return Arch::kQwen2;
  if (name == "qwen3") return Arch::kQwen3;
  if (name == "gemma3") return Arch::kGemma3;
  return make_error(
      "{}: architecture '{}' is not supported (general.architecture must be one of: {})", path,
      name.empty() ? "<missing>" : name, kSupportedArchitectures);
}

// The shortlist head's ids (kOutputTokenIdsKey), checked; empty when the key is absent.
Result<std::vector<int32_t>> output_token_ids(const GgufFile& f, const std::string& path,
                                              int n_vocab) {
  std::vector<int32_t> ids;
  const GgufValue* v = f.find(kOutputTokenIdsKey);
  if (!v) return ids;
  if (!v->as_array() || v->as_array()->empty()) {
    return make_error("{}: {} must be a non-empty array of token ids", path, kOutputTokenIdsKey);
  }
  for (const GgufValue& e : *v->as_array()) {
    const std::optional<int64_t> id = e.as_int();
    if (!id || *id < 0 || *id >= n_vocab || (!ids.empty() && *id <= ids.back())) {
      return make_error("{}: {}[{}] is {}: expected token ids in [0, {}), strictly increasing",
                        path, kOutputTokenIdsKey, ids.size(),
                        id ? std::to_string(*id) : std::string("not an integer"), n_vocab);
    }
    ids.push_back(static_cast<int32_t>(*id));
  }
  return ids;
}

}  // namespace

size_t Model::weight_bytes() const {
  size_t n = 0;
  for (const auto& t : file_.tensors()) n += t.n_bytes;
  return n;
}

Result<std::shared_ptr<const Model>> Model::load(const std::string& path, Weights weights) {
  auto file = GgufFile::open(path);
  if (!file) return file.error();
  auto m = std::shared_ptr<Model>(new Model());
  m->path_ = path;
  m->file_ = std::move(file).value();
  const GgufFile& f = m->file_;
  ModelConfig& c = m->config_;

  c.arch = f.get_string("general.architecture").value_or("");
  auto kind = arch_of(c.arch, path);
  if (!kind) return kind.error();
  c.kind = *kind;
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
  // Qwen3 and Gemma 3 give heads their own size (key_length), not n_embd / n_head.
  const auto key_length = f.get_int(c.arch + ".attention.key_length");
  if (c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0 ||
      (!key_length && c.n_embd % c.n_head != 0)) {
    return make_error("{}: inconsistent head counts (n_embd {}, heads {}, kv heads {})", path,
                      c.n_embd, c.n_head, c.n_head_kv);
  }
  c.head_dim = static_cast<int>(key_length.value_or(c.n_embd / c.n_head));
  const int64_t value_length = f.get_int(c.arch + ".attention.value_length").value_or(c.head_dim);
  if (c.head_dim <= 0 || c.head_dim % 2 || value_length != c.head_dim) {
    return make_error(
        "{}: head size {} (key_length) and value_length {} must be equal, even and positive", path,
        c.head_dim, value_length);
  }
  c.n_rot = static_cast<int>(f.get_int(c.arch + ".rope.dimension_count").value_or(c.head_dim));
  if (c.n_rot <= 0 || c.n_rot > c.head_dim || c.n_rot % 2) {
    return make_error("{}: rope.dimension_count {} invalid for head size {}", path, c.n_rot,
                      c.head_dim);
  }
  c.n_ctx_train = static_cast<int>(f.get_int(c.arch + ".context_length").value_or(2048));
  c.rope_base = static_cast<float>(f.get_float(c.arch + ".rope.freq_base").value_or(10000.0));
  c.rms_eps =
      static_cast<float>(f.get_float(c.arch + ".attention.layer_norm_rms_epsilon").value_or(1e-5));
  if (f.get_string(c.arch + ".rope.scaling.type").value_or("") == "linear") {
    const double factor = f.get_float(c.arch + ".rope.scaling.factor").value_or(1.0);
    if (!(factor > 0)) {
      return make_error("{}: {}.rope.scaling.factor {} must be positive", path, c.arch, factor);
    }
    c.rope_scale = static_cast<float>(1.0 / factor);
  }
  c.attn_scale = 1.0f / std::sqrt(float(c.head_dim));
  c.rope_neox = c.kind != Arch::kLlama;
  if (c.kind == Arch::kGemma3) {
    // As llama.cpp (after gemma_pytorch) reads Gemma 3: every 6th layer is global, the others
    // slide over the last sliding_window positions with RoPE base 10000; embeddings are scaled by
    // sqrt(n_embd); the 27B model (62 layers) scales queries by 1/sqrt(n_embd / n_head). The
    // GGUF's norm weights already hold Gemma's (1 + w), so they apply as they are.
    auto window = need("attention.sliding_window");
    if (!window) return window.error();
    c.sliding_window = static_cast<int>(*window);
    c.rope_base_sliding =
        static_cast<float>(f.get_float(c.arch + ".rope.freq_base_swa").value_or(10000.0));
    c.gelu = true;
    c.embd_scale = std::sqrt(float(c.n_embd));
    if (c.n_layer == 62) c.attn_scale = 1.0f / std::sqrt(float(c.n_embd / c.n_head));
  }

  auto tok = Tokenizer::from_gguf(f);
  if (!tok) return tok.error();
  m->tokenizer_ = std::move(tok).value();
  c.n_vocab = m->tokenizer_.n_vocab();
  m->chat_ = std::make_unique<Result<ChatTemplate>>(ChatTemplate::from_gguf(f, m->tokenizer_));
  if (weights == Weights::kSkip) return std::shared_ptr<const Model>(std::move(m));

  Loader L{f, path, c.arch, {}};
  const int64_t q_dim = c.q_dim(), kv_dim = c.kv_dim();
  m->token_embd_ = L.weight("token_embd.weight", c.n_vocab, c.n_embd);
  m->output_norm_ = L.norm("output_norm.weight", c.n_embd);
  auto ids = output_token_ids(f, path, c.n_vocab);
  if (!ids) return ids.error();
  m->output_ids_ = std::move(ids).value();
  if (!m->output_ids_.empty() && !f.tensor("output.weight")) {
    return make_error("{}: {} is set but there is no output.weight tensor for its rows", path,
                      kOutputTokenIdsKey);
  }
  if (L.error.empty() && f.tensor("output.weight")) {
    const int64_t rows = m->output_ids_.empty() ? c.n_vocab : int64_t(m->output_ids_.size());
    m->output_ = L.weight("output.weight", rows, c.n_embd);
  } else {
    m->output_ = m->token_embd_;  // tied embeddings (SmolLM2)
  }
  m->layers_.resize(c.n_layer);
  for (int i = 0; i < c.n_layer; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    LayerWeights& lw = m->layers_[i];
    lw.attn_norm = L.norm(b + "attn_norm.weight", c.n_embd);
    lw.wq = L.weight(b + "attn_q.weight", q_dim, c.n_embd);
    lw.wk = L.weight(b + "attn_k.weight", kv_dim, c.n_embd);
    lw.wv = L.weight(b + "attn_v.weight", kv_dim, c.n_embd);
    lw.wo = L.weight(b + "attn_output.weight", c.n_embd, q_dim);
    lw.ffn_norm = L.norm(b + "ffn_norm.weight", c.n_embd);
    lw.w_gate = L.weight(b + "ffn_gate.weight", c.n_ff, c.n_embd);
    lw.w_up = L.weight(b + "ffn_up.weight", c.n_ff, c.n_embd);
    lw.w_down = L.weight(b + "ffn_down.weight", c.n_embd, c.n_ff);
    if (c.kind == Arch::kQwen2) {
      lw.bq = L.norm(b + "attn_q.bias", q_dim);
      lw.bk = L.norm(b + "attn_k.bias", kv_dim);
      lw.bv = L.norm(b + "attn_v.bias", kv_dim);
    }
    if (c.kind == Arch::kQwen3 || c.kind == Arch::kGemma3) {
      lw.q_norm = L.norm(b + "attn_q_norm.weight", c.head_dim);
      lw.k_norm = L.norm(b + "attn_k_norm.weight", c.head_dim);
    }
    if (c.kind == Arch::kGemma3) {
      lw.post_attn_norm = L.norm(b + "post_attention_norm.weight", c.n_embd);
      lw.post_ffn_norm = L.norm(b + "post_ffw_norm.weight", c.n_embd);
      lw.sliding = (i + 1) % 6 != 0;
    }
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
