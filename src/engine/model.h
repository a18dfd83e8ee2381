// Model: a llama-family GGUF (TinyLlama, Llama-2, SmolLM2, Mistral) mapped into memory: its
// hyper-parameters, weight views, tokenizer and chat template. Immutable and shareable.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "ops/ops.h"
#include "tokenizer/tokenizer.h"
#include "util/result.h"

namespace hlm {

struct ModelConfig {
  std::string arch;  // "llama" (mistral files also say llama)
  std::string name;
  int n_vocab = 0;
  int n_embd = 0;
  int n_layer = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;
  int n_ff = 0;
  int n_ctx_train = 0;
  int n_rot = 0;
  float rope_base = 10000.0f;
  float rms_eps = 1e-5f;
};

// A weight matrix: `rows` rows of `cols` elements of `type`, contiguous; with `tiles`, the same
// matrix laid out for this CPU's kernels as well (ops::TiledWeights), which matmuls read instead.
struct Weight {
  TensorType type = TensorType::F32;
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* tiles = nullptr;
};

struct LayerWeights {
  const float* attn_norm;       // [n_embd]
  Weight wq, wk, wv, wo;        // q: [n_head*head_dim, n_embd]; k,v: [n_head_kv*head_dim, n_embd]
  const float* ffn_norm;        // [n_embd]
  Weight w_gate, w_up, w_down;  // gate/up: [n_ff, n_embd]; down: [n_embd, n_ff]
};

class Model {
 public:
  // Maps the file and checks the architecture, every expected tensor's presence, shape and type.
  static Result<std::shared_ptr<const Model>> load(const std::string& path);

  const std::string& path() const { return path_; }
  const ModelConfig& config() const { return config_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  // The chat template detected from the file's metadata, or why there is none.
  const Result<ChatTemplate>& chat_template() const { return *chat_; }
  const GgufFile& gguf() const { return file_; }

  const Weight& token_embd() const { return token_embd_; }
  const Weight& output() const { return output_; }  // token_embd when tied
  const float* output_norm() const { return output_norm_; }
  const std::vector<LayerWeights>& layers() const { return layers_; }
  size_t weight_bytes() const;

 private:
  std::string path_;
  GgufFile file_;
  ModelConfig config_;
  Tokenizer tokenizer_;
  std::unique_ptr<Result<ChatTemplate>> chat_;
  Weight token_embd_, output_;
  const float* output_norm_ = nullptr;
  std::vector<LayerWeights> layers_;
  std::vector<ops::TiledWeights> tiled_;  // what the Weights' `tiles` point into
};

}  // namespace hlm
