// Model fingerprints: a short identity of a GGUF model that is cheap even for a multi-gigabyte
// file, used to match a pair profile (eval/profile.h) to the models actually loaded.
#pragma once

#include <string>

namespace hlm {

class GgufFile;

// Lower-case hex SHA-256 over a canonical encoding of what the file holds: the GGUF version and
// alignment, every metadata key and value (in key order), every tensor's name, type, shape and
// offset, and three samples of its data (the first, middle and last 256 bytes; all of it when
// shorter). It reads a few hundred kilobytes at most, whatever the file's size, and changes when
// the metadata, the tensor layout or the weights change (a fine-tune or requantisation rewrites
// the blocks every sample covers). It is not the file's SHA-256 (`hlm models list` checks that).
std::string model_fingerprint(const GgufFile& file);

}  // namespace hlm
