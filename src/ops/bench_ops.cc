// Microbenchmarks of the ops matmul on SmolLM2-135M shapes, reporting GB/s of weights read;
// ext:1 runs with the CPU extensions (AVX-VNNI or AVX512-VNNI) where the CPU has them, on tiled
// weights where its kernels read tiles (as the engine does), ext:0 without either. BM_Attend: one
// token's attention over a SmolLM2-sized KV cache.
#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <vector>

#include "ops/ops.h"
#include "ops/quant_formats.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace hlm::ops {
namespace {

struct Shape {
  TensorType type;
  int64_t rows, cols;
};

// SmolLM2-135M: Q4_1 attention/FFN weights and the Q8_0 output projection.
constexpr Shape kShapes[] = {
    {TensorType::Q4_1, 576, 576},  {TensorType::Q4_1, 192, 576},   {TensorType::Q4_1, 1536, 576},
    {TensorType::Q4_1, 576, 1536}, {TensorType::Q8_0, 49152, 576},
};

void BM_Matmul(benchmark::State& state) {
  const Shape& s = kShapes[state.range(0)];
  const int threads = static_cast<int>(state.range(1));
  const int64_t n_tok = state.range(2);
  set_cpu_extensions(state.range(3) != 0);
  std::mt19937 rng(1);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> row(static_cast<size_t>(s.cols));
  const size_t rb = row_bytes(s.type, s.cols);
  std::vector<uint8_t> w(rb * static_cast<size_t>(s.rows));
  for (int64_t r = 0; r < s.rows; ++r) {
    for (auto& v : row) v = g(rng);
    quantize_row(s.type, row.data(), w.data() + r * rb, s.cols);
  }
  std::vector<float> x(static_cast<size_t>(s.cols * n_tok));
  for (auto& v : x) v = g(rng);
  std::vector<float> y(static_cast<size_t>(s.rows * n_tok));
  ThreadPool pool(threads);
  // With the extensions on, the weights as the engine holds them: tiled where this CPU reads tiles.
  const TiledWeights tiles =
      state.range(3) != 0 ? tile_weights(s.type, w.data(), s.rows, s.cols) : TiledWeights();
  const MatmulOut out{s.type, w.data(), s.rows, y.data(), tiles.data()};
  for (auto _ : state) {
    matmul_shared(std::span(&out, 1), s.cols, x.data(), n_tok, pool);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(w.size()));
  state.SetLabel(std::string(info(s.type).name) + " " + std::to_string(s.rows) + "x" +
                 std::to_string(s.cols) + " " + kernels_name() + (tiles ? " tiled" : ""));
  set_cpu_extensions(true);
}

void Args(benchmark::internal::Benchmark* b) {
  for (int shape = 0; shape < static_cast<int>(std::size(kShapes)); ++shape) {
    for (int threads : {1, 2}) {
      for (int n_tok : {1, 3, 32, 128}) {
        for (int ext : {0, 1}) b->Args({shape, threads, n_tok, ext});
      }
    }
  }
  b->ArgNames({"shape", "threads", "n_tok", "ext"})->UseRealTime();
}

BENCHMARK(BM_Matmul)->Apply(Args);

#if defined(__x86_64__)
// Yardstick: a hand-written AVX2 Q4_1 x Q8_1 row dot in the style of llama.cpp's ggml-cpu kernel
// (nibbles widened to bytes, maddubs + madd, one f32 FMA per block), single thread, n_tok = 1.
struct BlockQ8_1 {
  float d, s;
  int8_t qs[32];
};

__attribute__((target("avx2,fma,f16c"))) float LlamaStyleDotQ4_1(const uint8_t* x,
                                                                 const BlockQ8_1* y, int nb) {
  __m256 acc = _mm256_setzero_ps();
  float summs = 0.0f;
  const __m256i low = _mm256_set1_epi8(0x0f);
  const __m256i ones = _mm256_set1_epi16(1);
  for (int i = 0; i < nb; ++i, x += 20) {
    uint16_t dh, mh;
    std::memcpy(&dh, x, 2);
    std::memcpy(&mh, x + 2, 2);
    const float d0 = _cvtsh_ss(dh), m0 = _cvtsh_ss(mh);
    summs += m0 * y[i].s;
    const __m128i tmp = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + 4));
    const __m256i qx = _mm256_and_si256(
        _mm256_insertf128_si256(_mm256_castsi128_si256(tmp), _mm_srli_epi16(tmp, 4), 1), low);
    const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs));
    const __m256i xy = _mm256_madd_epi16(_mm256_maddubs_epi16(qx, qy), ones);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d0 * y[i].d), _mm256_cvtepi32_ps(xy), acc);
  }
  __m128 r = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  r = _mm_add_ps(r, _mm_movehl_ps(r, r));
  r = _mm_add_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r) + summs;
}

