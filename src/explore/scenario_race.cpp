#include "explore/scenario_race.h"

#include <charconv>

namespace pl::explore {

ScenarioSettings ScenarioSettings::from_words(const std::vector<std::pair<std::string, std::string>>& words) {
    ScenarioSettings s;
    auto num = [](const std::string& v) {
        int64_t x = 0;
        std::from_chars(v.data(), v.data() + v.size(), x);  // the parser checked the range
        return x;
    };
    for (const auto& [k, v] : words) {
        if (k == "expect") s.expect = v;
        else if (k == "strategy") s.strategy = v;
        else if (k == "bound") s.bound = static_cast<int>(num(v));
        else if (k == "depth") s.depth = static_cast<int>(num(v));
        else if (k == "budget") s.budget = num(v);
        else if (k == "seconds") s.seconds = num(v);
        else if (k == "seed") s.seed = num(v);
    }
    return s;
}

ScenarioRace::ScenarioRace(const scenario::Scenario& s, std::string extra_config)
    : s_(s), extra_config_(std::move(extra_config)) {}

scenario::Outcome ScenarioRace::serial(ScenarioSettings* settings) const {
    scenario::StagedRun run(s_, extra_config_);
    if (run.setup())
        for (size_t t = 0; t < s_.threads.size(); ++t) run.run_thread(t);
    scenario::Outcome o = run.finish();
    if (settings) *settings = ScenarioSettings::from_words(run.explore_words());
    return o;
}

std::string describe_outcome(const scenario::Outcome& o) {
    std::string where = o.diag.file;
    if (o.diag.loc.line > 0) where += ":" + std::to_string(o.diag.loc.line) + ":" + std::to_string(o.diag.loc.col);
    return where + ": " + std::string(scenario::verdict_name(o.verdict)) + ": " + o.reason;
}

TestFn ScenarioRace::test(ThreadLines* lines) const {
    return [this, lines]() {
        auto run = std::make_shared<scenario::StagedRun>(s_, extra_config_);
        Execution e;
        // The set-up runs here, on the explorer's thread and outside the
        // scheduler; a scenario that stopped in it has no threads to run.
        const bool ready = run->setup();
        if (lines) {
            lines->resize(s_.threads.size());
            run->on_step([lines](size_t t, int line) { lines->set(t, line); });
        }
        if (ready) {
            for (size_t t = 0; t < s_.threads.size(); ++t) e.threads.push_back([run, t] { run->run_thread(t); });
        }
        e.invariant = [run] { return run->check_between_steps(); };
        e.check = [run]() -> std::optional<std::string> {
            const scenario::Outcome o = run->finish();
            if (o.verdict == scenario::Verdict::Pass || o.verdict == scenario::Verdict::Skip) return std::nullopt;
            return describe_outcome(o);
        };
        // An aborted execution (a deadlock) never reaches the check: the
        // StagedRun's destructor, when the last closure goes, frees the kernel.
        return e;
    };
}

}  // namespace pl::explore
