// Prompt sets: JSONL files with one object per line: {"id": ..., "prompt": ..., "reference": ...}
// ("prompt" required; "instruction" plus optional "input" accepted in its place).
#pragma once

#include <string>
#include <vector>

#include "util/result.h"

namespace hlm {

struct PromptRecord {
  std::string id;
  std::string prompt;
  std::string reference;  // the data set's answer, when it has one
};

// Errors name the file, the line and what was expected. limit <= 0 reads all.
Result<std::vector<PromptRecord>> load_prompts(const std::string& path, int limit = 0);

}  // namespace hlm
