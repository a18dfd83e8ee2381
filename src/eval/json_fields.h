// The JSON files hlm saves and loads back (pair profiles, cost profiles): field readers whose
// every error names the file and the dotted field with what was expected, and the reading,
// writing and listing of such files.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "util/result.h"

namespace hlm {

// Reads fields of one JSON document parsed from `source` (a file name, kept by reference).
class FieldReader {
 public:
  using json = nlohmann::json;
  explicit FieldReader(const std::string& source) : source_(source) {}

  bool has(const json& parent, const char* key) const { return parent.contains(key); }
  Result<const json*> object(const json& parent, const std::string& path, const char* key) const;
  Result<std::string> string(const json& parent, const std::string& path, const char* key) const;
  // A finite number within [lo, hi].
  Result<double> number(const json& parent, const std::string& path, const char* key,
                        double lo = -1e300, double hi = 1e300) const;

 private:
  static std::string name(const std::string& path, const char* key);
  Result<const json*> get(const json& parent, const std::string& path, const char* key) const;
  Error expected(const std::string& path, const char* key, const char* what, const json& got) const;
  const std::string& source_;
};

// A whole file as text; the error names it and what it was read as ("the pair profile").
Result<std::string> read_text_file(const std::string& path, const char* what);
// Writes a file whole or not at all, creating its directory first.
Status save_text_file(const std::string& path, const std::string& text);
// The regular *.json files directly in `dir`, sorted (none when it is not a directory).
std::vector<std::string> json_files_in(const std::string& dir);

}  // namespace hlm
