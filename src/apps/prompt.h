// Prompt preparation shared by the subcommands: chat template, tokenisation, context check.
#pragma once

#include <cstdint>
#include <vector>

#include "apps/options.h"
#include "engine/model.h"
#include "util/result.h"

namespace hlm::apps {

// The prompt's token ids: wrapped in the model's chat template with --chat (control tokens
// parsed), checked to leave room for max_tokens within ctx.
Result<std::vector<int32_t>> prepare_prompt(const Model& model, const PromptOptions& prompt,
                                            int ctx);

}  // namespace hlm::apps
