// The shape table (see shapes.h). Numbers are the models' config.json on Hugging Face.
#include "engine/shapes.h"

namespace hlm {
namespace {

constexpr ModelShape kShapes[] = {
    {"tinyllama-1.1b", "llama", 2048, 22, 32, 4, 64, 5632, 2048, 10000.0f, 1e-5f, false,
     "llama-spm", "TinyLlama/TinyLlama-1.1B-Chat-v1.0"},
    {"llama-2-7b", "llama", 4096, 32, 32, 32, 128, 11008, 4096, 10000.0f, 1e-5f, false, "llama-spm",
     "meta-llama/Llama-2-7b-hf"},
    {"qwen2.5-0.5b", "qwen2", 896, 24, 14, 2, 64, 4864, 32768, 1e6f, 1e-6f, true, "qwen2",
     "Qwen/Qwen2.5-0.5B-Instruct"},
    {"qwen2.5-7b", "qwen2", 3584, 28, 28, 4, 128, 18944, 32768, 1e6f, 1e-6f, false, "qwen2",
     "Qwen/Qwen2.5-7B-Instruct"},
    {"gemma3-1b", "gemma3", 1152, 26, 4, 1, 256, 6912, 32768, 1e6f, 1e-6f, true, "",
     "google/gemma-3-1b-it"},
    // Small versions (a few MB with a llama.cpp vocabulary) for tests: the same architecture and
    // proportions, row lengths that every type's blocks fit.
    {"test-llama", "llama", 256, 2, 8, 2, 32, 512, 512, 10000.0f, 1e-5f, false, "llama-spm",
     "hlm (test)"},
    {"test-qwen2", "qwen2", 256, 2, 4, 2, 64, 512, 512, 1e6f, 1e-6f, true, "qwen2", "hlm (test)"},
    {"test-gemma3", "gemma3", 256, 2, 2, 1, 128, 512, 512, 1e6f, 1e-6f, true, "", "hlm (test)"},
};

}  // namespace

std::span<const ModelShape> known_shapes() { return kShapes; }

const ModelShape* find_shape(std::string_view name) {
  for (const ModelShape& s : kShapes) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

std::string shape_names(std::string_view arch) {
  std::string out;
  for (const ModelShape& s : kShapes) {
    if (arch.empty() || s.arch == arch) out += (out.empty() ? "" : ", ") + std::string(s.name);
  }
  return out;
}

}  // namespace hlm
