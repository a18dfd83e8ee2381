// Model writers: tiny random llama models as real GGUF files (so engine, method and protocol
// tests run the full code path in milliseconds without downloading anything), and a
// layer-truncated copy of a real model (a cheap same-vocabulary draft model).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "gguf/tensor_type.h"
#include "util/result.h"

namespace hlm {

struct TinyModelSpec {
  int n_embd = 64;
  int n_layer = 2;
  int n_head = 4;
  int n_head_kv = 2;
  int n_ff = 128;
  int n_ctx = 256;
  TensorType weight_type = TensorType::Q8_0;
  bool tied_output = false;
  uint64_t seed = 1;
  // Perturbs every weight by this relative amount (to make a "different but close" model on
  // the same vocabulary, as a device model is to its cloud model).
  float perturb = 0.0f;
  uint64_t perturb_seed = 2;
};

// Writes a llama-architecture GGUF with a SentencePiece-style vocabulary of byte tokens plus
// <unk>, <s>, </s> and a few merged pieces; weights drawn from N(0, 0.02..) with the seed.
Status write_tiny_model(const std::string& path, const TinyModelSpec& spec);

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

}  // namespace hlm
