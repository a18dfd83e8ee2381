// The forward pass over a batch of tokens from one or more sequences:
// embed → per layer (RMSNorm → QKV → RoPE → causal GQA attention → residual → RMSNorm → SwiGLU
// → residual) → final RMSNorm → logits at the requested positions only; with what the other
// architectures add, each resolved at load into ModelConfig/LayerWeights: q/k/v biases (qwen2),
// per-head q/k RMSNorm (qwen3, gemma3), NeoX-order RoPE (qwen2, qwen3, gemma3), and gemma3's
// scaled embeddings, post-attention and post-FFN norms, GeGLU and sliding-window layers.
#include "engine/context.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>

#include "ops/ops.h"

namespace hlm {

AttentionRequest AttentionRequest::all(int n_layer) {
  AttentionRequest r;
  for (int i = 0; i < n_layer; ++i) r.layers.push_back(i);
  return r;
}

// Activations for one forward, grown on demand and reused across calls.
struct Context::Scratch {
  std::vector<float> x, xn, q, k, v, attn, gate, up, logits_in, logits, head;
  std::vector<std::vector<float>> scores;  // per worker, [heads per KV head][n_ctx]
  // [n_ctx][n_rot/2] per RoPE base: [0] for global layers, [1] for sliding ones (gemma3).
  std::vector<float> rope_cos[2], rope_sin[2];
};

namespace {

// A matmul of w's rows into y, reading its tiles where it has them.
ops::MatmulOut out_of(const Weight& w, float* y) { return {w.type, w.data, w.rows, y, w.tiles}; }

// Rotates consecutive pairs (GGUF llama weights are permuted for this "normal" rope layout), or
// with `neox` the pairs (i, i + n_rot/2) as the qwen and gemma GGUFs expect.
void rope(float* v, int n_heads, int head_dim, int n_rot, const float* cos, const float* sin,
          bool neox) {
  const int half = n_rot / 2;
  const int stride = neox ? 1 : 2, other = neox ? half : 1;
  for (int h = 0; h < n_heads; ++h) {
    float* p = v + h * head_dim;
    for (int i = 0; i < half; ++i) {
      float& x = p[stride * i];
      float& y = p[stride * i + other];
      const float a = x, b = y;
      x = a * cos[i] - b * sin[i];
      y = a * sin[i] + b * cos[i];
    }
  }
}

// Adds a bias row to n entries (qwen2's q, k and v).
void add_bias(float* v, const float* b, int n) {
  for (int i = 0; i < n; ++i) v[i] += b[i];
}

// RMSNorm of each of n_heads heads of size head_dim, in place, with the shared weight w.
void norm_heads(float* v, int n_heads, int head_dim, const float* w, float eps) {
  for (int h = 0; h < n_heads; ++h) {
    ops::rms_norm_f32(v + h * head_dim, w, v + h * head_dim, head_dim, eps);
  }
}

}  // namespace

Context::Context(std::shared_ptr<const Model> model, int n_seq, int n_ctx, ThreadPool& pool)
    : model_(std::move(model)),
      pool_(pool),
      kv_(model_->config().n_layer, n_seq, n_ctx, model_->config().n_head_kv,
          model_->config().head_dim),
      scratch_(std::make_unique<Scratch>()) {
  const ModelConfig& c = model_->config();
  const int half = c.n_rot / 2;
  // Global layers use rope_base with linear scaling; sliding ones (gemma3) their own base.
  const std::pair<double, double> bases[2] = {{c.rope_base, c.rope_scale},
                                              {c.rope_base_sliding, 1.0}};
  for (int t = 0; t < (c.sliding_window > 0 ? 2 : 1); ++t) {
    scratch_->rope_cos[t].resize(size_t(n_ctx) * half);
    scratch_->rope_sin[t].resize(size_t(n_ctx) * half);
    for (int pos = 0; pos < n_ctx; ++pos) {
      for (int i = 0; i < half; ++i) {
        const double theta = pos * bases[t].second * std::pow(bases[t].first, -2.0 * i / c.n_rot);
        scratch_->rope_cos[t][size_t(pos) * half + i] = static_cast<float>(std::cos(theta));
        scratch_->rope_sin[t][size_t(pos) * half + i] = static_cast<float>(std::sin(theta));
      }
    }
  }
  scratch_->scores.resize(pool_.size());
  for (auto& s : scratch_->scores) s.resize(size_t(c.n_head / c.n_head_kv) * n_ctx);
}

Context::~Context() = default;

Result<std::vector<SeqOutput>> Context::eval(std::span<const SeqInput> inputs) {
  const ModelConfig& c = model_->config();
  // Validate everything before touching the cache, so an error leaves it unchanged.
  std::set<int> seen;
  int n_tok = 0, n_logits = 0;
  for (const SeqInput& in : inputs) {
    if (in.seq < 0 || in.seq >= kv_.n_seq()) {
      return make_error("sequence {} does not exist (this context has {} sequences)", in.seq,
                        kv_.n_seq());
    }
    if (!seen.insert(in.seq).second) {
      return make_error("sequence {} appears twice in one batch", in.seq);
    }
    if (in.tokens.empty()) return make_error("sequence {}: no tokens to evaluate", in.seq);
    if (kv_.length(in.seq) + int(in.tokens.size()) > kv_.capacity()) {
      return make_error(
          "sequence {}: context full ({} cached + {} new > {}); increase --ctx to at least {}",
          in.seq, kv_.length(in.seq), in.tokens.size(), kv_.capacity(),
          kv_.length(in.seq) + in.tokens.size());
    }
    for (int32_t t : in.tokens) {
      if (t < 0 || t >= c.n_vocab) {
        return make_error("token id {} out of range [0, {})", t, c.n_vocab);
      }
    }
    for (int i : in.logits_at) {
      if (i < 0 || i >= int(in.tokens.size())) {
        return make_error("logits requested at index {} of a {}-token input", i, in.tokens.size());
      }
    }
    if (in.attention) {
      for (int l : in.attention->layers) {
        if (l < 0 || l >= c.n_layer) return make_error("attention layer {} out of range", l);
      }
    }
    n_tok += int(in.tokens.size());
    n_logits += int(in.logits_at.size());
  }

  // Flatten: token i belongs to sequence seq_of[i] at position pos_of[i].
  std::vector<int> seq_of(n_tok), pos_of(n_tok), input_of(n_tok);
  std::vector<int32_t> ids(n_tok);
  {
    int i = 0;
    for (size_t s = 0; s < inputs.size(); ++s) {
      const SeqInput& in = inputs[s];
      for (size_t j = 0; j < in.tokens.size(); ++j, ++i) {
        ids[i] = in.tokens[j];
        seq_of[i] = in.seq;
        pos_of[i] = kv_.length(in.seq) + int(j);
        input_of[i] = int(s);
      }
    }
  }

  const int D = c.n_embd, hd = c.head_dim, q_dim = c.q_dim(), kv_dim = c.kv_dim(), F = c.n_ff;
  const int group = c.n_head / c.n_head_kv, half = c.n_rot / 2;
  Scratch& S = *scratch_;
  auto grow = [](std::vector<float>& v, size_t n) {
    if (v.size() < n) v.resize(n);
  };
  grow(S.x, size_t(n_tok) * D);
  grow(S.xn, size_t(n_tok) * D);
  grow(S.q, size_t(n_tok) * q_dim);
  grow(S.k, size_t(n_tok) * kv_dim);
  grow(S.v, size_t(n_tok) * kv_dim);
  grow(S.attn, size_t(n_tok) * q_dim);
  grow(S.gate, size_t(n_tok) * F);
  grow(S.up, size_t(n_tok) * F);

  std::vector<SeqOutput> out(inputs.size());
  for (size_t s = 0; s < inputs.size(); ++s) {
    const SeqInput& in = inputs[s];
    if (in.attention && !in.attention->layers.empty()) {
      AttentionRows& r = out[s].attention;
      r.layers = in.attention->layers;
      r.n_pos = kv_.length(in.seq) + int(in.tokens.size());
      r.probs.assign(r.layers.size() * c.n_head * size_t(r.n_pos), 0.0f);
    }
  }
  // Which (input, layer slot) a token's attention goes to, -1 when not captured.
  std::vector<int> capture_of(n_tok, -1);
  {
    int i = 0;
    for (size_t s = 0; s < inputs.size(); ++s) {
      i += int(inputs[s].tokens.size());
      if (!out[s].attention.layers.empty()) capture_of[i - 1] = int(s);
    }
  }

  const Weight& E = model_->token_embd();
  const size_t embd_row = row_bytes(E.type, D);
  for (int i = 0; i < n_tok; ++i) {
    float* x = S.x.data() + size_t(i) * D;
    ops::dequantize_row(E.type, static_cast<const uint8_t*>(E.data) + size_t(ids[i]) * embd_row, x,
                        D);
    if (c.embd_scale != 1.0f) {
      for (int j = 0; j < D; ++j) x[j] *= c.embd_scale;
    }
  }
  // RoPE and the KV stores run per token on the pool for batches, where they would otherwise leave
  // the workers idle; a few tokens are not worth a wake-up. (The norms and SwiGLU run inside the
  // matmuls' requantisation.) Each token's arithmetic is the same either way.
  const auto per_token = [&](const auto& fn) {
    if (n_tok < 8) {
      for (int i = 0; i < n_tok; ++i) fn(i);
      return;
    }
    pool_.parallel_for(size_t(n_tok), 1, [&](size_t begin, size_t end, int) {
      for (size_t i = begin; i < end; ++i) fn(int(i));
    });
  };

  std::vector<int> longest_first(static_cast<size_t>(n_tok));
  std::iota(longest_first.begin(), longest_first.end(), 0);
  std::stable_sort(longest_first.begin(), longest_first.end(),
                   [&](int a, int b) { return pos_of[a] > pos_of[b]; });

  for (int l = 0; l < c.n_layer; ++l) {
    const LayerWeights& L = model_->layers()[l];
    const float* prev_post_ffn_norm = l > 0 ? model_->layers()[l - 1].post_ffn_norm : nullptr;
    // Each norm (with the residual add before it) runs per token inside the requantisation of
    // the matmul that reads it, as does SwiGLU's activation: no separate pass over the batch.
    const ops::RowFn attn_norm = [&](int64_t i) {
      float* x = S.x.data() + size_t(i) * D;
      float* xn = S.xn.data() + size_t(i) * D;
      if (l == 0) {
        ops::rms_norm_f32(x, L.attn_norm, xn, D, c.rms_eps);
      } else {  // xn holds the last layer's FFN output
        if (prev_post_ffn_norm) ops::rms_norm_f32(xn, prev_post_ffn_norm, xn, D, c.rms_eps);
        ops::add_rms_norm_f32(x, xn, L.attn_norm, xn, D, c.rms_eps);
      }
    };
    const ops::MatmulOut qkv[] = {out_of(L.wq, S.q.data()), out_of(L.wk, S.k.data()),
                                  out_of(L.wv, S.v.data())};
    ops::matmul_shared(qkv, D, S.xn.data(), n_tok, pool_, &attn_norm);
    const int table = L.sliding ? 1 : 0;
    per_token([&](int i) {
      float* q = S.q.data() + size_t(i) * q_dim;
      float* k = S.k.data() + size_t(i) * kv_dim;
      if (L.bq) {
        add_bias(q, L.bq, q_dim);
        add_bias(k, L.bk, kv_dim);
        add_bias(S.v.data() + size_t(i) * kv_dim, L.bv, kv_dim);
      }
      if (L.q_norm) {
        norm_heads(q, c.n_head, hd, L.q_norm, c.rms_eps);
        norm_heads(k, c.n_head_kv, hd, L.k_norm, c.rms_eps);
      }
      const float* cs = S.rope_cos[table].data() + size_t(pos_of[i]) * half;
      const float* sn = S.rope_sin[table].data() + size_t(pos_of[i]) * half;
      rope(q, c.n_head, hd, c.n_rot, cs, sn, c.rope_neox);
      rope(k, c.n_head_kv, hd, c.n_rot, cs, sn, c.rope_neox);
      for (int h = 0; h < c.n_head_kv; ++h) {
        ops::store_key_f16(S.k.data() + size_t(i) * kv_dim + h * hd, hd, pos_of[i],
                           kv_.k(l, seq_of[i], h));
        ops::convert_to_f16(S.v.data() + size_t(i) * kv_dim + h * hd,
                            kv_.v(l, seq_of[i], h) + size_t(pos_of[i]) * hd, hd);
      }
    });
    // Causal attention. A task takes the query heads of one token that share a KV head, so
    // they share the reads of its cached rows; with too few tasks to keep the pool evenly busy
    // (decoding one token: one per KV head) a task takes one head instead. A head's result is
    // the same either way.
    // Tasks run longest first (by cached positions), so the pool's last chunks are short ones
    // and neither worker waits long for the other.
    // A sliding layer's query at position p sees positions [p - window + 1, p] only: attention
    // starts at that position's key block and masks the positions before it in the block.
    const int per_task = n_tok * c.n_head_kv >= 4 * pool_.size() ? group : 1;
    const int tasks_per_token = c.n_head / per_task;
    pool_.parallel_for(
        size_t(n_tok) * tasks_per_token, 1, [&](size_t begin, size_t end, int worker) {
          float* sc = S.scores[worker].data();
          for (size_t task = begin; task < end; ++task) {
            const int i = longest_first[task / tasks_per_token];
            const int h0 = int(task % tasks_per_token) * per_task;
            const int kvh = h0 / group, n_pos = pos_of[i] + 1;
            const int first = L.sliding ? std::max(0, n_pos - c.sliding_window) : 0;
            const int block0 = first - first % int(ops::kKeyBlock), rows = n_pos - block0;
            ops::attend_f16(S.q.data() + size_t(i) * q_dim + h0 * hd, per_task,
                            kv_.k(l, seq_of[i], kvh) + size_t(block0) * hd,
                            kv_.v(l, seq_of[i], kvh) + size_t(block0) * hd, hd, rows, hd,
                            c.attn_scale, sc, S.attn.data() + size_t(i) * q_dim + h0 * hd,
                            first - block0);
            if (capture_of[i] >= 0) {
              AttentionRows& r = out[capture_of[i]].attention;
              auto it = std::find(r.layers.begin(), r.layers.end(), l);
              if (it != r.layers.end()) {
                for (int k = 0; k < per_task; ++k) {
                  float* dst = r.probs.data() +
                               (size_t(it - r.layers.begin()) * c.n_head + h0 + k) * r.n_pos;
                  std::copy_n(sc + size_t(k) * rows, rows, dst + block0);
                }
              }
            }
          }
        });
    const ops::MatmulOut wo = out_of(L.wo, S.xn.data());
    ops::matmul_shared(std::span(&wo, 1), q_dim, S.attn.data(), n_tok, pool_);
    const ops::RowFn ffn_norm = [&](int64_t i) {  // xn holds the attention output
      float* xn = S.xn.data() + size_t(i) * D;
      if (L.post_attn_norm) ops::rms_norm_f32(xn, L.post_attn_norm, xn, D, c.rms_eps);
      ops::add_rms_norm_f32(S.x.data() + size_t(i) * D, xn, L.ffn_norm, xn, D, c.rms_eps);
    };
    const ops::MatmulOut gate_up[] = {out_of(L.w_gate, S.gate.data()), out_of(L.w_up, S.up.data())};
    ops::matmul_shared(gate_up, D, S.xn.data(), n_tok, pool_, &ffn_norm);
    const auto gate_times_up = c.gelu ? ops::gelu_mul_f32 : ops::silu_mul_f32;  // GeGLU : SwiGLU
    const ops::RowFn activation = [&](int64_t i) {
      gate_times_up(S.gate.data() + size_t(i) * F, S.up.data() + size_t(i) * F, F);
    };
    const ops::MatmulOut down = out_of(L.w_down, S.xn.data());
    ops::matmul_shared(std::span(&down, 1), F, S.gate.data(), n_tok, pool_, &activation);
  }

  for (const SeqInput& in : inputs)
    kv_.set_length(in.seq, kv_.length(in.seq) + int(in.tokens.size()));
  n_evaluated_ += uint64_t(n_tok);

  if (n_logits > 0) {
    grow(S.logits_in, size_t(n_logits) * D);
    // The last layer's residual add, for these tokens only (once each, should one be asked for
    // twice), then the output norm.
    std::vector<bool> added(size_t(n_tok), false);
    int row = 0, base = 0;
    for (const SeqInput& in : inputs) {
      for (int j : in.logits_at) {
        const size_t i = size_t(base + j);
        float* x = S.x.data() + i * D;
        float* dst = S.logits_in.data() + size_t(row++) * D;
        if (added[i]) {
          ops::rms_norm_f32(x, model_->output_norm(), dst, D, c.rms_eps);
        } else {
          float* ffn_out = S.xn.data() + i * D;
          if (const float* w = model_->layers().back().post_ffn_norm) {
            ops::rms_norm_f32(ffn_out, w, ffn_out, D, c.rms_eps);
          }
          ops::add_rms_norm_f32(x, ffn_out, model_->output_norm(), dst, D, c.rms_eps);
          added[i] = true;
        }
      }
      base += int(in.tokens.size());
    }
    grow(S.logits, size_t(n_logits) * c.n_vocab);
    const std::vector<int32_t>& ids = model_->output_ids();
    if (ids.empty()) {
      const ops::MatmulOut logits = out_of(model_->output(), S.logits.data());
      ops::matmul_shared(std::span(&logits, 1), D, S.logits_in.data(), n_logits, pool_);
    } else {  // a shortlist head scores its ids; every other id is impossible
      grow(S.head, size_t(n_logits) * ids.size());
      const ops::MatmulOut head = out_of(model_->output(), S.head.data());
      ops::matmul_shared(std::span(&head, 1), D, S.logits_in.data(), n_logits, pool_);
      for (int r = 0; r < n_logits; ++r) {
        float* dst = S.logits.data() + size_t(r) * c.n_vocab;
        const float* src = S.head.data() + size_t(r) * ids.size();
        std::fill(dst, dst + c.n_vocab, -std::numeric_limits<float>::infinity());
        for (size_t i = 0; i < ids.size(); ++i) dst[ids[i]] = src[i];
      }
    }
    row = 0;
    for (size_t s = 0; s < inputs.size(); ++s) {
      const size_t n = inputs[s].logits_at.size() * size_t(c.n_vocab);
      out[s].logits = std::span<const float>(S.logits).subspan(size_t(row) * c.n_vocab, n);
      row += int(inputs[s].logits_at.size());
    }
  }
  return out;
}

Result<std::vector<float>> Context::eval_last(int seq, std::span<const int32_t> tokens,
                                              const AttentionRequest* attention,
                                              AttentionRows* rows) {
  SeqInput in{seq, tokens, {int(tokens.size()) - 1}, attention};
  if (tokens.empty()) return make_error("sequence {}: no tokens to evaluate", seq);
  auto r = eval(std::span<const SeqInput>(&in, 1));
  if (!r) return r.error();
  if (rows) *rows = std::move(r->front().attention);
  const std::span<const float> logits = r->front().logits;
  return std::vector<float>(logits.begin(), logits.end());
}

}  // namespace hlm
