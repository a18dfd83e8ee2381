// Subprocess: runs a program with an argument vector (posix_spawnp, no shell), waits for it, and
// optionally captures its stdout. Used to drive pip and Python's zipfile during model fetches.
#pragma once

#include <string>
#include <vector>

#include "util/result.h"

namespace hlm {

struct SpawnOptions {
  // Where the child's stdout goes: inherited, sent to our stderr (keeps our stdout clean for
  // --json), captured into ProcessResult::out, or discarded.
  enum class Stdout { kInherit, kToStderr, kCapture, kDiscard };
  Stdout out = Stdout::kInherit;
  bool discard_stderr = false;
};

struct ProcessResult {
  int exit_code = 0;  // 128 + signal number when the child was killed by a signal
  std::string out;    // captured stdout when asked
};

// Runs argv[0] looked up in PATH. An error means the program could not be started at all
// (e.g. not installed); a non-zero exit is reported in ProcessResult::exit_code.
Result<ProcessResult> run_process(const std::vector<std::string>& argv,
                                  const SpawnOptions& options = {});

// Whether `program` names an executable file, directly (contains '/') or through PATH.
bool find_program(const std::string& program);

}  // namespace hlm
