// Activations requantised to int8 the way every quantised kernel consumes them.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace hlm::ops {

// Activations of one token requantised in blocks of 32: value i is d[i / 32] * q[i].
struct ActQ8 {
  const int8_t* q;   // n values in [-127, 127]
  const float* d;    // n / 32 block scales
  const float* s;    // n / 32 values d * sum(q over the block)
  const int32_t* h;  // n / 16 values sum(q over 16 elements): Q6_K's zero point per scale
};

// The activations of n_tok tokens block-major, as the AVX512-VNNI prefill tiles read them (a pass
// over several tokens addresses them all from one pointer): block b of token t at
// q + (b * n_tok + t) * 32, with its scale and d * sum at d[b * n_tok + t] and s[b * n_tok + t],
// its two sums per 16 at h[(b * n_tok + t) * 2 + k].
struct ActQ8Blocks {
  const int8_t* q = nullptr;
  const float* d = nullptr;
  const float* s = nullptr;
  const int32_t* h = nullptr;
};

// Storage for ActQ8Blocks (64-byte aligned; grows, never shrinks). Tokens are stored one at a
// time, so several threads may fill distinct tokens of one buffer.
class ActQ8BlockBuffer {
 public:
  ActQ8BlockBuffer() = default;
  ActQ8BlockBuffer(const ActQ8BlockBuffer&) = delete;
  ActQ8BlockBuffer& operator=(const ActQ8BlockBuffer&) = delete;
  ~ActQ8BlockBuffer() { std::free(mem_); }

  // Room for n_tok tokens of nb blocks; the previous contents are lost.
  void reserve(int64_t n_tok, int64_t nb) {
    n_tok_ = n_tok;
    nb_ = nb;
    const size_t n = static_cast<size_t>(n_tok * nb);
    if (n <= cap_) return;
    std::free(mem_);
    cap_ = n;
    // aligned_alloc takes whole multiples of the alignment.
    mem_ = std::aligned_alloc(64, (cap_ * (32 + 16) + 63) / 64 * 64);
    q_ = static_cast<int8_t*>(mem_);
    d_ = reinterpret_cast<float*>(q_ + cap_ * 32);
    s_ = d_ + cap_;
    h_ = reinterpret_cast<int32_t*>(s_ + cap_);
  }
  void store(int64_t t, const ActQ8& a) {
    // Locals, so the byte copies (which may alias anything) do not reload the members.
    int8_t* q = q_ + t * 32;
    float *d = d_ + t, *s = s_ + t;
    int32_t* h = h_ + 2 * t;
    const int64_t nb = nb_, step = n_tok_;
    for (int64_t b = 0; b < nb; ++b) {
      std::memcpy(q + b * step * 32, a.q + b * 32, 32);
      d[b * step] = a.d[b];
      s[b * step] = a.s[b];
      h[2 * b * step] = a.h[2 * b];
      h[2 * b * step + 1] = a.h[2 * b + 1];
    }
  }
  ActQ8Blocks view() const { return {q_, d_, s_, h_}; }

 private:
  void* mem_ = nullptr;
  int8_t* q_ = nullptr;
  float *d_ = nullptr, *s_ = nullptr;
  int32_t* h_ = nullptr;
  size_t cap_ = 0;  // (block, token) pairs
  int64_t n_tok_ = 0, nb_ = 0;
};

}  // namespace hlm::ops
