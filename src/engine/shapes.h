// Real model shapes: the hyper-parameters of models people deploy (from their published
// configs), so that `hlm models synth` can write random-weight files that cost what the real
// models cost to run, plus small versions of each for tests.
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace hlm {

struct ModelShape {
  std::string_view name;  // e.g. "llama-2-7b"
  std::string_view arch;  // general.architecture
  int n_embd, n_layer, n_head, n_head_kv;
  int head_dim;  // n_embd / n_head unless the model says otherwise (gemma3)
  int n_ff, n_ctx;
  float rope_base, rms_eps;
  bool tied_output;  // the token embedding is also the output matrix
  // The llama.cpp test vocabulary (ggml-vocab-<vocab>.gguf) with the model's tokenizer, or empty
  // when none of them is (--vocab must then name one).
  std::string_view vocab;
  std::string_view source;  // where the numbers come from
};

std::span<const ModelShape> known_shapes();
const ModelShape* find_shape(std::string_view name);
// "tinyllama-1.1b, llama-2-7b, ..." for error messages and help; only `arch`'s when given.
std::string shape_names(std::string_view arch = "");

}  // namespace hlm
