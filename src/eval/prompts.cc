// Prompt set loader (see prompts.h).
#include "eval/prompts.h"

#include <fstream>
#include <nlohmann/json.hpp>

namespace hlm {

Result<std::vector<PromptRecord>> load_prompts(const std::string& path, int limit) {
  std::ifstream in(path);
  if (!in) return make_error("{}: cannot open prompt file", path);
  std::vector<PromptRecord> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      return make_error("{}:{}: not a JSON object (expected one object per line)", path, n);
    }
    PromptRecord r;
    auto str = [&](const char* key) {
      return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
    };
    r.prompt = str("prompt");
    if (r.prompt.empty() && !str("instruction").empty()) {
      r.prompt = str("instruction");
      if (!str("input").empty()) r.prompt += "\n\n" + str("input");
    }
    if (r.prompt.empty()) {
      return make_error("{}:{}: missing \"prompt\" (or \"instruction\") string", path, n);
    }
    r.id = j.contains("id") ? (j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump())
                            : std::to_string(out.size());
    r.reference = str("reference");
    if (r.reference.empty()) r.reference = str("response");
    if (r.reference.empty()) r.reference = str("output");
    out.push_back(std::move(r));
    if (limit > 0 && int(out.size()) >= limit) break;
  }
  if (out.empty()) return make_error("{}: no prompts", path);
  return out;
}

}  // namespace hlm
