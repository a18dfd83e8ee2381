// Tokenizer: loads a GGUF vocabulary and encodes/decodes text the way llama.cpp does —
// SentencePiece score-driven bigram merging ("llama") and byte-level BPE with rank-ordered
// merges after a regex pre-tokenizer ("gpt2"), with special tokens split out of the text first.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "tokenizer/unicode.h"
#include "util/hash.h"

namespace hlm {

namespace {

// Token attributes, as llama.cpp derives them from the GGUF token types (a bit set, because
// detection by text adds the control bit to end-of-generation tokens).
enum Attr : uint32_t {
  kAttrUndefined = 0,
  kAttrUnknown = 1 << 0,
  kAttrUnused = 1 << 1,
  kAttrNormal = 1 << 2,
  kAttrControl = 1 << 3,
  kAttrUserDefined = 1 << 4,
  kAttrByte = 1 << 5,
};

uint32_t attr_from_type(int32_t type) {
  switch (type) {
    case kTokenUnknown:
      return kAttrUnknown;
    case kTokenUnused:
      return kAttrUnused;
    case kTokenNormal:
      return kAttrNormal;
    case kTokenControl:
      return kAttrControl;
    case kTokenUserDefined:
      return kAttrUserDefined;
    case kTokenByte:
      return kAttrByte;
    default:
      return kAttrUndefined;
  }
}

// Hash map keyed by std::string, looked up by string_view without allocating.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return fnv1a(kFnvBasis, s.data(), s.size()); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// BPE merge ranks keyed by "left right", looked up by the pair of views.
struct MergeKey {
  std::string_view left, right;
};
struct MergeHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return fnv1a(kFnvBasis, s.data(), s.size()); }
  size_t operator()(const MergeKey& k) const {
    uint64_t h = fnv1a(kFnvBasis, k.left.data(), k.left.size());
    h = fnv1a(h, " ", 1);
    return fnv1a(h, k.right.data(), k.right.size());
  }
};
struct MergeEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
  bool operator()(const MergeKey& k, std::string_view s) const {
    return s.size() == k.left.size() + 1 + k.right.size() && s.starts_with(k.left) &&
           s[k.left.size()] == ' ' && s.substr(k.left.size() + 1) == k.right;
  }
  bool operator()(std::string_view s, const MergeKey& k) const { return (*this)(k, s); }
};
using MergeMap = std::unordered_map<std::string, int32_t, MergeHash, MergeEq>;

