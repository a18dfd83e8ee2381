// Prompt preparation (see prompt.h).
#include "apps/prompt.h"

#include <fmt/format.h>

namespace hlm::apps {

Result<std::vector<int32_t>> prepare_prompt(const Model& model, const PromptOptions& o, int ctx) {
  std::string text = o.prompt;
  if (o.chat) {
    const auto& tmpl = model.chat_template();
    if (!tmpl) return make_error("--chat: {}", tmpl.error().message);
    std::vector<ChatMessage> messages;
    if (!o.system.empty()) messages.push_back({"system", o.system});
    messages.push_back({"user", o.prompt});
    text = tmpl->apply(messages, /*add_generation_prompt=*/true);
  }
  std::vector<int32_t> ids = model.tokenizer().encode(text, /*add_special=*/true,
                                                      /*parse_special=*/o.chat);
  if (ids.empty()) return make_error("the prompt is empty");
  if (int(ids.size()) >= ctx) {
    return make_error("the prompt has {} tokens but the context holds {}; raise --ctx", ids.size(),
                      ctx);
  }
  return ids;
}

}  // namespace hlm::apps
