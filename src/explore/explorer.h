// pinlab — the concurrency explorer (issue 8): runs a multi-threaded test
// over and over under the DeterministicScheduler, one schedule per
// execution, chosen by a strategy, until a schedule makes it fail; then
// shrinks that schedule and reports it in a form that replay() reruns
// exactly. See docs/EXPLORER.md.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "explore/schedule.h"
#include "explore/scheduler.h"
#include "explore/strategy.h"

struct pl_kernel;

namespace pl::explore {

// One execution of a test, made fresh by the TestFn each time.
struct Execution {
    std::vector<std::function<void()>> threads;  // the model threads, numbered in this order
    // Run after every thread ended; a message when the outcome is wrong.
    std::function<std::optional<std::string>()> check;
    // Optional: run at every step (see DeterministicScheduler).
    std::function<std::optional<std::string>()> invariant;
    // Optional: after the threads, pl_kernel_check() must pass and the
    // kernel log (the pin tracker's reports, WARNs) must be empty.
    pl_kernel* kernel = nullptr;
    // Always run last, also after a violation (e.g. pl_kernel_free()).
    std::function<void()> teardown;
};
using TestFn = std::function<Execution()>;

enum class StrategyKind : uint8_t { Random, Pct, Bounded };
const char* to_string(StrategyKind k);

struct ExploreResult;

struct ExploreOptions {
    StrategyKind strategy = StrategyKind::Random;
    uint64_t seed = 1;
    int pct_depth = 3;      // PCT: bugs of depth <= d (d-1 priority change points)
    int bound = 2;          // Bounded: the most preemptions per schedule
    uint64_t max_executions = 10000;  // 0: no limit
    double max_seconds = 0;           // 0: no limit
    SchedulerLimits limits;
    enum class Shrink : uint8_t { No, Yes } shrink = Shrink::Yes;
    uint64_t shrink_executions = 2000;  // the shrinker's budget
    // Run one execution, not counted, before exploring: see warm_up() in
    // explorer.cpp (the model's lazy process-wide initialisation).
    enum class WarmUp : uint8_t { No, Yes } warm_up = WarmUp::Yes;
    // Called from explore()'s loop about every progress_seconds with the
    // result so far (executions, seconds, the bound reached).
    std::function<void(const ExploreResult&)> progress;
    double progress_seconds = 0.25;
    // Part shard_index (0-based) of a campaign split into shard_count
    // independent parts whose results merge (pinlab explore --shard I/N):
    // Random and Pct draw from a seed of their own per part (each part runs
    // max_executions); Bounded parts split the preemption-bounded tree by
    // where a schedule first preempts (see BoundedStrategy::set_shard()).
    int shard_index = 0;
    int shard_count = 1;
};

// The seed part `index` of `count` draws from (the seed itself when count is 1).
uint64_t shard_seed(uint64_t seed, int index, int count);

struct ExploreResult {
    uint64_t executions = 0;  // exploring, shrinking excluded
    double seconds = 0;
    bool exhausted = false;   // Bounded: every schedule within the bound ran
    int bound_reached = 0;    // Bounded: the bound of the last execution
    std::optional<RunRecord> found;   // the first failing execution
    std::optional<RunRecord> shrunk;  // the smallest execution failing the same way
    uint64_t shrink_executions = 0;
    double shrink_seconds = 0;

    // The failing execution to report: the shrunk one if any.
    const RunRecord* failure() const { return shrunk ? &*shrunk : found ? &*found : nullptr; }
    std::string summary() const;
};

ExploreResult explore(const ExploreOptions& opts, const TestFn& test);

// Reruns `schedule` (Schedule text form) exactly, after one warm-up
// execution; a schedule that does not parse or does not fit the execution is
// a Diverged violation.
// `on_decision` (optional) sees every decision point of the replayed
// execution and the thread chosen there (pinlab explore --replay's explain).
RunRecord replay(const TestFn& test, std::string_view schedule, SchedulerLimits limits = {},
                 const std::function<void(const Choice&, int)>& on_decision = {});

// One execution of `test` under `strategy` (after its next_execution()).
RunRecord run_execution(const TestFn& test, Strategy& strategy, SchedulerLimits limits);

}  // namespace pl::explore