// GPT-2's byte <-> printable-codepoint mapping: printable Latin-1 bytes map to themselves, the
// rest to U+0100 onwards in byte order.
struct ByteMap {
  std::string byte_to_utf8[256];
  int16_t cp_to_byte[0x144];  // -1 when the codepoint is not an image
  ByteMap() {
    std::fill(std::begin(cp_to_byte), std::end(cp_to_byte), int16_t{-1});
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      uint32_t cp = printable ? b : 256 + n++;
      unicode::append_utf8(byte_to_utf8[b], cp);
      cp_to_byte[cp] = static_cast<int16_t>(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (true) {
    size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s.substr(pos));
  return out;
}

// The pre-tokenizers hlm implements for byte-level BPE ("gpt2") vocabularies, by the name in
// tokenizer.ggml.pre, with the flags llama.cpp's llama_vocab::load sets for each.
struct PreTokenizerEntry {
  std::string_view name;
  unicode::PreTokenizer pre;
  bool clean_spaces = true;    // llama.cpp's space clean-up on decode
  bool ignore_merges = false;  // a word that is a token is taken whole
  bool add_bos = false;        // BOS added even when the GGUF does not say so
};
constexpr PreTokenizerEntry kPreTokenizers[] = {
    {"default", unicode::PreTokenizer::kDefault},
    {"llama3", unicode::PreTokenizer::kLlama3, true, true, true},
    {"llama-v3", unicode::PreTokenizer::kLlama3, true, true, true},
    {"llama-bpe", unicode::PreTokenizer::kLlama3, true, true, true},
    {"falcon3", unicode::PreTokenizer::kLlama3, true, true, true},
    {"pixtral", unicode::PreTokenizer::kLlama3, true, true, true},
    {"qwen2", unicode::PreTokenizer::kQwen2, false},
    {"deepseek-r1-qwen", unicode::PreTokenizer::kQwen2, false},
    {"stablelm2", unicode::PreTokenizer::kQwen2},
    {"megrez", unicode::PreTokenizer::kQwen2},
    {"smollm", unicode::PreTokenizer::kDigits, false},
    {"command-r", unicode::PreTokenizer::kDigits, false},
    {"starcoder", unicode::PreTokenizer::kDigits},
    {"refact", unicode::PreTokenizer::kDigits},
    {"codeshell", unicode::PreTokenizer::kDigits},
    {"exaone", unicode::PreTokenizer::kDigits},
    {"minerva-7b", unicode::PreTokenizer::kDigits},
    {"gpt2", unicode::PreTokenizer::kGpt2},
    {"gpt-2", unicode::PreTokenizer::kGpt2},
    {"phi-2", unicode::PreTokenizer::kGpt2},
    {"mpt", unicode::PreTokenizer::kGpt2},
    {"olmo", unicode::PreTokenizer::kGpt2},
    {"jina-es", unicode::PreTokenizer::kGpt2},
    {"jina-de", unicode::PreTokenizer::kGpt2},
    {"jina-v2-es", unicode::PreTokenizer::kGpt2},
    {"jina-v2-de", unicode::PreTokenizer::kGpt2},
    {"exaone4", unicode::PreTokenizer::kGpt2},
};

const PreTokenizerEntry* find_pre_tokenizer(std::string_view name) {
  for (const PreTokenizerEntry& e : kPreTokenizers) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

std::string supported_pre_tokenizers() {
  std::string s;
  for (const PreTokenizerEntry& e : kPreTokenizers) {
    if (!s.empty()) s += ", ";
    s += "'" + std::string(e.name) + "'";
  }
  return s;
}

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

struct Symbol {
  int prev, next;
  size_t start, n;  // byte range in the word
};

}  // namespace

struct Tokenizer::Impl {
  enum class Model { kSpm, kBpe } model = Model::kSpm;
  std::string model_name;
  std::string pre_name;
  unicode::PreTokenizer pre = unicode::PreTokenizer::kDefault;

  std::vector<std::string> text;
  std::vector<float> score;
  std::vector<int32_t> type;
  std::vector<uint32_t> attr;
  TokenMap to_id;
  MergeMap ranks;

  int32_t bos = -1, eos = -1, unk = -1, eot = -1, eom = -1, pad = -1;
  bool add_bos = false, add_eos = false, add_space_prefix = false;
  bool clean_spaces = false, ignore_merges = false;

  std::vector<int32_t> special_cache;  // control / user-defined / unknown, longest text first
  std::unordered_set<int32_t> eog;
  std::vector<std::string> piece;  // token_to_piece(id, special=true)
  uint64_t fingerprint = 0;

  int32_t lookup(std::string_view s) const {
    auto it = to_id.find(s);
    return it == to_id.end() ? -1 : it->second;
  }

  int32_t byte_to_token(uint8_t b) const {  // SentencePiece byte fallback
    static const char* hex = "0123456789ABCDEF";
    char buf[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
    int32_t id = lookup(buf);
    if (id >= 0) return id;
    id = lookup(std::string_view(reinterpret_cast<const char*>(&b), 1));
    return id >= 0 ? id : unk;
  }

  void encode_spm(std::string_view text_in, std::vector<int32_t>& out) const;
  void encode_bpe(std::string_view text_in, std::vector<int32_t>& out) const;
  std::string make_piece(int32_t id) const;
};

// --- SentencePiece: repeatedly merge the adjacent pair whose concatenation is the
// highest-scoring token (ties: leftmost), then emit tokens, falling back to byte tokens.
void Tokenizer::Impl::encode_spm(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<Symbol> sym;
  for (size_t off = 0; off < word.size();) {
    size_t n = std::min(unicode::utf8_len(static_cast<uint8_t>(word[off])), word.size() - off);
    int idx = static_cast<int>(sym.size());
    sym.push_back({idx - 1, off + n == word.size() ? -1 : idx + 1, off, n});
    off += n;
  }
  struct Bigram {
    int left, right;
    float score;
    size_t size;
  };
  auto cmp = [](const Bigram& a, const Bigram& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(cmp)> queue(cmp);
  auto try_add = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    int32_t id = lookup(word.substr(sym[l].start, sym[l].n + sym[r].n));
    if (id < 0) return;
    queue.push({l, r, score[id], sym[l].n + sym[r].n});
  };
  for (int i = 1; i < static_cast<int>(sym.size()); ++i) try_add(i - 1, i);
  while (!queue.empty()) {
    Bigram b = queue.top();
    queue.pop();
    Symbol& l = sym[b.left];
    Symbol& r = sym[b.right];
    if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;  // stale
    l.n += r.n;
    r.n = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }
  if (sym.empty()) return;
  for (int i = 0; i != -1; i = sym[i].next) {
    std::string_view s = word.substr(sym[i].start, sym[i].n);
    int32_t id = lookup(s);
    if (id >= 0) {
      out.push_back(id);
    } else {
      for (char c : s) {
        int32_t b = byte_to_token(static_cast<uint8_t>(c));
        if (b >= 0) out.push_back(b);
      }
    }
  }
}

// --- Byte-level BPE: pre-tokenize into words, map bytes to GPT-2 codepoints, then merge the
// adjacent pair with the lowest merge rank (ties: leftmost) until none applies.
void Tokenizer::Impl::encode_bpe(std::string_view text_in, std::vector<int32_t>& out) const {
  const ByteMap& bm = byte_map();
  std::vector<Symbol> sym;
  struct Bigram {
    int left, right;
    int32_t rank;
    size_t left_n, right_n;
  };
  auto cmp = [](const Bigram& a, const Bigram& b) {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  };
  std::vector<Bigram> heap;
  std::string word;
  for (const std::string& raw : unicode::pre_tokenize(text_in, pre)) {
    word.clear();
    for (unsigned char c : raw) word += bm.byte_to_utf8[c];
    sym.clear();
    heap.clear();
    if (ignore_merges) {
      if (int32_t id = lookup(word); id >= 0) {
        out.push_back(id);
        continue;
      }
    }
    for (size_t off = 0; off < word.size();) {
      size_t n = std::min(unicode::utf8_len(static_cast<uint8_t>(word[off])), word.size() - off);
      int idx = static_cast<int>(sym.size());
      sym.push_back({idx - 1, off + n == word.size() ? -1 : idx + 1, off, n});
      off += n;
    }
    std::string_view w = word;
    auto try_add = [&](int l, int r) {
      if (l < 0 || r < 0) return;
      auto it =
          ranks.find(MergeKey{w.substr(sym[l].start, sym[l].n), w.substr(sym[r].start, sym[r].n)});
      if (it == ranks.end()) return;
      heap.push_back({l, r, it->second, sym[l].n, sym[r].n});
      std::push_heap(heap.begin(), heap.end(), cmp);
    };
    for (int i = 1; i < static_cast<int>(sym.size()); ++i) try_add(i - 1, i);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), cmp);
      Bigram b = heap.back();
      heap.pop_back();
      Symbol& l = sym[b.left];
      Symbol& r = sym[b.right];
      // Symbols only grow, and their starts never move: equal sizes mean equal texts.
      if (l.n != b.left_n || r.n != b.right_n || l.next != b.right) continue;
      l.n += r.n;
      r.n = 0;
      l.next = r.next;
      if (r.next >= 0) sym[r.next].prev = b.left;
      try_add(l.prev, b.left);
      try_add(b.left, l.next);
    }
    if (sym.empty()) continue;
    for (int i = 0; i != -1; i = sym[i].next) {
      std::string_view s = w.substr(sym[i].start, sym[i].n);
      int32_t id = lookup(s);
      if (id >= 0) {
        out.push_back(id);
      } else {
        for (char c : s) {  // as llama.cpp: each byte of the mapped text, when it is a token
          int32_t b = lookup(std::string_view(&c, 1));
          if (b >= 0) out.push_back(b);
        }
      }
    }
  }
}

