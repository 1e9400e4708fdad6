// pinlab scenarios — `pinlab explain FILE[:LINE]`: runs a scenario with the
// GUP/fault recorder (src/debug/trace.h) installed around each step and tells
// the story of every step under its source line: the GUP entry point and its
// flags, fast or slow path and why the fast path gave up, check_vma_flags()
// rule by rule, follow_page_mask() results, faults and the decision
// do_wp_page() made, mmap_lock drops, FOLL_LONGTERM migration rounds,
// refcount/pincount changes and page-table entries before and after, and what
// each expectation compared.
//
// The story is kept as data (ExplainedScenario: steps with their trace
// events) and printed by format_explained(); another view (an HTML page)
// can be generated from the same data.
#pragma once

#include <string>
#include <vector>

#include "debug/trace.h"
#include "scenario/interpreter.h"
#include "scenario/report.h"

namespace pl::scenario {

// One task's address space after a step (explain --html).
struct TaskSnap {
    std::string name;
    bool exited = false;
    std::vector<trace::VmaSnap> vmas;
};

struct ExplainedStep {
    int line = 0;
    std::string source;                  // the step's line as written (after matrix substitution)
    std::vector<trace::Event> events;    // what the model did, in order
    std::vector<std::string> compared;   // expectations: "1 == 1 (holds)"
    std::vector<TaskSnap> tasks;         // after the step; only with ExplainOptions::snapshots
};

struct ExplainedScenario {
    std::string name;    // file, or file[k=v] for a matrix expansion
    std::string title;
    std::string config;
    Outcome outcome;
    std::vector<ExplainedStep> steps;
};

struct ExplainOptions {
    std::string extra_config;  // as `run --config/--era`
    int line = 0;              // only the step at this line (0: every step)
    Colour colour = Colour::off;
    bool snapshots = false;    // record every task's VMAs and page tables after each step (for HTML)
};

struct ExplainResult {
    std::vector<ExplainedScenario> scenarios;
    std::string text;   // the formatted story (stdout)
    std::string error;  // a located diagnostic when the input was bad (stderr)
    int exit_status = 0; // as `pinlab run`: 0 pass, 1 an expectation failed, 2 bad input
};

// Explains one file's text (named `file` in messages).
ExplainResult explain_text(const std::string& file, const std::string& text, const ExplainOptions& opts);

// `FILE` or `FILE:LINE` (the suffix is a line only when FILE:LINE itself is
// not an existing file); reads the file and explains it.
ExplainResult explain_path(const std::string& file_and_line, const ExplainOptions& opts);

// The text view of one explained scenario (only the step at `line` when > 0).
std::string format_explained(const ExplainedScenario& s, int line, Colour colour);

// A self-contained HTML page (no network): per step, its source line, its
// events, each task's VMAs and page-table entries and the frames they map
// with their reference and pin counts, with a step slider. Needs
// ExplainOptions::snapshots. `#step=N` in the URL selects step N (0-based).
std::string format_html(const ExplainResult& r);

}  // namespace pl::scenario
