// Model writers (see model_writer.h).
#include "engine/model_writer.h"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <random>
#include <vector>

#include "engine/model.h"
#include "gguf/gguf.h"
#include "gguf/gguf_writer.h"
#include "ops/ops.h"

namespace hlm {
namespace {

std::vector<uint8_t> encode(TensorType t, const std::vector<float>& v, int64_t cols) {
  const int64_t rows = static_cast<int64_t>(v.size()) / cols;
  std::vector<uint8_t> out(row_bytes(t, cols) * rows);
  for (int64_t r = 0; r < rows; ++r) {
    ops::quantize_row(t, v.data() + r * cols, out.data() + r * row_bytes(t, cols), cols);
  }
  return out;
}

}  // namespace

Status write_tiny_model(const std::string& path, const TinyModelSpec& s) {
  const bool qwen2 = s.arch == "qwen2", qwen3 = s.arch == "qwen3", gemma3 = s.arch == "gemma3";
  if (s.arch != "llama" && !qwen2 && !qwen3 && !gemma3) {
    return make_error("cannot write a tiny '{}' model (architectures: llama, qwen2, qwen3, gemma3)",
                      s.arch);
  }
  GgufWriter w;
  const std::string a = s.arch + ".";
  const int hd = s.head_dim > 0 ? s.head_dim : s.n_embd / s.n_head;
  const int q_dim = s.n_head * hd, kv = s.n_head_kv * hd;
  w.set_string("general.architecture", s.arch);
  w.set_string("general.name", "hlm-tiny-test");
  w.set_u32(a + "context_length", static_cast<uint32_t>(s.n_ctx));
  w.set_u32(a + "embedding_length", static_cast<uint32_t>(s.n_embd));
  w.set_u32(a + "block_count", static_cast<uint32_t>(s.n_layer));
  w.set_u32(a + "feed_forward_length", static_cast<uint32_t>(s.n_ff));
  w.set_u32(a + "attention.head_count", static_cast<uint32_t>(s.n_head));
  w.set_u32(a + "attention.head_count_kv", static_cast<uint32_t>(s.n_head_kv));
  if (s.head_dim > 0) {
    w.set_u32(a + "attention.key_length", static_cast<uint32_t>(hd));
    w.set_u32(a + "attention.value_length", static_cast<uint32_t>(hd));
  }
  if (gemma3) w.set_u32(a + "attention.sliding_window", static_cast<uint32_t>(s.sliding_window));
  w.set_f32(a + "rope.freq_base", s.rope_base);
  w.set_f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);

  // Vocabulary: <unk>, <s>, </s>, 256 byte tokens, then printable pieces and a few merges.
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0, 0, 0};
  std::vector<int32_t> types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    tokens.push_back(buf);
    scores.push_back(0);
    types.push_back(6);
  }
  const std::string sp = "\xe2\x96\x81";  // SentencePiece's word-boundary mark
  const std::string pieces[] = {sp,   "e",      "t",  "a",      "o",  "n",        "s",
                                "h",  "r",      "l",  sp + "t", "he", sp + "the", "in",
                                "er", sp + "a", "an", "re",     "on", sp + "s"};
  float score = -1;
  for (const auto& p : pieces) {
    tokens.push_back(p);
    scores.push_back(score);
    score -= 1;
    types.push_back(1);
  }
  const int n_vocab = static_cast<int>(tokens.size());
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_strings("tokenizer.ggml.tokens", tokens);
  w.set_f32s("tokenizer.ggml.scores", scores);
  w.set_i32s("tokenizer.ggml.token_type", types);
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);
  w.set_u32("tokenizer.ggml.unknown_token_id", 0);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_string("tokenizer.chat_template",
               "{% for message in messages %}{{'<|' + message['role'] + '|>\\n' + "
               "message['content'] + eos_token}}{% endfor %}");

  std::mt19937_64 rng(s.seed), prng(s.perturb_seed);
  std::normal_distribution<float> N(0.0f, 1.0f);
  auto randn = [&](int64_t n, float scale) {
    std::vector<float> v(n);
    for (auto& x : v) {
      x = N(rng) * scale;
      if (s.perturb > 0) x += N(prng) * scale * s.perturb;
    }
    return v;
  };
  auto add = [&](const std::string& name, int64_t rows, int64_t cols, float scale, TensorType t) {
    auto v = randn(rows * cols, scale);
    auto bytes = encode(t, v, cols);
    w.add_tensor(name, t, {cols, rows}, bytes.data(), bytes.size());
  };
  // Norm weights near 1 (Gemma's GGUFs store its (1 + w) already), biases near 0; both F32.
  auto add_f32 = [&](const std::string& name, int64_t n, float mean, float scale) {
    std::vector<float> v(n);
    for (auto& x : v) x = mean + scale * N(rng);
    w.add_tensor(name, TensorType::F32, {n}, v.data(), v.size() * 4);
  };
  auto add_norm = [&](const std::string& name, int64_t n) { add_f32(name, n, 1.0f, 0.1f); };
  // A tied output reads the embedding rows: smaller rows keep the logits spread over a few units
  // and let the blocks, not the input token's own embedding, decide the prediction. Gemma's
  // forward multiplies embeddings by sqrt(n_embd), so its rows are that much smaller.
  const float embd_scale =
      (s.tied_output ? 0.3f : 1.0f) / (gemma3 ? std::sqrt(float(s.n_embd)) : 1.0f);
  add("token_embd.weight", n_vocab, s.n_embd, embd_scale, s.weight_type);
  add_norm("output_norm.weight", s.n_embd);
  if (!s.tied_output) add("output.weight", n_vocab, s.n_embd, 0.3f, s.weight_type);
  const float ws = 1.0f / std::sqrt(float(s.n_embd));
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    add_norm(b + "attn_norm.weight", s.n_embd);
    add(b + "attn_q.weight", q_dim, s.n_embd, 2 * ws, s.weight_type);
    add(b + "attn_k.weight", kv, s.n_embd, 2 * ws, s.weight_type);
    add(b + "attn_v.weight", kv, s.n_embd, ws, s.weight_type);
    add(b + "attn_output.weight", s.n_embd, q_dim, 1.0f / std::sqrt(float(q_dim)), s.weight_type);
    if (qwen2) {
      add_f32(b + "attn_q.bias", q_dim, 0.0f, 0.2f);
      add_f32(b + "attn_k.bias", kv, 0.0f, 0.2f);
      add_f32(b + "attn_v.bias", kv, 0.0f, 0.2f);
    }
    if (qwen3 || gemma3) {
      add_norm(b + "attn_q_norm.weight", hd);
      add_norm(b + "attn_k_norm.weight", hd);
    }
    if (gemma3) add_norm(b + "post_attention_norm.weight", s.n_embd);
    add_norm(b + "ffn_norm.weight", s.n_embd);
    add(b + "ffn_gate.weight", s.n_ff, s.n_embd, ws, s.weight_type);
    add(b + "ffn_up.weight", s.n_ff, s.n_embd, ws, s.weight_type);
    add(b + "ffn_down.weight", s.n_embd, s.n_ff, 1.0f / std::sqrt(float(s.n_ff)), s.weight_type);
    if (gemma3) add_norm(b + "post_ffw_norm.weight", s.n_embd);
  }
  return w.write(path);
}

