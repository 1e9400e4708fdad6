// pinlab — race scenarios under the explorer (issue 8): a scenario's
// `thread NAME { ... }` blocks become the threads of an execution.
//
// Each execution builds a fresh kernel and runs the scenario's set-up on the
// calling thread, outside the scheduler (nothing races it); the blocks run as
// the model threads, one at a time at each interleaving point the strategy
// picks; the check is the join: invariants, the statements after the group,
// teardown, the final checks (reports not declared, leaked frames). A
// violation is the scenario failing: its message names file:line:col.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "explore/explorer.h"
#include "scenario/ast.h"
#include "scenario/interpreter.h"

namespace pl::explore {

// What a scenario's `explore` statements ask for (unset fields: not said).
struct ScenarioSettings {
    std::string expect;  // "violation", "none" or ""
    std::string strategy;
    int bound = -1, depth = -1;
    int64_t budget = -1, seconds = -1;
    int64_t seed = -1;
    static ScenarioSettings from_words(const std::vector<std::pair<std::string, std::string>>& words);
};

// Which statement each race thread is running, for explaining a schedule.
class ThreadLines {
public:
    void resize(size_t n) { lines_.assign(n, 0); }
    void set(size_t thread, int line) { lines_[thread] = line; }
    int at(size_t thread) const { return thread < lines_.size() ? lines_[thread] : 0; }

private:
    std::vector<int> lines_;
};

class ScenarioRace {
public:
    // `s` must outlive the ScenarioRace and every TestFn it made.
    ScenarioRace(const scenario::Scenario& s, std::string extra_config);

    const scenario::Scenario& scenario() const { return s_; }
    size_t threads() const { return s_.threads.size(); }

    // The scenario once, the blocks one after another (no scheduler): its
    // outcome and the `explore` settings its run passed.
    scenario::Outcome serial(ScenarioSettings* settings) const;

    // One execution per call; `lines` (optional) is kept up to date with the
    // line each thread is on.
    TestFn test(ThreadLines* lines = nullptr) const;

private:
    const scenario::Scenario& s_;
    std::string extra_config_;
};

// "file:LINE:COL: reason" for a failed outcome.
std::string describe_outcome(const scenario::Outcome& o);

}  // namespace pl::explore