std::string Tokenizer::Impl::make_piece(int32_t id) const {
  const uint32_t a = attr[id];
  const std::string& t = text[id];
  if (a & (kAttrUnknown | kAttrControl | kAttrUserDefined)) return t;
  if (a & kAttrNormal) {
    if (model == Model::kSpm) return replace_all(t, kSpmSpace, " ");
    std::string out;
    const ByteMap& bm = byte_map();
    for (uint32_t cp : unicode::decode_utf8(t)) {
      if (cp < 0x144 && bm.cp_to_byte[cp] >= 0) {
        out.push_back(static_cast<char>(bm.cp_to_byte[cp]));
      } else {
        std::string utf8;
        unicode::append_utf8(utf8, cp);
        out += "[UNK_BYTE_0x";
        for (unsigned char c : utf8) out += fmt::format("{:02x}", c);
        out += t + "]";
      }
    }
    return out;
  }
  if (a & kAttrByte) {
    if (t.size() == 6 && t.starts_with("<0x")) {
      return std::string(1, static_cast<char>(std::strtol(t.substr(3, 2).c_str(), nullptr, 16)));
    }
    return t;
  }
  return {};
}

// ---------------------------------------------------------------------------------------------

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Result<Tokenizer> Tokenizer::from_gguf(const GgufFile& file) {
  VocabSpec v;
  v.name = file.path();
  auto model = file.get_string("tokenizer.ggml.model");
  if (!model) {
    return make_error("{}: missing tokenizer.ggml.model (not a language model GGUF?)", v.name);
  }
  v.model = *model;
  v.pre = file.get_string("tokenizer.ggml.pre").value_or("");
  v.tokens = file.get_strings("tokenizer.ggml.tokens");
  if (v.tokens.empty()) return make_error("{}: missing or empty tokenizer.ggml.tokens", v.name);
  for (double s : file.get_numbers("tokenizer.ggml.scores")) v.scores.push_back(float(s));
  for (double t : file.get_numbers("tokenizer.ggml.token_type")) v.types.push_back(int32_t(t));
  v.merges = file.get_strings("tokenizer.ggml.merges");
  auto id = [&](const char* key) -> std::optional<int32_t> {
    if (auto i = file.get_int(key)) return static_cast<int32_t>(*i);
    return std::nullopt;
  };
  v.bos = id("tokenizer.ggml.bos_token_id");
  v.eos = id("tokenizer.ggml.eos_token_id");
  v.unk = id("tokenizer.ggml.unknown_token_id");
  v.eot = id("tokenizer.ggml.eot_token_id");
  v.eom = id("tokenizer.ggml.eom_token_id");
  v.pad = id("tokenizer.ggml.padding_token_id");
  auto flag = [&](const char* key) -> std::optional<bool> {
    if (auto i = file.get_int(key)) return *i != 0;
    return std::nullopt;
  };
  v.add_bos = flag("tokenizer.ggml.add_bos_token");
  v.add_eos = flag("tokenizer.ggml.add_eos_token");
  v.add_space_prefix = flag("tokenizer.ggml.add_space_prefix");
  return from_vocab(std::move(v));
}

