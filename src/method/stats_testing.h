// Statistical helpers for tests: Pearson's chi-square goodness-of-fit p-value, with cells of
// small expected count pooled so the asymptotic distribution holds on large vocabularies.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

namespace hlm::testing {

// Regularised upper incomplete gamma Q(a, x) (Numerical Recipes' series / continued fraction).
inline double gamma_q(double a, double x) {
  if (x <= 0.0) return 1.0;
  const double gln = std::lgamma(a);
  if (x < a + 1.0) {
    double ap = a, sum = 1.0 / a, del = sum;
    for (int n = 0; n < 1000; ++n) {
      del *= x / ++ap;
      sum += del;
      if (std::abs(del) < std::abs(sum) * 1e-15) break;
    }
    return 1.0 - sum * std::exp(-x + a * std::log(x) - gln);
  }
  double b = x + 1.0 - a, c = 1.0 / 1e-300, d = 1.0 / b, h = d;
  for (int i = 1; i < 1000; ++i) {
    const double an = -i * (i - a);
    b += 2.0;
    d = an * d + b;
    if (std::abs(d) < 1e-300) d = 1e-300;
    c = b + an / c;
    if (std::abs(c) < 1e-300) c = 1e-300;
    d = 1.0 / d;
    const double del = d * c;
    h *= del;
    if (std::abs(del - 1.0) < 1e-15) break;
  }
  return std::exp(-x + a * std::log(x) - gln) * h;
}

// p-value of Pearson's chi-square test of `counts` against the distribution q.
inline double chi_square_p(const std::vector<int64_t>& counts, std::span<const float> q) {
  int64_t n = 0;
  for (int64_t c : counts) n += c;
  double stat = 0.0;
  int cells = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double e = n * static_cast<double>(q[i]);
    if (e == 0.0) {
      if (counts[i] != 0) return 0.0;
      continue;
    }
    stat += (counts[i] - e) * (counts[i] - e) / e;
    ++cells;
  }
  return gamma_q((cells - 1) / 2.0, stat / 2.0);
}

// As chi_square_p, but cells whose expected count n·q is below `min_expected` are pooled into
// one cell (Cochran's rule), as needed when q spreads over tens of thousands of tokens.
inline double chi_square_p_pooled(const std::vector<int64_t>& counts, std::span<const float> q,
                                  double min_expected = 5.0) {
  int64_t n = 0;
  for (int64_t c : counts) n += c;
  std::vector<int64_t> c2;
  std::vector<float> q2;
  int64_t rest_count = 0;
  double rest_q = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (n * double(q[i]) >= min_expected) {
      c2.push_back(counts[i]);
      q2.push_back(q[i]);
    } else {
      rest_count += counts[i];
      rest_q += q[i];
    }
  }
  if (rest_q > 0 || rest_count > 0) {
    c2.push_back(rest_count);
    q2.push_back(static_cast<float>(rest_q));
  }
  return chi_square_p(c2, q2);
}

}  // namespace hlm::testing
