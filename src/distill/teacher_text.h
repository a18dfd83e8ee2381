// teacher_text: the teacher writing its own training text for distillation. From a system prompt
// it samples a user turn (its own idea of what users ask), or takes one from a list of real
// users' questions, answers it as a chat would, and keeps its top logits and log-sum-exp at every
// position: what tools/distill trains the student on.
// Several sequences decode together in one batched forward (continuously: a finished sequence's
// slot starts the next at once), which is what makes hlm's engine several times faster at this
// than a one-sequence-at-a-time loop.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/sampler.h"
#include "util/result.h"

namespace hlm {

struct TeacherTextOptions {
  std::string system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
  int max_user = 96;  // a user turn that has not ended within this many tokens is dropped
  int min_user = 4;   // nor is a shorter one kept
  int max_new = 192;  // answer tokens at most (the end-of-generation token included)
  int top = 64;       // logits kept per position
  // Sequence i draws its user turn with seed + 2i and its answer with seed + 2i + 1.
  uint64_t seed = 0;
  // When given, sequence i asks questions[i % size] instead of drawing a user turn, so ids
  // 0..k*size-1 hold k answers to each (what the held-out text is: answers to real questions).
  // A question over max_user tokens is dropped.
  std::vector<std::string> questions;
  SamplingParams user{1.0f, 0, 0.95f, 0};
  SamplingParams answer{0.7f, 40, 0.95f, 0};
};

struct TeacherSequence {
  int64_t id = 0;
  std::vector<int32_t> tokens;  // the head, the user turn, the assistant header, the answer
  int n_prompt = 0;             // tokens of the head (system turn and user header)
  // Per position p (the teacher's prediction of token p + 1), its `top` largest logits: ids and
  // values (fp16 bits), [tokens.size()][top], and the log-sum-exp of the whole row.
  std::vector<int32_t> top_ids;
  std::vector<uint16_t> top_logits;
  std::vector<float> lse;
};

// Context size one sequence needs under these options.
int teacher_text_ctx(const Tokenizer& tok, const TeacherTextOptions& o);

// Writes sequences `ids`, as many at a time as ctx has sequences (each of teacher_text_ctx()
// positions): a sequence that ends hands its slot to the next id at once, and on_done receives
// it then (so ids finish out of order). Returns how many were dropped (their user turn did not
// end in time); on_dropped, when given, receives each dropped id, so that a resumed run need
// not draw it again (the seeds are fixed: it would be dropped again). An error from either
// callback stops the work and is returned. The model's vocabulary must have ChatML's
// <|im_start|> and <|im_end|>.
Result<int64_t> teacher_text(Context& ctx, std::span<const int64_t> ids,
                             const TeacherTextOptions& o,
                             const std::function<Status(TeacherSequence&&)>& on_done,
                             const std::function<Status(int64_t)>& on_dropped = {});

// The rows again for text written before (tools/distill commits only its tokens: the rows are
// what takes the space): each sequence's id, tokens and n_prompt are kept and its `top` rows
// computed by one forward, several sequences at a time. Each must fit the context.
Status teacher_score(Context& ctx, std::vector<TeacherSequence> seqs, int top,
                     const std::function<Status(TeacherSequence&&)>& on_done);

// Saves one sequence as tools/distill's .npz: toks, n_prompt, idx, val, lse.
Status save_npz(const TeacherSequence& s, const std::string& path);

}  // namespace hlm
