// pinlab conform — run a scenario in the model and on the host kernel, in
// lock step, and compare what both sides observe.
//
// The model runs the scenario as `pinlab run` does (its expectations are
// upstream's outcomes). After each statement the host runs the same
// statement in real processes (src/oracle/host_process.h), with its own
// variables (addresses, handles), and every observation both sides can make
// is compared at once: a command's return value or errno, the bytes of a
// read, a page's presence, anon-ness, exclusive mapping, sharing of a frame
// between tasks (pagemap PFNs, root), folio size (kpageflags, root), the
// pin counters of /proc/vmstat (deltas from the scenario's start), VmLck
// and VmPin, and each expectation's verdict.
//
// What the host cannot see (refcounts, pin counts, pte descriptions, the
// pages[] of a raw GUP call, tracker reports) is taken from the model and
// not compared. An operation with no host counterpart (a raw GUP call, a
// driver the host lacks, a historical era, an architecture switch) stops the
// host side: the scenario is model-only from there, never silently skipped.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "oracle/host_process.h"
#include "scenario/ast.h"
#include "scenario/interpreter.h"

namespace pl::oracle {

enum class ConformStatus : uint8_t {
    agree,       // every compared observation matched (at least one step ran on both sides)
    disagree,    // an observation differed: first_difference says where
    model_only,  // the scenario needs something the host has no counterpart for
    skipped,     // the host cannot run it here (no io_uring, no root, no such fs, pool too small), or a skip line
    model_fail,  // the model broke one of the scenario's own expectations (upstream's outcome)
    error,       // bad input, or the host machinery failed
};

std::string_view conform_status_name(ConformStatus s);  // "agree", "disagree", "model-only", "skipped", "model-fail", "error"

// One compared observation (kept for the first difference and for tables).
struct ConformObservation {
    scenario::SourceLoc loc;
    std::string what;     // "read buf 5", "mmap", "same_frame A:mem C:mem", "expect", ...
    std::string model;    // as Value::show() prints it
    std::string kernel;
    bool equal = true;
};

struct ConformResult {
    std::string name;     // file or file[k=v] expansion
    std::string file;
    std::string title;
    ConformStatus status = ConformStatus::agree;
    std::string reason;   // disagree: "line 12: read buf 5: model \"ab\", kernel \"cd\""; model-only/skipped: why
    ConformObservation first_difference;  // disagree only
    std::string source_line;              // the line of first_difference / of the model-only step
    scenario::Verdict model_verdict = scenario::Verdict::Pass;  // the model run's own verdict
    std::string model_reason;
    std::string kernel_outcome;  // "PASS" (every expectation it could evaluate held), "FAIL: ...", "SKIP: ...", "-"
    int compared = 0;            // observations compared
    int model_only_checks = 0;   // observations the host could not make (taken from the model)
    int host_steps = 0;          // statements executed on the host
    // A difference seen in an earlier run that a rerun did not repeat (the
    // kernel's timing-dependent choices, other processes' pins); empty if none.
    std::string unstable;
    int attempts = 1;            // runs (a disagreement is run again, ConformOptions::retries)
    double seconds = 0;
};

struct ConformOptions {
    std::string extra_config;  // as `pinlab run --config`
    // A disagreement is run again this many times before it is reported
    // (other processes pin too; some kernel choices depend on timing).
    int retries = 2;
};

// One parsed scenario (one matrix expansion) on both sides.
ConformResult conform_scenario(const scenario::Scenario& s, HostSession& host, const ConformOptions& opts);

// Parse `text` (named `name` in diagnostics) and conform every expansion.
// A parse error yields one result with status error and the diagnostic.
std::vector<ConformResult> conform_text(const std::string& name, const std::string& text, HostSession& host,
                                        const ConformOptions& opts);

}  // namespace pl::oracle
