// Model: a decoder-only transformer GGUF mapped into memory (architectures llama/mistral, qwen2,
// qwen3, gemma3): its hyper-parameters, weight views, tokenizer and chat template. Immutable and
// shareable.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "ops/ops.h"
#include "tokenizer/tokenizer.h"
#include "util/result.h"

namespace hlm {

// The architectures the forward pass implements, resolved once at load.
enum class Arch { kLlama, kQwen2, kQwen3, kGemma3 };

// general.architecture values hlm runs, for error messages.
inline constexpr const char* kSupportedArchitectures = "llama, mistral, qwen2, qwen3, gemma3";

struct ModelConfig {
  std::string arch;  // general.architecture ("llama"; mistral files also say llama)
  Arch kind = Arch::kLlama;
  std::string name;
  int n_vocab = 0;
  int n_embd = 0;
  int n_layer = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;  // {arch}.attention.key_length, else n_embd / n_head
  int n_ff = 0;
  int n_ctx_train = 0;
  int n_rot = 0;
  float rope_base = 10000.0f;
  float rms_eps = 1e-5f;
  // What the architectures differ in (llama's values by default).
  bool rope_neox = false;   // rotate pairs (i, i + n_rot/2), as qwen2/qwen3/gemma3 GGUFs expect
  bool gelu = false;        // FFN gate is GELU (tanh form) rather than SiLU
  float embd_scale = 1.0f;  // token embeddings are multiplied by this (gemma: sqrt(n_embd))
  float attn_scale = 0.0f;  // query scale before softmax (1/sqrt(head_dim) for most)
  int sliding_window = 0;   // > 0: sliding layers attend to the last this many positions
  float rope_base_sliding = 0.0f;  // RoPE base of the sliding layers (gemma3: 10000)
  float rope_scale = 1.0f;         // linear RoPE scaling of the global layers: positions / factor

  int q_dim() const { return n_head * head_dim; }
  int kv_dim() const { return n_head_kv * head_dim; }
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
  Weight wq, wk, wv, wo;        // q: [n_head*head_dim, n_embd]; k,v: [n_head_kv*head_dim, n_embd];
                                // o: [n_embd, n_head*head_dim]
  const float* ffn_norm;        // [n_embd]
  Weight w_gate, w_up, w_down;  // gate/up: [n_ff, n_embd]; down: [n_embd, n_ff]
  // Present only in the architectures that have them (null otherwise).
  const float* bq = nullptr;              // qwen2: [q_dim]
  const float* bk = nullptr;              // qwen2: [kv_dim]
  const float* bv = nullptr;              // qwen2: [kv_dim]
  const float* q_norm = nullptr;          // qwen3, gemma3: per-head RMSNorm [head_dim]
  const float* k_norm = nullptr;          // qwen3, gemma3: [head_dim]
  const float* post_attn_norm = nullptr;  // gemma3: RMSNorm of the attention output [n_embd]
  const float* post_ffn_norm = nullptr;   // gemma3: RMSNorm of the FFN output [n_embd]
  bool sliding = false;  // attends to the last config.sliding_window positions only (gemma3)
};

class Model {
 public:
  // Maps the file and checks the architecture, every expected tensor's presence, shape and type.
  // Without weights only the metadata, tokenizer and chat template are read: what a gateway
  // needs whose LLM runs elsewhere (vLLM), without holding a large model's weights in memory.
  enum class Weights { kLoad, kSkip };
  static Result<std::shared_ptr<const Model>> load(const std::string& path,
                                                   Weights weights = Weights::kLoad);
  bool has_weights() const { return !layers_.empty(); }

  const std::string& path() const { return path_; }
  const ModelConfig& config() const { return config_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  // The chat template detected from the file's metadata, or why there is none.
  const Result<ChatTemplate>& chat_template() const { return *chat_; }
  const GgufFile& gguf() const { return file_; }

  const Weight& token_embd() const { return token_embd_; }
  const Weight& output() const { return output_; }  // token_embd when tied
  // The ids output()'s rows score, in order, for a shortlist head (kOutputTokenIdsKey); every
  // other id gets logit -inf. Empty: row i is id i.
  const std::vector<int32_t>& output_ids() const { return output_ids_; }
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
  std::vector<int32_t> output_ids_;
  const float* output_norm_ = nullptr;
  std::vector<LayerWeights> layers_;
  std::vector<ops::TiledWeights> tiled_;  // what the Weights' `tiles` point into
};

}  // namespace hlm