Result<Tokenizer> Tokenizer::from_vocab(VocabSpec v) {
  Tokenizer tok;
  Impl& m = *tok.impl_;
  const std::string& name = v.name;
  const size_t n = v.tokens.size();
  if (n == 0) return make_error("{}: the vocabulary has no tokens", name);
  if (n > static_cast<size_t>(INT32_MAX)) return make_error("{}: vocabulary too large", name);
  if (!v.scores.empty() && v.scores.size() < n) {
    return make_error("{}: tokenizer.ggml.scores has {} entries for {} tokens", name,
                      v.scores.size(), n);
  }
  if (!v.types.empty() && v.types.size() < n) {
    return make_error("{}: tokenizer.ggml.token_type has {} entries for {} tokens", name,
                      v.types.size(), n);
  }
  m.model_name = v.model;
  m.pre_name = v.pre;

  // Model type, default special ids and flags (llama.cpp's llama_vocab::load).
  int32_t bos = -1, eos = -1, unk = -1;
  if (v.model == "llama") {
    m.model = Impl::Model::kSpm;
    bos = 1, eos = 2, unk = 0;
    m.add_space_prefix = true;
    m.add_bos = true;
  } else if (v.model == "gpt2") {
    m.model = Impl::Model::kBpe;
    bos = 11, eos = 11;
    const PreTokenizerEntry* pre = find_pre_tokenizer(v.pre.empty() ? "default" : v.pre);
    if (!pre) {
      return make_error(
          "{}: unsupported pre-tokenizer tokenizer.ggml.pre = '{}' for tokenizer.ggml.model "
          "'gpt2' (hlm supports {})",
          name, v.pre, supported_pre_tokenizers());
    }
    m.pre = pre->pre;
    m.clean_spaces = pre->clean_spaces;
    m.ignore_merges = pre->ignore_merges;
    if (pre->add_bos) m.add_bos = true;
    if (v.merges.empty()) return make_error("{}: missing tokenizer.ggml.merges", name);
  } else {
    return make_error(
        "{}: unsupported tokenizer.ggml.model = '{}' (hlm supports 'llama', SentencePiece, and "
        "'gpt2', byte-level BPE)",
        name, v.model);
  }
  if (v.add_space_prefix) m.add_space_prefix = *v.add_space_prefix;

  // Tokens.
  m.text = std::move(v.tokens);
  m.score.assign(n, 0.0f);
  if (!v.scores.empty()) std::copy_n(v.scores.begin(), n, m.score.begin());
  m.type.assign(n, kTokenNormal);
  if (!v.types.empty()) std::copy_n(v.types.begin(), n, m.type.begin());
  m.attr.resize(n);
  m.to_id.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (m.text[i].empty()) m.text[i] = "[EMPTY_" + std::to_string(i) + "]";
    auto [it, inserted] = m.to_id.emplace(m.text[i], static_cast<int32_t>(i));
    if (!inserted) {
      return make_error("{}: duplicate token in vocabulary: '{}' has ids {} and {}", name,
                        m.text[i], it->second, i);
    }
    m.attr[i] = attr_from_type(m.type[i]);
  }

  // Merges: "left right" split at the first space after the first byte; the first rank wins.
  m.ranks.reserve(v.merges.size());
  for (size_t i = 0; i < v.merges.size(); ++i) {
    const std::string& mg = v.merges[i];
    size_t pos = mg.find(' ', 1);
    if (pos == std::string::npos) continue;
    m.ranks.emplace(mg, static_cast<int32_t>(i));
  }

  // Special ids: defaults out of range are dropped; given ids out of range keep the default.
  auto in_range = [&](int32_t id) { return id >= 0 && static_cast<size_t>(id) < n; };
  auto pick = [&](int32_t def, const std::optional<int32_t>& given) {
    if (!in_range(def)) def = -1;
    if (given && in_range(*given)) return *given;
    return def;
  };
  m.bos = pick(bos, v.bos);
  m.eos = pick(eos, v.eos);
  m.unk = pick(unk, v.unk);
  m.eot = pick(-1, v.eot);
  m.eom = pick(-1, v.eom);
  m.pad = pick(-1, v.pad);
  if (v.add_bos) m.add_bos = *v.add_bos;
  if (v.add_eos) m.add_eos = *v.add_eos;
  if (m.add_bos && m.bos < 0) {
    return make_error("{}: tokenizer.ggml.add_bos_token is true, but there is no BOS token", name);
  }
  if (m.add_eos && m.eos < 0) {
    return make_error("{}: tokenizer.ggml.add_eos_token is true, but there is no EOS token", name);
  }

  // End-of-generation tokens, found by their text as llama.cpp does; they become control.
  static const std::unordered_set<std::string_view> kEotTexts = {
      "<|eot_id|>",      "<|im_end|>", "<|end|>", "<end_of_turn>",     "<|endoftext|>",
      "<|end_of_text|>", "<EOT>",      "_<EOT>",  "<end_of_utterance>"};
  static const std::unordered_set<std::string_view> kEogTexts = {
      "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",   "<|endoftext|>",      "</s>",
      "<|eom_id|>", "<EOT>",      "_<EOT>",  "<|end_of_text|>", "<end_of_utterance>", "<eos>"};
  static const std::unordered_set<std::string_view> kFimEogTexts = {
      "<|fim_pad|>",   "<fim-pad>",  "<fim_pad>", "<PAD>",      "<|fim_repo|>",
      "<|repo_name|>", "<fim-repo>", "<REPO>",    "<reponame>", "<|file_sep|>"};
  for (size_t i = 0; i < n; ++i) {
    const std::string& t = m.text[i];
    const auto id = static_cast<int32_t>(i);
    if (m.eot < 0 && kEotTexts.count(t)) m.eot = id, m.attr[i] |= kAttrControl;
    if (m.eom < 0 && t == "<|eom_id|>") m.eom = id, m.attr[i] |= kAttrControl;
    if (kEogTexts.count(t)) m.eog.insert(id), m.attr[i] |= kAttrControl;
    if (kFimEogTexts.count(t)) m.eog.insert(id), m.attr[i] |= kAttrControl;
  }
  for (int32_t id : {m.eos, m.eot, m.eom}) {
    if (id >= 0) m.eog.insert(id);
  }

  // Tokens matched in text before pre-tokenization: longest first (ties: lower id first).
  for (size_t i = 0; i < n; ++i) {
    if (m.attr[i] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) {
      m.special_cache.push_back(static_cast<int32_t>(i));
    }
  }
  std::stable_sort(m.special_cache.begin(), m.special_cache.end(),
                   [&](int32_t a, int32_t b) { return m.text[a].size() > m.text[b].size(); });

  m.piece.resize(n);
  for (size_t i = 0; i < n; ++i) m.piece[i] = m.make_piece(static_cast<int32_t>(i));

  uint64_t h = kFnvBasis;
  h = fnv1a(h, m.model_name.data(), m.model_name.size() + 1);
  for (size_t i = 0; i < n; ++i) {
    h = fnv1a(h, m.text[i].data(), m.text[i].size() + 1);  // with the terminating NUL
    h = fnv1a(h, &m.type[i], sizeof(int32_t));
  }
  m.fingerprint = h;
  return tok;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  const Impl& m = *impl_;
  // Fragments: raw text ranges, or tokens found in the text.
  struct Fragment {
    int32_t token;  // -1 for raw text
    size_t off, len;
  };
  std::vector<Fragment> frags;
  if (!text.empty()) frags.push_back({-1, 0, text.size()});
  std::vector<Fragment> next;
  for (int32_t id : m.special_cache) {
    if (!parse_special && (m.attr[id] & (kAttrControl | kAttrUnknown))) continue;
    const std::string& st = m.text[id];
    if (text.find(st) == std::string_view::npos) continue;
    next.clear();
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      size_t pos = f.off, end = f.off + f.len;
      while (pos < end) {
        size_t hit = text.substr(0, end).find(st, pos);
        if (hit == std::string_view::npos) break;
        if (hit > pos) next.push_back({-1, pos, hit - pos});
        next.push_back({id, hit, st.size()});
        pos = hit + st.size();
      }
      if (pos < end) next.push_back({-1, pos, end - pos});
    }
    frags.swap(next);
  }

  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special && m.add_bos) out.push_back(m.bos);
  bool prev_special = true;  // SentencePiece: a space goes before text at the start/after specials
  for (const Fragment& f : frags) {
    if (f.token >= 0) {
      out.push_back(f.token);
      prev_special = true;
      continue;
    }
    std::string_view raw = text.substr(f.off, f.len);
    if (m.model == Impl::Model::kSpm) {
      std::string s;
      if (m.add_space_prefix && prev_special) s = " ";
      s += raw;
      m.encode_spm(replace_all(s, " ", kSpmSpace), out);
    } else {
      m.encode_bpe(raw, out);
    }
    prev_special = false;
  }
  if (add_special && m.add_eos) out.push_back(m.eos);
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool special) const {
  const Impl& m = *impl_;
  if (id < 0 || static_cast<size_t>(id) >= m.text.size()) return {};
  if (!special && (m.attr[id] & (kAttrUnknown | kAttrControl))) return {};
  return m.piece[id];
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool special) const {
  const Impl& m = *impl_;
  std::string out;
  bool remove_space = m.add_space_prefix;  // the space SentencePiece put before the first word
  for (int32_t id : ids) {
    std::string p = token_to_piece(id, special);
    if (remove_space && !p.empty() && p[0] == ' ') p.erase(0, 1);
    remove_space = false;
    out += p;
  }
  if (!m.clean_spaces || out.empty()) return out;
  // llama.cpp's clean-up for BPE vocabularies that ask for it: " ?" " !" " ." " ," lose the
  // space, " ' " loses both, and " 's" " 'm" " 're" " 've" lose it.
  std::string a;
  a.push_back(out[0]);
  for (size_t i = 1; i < out.size(); ++i) {
    char x = out[i];
    if (out[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) a.pop_back();
    a.push_back(x);
  }
  std::string b;
  b.push_back(a[0]);
  for (size_t i = 1; i < a.size(); ++i) {
    char x = a[i];
    if (x == '\'' && i + 1 < a.size() && a[i - 1] == ' ' && a[i + 1] == ' ') {
      b.pop_back();   // the space before
      a[++i] = '\0';  // and the one after, which the next test must not see as a space
    }
    b.push_back(x);
  }
  std::string c;
  c.push_back(b[0]);
  for (size_t i = 1; i < b.size(); ++i) {
    char x = b[i];
    if (b[i - 1] == ' ' && x == '\'' && i + 1 < b.size()) {
      char x1 = b[i + 1];
      if (x1 == 's' || x1 == 'm') {
        c.pop_back();
      } else if (i + 2 < b.size()) {
        char x2 = b[i + 2];
        if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) c.pop_back();
      }
    }
    c.push_back(x);
  }
  return c;
}

