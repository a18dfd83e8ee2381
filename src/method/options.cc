// Parsing of the method's option strings.
#include "method/options.h"

#include <charconv>
#include <cmath>

namespace hlm {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    const size_t at = s.find(sep, start);
    out.push_back(trim(s.substr(start, at == std::string_view::npos ? s.npos : at - start)));
    if (at == std::string_view::npos) break;
    start = at + 1;
  }
  return out;
}

}  // namespace

Result<OptionString> parse_option_string(std::string_view text) {
  const std::string_view s = trim(text);
  OptionString out;
  const size_t paren = s.find('(');
  const size_t colon = s.find(':');
  if (paren != std::string_view::npos && (colon == std::string_view::npos || paren < colon)) {
    if (s.back() != ')') return make_error("'{}': missing ')' at the end", text);
    out.name = std::string(trim(s.substr(0, paren)));
    const std::string_view inner = trim(s.substr(paren + 1, s.size() - paren - 2));
    if (!inner.empty()) {
      for (std::string_view a : split(inner, ',')) {
        if (a.empty()) return make_error("'{}': empty argument", text);
        out.positional.emplace_back(a);
      }
    }
  } else if (colon != std::string_view::npos) {
    out.name = std::string(trim(s.substr(0, colon)));
    for (std::string_view kv : split(s.substr(colon + 1), ',')) {
      const size_t eq = kv.find('=');
      if (eq == std::string_view::npos || eq == 0) {
        return make_error("'{}': expected key=value, got '{}'", text, kv);
      }
      out.keyed.emplace_back(std::string(trim(kv.substr(0, eq))),
                             std::string(trim(kv.substr(eq + 1))));
    }
  } else {
    out.name = std::string(s);
  }
  if (out.name.empty()) return make_error("'{}': missing a name", text);
  return out;
}

Result<double> parse_number(std::string_view text, std::string_view what) {
  const std::string_view s = trim(text);
  double v = 0.0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size() || !std::isfinite(v)) {
    return make_error("{}: '{}' is not a number", what, text);
  }
  return v;
}

Result<int> parse_int(std::string_view text, std::string_view what) {
  const std::string_view s = trim(text);
  int v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) {
    return make_error("{}: '{}' is not an integer", what, text);
  }
  return v;
}

}  // namespace hlm
