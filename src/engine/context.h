// Context: runs a Model over one or more independent sequences, each with its own KV cache
// region. Evaluates a batch of new tokens per sequence in one forward, returns logits at the
// positions asked, rolls sequences back, and can capture the newest query's attention.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/model.h"
#include "util/result.h"
#include "util/thread_pool.h"

namespace hlm {

// Which layers to capture attention from; empty means capture is off (and costs nothing).
struct AttentionRequest {
  std::vector<int> layers;
  static AttentionRequest all(int n_layer);
};

// Attention probabilities of one query over every cached position of its sequence:
// probs[l][h][j] for the l-th requested layer, head h, position j in [0, n_past).
struct AttentionRows {
  int n_pos = 0;
  std::vector<int> layers;
  std::vector<float> probs;  // [layers.size()][n_head][n_pos]
  const float* row(size_t layer_index, int head, int n_head) const {
    return probs.data() + (layer_index * n_head + head) * static_cast<size_t>(n_pos);
  }
};

// One sequence's part of a batched forward.
struct SeqInput {
  int seq = 0;
  std::span<const int32_t> tokens;
  // Indices into `tokens` whose next-token logits are wanted (e.g. {n-1}, or all for
  // verification). Logits come back in this order.
  std::vector<int> logits_at;
  // Attention capture for the query of the last token of this input.
  const AttentionRequest* attention = nullptr;
};

struct SeqOutput {
  // [logits_at.size()][n_vocab], in the Context's own buffer: valid until its next eval().
  std::span<const float> logits;
  AttentionRows attention;  // filled when requested
};

class Context {
 public:
  // n_seq sequences of at most n_ctx positions each.
  Context(std::shared_ptr<const Model> model, int n_seq, int n_ctx, ThreadPool& pool);
  ~Context();

  const Model& model() const { return *model_; }
  // The threads its forwards run on (for work on their outputs, between forwards).
  ThreadPool& pool() const { return pool_; }
  int n_seq() const { return kv_.n_seq(); }
  int n_ctx() const { return kv_.capacity(); }
  int n_past(int seq) const { return kv_.length(seq); }
  // Positions evaluated by eval() since construction (a measure of the compute spent).
  uint64_t n_evaluated() const { return n_evaluated_; }

  // Appends tokens to one or several sequences in a single forward. Errors (unknown sequence,
  // token id out of range, context full) leave every sequence unchanged.
  Result<std::vector<SeqOutput>> eval(std::span<const SeqInput> inputs);

  // Convenience: one sequence, logits for the last token only.
  Result<std::vector<float>> eval_last(int seq, std::span<const int32_t> tokens,
                                       const AttentionRequest* attention = nullptr,
                                       AttentionRows* rows = nullptr);

  // Drops positions [n, n_past) of a sequence (rollback).
  void truncate(int seq, int n) { kv_.truncate(seq, n); }
  void clear(int seq) { kv_.truncate(seq, 0); }

 private:
  struct Scratch;
  std::shared_ptr<const Model> model_;
  ThreadPool& pool_;
  KvCache kv_;
  std::unique_ptr<Scratch> scratch_;
  uint64_t n_evaluated_ = 0;
};

}  // namespace hlm