void BM_LlamaStyleQ4_1(benchmark::State& state) {
  const Shape& s = kShapes[state.range(0)];
  std::mt19937 rng(1);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> row(static_cast<size_t>(s.cols));
  const size_t rb = row_bytes(s.type, s.cols);
  std::vector<uint8_t> w(rb * static_cast<size_t>(s.rows));
  for (int64_t r = 0; r < s.rows; ++r) {
    for (auto& v : row) v = g(rng);
    quantize_row(s.type, row.data(), w.data() + r * rb, s.cols);
  }
  const int nb = static_cast<int>(s.cols / 32);
  std::vector<BlockQ8_1> y(static_cast<size_t>(nb));
  for (auto& b : y) {
    b.d = 0.01f;
    int sum = 0;
    for (auto& q : b.qs) sum += (q = static_cast<int8_t>(rng() % 255 - 127));
    b.s = b.d * static_cast<float>(sum);
  }
  std::vector<float> out(static_cast<size_t>(s.rows));
  for (auto _ : state) {
    for (int64_t r = 0; r < s.rows; ++r)
      out[r] = LlamaStyleDotQ4_1(w.data() + r * rb, y.data(), nb);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(w.size()));
}
BENCHMARK(BM_LlamaStyleQ4_1)->Arg(0)->Arg(1)->Arg(2)->Arg(3)->ArgName("shape")->UseRealTime();
#endif

// One token's attention in every layer over `rows` cached positions of SmolLM2-135M's cache
// (30 layers, 3 KV heads of 64, 3 query heads per KV head), laid out as the engine keeps it (each
// KV head's key blocks and value rows contiguous) and read from memory as in a forward: each
// layer's rows are another part of a cache larger than the CPU's. per_task:1 calls attend_f16
// once per query head, per_task:3 once per KV head for its 3 query heads.
void BM_Attend(benchmark::State& state) {
  const int64_t rows = state.range(0), per_task = state.range(1);
  const int64_t n_layer = 30, n_kv = 3, hd = 64, group = 3;
  const int64_t head = (rows + kKeyBlock - 1) / kKeyBlock * kKeyBlock * hd;  // f16 per KV head
  std::mt19937 rng(2);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<uint16_t> K(static_cast<size_t>(n_layer * n_kv * head)), V(K.size());
  std::vector<float> key(static_cast<size_t>(hd));
  for (int64_t h = 0; h < n_layer * n_kv; ++h) {
    for (int64_t j = 0; j < rows; ++j) {
      for (auto& v : key) v = g(rng);
      store_key_f16(key.data(), hd, j, K.data() + h * head);
    }
  }
  for (auto& v : V) v = fmt::f32_to_f16(g(rng));
  std::vector<float> q(static_cast<size_t>(n_kv * group * hd)), out(q.size());
  for (auto& v : q) v = g(rng);
  std::vector<float> probs(static_cast<size_t>(group * rows));
  for (auto _ : state) {
    for (int64_t l = 0; l < n_layer; ++l) {
      for (int64_t h = 0; h < n_kv * group; h += per_task) {
        const int64_t at = (l * n_kv + h / group) * head;
        attend_f16(q.data() + h * hd, per_task, K.data() + at, V.data() + at, hd, rows, hd, 0.125f,
                   probs.data(), out.data() + h * hd);
      }
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * n_layer * rows * n_kv * hd *
                          4);
}
BENCHMARK(BM_Attend)
    ->ArgsProduct({{128, 1024}, {1, 3}})
    ->ArgNames({"rows", "per_task"})
    ->UseRealTime();

}  // namespace
}  // namespace hlm::ops

BENCHMARK_MAIN();
