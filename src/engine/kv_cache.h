// KvCache: fixed-capacity key/value storage for n_seq independent sequences. Passive: the
// Context writes into it and owns positions; truncate() is the rollback.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ops/ops.h"

namespace hlm {

// Each (layer, sequence, KV head) holds its positions contiguously, so attention streams one
// head's keys and values sequentially. Values are rows of head_dim; keys are in blocks of
// ops::kKeyBlock positions, dimension-major (ops::store_key_f16), so attention gets 16 positions'
// scores per vector with no horizontal sums. Both are f16 (IEEE half bits), as llama.cpp keeps them
// by default: half the memory and the traffic of f32.
class KvCache {
 public:
  KvCache(int n_layer, int n_seq, int capacity, int n_head_kv, int head_dim)
      : n_layer_(n_layer),
        n_seq_(n_seq),
        capacity_(capacity),
        rows_((capacity + int(ops::kKeyBlock) - 1) / int(ops::kKeyBlock) * int(ops::kKeyBlock)),
        n_head_kv_(n_head_kv),
        head_dim_(head_dim),
        k_(static_cast<size_t>(n_layer) * n_seq * n_head_kv * rows_ * head_dim),
        v_(k_.size()),
        length_(n_seq, 0) {}

  int n_seq() const { return n_seq_; }
  int capacity() const { return capacity_; }
  int length(int seq) const { return length_[seq]; }
  void set_length(int seq, int n) { length_[seq] = n; }
  void truncate(int seq, int n) {
    assert(n >= 0);
    if (n < length_[seq]) length_[seq] = n;
  }

  // The keys (ops::attend_f16's blocks) and value rows of (layer, seq, KV head), positions
  // 0..capacity-1.
  uint16_t* k(int layer, int seq, int head) { return k_.data() + offset(layer, seq, head); }
  uint16_t* v(int layer, int seq, int head) { return v_.data() + offset(layer, seq, head); }
  const uint16_t* k(int layer, int seq, int head) const {
    return k_.data() + offset(layer, seq, head);
  }
  const uint16_t* v(int layer, int seq, int head) const {
    return v_.data() + offset(layer, seq, head);
  }

  // Copies sequence src's cache into dst (explicit, so the cost is visible): whole key blocks.
  void copy(int src, int dst) {
    const int blocks = (length_[src] + int(ops::kKeyBlock) - 1) / int(ops::kKeyBlock);
    const size_t nk = size_t(blocks) * ops::kKeyBlock * head_dim_;
    const size_t nv = size_t(length_[src]) * head_dim_;
    for (int l = 0; l < n_layer_; ++l) {
      for (int h = 0; h < n_head_kv_; ++h) {
        std::copy(k(l, src, h), k(l, src, h) + nk, k(l, dst, h));
        std::copy(v(l, src, h), v(l, src, h) + nv, v(l, dst, h));
      }
    }
    length_[dst] = length_[src];
  }

 private:
  size_t offset(int layer, int seq, int head) const {
    return ((static_cast<size_t>(layer) * n_seq_ + seq) * n_head_kv_ + head) * rows_ *
           static_cast<size_t>(head_dim_);
  }
  int n_layer_, n_seq_, capacity_;
  int rows_;  // capacity rounded up to whole key blocks
  int n_head_kv_, head_dim_;
  std::vector<uint16_t> k_, v_;
  std::vector<int> length_;
};

}  // namespace hlm
