// Option strings of the method: "name", "name(a,b,...)" or "name:key=value,key=value", as in
// "iuhlm:u_th=0.1,lambda=2.5", "rand(0.3)", "topk(32,8)", "lte:rtt=0.03".
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/result.h"

namespace hlm {

struct OptionString {
  std::string name;
  std::vector<std::string> positional;                     // from name(a,b,...)
  std::vector<std::pair<std::string, std::string>> keyed;  // from name:key=value,...
};

// Splits an option string; whitespace around tokens is ignored. Errors name the offending part.
Result<OptionString> parse_option_string(std::string_view text);

// Strict number parsing (the whole string must be a finite number); `what` names the field in
// the error message.
Result<double> parse_number(std::string_view text, std::string_view what);
Result<int> parse_int(std::string_view text, std::string_view what);

}  // namespace hlm