int32_t Tokenizer::n_vocab() const { return static_cast<int32_t>(impl_->text.size()); }
int32_t Tokenizer::bos() const { return impl_->bos; }
int32_t Tokenizer::eos() const { return impl_->eos; }
int32_t Tokenizer::eot() const { return impl_->eot; }
bool Tokenizer::is_eog(int32_t id) const { return id >= 0 && impl_->eog.count(id) > 0; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }
bool Tokenizer::clean_spaces() const { return impl_->clean_spaces; }
const std::string& Tokenizer::model_type() const { return impl_->model_name; }
const std::string& Tokenizer::pre_type() const { return impl_->pre_name; }
const std::string& Tokenizer::token_text(int32_t id) const {
  static const std::string kEmpty;
  if (id < 0 || id >= n_vocab()) return kEmpty;
  return impl_->text[id];
}
int32_t Tokenizer::token_type(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return kTokenUndefined;
  return impl_->type[id];
}
int32_t Tokenizer::find_token(std::string_view text) const { return impl_->lookup(text); }
uint64_t Tokenizer::fingerprint() const { return impl_->fingerprint; }

// --- Utf8Stream ---------------------------------------------------------------------------------

namespace {

// Length of the valid sequence at s[i], 0 if it is incomplete at the end, -1 if invalid.
int utf8_seq(std::string_view s, size_t i) {
  const auto b = static_cast<uint8_t>(s[i]);
  int len;
  uint8_t lo = 0x80, hi = 0xBF;  // bounds for the second byte (no overlongs, no surrogates)
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) {
    len = 2;
  } else if (b >= 0xE0 && b <= 0xEF) {
    len = 3;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    len = 4;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;
  } else {
    return -1;
  }
  for (int k = 1; k < len; ++k) {
    if (i + k >= s.size()) return 0;
    const auto c = static_cast<uint8_t>(s[i + k]);
    if (k == 1 ? (c < lo || c > hi) : (c & 0xC0) != 0x80) return -1;
  }
  return len;
}

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

}  // namespace

