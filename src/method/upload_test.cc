// Tests for upload encodings: sizes, the top-k p̂, and serialisation round trips and refusals.
#include "method/upload.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>

#include "method/channel.h"

namespace hlm {
namespace {

std::vector<float> random_dist(int n, uint64_t seed, float sigma = 3.0f) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<double> e(n);
  double t = 0.0;
  for (double& v : e) t += v = std::exp(nd(g));
  std::vector<float> p(n);
  for (int i = 0; i < n; ++i) p[i] = static_cast<float>(e[i] / t);
  return p;
}

TEST(Upload, Sizes) {
  EXPECT_EQ(index_bits(1), 0);
  EXPECT_EQ(index_bits(2), 1);
  EXPECT_EQ(index_bits(8), 3);
  EXPECT_EQ(index_bits(32000), 15);
  EXPECT_EQ(index_bits(49152), 16);  // ceil(log2 49152) = ceil(15.58)
  EXPECT_EQ(payload_bits({Encoding::kFull}, 49152), 32u * 49152);
  EXPECT_EQ(payload_bits({Encoding::kTopK, 32, 8}, 49152), 32u * (8 + 16));
  EXPECT_EQ(payload_bits({Encoding::kTopK, 64, 4}, 32000), 64u * (4 + 15));
  EXPECT_EQ(payload_bits({Encoding::kTopK, 64, 4}, 10), 10u * (4 + 4));  // k clamps to V
  EXPECT_EQ(payload_bits({Encoding::kIds}, 49152), 0u);
}

// The default encoding (docs/encoding.md) keeps a verification request at least 200x smaller
// than standard HLM's full distribution and under 2 KB, on the vocabularies hlm runs.
TEST(Upload, DefaultEncodingIsCompact) {
  const EncodingConfig def = default_encoding();
  EXPECT_EQ(def.kind, Encoding::kTopK);
  EXPECT_EQ(to_string(*parse_encoding(kDefaultEncoding)), to_string(def));
  const ChannelConfig ch;
  for (int n_vocab : {32000, 49152, 128256}) {
    const uint64_t full = uplink_bits(ch, 0, payload_bits({Encoding::kFull}, n_vocab), 1);
    const uint64_t ours = uplink_bits(ch, 0, payload_bits(def, n_vocab), 1);
    EXPECT_LE(200 * ours, full) << "V = " << n_vocab;
    EXPECT_LT((ours + 7) / 8, 2048u) << "V = " << n_vocab;
  }
}

TEST(Upload, ParseEncoding) {
  auto t = parse_encoding("topk(16,6)");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->kind, Encoding::kTopK);
  EXPECT_EQ(t->k, 16);
  EXPECT_EQ(t->bits, 6);
  EXPECT_EQ(parse_encoding("topk:bits=4")->bits, 4);
  EXPECT_EQ(parse_encoding("topk")->k, 32);
  EXPECT_EQ(parse_encoding("ids")->kind, Encoding::kIds);
  EXPECT_EQ(to_string(*parse_encoding(to_string(*t))), "topk:k=16,bits=6");
  EXPECT_FALSE(parse_encoding("topk(0,8)").ok());
  EXPECT_FALSE(parse_encoding("topk(8,25)").ok());
  EXPECT_FALSE(parse_encoding("full(3)").ok());
  EXPECT_FALSE(parse_encoding("zip").ok());
  // renorm: positional or keyed; round-trips; anything else is refused, naming what is wrong.
  EXPECT_FALSE(parse_encoding("topk(16,6)")->renormalize);
  auto r = parse_encoding("topk(64,8,renorm)");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->renormalize);
  EXPECT_EQ(r->k, 64);
  EXPECT_EQ(to_string(*r), "topk:k=64,bits=8,renorm=1");
  EXPECT_TRUE(parse_encoding(to_string(*r))->renormalize);
  EXPECT_FALSE(parse_encoding("topk:k=64,renorm=0")->renormalize);
  auto bad = parse_encoding("topk(64,8,spread)");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("'renorm'"), std::string::npos) << bad.error().message;
  bad = parse_encoding("topk:renorm=2");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("renorm = 2 must be 0 or 1"), std::string::npos)
      << bad.error().message;
}

