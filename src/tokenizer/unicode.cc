// Unicode helpers: codepoint class lookup, lenient UTF-8, and the hand-written pre-tokenizer
// splits (the regexes llama.cpp uses, implemented as scanners over codepoint classes).
#include "tokenizer/unicode.h"

#include <algorithm>
#include <array>
#include <memory>

namespace hlm::unicode {

namespace {

// Flags of the Basic Multilingual Plane, expanded once from the ranges for O(1) lookup.
const std::array<uint8_t, 0x10000>& bmp_table() {
  static const std::unique_ptr<std::array<uint8_t, 0x10000>> table = [] {
    auto t = std::make_unique<std::array<uint8_t, 0x10000>>();
    for (size_t i = 0; i + 1 < kCpRangesSize && kCpRanges[i].first < 0x10000; ++i) {
      uint32_t end = std::min<uint32_t>(kCpRanges[i + 1].first, 0x10000);
      for (uint32_t cp = kCpRanges[i].first; cp < end; ++cp) (*t)[cp] = kCpRanges[i].value;
    }
    return t;
  }();
  return *table;
}

}  // namespace

uint8_t cp_flags(uint32_t cp) {
  if (cp < 0x10000) return bmp_table()[cp];
  if (cp >= 0x110000) return kUndefined;
  const CpRange* end = kCpRanges + kCpRangesSize;
  const CpRange* it = std::upper_bound(kCpRanges, end, cp,
                                       [](uint32_t c, const CpRange& r) { return c < r.first; });
  return (it - 1)->value;
}

std::vector<uint32_t> decode_utf8(std::string_view s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  auto cont = [&](size_t i) { return i < n && (p[i] & 0xC0) == 0x80; };
  size_t i = 0;
  while (i < n) {
    const uint8_t b = p[i];
    if (b < 0x80) {
      out.push_back(b);
      i += 1;
    } else if (b >= 0xC0 && b < 0xE0 && cont(i + 1)) {
      out.push_back(((b & 0x1Fu) << 6) | (p[i + 1] & 0x3Fu));
      i += 2;
    } else if (b >= 0xE0 && b < 0xF0 && cont(i + 1) && cont(i + 2)) {
      out.push_back(((b & 0x0Fu) << 12) | ((p[i + 1] & 0x3Fu) << 6) | (p[i + 2] & 0x3Fu));
      i += 3;
    } else if (b >= 0xF0 && b < 0xF8 && cont(i + 1) && cont(i + 2) && cont(i + 3)) {
      uint32_t cp = ((b & 0x07u) << 18) | ((p[i + 1] & 0x3Fu) << 12) | ((p[i + 2] & 0x3Fu) << 6) |
                    (p[i + 3] & 0x3Fu);
      if (cp < 0x110000) {
        out.push_back(cp);
        i += 4;
      } else {
        out.push_back(0xFFFD);
        i += 1;
      }
    } else {
      out.push_back(0xFFFD);  // a stray or truncated byte: replace it and resynchronise
      i += 1;
    }
  }
  return out;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {

// Word boundaries are kept as a list of segment lengths (in codepoints) over the whole text;
// every split refines each segment independently, as llama.cpp's chained regexes do.
using Segments = std::vector<size_t>;

constexpr uint32_t kOut = 0xFFFFFFFF;  // "codepoint" past either end of the current segment
constexpr uint8_t kNone = 0x80;        // its flags: no class, not whitespace

struct Text {
  std::vector<uint32_t> cps;
  std::vector<uint8_t> flags;
};

inline bool is_letter(uint8_t f) { return (f & (kNone | kClassMask)) == kLetter; }
inline bool is_number(uint8_t f) { return (f & (kNone | kClassMask)) == kNumber; }
inline bool is_space(uint8_t f) { return (f & (kNone | kWhitespaceBit)) == kWhitespaceBit; }
// [^\s\p{L}\p{N}] over a real codepoint (never past the segment end).
inline bool is_other(uint8_t f) {
  return !(f & kNone) && !is_space(f) && !is_letter(f) && !is_number(f);
}
inline uint32_t ascii_lower(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

// Scanner over one segment [ini, end): accessors return kOut / kNone outside it.
struct Scan {
  const Text& t;
  size_t ini, end;
  Segments& out;
  size_t prev_end;

  Scan(const Text& text, size_t b, size_t e, Segments& o) : t(text), ini(b), end(e), out(o) {
    prev_end = b;
  }
  uint32_t cp(size_t pos) const { return pos >= ini && pos < end ? t.cps[pos] : kOut; }
  uint8_t fl(size_t pos) const { return pos >= ini && pos < end ? t.flags[pos] : kNone; }
  size_t add(size_t e) {
    size_t len = e - prev_end;
    if (len > 0) out.push_back(len);
    prev_end = e;
    return len;
  }
};

// 's|'t|'re|'ve|'m|'ll|'d (case-insensitive when asked): the match length, or 0.
size_t contraction(const Scan& s, size_t pos, bool ignore_case) {
  if (s.cp(pos) != '\'' || pos + 1 >= s.end) return 0;
  auto lower = [&](uint32_t c) { return ignore_case ? ascii_lower(c) : c; };
  uint32_t c1 = lower(s.cp(pos + 1));
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
  if (pos + 2 >= s.end) return 0;
  uint32_t c2 = lower(s.cp(pos + 2));
  if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
  return 0;
}

// GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
void split_gpt2_segment(Scan& s) {
  for (size_t pos = s.ini; pos < s.end;) {
    const uint32_t c = s.cp(pos);
    if (size_t n = contraction(s, pos, false)) {
      pos += s.add(pos + n);
      continue;
    }
    uint8_t f2 = c == ' ' ? s.fl(pos + 1) : s.fl(pos);
    if (is_letter(f2) || is_number(f2) || is_other(f2)) {
      auto same = is_letter(f2) ? is_letter : is_number(f2) ? is_number : is_other;
      pos += (c == ' ');
      while (same(s.fl(pos))) ++pos;
      s.add(pos);
      continue;
    }
    size_t n_space = 0;
    while (is_space(s.fl(pos + n_space))) ++n_space;
    if (n_space > 1 && s.cp(pos + n_space) != kOut) {  // \s+(?!\S): leave one for the next word
      pos += n_space - 1;
      s.add(pos);
      continue;
    }
    if (n_space > 0) {
      pos += n_space;
      s.add(pos);
      continue;
    }
    s.add(++pos);
  }
}

// Llama-3 / Qwen2: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
//                  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
void split_llama3_segment(Scan& s, size_t max_digits) {
  for (size_t pos = s.ini; pos < s.end;) {
    const uint32_t c = s.cp(pos);
    const uint8_t f = s.fl(pos);
    if (size_t n = contraction(s, pos, true)) {
      pos += s.add(pos + n);
      continue;
    }
    if (!(c == '\r' || c == '\n' || is_number(f)) && (is_letter(f) || is_letter(s.fl(pos + 1)))) {
      ++pos;
      while (is_letter(s.fl(pos))) ++pos;
      s.add(pos);
      continue;
    }
    if (is_number(f)) {
      size_t start = pos;
      while (is_number(s.fl(pos))) {
        if (++pos - start >= max_digits) {
          s.add(pos);
          start = pos;
        }
      }
      s.add(pos);
      continue;
    }
    uint8_t f2 = c == ' ' ? s.fl(pos + 1) : f;
    // As in llama.cpp, entry tests the current codepoint's flags, the loop the next ones'.
    if (!is_space(f2) && !is_letter(f2) && !is_number(f2) && !(f & kNone)) {
      pos += (c == ' ');
      while (is_other(f2)) f2 = s.fl(++pos);
      while (s.cp(pos) == '\r' || s.cp(pos) == '\n') ++pos;
      s.add(pos);
      continue;
    }
    size_t n_space = 0, last_newline_end = 0;
    while (is_space(s.fl(pos + n_space))) {
      uint32_t c2 = s.cp(pos + n_space);
      if (c2 == '\r' || c2 == '\n') last_newline_end = pos + n_space + 1;
      ++n_space;
    }
    if (last_newline_end > 0) {  // \s*[\r\n]+
      pos = last_newline_end;
      s.add(pos);
      continue;
    }
    if (n_space > 1 && s.cp(pos + n_space) != kOut) {
      pos += n_space - 1;
      s.add(pos);
      continue;
    }
    if (n_space > 0) {
      pos += n_space;
      s.add(pos);
      continue;
    }
    s.add(++pos);
  }
}

template <class F>
Segments for_each_segment(const Text& t, const Segments& in, F&& split) {
  Segments out;
  out.reserve(in.size() * 2);
  size_t start = 0;
  for (size_t len : in) {
    Scan s(t, start, start + len, out);
    split(s);
    start += len;
  }
  return out;
}

// A regex that is one codepoint class (single=true: one codepoint per match; else runs):
// matches and the text between them both become segments.
template <class Pred>
Segments split_matches(const Text& t, const Segments& in, Pred pred, bool single) {
  return for_each_segment(t, in, [&](Scan& s) {
    size_t pos = s.ini;
    while (pos < s.end) {
      if (pred(pos)) {
        s.add(pos);  // the unmatched text before, if any
        ++pos;
        if (!single)
          while (pos < s.end && pred(pos)) ++pos;
        s.add(pos);
      } else {
        ++pos;
      }
    }
    s.add(s.end);
  });
}

// [0-9][0-9][0-9], leftmost matches.
Segments split_ascii_digit_triples(const Text& t, const Segments& in) {
  auto digit = [&](size_t i) { return t.cps[i] >= '0' && t.cps[i] <= '9'; };
  return for_each_segment(t, in, [&](Scan& s) {
    size_t pos = s.ini;
    while (pos < s.end) {
      if (pos + 3 <= s.end && digit(pos) && digit(pos + 1) && digit(pos + 2)) {
        s.add(pos);
        pos += 3;
        s.add(pos);
      } else {
        ++pos;
      }
    }
    s.add(s.end);
  });
}

}  // namespace

std::vector<std::string> pre_tokenize(std::string_view text, PreTokenizer pre) {
  Text t;
  t.cps = decode_utf8(text);
  t.flags.resize(t.cps.size());
  for (size_t i = 0; i < t.cps.size(); ++i) t.flags[i] = cp_flags(t.cps[i]);

  Segments segs;
  if (!t.cps.empty()) segs.push_back(t.cps.size());
  auto gpt2 = [&] { segs = for_each_segment(t, segs, split_gpt2_segment); };
  auto number_at = [&](size_t i) { return is_number(t.flags[i]); };
  switch (pre) {
    case PreTokenizer::kGpt2:
      gpt2();
      break;
    case PreTokenizer::kDigits:
      segs = split_matches(t, segs, number_at, /*single=*/true);
      gpt2();
      break;
    case PreTokenizer::kDefault: {
      auto punct_at = [&](size_t i) {
        uint32_t c = t.cps[i];
        return (t.flags[i] & kClassMask) == kPunct || c == '$' || c == '+' || c == '<' ||
               c == '=' || c == '>' || c == '^' || c == '~' || c == '|';
      };
      segs = split_matches(t, segs, punct_at, /*single=*/false);
      gpt2();
      segs = split_matches(t, segs, number_at, /*single=*/false);
      segs = split_ascii_digit_triples(t, segs);
      break;
    }
    case PreTokenizer::kLlama3:
      segs = for_each_segment(t, segs, [](Scan& s) { split_llama3_segment(s, 3); });
      break;
    case PreTokenizer::kQwen2:
      segs = for_each_segment(t, segs, [](Scan& s) { split_llama3_segment(s, 1); });
      break;
  }

  std::vector<std::string> words;
  words.reserve(segs.size());
  size_t start = 0;
  for (size_t len : segs) {
    std::string w;
    for (size_t i = start; i < start + len; ++i) append_utf8(w, t.cps[i]);
    words.push_back(std::move(w));
    start += len;
  }
  return words;
}

}  // namespace hlm::unicode
