// KvCache: fixed-capacity key/value storage for n_seq independent sequences. Passive: the
// Context writes into it and owns positions; truncate() is the rollback.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <vector>

namespace hlm {

class KvCache {
 public:
  KvCache(int n_layer, int n_seq, int capacity, int kv_dim)
      : n_layer_(n_layer),
        n_seq_(n_seq),
        capacity_(capacity),
        kv_dim_(kv_dim),
        k_(static_cast<size_t>(n_layer) * n_seq * capacity * kv_dim),
        v_(k_.size()),
        length_(n_seq, 0) {}

  int n_seq() const { return n_seq_; }
  int capacity() const { return capacity_; }
  int kv_dim() const { return kv_dim_; }
  int length(int seq) const { return length_[seq]; }
  void set_length(int seq, int n) { length_[seq] = n; }
  void truncate(int seq, int n) {
    assert(n >= 0);
    if (n < length_[seq]) length_[seq] = n;
  }

  // Rows of kv_dim floats for (layer, seq), positions 0..capacity-1.
  float* k(int layer, int seq) { return k_.data() + offset(layer, seq); }
  float* v(int layer, int seq) { return v_.data() + offset(layer, seq); }
  const float* k(int layer, int seq) const { return k_.data() + offset(layer, seq); }
  const float* v(int layer, int seq) const { return v_.data() + offset(layer, seq); }

  // Copies sequence src's cache into dst (explicit, so the cost is visible).
  void copy(int src, int dst) {
    for (int l = 0; l < n_layer_; ++l) {
      std::copy(k(l, src), k(l, src) + size_t(length_[src]) * kv_dim_, k(l, dst));
      std::copy(v(l, src), v(l, src) + size_t(length_[src]) * kv_dim_, v(l, dst));
    }
    length_[dst] = length_[src];
  }

 private:
  size_t offset(int layer, int seq) const {
    return (static_cast<size_t>(layer) * n_seq_ + seq) * capacity_ * static_cast<size_t>(kv_dim_);
  }
  int n_layer_, n_seq_, capacity_, kv_dim_;
  std::vector<float> k_, v_;
  std::vector<int> length_;
};

}  // namespace hlm