std::string Utf8Stream::push(std::string_view bytes) {
  pending_.append(bytes);
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    int n = utf8_seq(pending_, i);
    if (n == 0) break;  // incomplete: keep for the next push
    if (n < 0) {
      out += kReplacement;
      i += 1;
    } else {
      out.append(pending_, i, n);
      i += n;
    }
  }
  pending_.erase(0, i);
  return out;
}

std::string Utf8Stream::flush() {
  std::string out;
  if (!pending_.empty()) out += kReplacement;  // a truncated sequence
  pending_.clear();
  return out;
}

// --- Compatibility ------------------------------------------------------------------------------

Status check_vocab_compatible(const Tokenizer& a, const std::string& a_name, const Tokenizer& b,
                              const std::string& b_name) {
  if (a.model_type() != b.model_type()) {
    return make_error("vocabularies differ: {} uses a '{}' tokenizer, {} a '{}' one", a_name,
                      a.model_type(), b_name, b.model_type());
  }
  if (a.n_vocab() != b.n_vocab()) {
    return make_error("vocabularies differ: {} has {} tokens, {} has {}", a_name, a.n_vocab(),
                      b_name, b.n_vocab());
  }
  for (int32_t id = 0; id < a.n_vocab(); ++id) {
    if (a.token_text(id) != b.token_text(id) || a.token_type(id) != b.token_type(id)) {
      return make_error(
          "vocabularies differ at token {}: '{}' (type {}) in {}, '{}' (type {}) in {}", id,
          a.token_text(id), a.token_type(id), a_name, b.token_text(id), b.token_type(id), b_name);
    }
  }
  if (a.bos() != b.bos() || a.eos() != b.eos()) {
    return make_error(
        "vocabularies differ in special tokens: {} has BOS {} EOS {}, {} has BOS {} "
        "EOS {}",
        a_name, a.bos(), a.eos(), b_name, b.bos(), b.eos());
  }
  return ok_status();
}

}  // namespace hlm
