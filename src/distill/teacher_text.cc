#include "distill/teacher_text.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <optional>

#include "distill/npz.h"
#include "engine/model.h"
#include "ops/ops.h"
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

// Per worker thread: room for one row's softmax and the running top list.
struct RowScratch {
  std::vector<float> p;
  std::vector<std::pair<float, int32_t>> heap;
};

// A row's `top` largest logits, largest first (ids, and values as fp16 bits), and its
// log-sum-exp. One pass with a min-heap of the best so far (most entries fail its first
// comparison); the log-sum-exp from the vectorised softmax, whose largest entry is
// 1 / Σ exp(z - max): lse = max - log p(argmax).
void top_of_row(std::span<const float> row, int top, RowScratch& w, int32_t* ids, uint16_t* vals,
                float* lse) {
  auto& h = w.heap;
  h.clear();
  const auto greater = std::greater<std::pair<float, int32_t>>();
  for (size_t i = 0; i < row.size(); ++i) {
    if (int(h.size()) < top) {
      h.emplace_back(row[i], int32_t(i));
      std::push_heap(h.begin(), h.end(), greater);
    } else if (row[i] > h.front().first) {
      std::pop_heap(h.begin(), h.end(), greater);
      h.back() = {row[i], int32_t(i)};
      std::push_heap(h.begin(), h.end(), greater);
    }
  }
  std::sort(h.begin(), h.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  for (int k = 0; k < top; ++k) {
    ids[k] = h[size_t(k)].second;
    vals[k] = ops::fmt::f32_to_f16(h[size_t(k)].first);
  }
  w.p.resize(row.size());
  ops::softmax_f32(row.data(), int64_t(row.size()), 1.0f, w.p.data());
  *lse = h[0].first - std::log(w.p[size_t(h[0].second)]);
}

}  // namespace

int teacher_text_ctx(const Tokenizer& tok, const TeacherTextOptions& o) {
  return int(tok.encode(head_text(o), false, true).size() +
             tok.encode(kAssistant, false, true).size()) +
         o.max_user + o.max_new + 1;
}

