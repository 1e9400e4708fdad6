// pinlab scenarios — the interpreter: runs one parsed Scenario against a
// fresh simulated kernel, through the public C API only (include/pinlab/
// kapi.h), as a program written against it would.
//
// A scenario passes when every `expect` holds, no step breaks the kernel's
// invariants (pl_kernel_check() after each step), no tracker report arrives
// that the scenario did not look at (`expect reports KIND ...`) or allow
// (`allow reports KIND`), and, once its tasks have exited and its files are
// closed, no frame is left allocated (leaked pins' quarantine excepted).
#pragma once

#include <string>

#include "scenario/ast.h"
#include "scenario/diagnostic.h"

namespace pl::scenario {

enum class Verdict : uint8_t { Pass, Fail, Skip, Error };

std::string_view verdict_name(Verdict v);  // "PASS", "FAIL", "SKIP", "ERROR"

struct Outcome {
    Verdict verdict = Verdict::Pass;
    std::string reason;      // one line: the failed expectation, the skip reason, ...
    Diagnostic diag;         // located, when loc.line > 0
};

// Bounds on what one step may ask the runner to allocate: larger requests
// fail the step (the kernel's own limits, e.g. RAM, are its business).
inline constexpr unsigned long kMaxGupPages = 1UL << 18;   // pages[] entries per GUP call
inline constexpr unsigned long kMaxReadBytes = 1UL << 20;  // bytes per read / device_read / pread

// `extra_config`: key=value words applied after the scenario's own `config`
// lines (the command line's --config/--era), so they win.
Outcome run_scenario(const Scenario& s, const std::string& extra_config);

}  // namespace pl::scenario
