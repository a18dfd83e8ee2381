// ChatTemplate: recognises the chat format from tokenizer.chat_template (as llama.cpp's
// llm_chat_detect_template does) and renders conversations the way llama_chat_apply_template
// does, plus the default system prompt some templates insert (SmolLM2).
#include <cctype>
#include <sstream>

#include "tokenizer/tokenizer.h"

namespace hlm {

namespace {

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

std::string unescape_newlines(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == 'n') {
      out += '\n';
      ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

// The literal system prompt a ChatML template writes when the conversation has none, e.g.
// SmolLM2's "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, ...' }}".
std::string chatml_default_system(std::string_view tmpl) {
  constexpr std::string_view kOpen = "<|im_start|>system";
  size_t pos = tmpl.find(kOpen);
  if (pos == std::string_view::npos) return {};
  pos += kOpen.size();
  if (tmpl.substr(pos, 1) == "\n") {
    pos += 1;
  } else if (tmpl.substr(pos, 2) == "\\n") {
    pos += 2;
  } else {
    return {};
  }
  size_t end = tmpl.find("<|im_end|>", pos);
  if (end == std::string_view::npos) return {};
  std::string_view body = tmpl.substr(pos, end - pos);
  // Only a literal: anything that looks like template code means the text comes from a message.
  if (body.empty() || body.find_first_of("'\"{}+") != std::string_view::npos) return {};
  return unescape_newlines(body);
}

}  // namespace

Result<ChatTemplate> ChatTemplate::from_template(const std::string& tmpl, const std::string& name) {
  auto has = [&](std::string_view s) { return tmpl.find(s) != std::string::npos; };
  if (has("<|im_start|>")) return ChatTemplate(ChatFormat::ChatML, chatml_default_system(tmpl));
  if (tmpl.rfind("mistral", 0) == 0 || has("[INST]")) {
    if (has("[SYSTEM_PROMPT]")) {
      ChatTemplate t(ChatFormat::Mistral);
      t.variant_ = Variant::kMistralV7;
      return t;
    }
    if (has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]")) {
      ChatTemplate t(ChatFormat::Mistral);
      t.variant_ = has(" [INST]")      ? Variant::kMistralV1
                   : has("\"[INST]\"") ? Variant::kMistralV3Tekken
                                       : Variant::kMistralV3;
      return t;
    }
    const bool sys = has("<<SYS>>");
    ChatTemplate t(sys ? ChatFormat::Llama2 : ChatFormat::Mistral);
    t.variant_ = has("content.strip()")       ? Variant::kLlama2SysStrip
                 : has("bos_token + '[INST]") ? Variant::kLlama2SysBos
                 : sys                        ? Variant::kLlama2Sys
                                              : Variant::kPlain;
    return t;
  }
  if (has("<|start_header_id|>") && has("<|end_header_id|>")) {
    return ChatTemplate(ChatFormat::Llama3);
  }
  if (has("<|user|>") && !has("<|end|>")) {
    return ChatTemplate(ChatFormat::Zephyr, {}, has("<|endoftext|>") ? "<|endoftext|>" : "</s>");
  }
  if (has("<start_of_turn>")) return ChatTemplate(ChatFormat::Gemma);
  return make_error(
      "{}: unrecognised chat template (hlm knows ChatML (Qwen, SmolLM2), Llama-2 [INST] <<SYS>>, "
      "Zephyr <|user|>, Mistral [INST], Llama-3 <|start_header_id|> and Gemma "
      "<start_of_turn>); template begins: {}",
      name, tmpl.substr(0, 120));
}

Result<ChatTemplate> ChatTemplate::from_gguf(const GgufFile& file, const Tokenizer& tok) {
  auto tmpl = file.get_string("tokenizer.chat_template");
  std::string why = "it has no tokenizer.chat_template";
  if (tmpl) {
    auto r = from_template(*tmpl, file.path());
    if (r) {
      if (r->format() == ChatFormat::Zephyr && tmpl->find("<|endoftext|>") == std::string::npos &&
          tok.eos() >= 0) {
        return ChatTemplate(ChatFormat::Zephyr, {}, tok.token_text(tok.eos()));
      }
      return r;
    }
    why = "its tokenizer.chat_template is not one hlm knows";
  }
  // No usable template: fall back to the vocabulary's chat tokens.
  if (tok.find_token("<|im_start|>") >= 0) return ChatTemplate(ChatFormat::ChatML);
  if (tok.find_token("<|start_header_id|>") >= 0) return ChatTemplate(ChatFormat::Llama3);
  if (tok.find_token("<|user|>") >= 0) {
    return ChatTemplate(ChatFormat::Zephyr, {},
                        tok.eos() >= 0 ? tok.token_text(tok.eos()) : "</s>");
  }
  // Gemma 3 GGUFs converted without a template (gemma3-270m) still have its turn tokens.
  if (tok.find_token("<start_of_turn>") >= 0) return ChatTemplate(ChatFormat::Gemma);
  return make_error(
      "{}: cannot tell the chat format: {} and the vocabulary has no chat tokens "
      "(<|im_start|>, <|start_header_id|>, <|user|>, <start_of_turn>); pass raw prompts instead",
      file.path(), why);
}

std::string ChatTemplate::apply(const std::vector<ChatMessage>& in,
                                bool add_generation_prompt) const {
  std::vector<ChatMessage> messages;
  if (!default_system_.empty() && (in.empty() || in.front().role != "system")) {
    messages.push_back({"system", default_system_});
  }
  messages.insert(messages.end(), in.begin(), in.end());

  std::ostringstream ss;
  switch (format_) {
    case ChatFormat::ChatML:
      for (const auto& m : messages) {
        ss << "<|im_start|>" << m.role << "\n" << m.content << "<|im_end|>\n";
      }
      if (add_generation_prompt) ss << "<|im_start|>assistant\n";
      break;

    case ChatFormat::Zephyr:
      for (const auto& m : messages) {
        ss << "<|" << m.role << "|>\n" << m.content << eos_text_ << "\n";
      }
      if (add_generation_prompt) ss << "<|assistant|>\n";
      break;

    case ChatFormat::Gemma: {
      // No system role: its text opens the next user turn. The assistant's role is "model".
      std::string system;
      for (const auto& m : messages) {
        if (m.role == "system") {
          system += trim(m.content);
          continue;
        }
        const std::string role = m.role == "assistant" ? "model" : m.role;
        ss << "<start_of_turn>" << role << "\n";
        if (!system.empty() && role != "model") {
          ss << system << "\n\n";
          system.clear();
        }
        ss << trim(m.content) << "<end_of_turn>\n";
      }
      if (add_generation_prompt) ss << "<start_of_turn>model\n";
      break;
    }

    case ChatFormat::Llama3:
      for (const auto& m : messages) {
        ss << "<|start_header_id|>" << m.role << "<|end_header_id|>\n\n"
           << trim(m.content) << "<|eot_id|>";
      }
      if (add_generation_prompt) ss << "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;

    case ChatFormat::Llama2:
    case ChatFormat::Mistral: {
      Variant v = variant_;
      if (format_ == ChatFormat::Llama2 && v == Variant::kPlain) v = Variant::kLlama2SysStrip;
      if (v == Variant::kMistralV7) {
        for (const auto& m : messages) {
          if (m.role == "system") {
            ss << "[SYSTEM_PROMPT] " << m.content << "[/SYSTEM_PROMPT]";
          } else if (m.role == "user") {
            ss << "[INST] " << m.content << "[/INST]";
          } else {
            ss << " " << m.content << "</s>";
          }
        }
      } else if (v == Variant::kMistralV1 || v == Variant::kMistralV3 ||
                 v == Variant::kMistralV3Tekken) {
        const std::string lead = v == Variant::kMistralV1 ? " " : "";
        const std::string trail = v == Variant::kMistralV3Tekken ? "" : " ";
        bool inside = false;
        for (const auto& m : messages) {
          if (!inside) {
            ss << lead << "[INST]" << trail;
            inside = true;
          }
          if (m.role == "system") {
            ss << m.content << "\n\n";
          } else if (m.role == "user") {
            ss << m.content << lead << "[/INST]";
          } else {
            ss << trail << (v == Variant::kMistralV3 ? trim(m.content) : m.content) << "</s>";
            inside = false;
          }
        }
      } else {
        // Llama-2 and its variants (Mistral v0.1/v0.2 templates are the plain one).
        const bool sys = v != Variant::kPlain;
        const bool bos_inside = v == Variant::kLlama2SysBos;
        const bool strip = v == Variant::kLlama2SysStrip;
        bool inside = true;  // the first [INST] follows the tokenizer's BOS
        ss << "[INST] ";
        for (const auto& m : messages) {
          const std::string content = strip ? trim(m.content) : m.content;
          if (!inside) {
            inside = true;
            ss << (bos_inside ? "<s>[INST] " : "[INST] ");
          }
          if (m.role == "system") {
            if (sys) {
              ss << "<<SYS>>\n" << content << "\n<</SYS>>\n\n";
            } else {
              ss << content << "\n";
            }
          } else if (m.role == "user") {
            ss << content << " [/INST]";
          } else {
            ss << content << "</s>";
            inside = false;
          }
        }
      }
      break;
    }
  }
  return ss.str();
}

}  // namespace hlm