namespace {

// The loop text writing and rescoring share: every slot evaluates its pending tokens in one
// batched forward, every row of it is reduced to its top list, then each slot draws its next
// token or ends. `take` fills an empty slot with the next sequence (false when there is none).
// Returns how many sequences were dropped.
Result<int64_t> drive(Context& ctx, const TeacherTextOptions& o,
                      const std::function<bool(std::optional<Writing>&)>& take,
                      const std::function<Status(TeacherSequence&&)>& on_done,
                      const std::function<Status(int64_t)>& on_dropped) {
  const Tokenizer& tok = ctx.model().tokenizer();
  const int32_t im_end = tok.find_token("<|im_end|>");
  const std::vector<int32_t> assistant = tok.encode(kAssistant, false, true);
  const int n_vocab = ctx.model().config().n_vocab;
  if (o.top < 1 || o.top > n_vocab) {
    return make_error("--top {}: must be 1..{} (the vocabulary)", o.top, n_vocab);
  }
  // One slot per context sequence; a slot whose sequence ends takes the next at once, so the
  // batch stays full instead of waiting for its longest sequence.
  std::vector<std::optional<Writing>> slot(size_t(ctx.n_seq()));
  bool more = true;
  int64_t dropped = 0;
  auto refill = [&] {
    for (size_t j = 0; j < slot.size() && more; ++j) {
      if (slot[j]) continue;
      ctx.clear(int(j));
      more = take(slot[j]);
    }
  };
  std::vector<RowScratch> scratch(size_t(ctx.pool().size()) + 1);
  for (refill();; refill()) {
    std::vector<SeqInput> in;
    std::vector<size_t> who;
    for (size_t j = 0; j < slot.size(); ++j) {
      if (!slot[j]) continue;
      SeqInput s;
      s.seq = int(j);
      s.tokens = slot[j]->pending;
      s.logits_at.resize(slot[j]->pending.size());
      std::iota(s.logits_at.begin(), s.logits_at.end(), 0);
      in.push_back(std::move(s));
      who.push_back(j);
    }
    if (in.empty()) break;
    auto out = ctx.eval(in);
    if (!out) return out.error();
    // Every row of this forward, reduced to its top list on all threads (a row costs about as
    // much as a token's forward at batch 16).
    std::vector<std::pair<size_t, size_t>> rows;  // (input, row in it)
    for (size_t k = 0; k < who.size(); ++k)
      for (size_t r = 0; r < in[k].tokens.size(); ++r) rows.emplace_back(k, r);
    const size_t top = size_t(o.top), V = size_t(n_vocab);
    std::vector<int32_t> ids_at(rows.size() * top);
    std::vector<uint16_t> vals_at(rows.size() * top);
    std::vector<float> lse_at(rows.size());
    ctx.pool().parallel_for(rows.size(), 1, [&](size_t b, size_t e, int worker) {
      for (size_t i = b; i < e; ++i) {
        const auto [k, r] = rows[i];
        top_of_row((*out)[k].logits.subspan(r * V, V), o.top, scratch[size_t(worker)],
                   &ids_at[i * top], &vals_at[i * top], &lse_at[i]);
      }
    });
    // Each slot draws its next token with its own samplers, so the draws run on all threads too
    // (a draw without top-k sorts the whole vocabulary).
    std::vector<int32_t> drawn(who.size(), -1);
    ctx.pool().parallel_for(who.size(), 1, [&](size_t b, size_t e, int) {
      for (size_t k = b; k < e; ++k) {
        Writing& x = *slot[who[k]];
        const auto last = (*out)[k].logits.subspan((in[k].tokens.size() - 1) * V, V);
        if (x.phase == Phase::kUser) drawn[k] = x.user.sample(last);
        if (x.phase == Phase::kAnswer) drawn[k] = x.answer.sample(last);
      }
    });
    size_t row = 0;
    for (size_t k = 0; k < who.size(); ++k) {
      Writing& x = *slot[who[k]];
      const size_t n = x.pending.size();
      x.seq.top_ids.insert(x.seq.top_ids.end(), &ids_at[row * top], &ids_at[(row + n) * top]);
      x.seq.top_logits.insert(x.seq.top_logits.end(), &vals_at[row * top],
                              &vals_at[(row + n) * top]);
      x.seq.lse.insert(x.seq.lse.end(), &lse_at[row], &lse_at[row + n]);
      row += n;
      x.seq.tokens.insert(x.seq.tokens.end(), x.pending.begin(), x.pending.end());
      x.pending.clear();
      if (x.phase == Phase::kUser) {
        const int32_t t = drawn[k];
        ++x.n_user;
        if (t == im_end && x.n_user >= o.min_user) {
          x.pending.push_back(t);
          x.pending.insert(x.pending.end(), assistant.begin(), assistant.end());
          x.phase = Phase::kAnswer;
        } else if (t == im_end || x.n_user >= o.max_user) {
          x.phase = Phase::kDropped;
        } else {
          x.pending.push_back(t);
        }
      } else if (x.phase == Phase::kAnswer) {
        const int32_t t = drawn[k];
        ++x.n_answer;
        x.pending.push_back(t);
        // The last token is evaluated too: every position gets its row, as in a full prefill.
        if (tok.is_eog(t) || x.n_answer >= o.max_new) x.phase = Phase::kLast;
      } else if (x.phase == Phase::kLast) {
        x.phase = Phase::kDone;
      }
      if (x.phase == Phase::kDone) {
        if (Status st = on_done(std::move(x.seq)); !st) return st.error();
        slot[who[k]].reset();
      } else if (x.phase == Phase::kDropped) {
        ++dropped;
        if (on_dropped) {
          if (Status st = on_dropped(x.seq.id); !st) return st.error();
        }
        slot[who[k]].reset();
      }
    }
  }
  return dropped;
}

}  // namespace