// renorm: p̂ is p restricted to its k largest entries and renormalised, each kept entry within
// one step of its share of the kept mass, and exactly nothing elsewhere; the wire form is the
// same and decodes to the same p̂.
TEST(Upload, TopKRenormalised) {
  for (int bits : {2, 4, 8, 12}) {
    for (int k : {1, 5, 32, 200}) {
      const int n = 1000;
      const std::vector<float> p = random_dist(n, 100 * bits + k + 7);
      const EncodingConfig cfg{Encoding::kTopK, k, bits, true};
      const Payload pl = encode(p, cfg);
      const std::vector<float> ph = decode(pl);
      ASSERT_EQ(pl.ids.size(), static_cast<size_t>(k));
      uint64_t total = 0;
      for (uint32_t c : pl.codes) total += c;
      EXPECT_EQ(total, (uint64_t{1} << bits) - 1) << "bits=" << bits << " k=" << k;
      double kept_mass = 0.0;
      for (int32_t id : pl.ids) kept_mass += p[id];
      const double step = 1.0 / ((1 << bits) - 1);
      std::vector<bool> kept(n, false);
      for (int32_t id : pl.ids) {
        kept[id] = true;
        EXPECT_LT(std::abs(ph[id] - p[id] / kept_mass), step + 1e-6) << "bits=" << bits;
      }
      for (int i = 0; i < n; ++i) {
        if (!kept[i]) EXPECT_EQ(ph[i], 0.0f) << "entry " << i << " outside the top " << k;
      }
      EXPECT_NEAR(std::accumulate(ph.begin(), ph.end(), 0.0), 1.0, 1e-5);
      auto back = deserialize(serialize(pl), n);
      ASSERT_TRUE(back.ok()) << back.error().message;
      EXPECT_EQ(decode(*back), ph);
    }
  }
  EXPECT_EQ(payload_bits({Encoding::kTopK, 64, 8, true}, 49152),
            payload_bits({Encoding::kTopK, 64, 8}, 49152));
}

TEST(Upload, TopKDistribution) {
  for (int bits : {2, 4, 8, 12}) {
    for (int k : {1, 5, 32, 200}) {
      const int n = 1000;
      const std::vector<float> p = random_dist(n, 100 * bits + k);
      const EncodingConfig cfg{Encoding::kTopK, k, bits};
      const Payload pl = encode(p, cfg);
      const std::vector<float> ph = decode(pl);
      ASSERT_EQ(ph.size(), static_cast<size_t>(n));
      EXPECT_NEAR(std::accumulate(ph.begin(), ph.end(), 0.0), 1.0, 1e-5);
      const double step = 1.0 / ((1 << bits) - 1);
      // The kept entries are the k largest, each within one quantisation step of p.
      std::vector<float> sorted = p;
      std::sort(sorted.begin(), sorted.end(), std::greater<>());
      ASSERT_EQ(pl.ids.size(), static_cast<size_t>(k));
      std::vector<bool> kept(n, false);
      for (int32_t id : pl.ids) {
        kept[id] = true;
        EXPECT_GE(p[id], sorted[k - 1]);
        EXPECT_LT(std::abs(ph[id] - p[id]), step + 1e-7) << "bits=" << bits << " k=" << k;
      }
      // The leftover mass is spread evenly over the others.
      double rest = 0.0;
      float first_other = -1.0f;
      for (int i = 0; i < n; ++i) {
        if (kept[i]) continue;
        if (first_other < 0) first_other = ph[i];
        EXPECT_EQ(ph[i], first_other);
        rest += ph[i];
        EXPECT_GE(ph[i], 0.0f);
      }
    }
  }
  // A distribution inside the top-k loses nothing to the tail; k = V renormalises.
  const std::vector<float> p = {0.5f, 0.3f, 0.2f, 0.0f, 0.0f};
  const std::vector<float> ph = build_p_hat(p, {Encoding::kTopK, 3, 8});
  EXPECT_EQ(ph[3], 0.0f);
  EXPECT_NEAR(ph[0] + ph[1] + ph[2], 1.0, 1e-6);
  const std::vector<float> all = build_p_hat(p, {Encoding::kTopK, 5, 3});
  EXPECT_NEAR(std::accumulate(all.begin(), all.end(), 0.0), 1.0, 1e-6);
  EXPECT_EQ(build_p_hat(p, {Encoding::kFull}), p);
  EXPECT_TRUE(build_p_hat(p, {Encoding::kIds}).empty());
}

