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

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "scenario/ast.h"
#include "scenario/diagnostic.h"

struct task_struct;  // include/pinlab/kapi.h

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
// Told about each step by `pinlab explain` (src/scenario/explain.cpp); `run` passes none.
class StepObserver {
public:
    virtual ~StepObserver() = default;
    virtual void before_step(const Stmt&) {}
    virtual void after_step(const Stmt&) {}  // also after the step that stopped the scenario
    // After a step that completed: the live tasks by name (exited ones are null).
    virtual void state(const std::map<std::string, task_struct*>& /*tasks*/) {}
    // An expectation as evaluated: both sides (`rhs` empty for a plain condition) and whether it held.
    virtual void compared(const Stmt&, const std::string& /*lhs*/, const std::string& /*op*/,
                          const std::string& /*rhs*/, bool /*held*/) {}
    // Every expression node's value, as the step evaluated it (`pinlab
    // conform` compares them with the host kernel's). Not called for a node
    // whose evaluation failed the step.
    virtual void evaluated(const Expr& /*node*/, const Value& /*value*/) {}
};

Outcome run_scenario(const Scenario& s, const std::string& extra_config, StepObserver* observer = nullptr);

// One run of a scenario in stages, for the concurrency explorer
// (src/explore/scenario_race.h): setup() runs the statements before the race
// group; run_thread(i) runs thread block i (on any OS thread; the explorer's
// scheduler lets one run at a time); finish() joins: invariants, the
// statements after the group, teardown and the final checks. Destroying a run
// that never finished (an aborted execution) tears the kernel down.
class StagedRun {
public:
    StagedRun(const Scenario& s, const std::string& extra_config);
    ~StagedRun();
    StagedRun(const StagedRun&) = delete;
    StagedRun& operator=(const StagedRun&) = delete;

    bool setup();  // false: the scenario stopped (finish() says why)
    void run_thread(size_t i);
    Outcome finish();
    // Called before each statement of a thread block, on the thread
    // running it: the block's number and the statement's line.
    void on_step(std::function<void(size_t, int)> fn);
    // For the explorer's per-step invariant: pl_kernel_check() when every
    // thread block is between two operations (a message when it fails).
    std::optional<std::string> check_between_steps();
    // The `explore` statements' words the run passed (guards evaluated).
    const std::vector<std::pair<std::string, std::string>>& explore_words() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace pl::scenario