Result<int64_t> teacher_text(Context& ctx, std::span<const int64_t> ids,
                             const TeacherTextOptions& o,
                             const std::function<Status(TeacherSequence&&)>& on_done,
                             const std::function<Status(int64_t)>& on_dropped) {
  const Tokenizer& tok = ctx.model().tokenizer();
  if (tok.find_token("<|im_start|>") < 0 || tok.find_token("<|im_end|>") < 0) {
    return make_error(
        "teacher text is written in ChatML turns, and {}'s vocabulary has no "
        "<|im_start|> or <|im_end|> token",
        ctx.model().path());
  }
  if (teacher_text_ctx(tok, o) > ctx.n_ctx()) {
    return make_error("a sequence needs {} positions, the context has {}", teacher_text_ctx(tok, o),
                      ctx.n_ctx());
  }
  const std::vector<int32_t> head = tok.encode(head_text(o), false, true);
  // A given question: its turn ends with <|im_end|> and the assistant header, as a drawn one does.
  // One over max_user tokens is dropped before any work, as a drawn one would be.
  std::vector<std::vector<int32_t>> asked;
  for (const std::string& q : o.questions) asked.push_back(tok.encode(q, false, false));
  const std::vector<int32_t> turn_end =
      tok.encode("<|im_end|>" + std::string(kAssistant), false, true);
  auto question = [&](int64_t id) -> const std::vector<int32_t>& {
    return asked[size_t(id) % asked.size()];
  };
  std::vector<int64_t> todo;
  int64_t too_long = 0;
  for (int64_t id : ids) {
    if (asked.empty() || (!question(id).empty() && int(question(id).size()) <= o.max_user)) {
      todo.push_back(id);
      continue;
    }
    ++too_long;
    if (on_dropped) {
      if (Status st = on_dropped(id); !st) return st.error();
    }
  }
  size_t next = 0;
  auto dropped = drive(
      ctx, o,
      [&](std::optional<Writing>& w) {
        if (next == todo.size()) return false;
        const int64_t id = todo[next++];
        w.emplace(id, o);
        w->pending = head;
        w->seq.n_prompt = int(head.size());
        if (!asked.empty()) {
          w->pending.insert(w->pending.end(), question(id).begin(), question(id).end());
          w->pending.insert(w->pending.end(), turn_end.begin(), turn_end.end());
          w->phase = Phase::kAnswer;
        }
        return true;
      },
      on_done, on_dropped);
  if (!dropped) return dropped;
  return *dropped + too_long;
}

Status teacher_score(Context& ctx, std::vector<TeacherSequence> seqs, int top,
                     const std::function<Status(TeacherSequence&&)>& on_done) {
  const int32_t n_vocab = ctx.model().config().n_vocab;
  for (const auto& s : seqs) {
    if (s.tokens.empty() || int(s.tokens.size()) >= ctx.n_ctx()) {
      return make_error("sequence {}: {} tokens, must be 1..{} (the context)", s.id,
                        s.tokens.size(), ctx.n_ctx() - 1);
    }
    for (int32_t t : s.tokens) {
      if (t < 0 || t >= n_vocab) {
        return make_error("sequence {}: token {} is not in {}'s vocabulary (0..{})", s.id, t,
                          ctx.model().path(), n_vocab - 1);
      }
    }
  }
  TeacherTextOptions o;
  o.top = top;
  size_t next = 0;
  auto r = drive(ctx, o,
                 [&](std::optional<Writing>& w) {
                   if (next == seqs.size()) return false;
                   TeacherSequence& s = seqs[next++];
                   w.emplace(s.id, o);
                   w->pending = std::move(s.tokens);
                   w->seq.n_prompt = s.n_prompt;
                   w->phase = Phase::kLast;  // nothing to draw: one forward gives every row
                   return true;
                 },
                 on_done, {});
  if (!r) return r.error();
  return ok_status();
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
