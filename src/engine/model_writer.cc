// Model writers (see model_writer.h).
#include "engine/model_writer.h"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "engine/model.h"
#include "engine/shapes.h"
#include "gguf/gguf.h"
#include "gguf/gguf_writer.h"
#include "ops/ops.h"
#include "util/thread_pool.h"

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

// splitmix64's output function: a bijective mix of 64 bits.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Hashed weights: element i of a tensor whose stream is `key` is a function of (key, i) alone.
// The value is approximately N(0, 1): the sum of four 16-bit uniforms (Irwin-Hall, variance
// 4/12) centred and scaled, which is all random weights need and costs one hash.
float hashed_normal(uint64_t key, uint64_t i) {
  const uint64_t h = mix64(key + (i + 1) * 0x9e3779b97f4a7c15ull);
  const float sum =
      static_cast<float>((h & 0xffff) + ((h >> 16) & 0xffff) + ((h >> 32) & 0xffff) + (h >> 48));
  return (sum * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
}

// The built-in vocabulary: <unk>, <s>, </s>, 256 byte tokens, then printable pieces and a few
// merges. Returns its size.
int write_byte_vocab(GgufWriter& w) {
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
  return static_cast<int>(tokens.size());
}

}  // namespace

bool writer_supports(const std::string& arch) {
  for (const char* a : kTinyArchitectures) {
    if (arch == a) return true;
  }
  return false;
}

TinyModelSpec TinyModelSpec::from_shape(const ModelShape& shape, FileType type, uint64_t seed) {
  TinyModelSpec s;
  s.arch = shape.arch;
  if (shape.head_dim != shape.n_embd / shape.n_head) s.head_dim = shape.head_dim;
  s.n_embd = shape.n_embd;
  s.n_layer = shape.n_layer;
  s.n_head = shape.n_head;
  s.n_head_kv = shape.n_head_kv;
  s.n_ff = shape.n_ff;
  s.n_ctx = shape.n_ctx;
  s.tied_output = shape.tied_output;
  s.seed = seed;
  s.name = fmt::format("hlm synth {} {} (random weights, seed {})", shape.name,
                       file_type_name(type), seed);
  s.rope_base = shape.rope_base;
  s.rms_eps = shape.rms_eps;
  s.file_type = type;
  s.hashed_weights = true;
  return s;
}

