// agreement: how closely a draft model (the student) follows a target model (the teacher) on given
// text, position by position: the expected acceptance rate of speculative sampling,
// Σ_x min(p(x), q(x)) at T = 1, top-1 agreement, and each model's perplexity on the text. This is
// what tools/distill scores students by, computed by hlm's own engine (so it covers students
// llama.cpp cannot load, such as those with a shortlist head).
#pragma once

#include <cstdint>
#include <span>

#include "distill/teacher_text.h"
#include "engine/context.h"
#include "util/result.h"

namespace hlm {

struct Agreement {
  int64_t positions = 0;  // predictions scored: tokens n_prompt..n-1 of each sequence
  double accept = 0;      // mean Σ min(p, q)
  double top1 = 0;        // share of positions where both models' argmax agree
  double ppl_teacher = 0, ppl_student = 0;  // on the text's own next tokens
};

// Scores every sequence's tokens after its prompt (the prediction of token n_prompt onwards; of
// token 1 onwards when n_prompt is 0). Each context needs one sequence slot as long as the longest
// sequence; the models must share a vocabulary.
Result<Agreement> agreement(Context& teacher, Context& student,
                            std::span<const TeacherSequence> seqs);

}  // namespace hlm
