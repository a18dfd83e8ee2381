// Cost lines: evaluation and the least-squares fit.
#include "method/cost.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

namespace hlm {
namespace {

constexpr int kMaxCoefs = 5;  // intercept + the four terms

// The values of the line's columns for one piece of work, in coefficient order.
std::array<double, kMaxCoefs> columns(const Work& w) {
  return {1.0, w.n, w.context, w.n * w.context, w.batch - 1};
}

}  // namespace

double CostLine::seconds(const Work& w) const {
  const auto x = columns(w);
  const double t = intercept_s * x[0] + per_unit_s * x[1] + per_context_s * x[2] +
                   per_unit_context_s * x[3] + per_batch_s * x[4];
  return std::max(0.0, t);
}

namespace {

// Unconstrained least squares over the intercept and `terms`: the coefficients (zero for terms
// not used) and the residual sum of squares.
struct Solved {
  std::array<double, kMaxCoefs> coef{};
  double ss_res = 0;
};

Result<Solved> least_squares(std::span<const CostSample> samples, unsigned terms) {
  std::vector<int> used = {0};
  for (int t = 0; t < 4; ++t) {
    if (terms & (1u << t)) used.push_back(t + 1);
  }
  const size_t p = used.size();
  if (samples.size() < p) {
    return make_error("cost fit: {} samples cannot fix {} coefficients", samples.size(), p);
  }
  // Columns are scaled to at most 1 in magnitude so that n·context (thousands) and the
  // intercept (1) condition the normal equations alike.
  std::array<double, kMaxCoefs> scale{};
  for (const auto& s : samples) {
    const auto x = columns(s.work);
    for (size_t j = 0; j < p; ++j) scale[j] = std::max(scale[j], std::abs(x[size_t(used[j])]));
  }
  for (size_t j = 0; j < p; ++j) {
    if (scale[j] == 0) return make_error("cost fit: a term is zero in every sample");
  }
  // Normal equations A·c = b with A = XᵀX, b = Xᵀy, solved by Gaussian elimination.
  std::array<std::array<double, kMaxCoefs + 1>, kMaxCoefs> a{};
  for (const auto& s : samples) {
    const auto x = columns(s.work);
    for (size_t i = 0; i < p; ++i) {
      const double xi = x[size_t(used[i])] / scale[i];
      for (size_t j = 0; j < p; ++j) a[i][j] += xi * x[size_t(used[j])] / scale[j];
      a[i][p] += xi * s.seconds;
    }
  }
  double diag = 0;
  for (size_t i = 0; i < p; ++i) diag = std::max(diag, a[i][i]);
  for (size_t col = 0; col < p; ++col) {
    size_t pivot = col;
    for (size_t r = col + 1; r < p; ++r) {
      if (std::abs(a[r][col]) > std::abs(a[pivot][col])) pivot = r;
    }
    if (std::abs(a[pivot][col]) <= 1e-12 * diag) {
      return make_error(
          "cost fit: the samples do not tell the terms apart (vary the positions, contexts and "
          "batch sizes measured)");
    }
    std::swap(a[col], a[pivot]);
    for (size_t r = 0; r < p; ++r) {
      if (r == col) continue;
      const double f = a[r][col] / a[col][col];
      for (size_t c = col; c <= p; ++c) a[r][c] -= f * a[col][c];
    }
  }
  Solved out;
  for (size_t j = 0; j < p; ++j) out.coef[size_t(used[j])] = a[j][p] / a[j][j] / scale[j];
  for (const auto& s : samples) {
    const auto x = columns(s.work);
    double fit = 0;
    for (int j = 0; j < kMaxCoefs; ++j) fit += out.coef[size_t(j)] * x[size_t(j)];
    out.ss_res += (s.seconds - fit) * (s.seconds - fit);
  }
  return out;
}

bool terms_non_negative(const Solved& s) {
  return std::all_of(s.coef.begin() + 1, s.coef.end(), [](double c) { return c >= 0; });
}

}  // namespace

Result<CostLine> fit_cost_line(std::span<const CostSample> samples, unsigned terms) {
  auto best = least_squares(samples, terms);
  if (!best) return best.error();
  // A term with a negative time (noise between nearly collinear columns) would extrapolate to
  // work that gets cheaper as it grows. The non-negative least-squares fit is the unconstrained
  // fit of one subset of the terms: the best of those whose own fit has no negative term (the
  // intercept alone always qualifies), so with at most four terms every subset is tried.
  if (!terms_non_negative(*best)) {
    std::optional<Solved> kept;
    for (unsigned sub = 0; sub < terms; ++sub) {
      if ((sub & ~terms) != 0) continue;
      auto fit = least_squares(samples, sub);
      if (fit && terms_non_negative(*fit) && (!kept || fit->ss_res < kept->ss_res)) kept = *fit;
    }
    best = kept.value();
  }
  const auto& coef = best->coef;
  CostLine line{coef[0], coef[1], coef[2], coef[3], coef[4]};
  line.n_samples = int64_t(samples.size());
  double mean = 0;
  for (const auto& s : samples) mean += s.seconds;
  mean /= double(samples.size());
  double ss_tot = 0;
  for (const auto& s : samples) ss_tot += (s.seconds - mean) * (s.seconds - mean);
  const double ss_res = best->ss_res;
  line.r2 = ss_tot > 0 ? 1.0 - ss_res / ss_tot : (ss_res <= 1e-24 ? 1.0 : 0.0);
  return line;
}

double DeviceCost::slm_s(int64_t positions, int64_t context, bool capture) const {
  const CostLine& line = capture && forward_capture ? *forward_capture : forward;
  return positions > 0 ? line.seconds({double(positions), double(context), 1}) : 0.0;
}

double CostConfig::cloud_s(double measured, int64_t positions, int64_t context) const {
  if (!cloud) return measured;
  return positions > 0 ? cloud->seconds({double(positions), double(context), 1}) : 0.0;
}

}  // namespace hlm
