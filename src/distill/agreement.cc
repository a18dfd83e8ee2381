// agreement: both models score each sequence in one forward; the sums are over every position.
#include "distill/agreement.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace hlm {

namespace {

// Softmax at T = 1 in double: Σ min(p, q) of near-identical models sits close to 1.
void softmax(std::span<const float> logits, std::vector<double>& p) {
  const float max = *std::max_element(logits.begin(), logits.end());
  p.resize(logits.size());
  double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i) sum += p[i] = std::exp(double(logits[i]) - max);
  for (double& x : p) x /= sum;
}

}  // namespace

Result<Agreement> agreement(Context& teacher, Context& student,
                            std::span<const TeacherSequence> seqs) {
  const int n_vocab = teacher.model().config().n_vocab;
  if (Status st = check_vocab_compatible(teacher.model().tokenizer(), teacher.model().path(),
                                         student.model().tokenizer(), student.model().path());
      !st) {
    return st.error();
  }
  const int n_ctx = std::min(teacher.n_ctx(), student.n_ctx());
  Agreement a;
  double accept = 0, nll_t = 0, nll_s = 0;
  int64_t agree = 0;
  std::vector<double> p, q;
  for (const TeacherSequence& s : seqs) {
    const int n = int(s.tokens.size());
    if (n < 2 || n > n_ctx) {
      return make_error("sequence {}: {} tokens, must be 2..{} (the context)", s.id, n, n_ctx);
    }
    std::vector<int> at(size_t(n - 1 - std::max(s.n_prompt - 1, 0)));
    std::iota(at.begin(), at.end(), std::max(s.n_prompt - 1, 0));
    if (at.empty()) continue;
    const SeqInput in{0, s.tokens, at, nullptr};
    teacher.clear(0);
    student.clear(0);
    auto lt = teacher.eval(std::span(&in, 1));
    if (!lt) return make_error("sequence {}: {}", s.id, lt.error().message);
    // The teacher's rows stay valid until its next eval; the student runs on its own context.
    auto ls = student.eval(std::span(&in, 1));
    if (!ls) return make_error("sequence {}: {}", s.id, ls.error().message);
    for (size_t r = 0; r < at.size(); ++r) {
      const auto row_t = (*lt)[0].logits.subspan(r * size_t(n_vocab), size_t(n_vocab));
      const auto row_s = (*ls)[0].logits.subspan(r * size_t(n_vocab), size_t(n_vocab));
      softmax(row_t, p);
      softmax(row_s, q);
      double m = 0;
      for (int x = 0; x < n_vocab; ++x) m += std::min(p[size_t(x)], q[size_t(x)]);
      accept += m;
      agree += std::max_element(p.begin(), p.end()) - p.begin() ==
               std::max_element(q.begin(), q.end()) - q.begin();
      const size_t next = size_t(s.tokens[size_t(at[r]) + 1]);
      nll_t -= std::log(std::max(p[next], 1e-300));
      nll_s -= std::log(std::max(q[next], 1e-300));
    }
    a.positions += int64_t(at.size());
  }
  if (a.positions == 0) return make_error("no positions to score (every sequence is prompt only)");
  const double n = double(a.positions);
  a.accept = accept / n;
  a.top1 = double(agree) / n;
  a.ppl_teacher = std::exp(nll_t / n);
  a.ppl_student = std::exp(nll_s / n);
  return a;
}

}  // namespace hlm