Status write_tiny_model(const std::string& path, const TinyModelSpec& s) {
  if (!writer_supports(s.arch)) {
    return make_error(
        "cannot write a '{}' model (the model writer writes: llama, qwen2, qwen3, gemma3)", s.arch);
  }
  const bool qwen2 = s.arch == "qwen2", qwen3 = s.arch == "qwen3", gemma3 = s.arch == "gemma3";
  GgufWriter w;
  const std::string a = s.arch + ".";
  const int hd = s.head_dim > 0 ? s.head_dim : s.n_embd / s.n_head;
  const int q_dim = s.n_head * hd, kv = s.n_head_kv * hd;
  w.set_string("general.architecture", s.arch);
  w.set_string("general.name", s.name);
  if (s.file_type) w.set_u32("general.file_type", static_cast<uint32_t>(*s.file_type));
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
  w.set_f32(a + "attention.layer_norm_rms_epsilon", s.rms_eps);

  int n_vocab = 0;
  if (!s.vocab_path.empty()) {
    auto vocab = GgufFile::open(s.vocab_path);
    if (!vocab) return make_error("vocabulary {}", vocab.error().message);
    n_vocab = static_cast<int>(vocab->get_strings("tokenizer.ggml.tokens").size());
    if (n_vocab == 0) {
      return make_error(
          "{}: no tokenizer.ggml.tokens: not a vocabulary (expected a GGUF with a "
          "tokenizer, e.g. llama.cpp's ggml-vocab-*.gguf or any model)",
          s.vocab_path);
    }
    w.copy_metadata(*vocab, "tokenizer.");
  } else {
    n_vocab = write_byte_vocab(w);
  }
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
  // Hashed weights: the values of the k-th tensor written are a function of (seed, k, index).
  uint64_t n_tensors = 0;
  auto stream = [&](uint64_t seed) { return mix64(seed ^ mix64(n_tensors + 1)); };
  ThreadPool inline_pool(1);
  ThreadPool& pool = s.pool ? *s.pool : inline_pool;
  struct Progress {
    uint64_t done = 0, total = 0;
  } progress;  // read by the fills, which run inside w.write() below
  // Matrices of weight_type take the file type's mix when one is set.
  auto add = [&](const std::string& name, int64_t rows, int64_t cols, float scale, TensorType t) {
    if (s.file_type && t == s.weight_type) {
      t = file_type_tensor(*s.file_type, name, s.n_layer, cols, s.tied_output);
    }
    const size_t row_size = row_bytes(t, cols), n_bytes = row_size * size_t(rows);
    if (!s.hashed_weights) {
      auto v = randn(rows * cols, scale);
      auto bytes = encode(t, v, cols);
      w.add_tensor(name, t, {cols, rows}, bytes.data(), bytes.size());
      return;
    }
    const uint64_t key = stream(s.seed), pkey = stream(s.perturb_seed);
    ++n_tensors;
    progress.total += n_bytes;
    const float perturb = s.perturb;
    const auto& on_progress = s.progress;
    w.add_tensor(name, t, {cols, rows}, n_bytes, [=, &pool, &progress](uint8_t* dst) {
      pool.parallel_for(size_t(rows), 16, [&](size_t r0, size_t r1, int) {
        std::vector<float> row(static_cast<size_t>(cols));
        for (size_t r = r0; r < r1; ++r) {
          const uint64_t base = r * uint64_t(cols);
          for (int64_t c = 0; c < cols; ++c) {
            float x = hashed_normal(key, base + c) * scale;
            if (perturb > 0) x += hashed_normal(pkey, base + c) * scale * perturb;
            row[size_t(c)] = x;
          }
          ops::quantize_row(t, row.data(), dst + r * row_size, cols);
        }
      });
      progress.done += n_bytes;
      if (on_progress) on_progress(progress.done, progress.total);
      return ok_status();
    });
  };
  // F32 vectors of n values near `mean`: norm weights near 1 (Gemma's GGUFs store its (1 + w)
  // already), biases near 0.
  auto add_f32 = [&](const std::string& name, int64_t n, float mean, float scale) {
    std::vector<float> v(n);
    if (s.hashed_weights) {
      const uint64_t key = stream(s.seed);
      ++n_tensors;
      for (int64_t i = 0; i < n; ++i) v[size_t(i)] = mean + scale * hashed_normal(key, i);
    } else {
      for (auto& x : v) x = mean + scale * N(rng);
    }
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

Status write_shortlisted_model(const std::string& src, const std::string& dst,
                               const std::vector<int32_t>& ids) {
  auto f = GgufFile::open(src);
  if (!f) return f.error();
  if (f->find(kOutputTokenIdsKey)) {
    return make_error("{}: already has a shortlist output head ({})", src, kOutputTokenIdsKey);
  }
  const GgufTensor* head = f->tensor("output.weight");
  if (!head) head = f->tensor("token_embd.weight");
  if (!head || head->shape.size() != 2) {
    return make_error("{}: no output.weight or token_embd.weight matrix to shortlist", src);
  }
  const int64_t n_vocab = head->shape[1];
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= n_vocab || (i > 0 && ids[i] <= ids[i - 1])) {
      return make_error("shortlist id [{}] = {}: expected ids in [0, {}), strictly increasing", i,
                        ids[i], n_vocab);
    }
  }
  if (ids.empty()) return make_error("an empty shortlist would leave {} nothing to predict", src);
  const size_t row = row_bytes(head->type, head->shape[0]);
  std::vector<uint8_t> rows(row * ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    std::memcpy(rows.data() + i * row, static_cast<const uint8_t*>(head->data) + ids[i] * row, row);
  }
  GgufWriter w;
  w.copy_metadata(*f);
  w.set_i32s(kOutputTokenIdsKey, ids);
  const std::vector<int64_t> shape{head->shape[0], int64_t(ids.size())};
  for (const auto& t : f->tensors()) {
    if (t.name == "output.weight") {
      w.add_tensor(t.name, t.type, shape, rows.data(), rows.size());
      continue;
    }
    w.add_tensor(t.name, t.type, t.shape, t.data, t.n_bytes);
    if (t.name == "token_embd.weight" && head == &t) {  // tied: the head gets its own rows
      w.add_tensor("output.weight", t.type, shape, rows.data(), rows.size());
    }
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