TEST(Upload, SerializeRoundTrip) {
  const int n = 49152;
  const std::vector<float> p = random_dist(n, 3);
  for (const EncodingConfig& cfg :
       {EncodingConfig{Encoding::kFull}, EncodingConfig{Encoding::kTopK, 32, 8},
        EncodingConfig{Encoding::kTopK, 7, 3}, EncodingConfig{Encoding::kTopK, 1, 24},
        EncodingConfig{Encoding::kIds}}) {
    const Payload pl = encode(p, cfg);
    const std::vector<uint8_t> bytes = serialize(pl);
    EXPECT_EQ(bytes.size(), 10 + (payload_bits(cfg, n) + 7) / 8) << to_string(cfg);
    std::string in_place = "replaced";
    serialize(pl, in_place);
    EXPECT_EQ(in_place, std::string(bytes.begin(), bytes.end())) << to_string(cfg);
    auto back = deserialize(bytes, n);
    ASSERT_TRUE(back.ok()) << back.error().message;
    EXPECT_EQ(back->kind, pl.kind);
    EXPECT_EQ(back->ids, pl.ids);
    EXPECT_EQ(back->codes, pl.codes);
    EXPECT_EQ(back->probs, pl.probs);
    EXPECT_EQ(decode(*back), decode(pl));
  }
}

TEST(Upload, DeserializeRefusesBadPayloads) {
  const int n = 1000;
  const std::vector<float> p = random_dist(n, 4);
  const std::vector<uint8_t> topk = serialize(encode(p, {Encoding::kTopK, 16, 8}));
  const std::vector<uint8_t> full = serialize(encode(p, {Encoding::kFull}));
  auto msg = [](const Result<Payload>& r) {
    return r.ok() ? std::string("ok") : r.error().message;
  };

  for (const std::vector<uint8_t>* b : {&topk, &full}) {
    std::vector<uint8_t> cut(b->begin(), b->end() - 1);
    EXPECT_NE(msg(deserialize(cut, n)).find("truncated"), std::string::npos);
    std::vector<uint8_t> more = *b;
    more.push_back(0);
    EXPECT_NE(msg(deserialize(more, n)).find("oversized"), std::string::npos);
  }
  EXPECT_NE(msg(deserialize(std::span<const uint8_t>(topk.data(), 5), n)).find("header"),
            std::string::npos);
  EXPECT_NE(msg(deserialize(topk, 999)).find("same tokenizer"), std::string::npos);

  std::vector<uint8_t> bad = topk;
  bad[0] = 9;
  EXPECT_NE(msg(deserialize(bad, n)).find("unknown encoding"), std::string::npos);
  bad = topk;
  bad[1] = 0;  // bits
  EXPECT_FALSE(deserialize(bad, n).ok());
  bad = topk;
  bad[6] = 0xff;  // k = 255 > what the bytes hold
  EXPECT_FALSE(deserialize(bad, n).ok());

  // Non-increasing ids, out-of-range ids and over-full codes, built by hand.
  Payload pl = encode(p, {Encoding::kTopK, 3, 8});
  Payload dup = pl;
  dup.ids[1] = dup.ids[0];
  EXPECT_NE(msg(deserialize(serialize(dup), n)).find("increasing"), std::string::npos);
  Payload far = pl;
  far.ids[2] = 1023;  // fits the 10 index bits, but >= V
  EXPECT_NE(msg(deserialize(serialize(far), n)).find("out of range"), std::string::npos);
  Payload heavy = pl;
  heavy.codes = {200, 200, 200};
  EXPECT_NE(msg(deserialize(serialize(heavy), n)).find("not a distribution"), std::string::npos);

  // Every entry that is not a finite value >= 0 is named, wherever it is (the checks run over
  // blocks of eight and a tail); -0 counts as 0.
  const int n_odd = 1003;
  const std::vector<float> p_odd = random_dist(n_odd, 5);
  for (float v : {-0.1f, -HUGE_VALF, HUGE_VALF, std::nanf("")}) {
    for (int at : {5, 994, 1002}) {
      Payload neg = encode(p_odd, {Encoding::kFull});
      neg.probs[at] = v;
      EXPECT_NE(msg(deserialize(serialize(neg), n_odd)).find(fmt::format("of token {} is not", at)),
                std::string::npos)
          << v << " at " << at;
    }
  }
  Payload negative_zero = encode(p_odd, {Encoding::kFull});
  negative_zero.probs[1001] += negative_zero.probs[1002];
  negative_zero.probs[1002] = -0.0f;
  EXPECT_TRUE(deserialize(serialize(negative_zero), n_odd).ok());
  Payload unnorm = encode(p, {Encoding::kFull});
  unnorm.probs[5] += 0.5f;
  EXPECT_NE(msg(deserialize(serialize(unnorm), n)).find("sum to"), std::string::npos);
}

}  // namespace
}  // namespace hlm
