// Model writers: tiny random models of each supported architecture as real GGUF files (so engine,
// method and protocol tests run the full code path in milliseconds without downloading anything),
// and a layer-truncated copy of a real model (a cheap same-vocabulary draft model).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "engine/file_type.h"
#include "gguf/tensor_type.h"
#include "util/result.h"

namespace hlm {

class ThreadPool;
struct ModelShape;

struct TinyModelSpec {
  // general.architecture: "llama", "qwen2" (adds q/k/v biases), "qwen3" (per-head q/k norms) or
  // "gemma3" (q/k norms, post-attention and post-FFN norms, sliding-window layers).
  std::string arch = "llama";
  int n_embd = 64;
  int n_layer = 2;
  int n_head = 4;
  int n_head_kv = 2;
  int n_ff = 128;
  int n_ctx = 256;
  int head_dim = 0;            // 0: n_embd / n_head; else written as attention.key_length
  float rope_base = 10000.0f;  // rope.freq_base (gemma3: of its global layers)
  int sliding_window = 512;    // gemma3 only: attention.sliding_window
  TensorType weight_type = TensorType::Q8_0;
  bool tied_output = false;
  uint64_t seed = 1;
  // Perturbs every weight by this relative amount (to make a "different but close" model on
  // the same vocabulary, as a device model is to its cloud model).
  float perturb = 0.0f;
  uint64_t perturb_seed = 2;

  // ---- Real shapes (hlm models synth; see from_shape) ----
  std::string name = "hlm-tiny-test";
  float rms_eps = 1e-5f;
  // A GGUF whose tokenizer.* metadata becomes the vocabulary (n_vocab = its token count); empty:
  // a built-in SentencePiece-style vocabulary of byte tokens.
  std::string vocab_path;
  // llama.cpp's mix of tensor types for this file type (file_type_tensor) in place of
  // weight_type; unset: every matrix is weight_type.
  std::optional<FileType> file_type;
  // Draws each weight from a hash of (seed, tensor, index) instead of one stream through the whole
  // file, so that matrices are generated and quantised in parallel on `pool` and streamed to disk
  // one at a time, with bytes that do not depend on the thread count. Off for the tiny test models,
  // whose bytes recorded fixtures depend on.
  bool hashed_weights = false;
  ThreadPool* pool = nullptr;  // with hashed_weights; null: the calling thread alone
  // Called as each tensor is written, with the bytes written so far and the total.
  std::function<void(uint64_t done, uint64_t total)> progress;

  // A real shape's hyper-parameters, hashed weights of the given file type and seed.
  static TinyModelSpec from_shape(const ModelShape& shape, FileType type, uint64_t seed);
};

// Whether write_tiny_model writes models of this general.architecture (kTinyArchitectures).
bool writer_supports(const std::string& arch);

// Writes a GGUF of spec.arch with a SentencePiece-style vocabulary of byte tokens plus
// <unk>, <s>, </s> and a few merged pieces (or spec.vocab_path's vocabulary); weights drawn from
// N(0, 1) scaled per matrix so that activations keep unit size, from the seed (the same spec gives
// the same bytes). Errors name the vocabulary file or the output path.
Status write_tiny_model(const std::string& path, const TinyModelSpec& spec);

// The architectures write_tiny_model writes (and the forward pass runs).
inline constexpr const char* kTinyArchitectures[] = {"llama", "qwen2", "qwen3", "gemma3"};
// The weight types the engine computes with (the writer can quantise those ops::can_quantize
// accepts).
inline constexpr TensorType kEngineTensorTypes[] = {
    TensorType::F32,  TensorType::F16,  TensorType::BF16, TensorType::Q8_0,
    TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1,
    TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K};

// The small model of `arch` in weight type `type` that the logit tests compare with llama.cpp
// (tests/fixtures/arch_logits.json; tools/reference/record_arch_fixtures.py records it from the
// files write_arch_models writes): each architecture's own features at toy size. qwen2 ties its
// output (gemma3-270m covers gemma3's tied output); qwen3 and gemma3 have heads wider than
// n_embd / n_head; gemma3 has 6 layers (so one is global) and an 8-position sliding window that
// the tests' prompts outrun. Rows are 64 wide, or 256 for types with 256-element blocks.
TinyModelSpec arch_test_spec(const std::string& arch, TensorType type);

class Model;

// A cloud model and a device model on one vocabulary for tests: a tiny model with n_layer
// blocks and a copy with every weight perturbed by `perturb`, written to unique temporary files,
// loaded, and the files removed (the mappings stay valid).
struct TinyPair {
  std::shared_ptr<const Model> slm, llm;
};
Result<TinyPair> make_tiny_pair(int n_layer, float perturb = 0.6f);

// Writes `src` keeping only its first n_layers transformer blocks (embedding, final norm,
// output and tokenizer unchanged): an untrained stand-in for a distilled device model.
Status write_truncated_model(const std::string& src, const std::string& dst, int n_layers);

// Writes `src` with a shortlist output head (kOutputTokenIdsKey): output.weight keeps only the
// rows of `ids` (strictly increasing token ids; taken from the embedding when src's output is
// tied), so the model scores those ids exactly as src does and no others.
Status write_shortlisted_model(const std::string& src, const std::string& dst,
                               const std::vector<int32_t>& ids);

}  // namespace hlm
