// pinlab scenarios — the runner: .pin files and directories in, one result
// per scenario (per matrix expansion) out, and the exit status of the run.
#pragma once

#include <string>
#include <system_error>
#include <vector>

#include "scenario/interpreter.h"

namespace pl::scenario {

inline constexpr size_t kMaxFileBytes = 4u << 20;

struct RunOptions {
    std::string extra_config;  // key=value words applied after each scenario's `config`
};

struct ScenarioResult {
    std::string name;   // file, or file[NAME=value,...]
    std::string file;
    std::string title;
    Verdict verdict = Verdict::Pass;
    std::string reason;   // one line (empty on PASS)
    std::string detail;   // the located diagnostic, caret included (FAIL/ERROR)
    double seconds = 0;
};

struct RunSummary {
    std::vector<ScenarioResult> results;
    int passed = 0, failed = 0, skipped = 0, errors = 0;

    void add(ScenarioResult r);
    // 2 if any input was bad, else 1 if any scenario failed, else 0.
    int exit_status() const;
};

// One file's text (named `file` in messages): parse every expansion, run
// those that parse. A file that does not parse gives one ERROR result.
void run_text(const std::string& file, const std::string& text, const RunOptions& opts, RunSummary* out);

// The *.pin files below dir, recursively, in name order, skipping `known/`
// subdirectories (scenarios the model still disagrees on); false with *ec
// when the directory cannot be listed.
bool pin_files_below(const std::string& dir, std::vector<std::string>* files, std::error_code* ec);

// Files and directories (searched recursively for *.pin, in name order).
void run_paths(const std::vector<std::string>& paths, const RunOptions& opts, RunSummary* out);

}  // namespace pl::scenario