TinyModelSpec arch_test_spec(const std::string& arch, TensorType type) {
  TinyModelSpec s;
  s.arch = arch;
  s.weight_type = type;
  if (info(type).block_size > s.n_embd) {
    s.n_embd = info(type).block_size;
    s.n_ff = 2 * s.n_embd;
  }
  if (arch == "qwen2") {
    s.tied_output = true;
    s.rope_base = 1e6f;
  } else if (arch == "qwen3") {
    s.head_dim = s.n_embd / 2;
    s.rope_base = 1e6f;
  } else if (arch == "gemma3") {
    s.n_layer = 6;
    s.n_head_kv = 1;
    s.head_dim = s.n_embd / 2;
    s.rope_base = 1e6f;
    s.sliding_window = 8;
  }
  return s;
}

Status write_truncated_model(const std::string& src, const std::string& dst, int n_layers) {
  auto f = GgufFile::open(src);
  if (!f) return f.error();
  const std::string arch = f->get_string("general.architecture").value_or("llama");
  const int64_t have = f->get_int(arch + ".block_count").value_or(0);
  if (n_layers < 1 || n_layers > have) {
    return make_error("{}: cannot keep {} of its {} layers", src, n_layers, have);
  }
  GgufWriter w;
  w.copy_metadata(*f);
  w.set_u32(arch + ".block_count", static_cast<uint32_t>(n_layers));
  w.set_string("general.name",
               fmt::format("{} (first {} layers)", f->get_string("general.name").value_or("model"),
                           n_layers));
  for (const auto& t : f->tensors()) {
    if (t.name.rfind("blk.", 0) == 0 && std::stoi(t.name.substr(4)) >= n_layers) continue;
    w.add_tensor(t.name, t.type, t.shape, t.data, t.n_bytes);
  }
  return w.write(dst, static_cast<uint32_t>(f->alignment()));
}

Result<TinyPair> make_tiny_pair(int n_layer, float perturb) {
  static std::atomic<int> counter{0};
  const int n = counter++;
  const auto dir = std::filesystem::temp_directory_path();
  TinyModelSpec llm_spec;
  llm_spec.n_layer = n_layer;
  TinyModelSpec slm_spec = llm_spec;
  slm_spec.perturb = perturb;
  TinyPair pair;
  for (auto [spec, out, role] :
       {std::tuple{&llm_spec, &pair.llm, "llm"}, std::tuple{&slm_spec, &pair.slm, "slm"}}) {
    const std::string path =
        (dir / fmt::format("hlm_tiny_{}_{}_{}.gguf", getpid(), n, role)).string();
    Status st = write_tiny_model(path, *spec);
    Result<std::shared_ptr<const Model>> m =
        st.ok() ? Model::load(path) : Result<std::shared_ptr<const Model>>(st.error());
    std::error_code ec;
    std::filesystem::remove(path, ec);
    if (!m) return m.error();
    *out = std::move(m).value();
  }
  return pair;
}

}  // namespace hlm
