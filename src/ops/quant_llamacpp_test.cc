// hlm's weight encodings against llama.cpp's (tests/fixtures/quant_llamacpp.json, recorded by
// tools/reference/record_quant_fixture.py): hlm decodes the bytes llama.cpp's quantiser wrote to
// exactly the floats llama.cpp decodes them to, and hlm's quantisers are about as accurate as
// llama.cpp's on the same rows, for every type hlm writes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ops/ops.h"

namespace hlm::ops {
namespace {

std::vector<uint8_t> from_hex(const std::string& h) {
  std::vector<uint8_t> out(h.size() / 2);
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = uint8_t(std::stoi(h.substr(2 * i, 2), nullptr, 16));
  return out;
}

TEST(QuantLlamaCpp, DecodesLlamaCppBytesAndEncodesAsAccurately) {
  std::ifstream f(HLM_FIXTURES_DIR "/quant_llamacpp.json");
  ASSERT_TRUE(f) << HLM_FIXTURES_DIR "/quant_llamacpp.json is missing";
  const auto j = nlohmann::json::parse(f);
  const int n = j["n_per_row"];
  const auto scales = j["scales"].get<std::vector<double>>();
  const auto shifts = j["shifts"].get<std::vector<double>>();
  const size_t n_rows = scales.size();
  // The rows, exactly as the recorder computes them (float64, rounded once to float32).
  std::vector<float> x(n_rows * n);
  for (size_t r = 0; r < n_rows; ++r) {
    for (int i = 0; i < n; ++i) {
      const double k = double((i * 7919) % 1009 - 504);
      x[r * n + i] =
          static_cast<float>(k * k * k / (504.0 * 504.0 * 504.0) * 2.5 * scales[r] + shifts[r]);
    }
  }
  for (const auto& [name, t] : {std::pair{"Q4_0", TensorType::Q4_0},
                                {"Q8_0", TensorType::Q8_0},
                                {"Q4_K", TensorType::Q4_K},
                                {"Q6_K", TensorType::Q6_K}}) {
    SCOPED_TRACE(name);
    const auto& rec = j["types"][name];
    const auto bytes = from_hex(rec["bytes_hex"]);
    const auto want_raw = from_hex(rec["dequant_f32_hex"]);
    const size_t rb = row_bytes(t, n);
    ASSERT_EQ(bytes.size(), rb * n_rows);
    ASSERT_EQ(want_raw.size(), 4 * n_rows * n);
    std::vector<float> want(n_rows * n), got(n_rows * n), mine(n_rows * n);
    std::memcpy(want.data(), want_raw.data(), want_raw.size());
    std::vector<uint8_t> enc(rb);
    double err = 0;
    for (size_t r = 0; r < n_rows; ++r) {
      dequantize_row(t, bytes.data() + r * rb, got.data() + r * n, n);
      ASSERT_TRUE(can_quantize(t));
      quantize_row(t, x.data() + r * n, enc.data(), n);
      dequantize_row(t, enc.data(), mine.data() + r * n, n);
    }
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(got[i], want[i]) << "element " << i;  // the same decoding, bit for bit
      err += (double(mine[i]) - x[i]) * (double(mine[i]) - x[i]);
    }
    const double rms = std::sqrt(err / double(got.size())), theirs = rec["rms_error"];
    std::printf("%s: rms error hlm %.6g, llama.cpp %.6g (%.2fx)\n", name, rms, theirs,
                rms / theirs);
    // The 32-element types use ggml's own rules; the K types a plainer fit than llama.cpp's
    // iterative search, allowed a third more error.
    EXPECT_LE(rms, theirs * (t == TensorType::Q4_K || t == TensorType::Q6_K ? 1.33 : 1.0001));
  }
}

}  // namespace
}  // namespace hlm::ops
