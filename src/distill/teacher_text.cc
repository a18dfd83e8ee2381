#include "distill/teacher_text.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "distill/npz.h"
#include "engine/model.h"
#include "ops/quant_formats.h"
#include "tokenizer/tokenizer.h"

namespace hlm {
namespace {

std::string head_text(const TeacherTextOptions& o) {
  return "<|im_start|>system\n" + o.system + "<|im_end|>\n<|im_start|>user\n";
}
const char* kAssistant = "\n<|im_start|>assistant\n";

enum class Phase { kUser, kAnswer, kLast, kDone, kDropped };

struct Writing {
  TeacherSequence seq;
  Sampler user, answer;
  std::vector<int32_t> pending;  // tokens to evaluate next
  Phase phase = Phase::kUser;
  int n_user = 0, n_answer = 0;
  Writing(int64_t id, const TeacherTextOptions& o)
      : user([&] {
          SamplingParams p = o.user;
          p.seed = o.seed + 2 * uint64_t(id);
          return p;
        }()),
        answer([&] {
          SamplingParams p = o.answer;
          p.seed = o.seed + 2 * uint64_t(id) + 1;
          return p;
        }()) {
    seq.id = id;
  }
};

// Keeps a row's `top` largest logits and its log-sum-exp.
void keep_top(std::span<const float> row, int top, std::vector<int32_t>& order,
              TeacherSequence& s) {
  std::iota(order.begin(), order.end(), 0);
  std::nth_element(order.begin(), order.begin() + top, order.end(),
                   [&](int32_t a, int32_t b) { return row[size_t(a)] > row[size_t(b)]; });
  std::sort(order.begin(), order.begin() + top,
            [&](int32_t a, int32_t b) { return row[size_t(a)] > row[size_t(b)]; });
  const float mx = row[size_t(order[0])];
  double sum = 0;
  for (float x : row) sum += std::exp(double(x) - mx);
  s.lse.push_back(float(mx + std::log(sum)));
  for (int k = 0; k < top; ++k) {
    s.top_ids.push_back(order[size_t(k)]);
    s.top_logits.push_back(ops::fmt::f32_to_f16(row[size_t(order[size_t(k)])]));
  }
}

}  // namespace

int teacher_text_ctx(const Tokenizer& tok, const TeacherTextOptions& o) {
  return int(tok.encode(head_text(o), false, true).size() +
             tok.encode(kAssistant, false, true).size()) +
         o.max_user + o.max_new + 1;
}

Result<std::vector<TeacherSequence>> teacher_text(Context& ctx, std::span<const int64_t> ids,
                                                  const TeacherTextOptions& o) {
  const Tokenizer& tok = ctx.model().tokenizer();
  const int32_t im_end = tok.find_token("<|im_end|>");
  if (tok.find_token("<|im_start|>") < 0 || im_end < 0) {
    return make_error(
        "teacher text is written in ChatML turns, and {}'s vocabulary has no "
        "<|im_start|> or <|im_end|> token",
        ctx.model().path());
  }
  const int n_vocab = ctx.model().config().n_vocab;
  if (o.top < 1 || o.top > n_vocab) {
    return make_error("--top {}: must be 1..{} (the vocabulary)", o.top, n_vocab);
  }
  if (int(ids.size()) > ctx.n_seq()) {
    return make_error("{} sequences in one batch, the context holds {}", ids.size(), ctx.n_seq());
  }
  if (teacher_text_ctx(tok, o) > ctx.n_ctx()) {
    return make_error("a sequence needs {} positions, the context has {}", teacher_text_ctx(tok, o),
                      ctx.n_ctx());
  }
  const std::vector<int32_t> head = tok.encode(head_text(o), false, true);
  const std::vector<int32_t> assistant = tok.encode(kAssistant, false, true);

  std::vector<Writing> w;
  w.reserve(ids.size());
  for (size_t j = 0; j < ids.size(); ++j) {
    ctx.clear(int(j));
    w.emplace_back(ids[j], o);
    w.back().pending = head;
    w.back().seq.n_prompt = int(head.size());
  }
  std::vector<int32_t> order(size_t(n_vocab), 0);
  for (;;) {
    std::vector<SeqInput> in;
    std::vector<size_t> who;
    for (size_t j = 0; j < w.size(); ++j) {
      if (w[j].pending.empty()) continue;
      SeqInput s;
      s.seq = int(j);
      s.tokens = w[j].pending;
      s.logits_at.resize(w[j].pending.size());
      std::iota(s.logits_at.begin(), s.logits_at.end(), 0);
      in.push_back(std::move(s));
      who.push_back(j);
    }
    if (in.empty()) break;
    auto out = ctx.eval(in);
    if (!out) return out.error();
    for (size_t k = 0; k < who.size(); ++k) {
      Writing& x = w[who[k]];
      const size_t n = x.pending.size();
      const std::span<const float> all = (*out)[k].logits;
      for (size_t r = 0; r < n; ++r)
        keep_top(all.subspan(r * size_t(n_vocab), size_t(n_vocab)), o.top, order, x.seq);
      x.seq.tokens.insert(x.seq.tokens.end(), x.pending.begin(), x.pending.end());
      x.pending.clear();
      const std::span<const float> last = all.subspan((n - 1) * size_t(n_vocab), size_t(n_vocab));
      if (x.phase == Phase::kUser) {
        const int32_t t = x.user.sample(last);
        ++x.n_user;
        if (t == im_end) {
          if (x.n_user < o.min_user) {
            x.phase = Phase::kDropped;
            continue;
          }
          x.pending.push_back(t);
          x.pending.insert(x.pending.end(), assistant.begin(), assistant.end());
          x.phase = Phase::kAnswer;
        } else if (x.n_user >= o.max_user) {
          x.phase = Phase::kDropped;
        } else {
          x.pending.push_back(t);
        }
      } else if (x.phase == Phase::kAnswer) {
        const int32_t t = x.answer.sample(last);
        ++x.n_answer;
        x.pending.push_back(t);
        // The last token is evaluated too: every position gets its row, as in a full prefill.
        if (tok.is_eog(t) || x.n_answer >= o.max_new) x.phase = Phase::kLast;
      } else if (x.phase == Phase::kLast) {
        x.phase = Phase::kDone;
      }
    }
  }
  std::vector<TeacherSequence> done;
  for (auto& x : w)
    if (x.phase == Phase::kDone) done.push_back(std::move(x.seq));
  return done;
}

Status save_npz(const TeacherSequence& s, const std::string& path) {
  const int64_t n = int64_t(s.tokens.size());
  const int64_t top = n > 0 ? int64_t(s.top_ids.size()) / n : 0;
  const int64_t n_prompt = s.n_prompt;
  const npz::Array arrays[] = {
      {"toks", "<i4", {n}, npz::bytes_of(std::span(s.tokens))},
      {"n_prompt", "<i8", {}, npz::bytes_of(std::span(&n_prompt, 1))},
      {"idx", "<i4", {n, top}, npz::bytes_of(std::span(s.top_ids))},
      {"val", "<f2", {n, top}, npz::bytes_of(std::span(s.top_logits))},
      {"lse", "<f4", {n}, npz::bytes_of(std::span(s.lse))},
  };
  return npz::write(path, arrays);
}

}  // namespace hlm
