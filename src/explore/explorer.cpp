#include "explore/explorer.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <tuple>

#include "base/sync/rcu.h"
#include "pinlab/kapi.h"

namespace pl::explore {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::unique_ptr<Strategy> make_strategy(const ExploreOptions& o) {
    const uint64_t seed = shard_seed(o.seed, o.shard_index, o.shard_count);
    switch (o.strategy) {
    case StrategyKind::Random: return std::make_unique<RandomStrategy>(seed);
    case StrategyKind::Pct: return std::make_unique<PctStrategy>(seed, o.pct_depth);
    case StrategyKind::Bounded: {
        auto b = std::make_unique<BoundedStrategy>(o.bound);
        b->set_shard(o.shard_index, o.shard_count);
        return b;
    }
    }
    return nullptr;
}

// Passes every decision of `inner` on to `fn` (replay()'s on_decision).
class WatchedStrategy final : public Strategy {
public:
    WatchedStrategy(Strategy& inner, const std::function<void(const Choice&, int)>& fn) : inner_(inner), fn_(fn) {}
    bool next_execution() override { return inner_.next_execution(); }
    int choose(const Choice& c, std::string* why) override {
        const int t = inner_.choose(c, why);
        fn_(c, t);
        return t;
    }
    int choose_value(const ValueChoice& c, std::string* why) override { return inner_.choose_value(c, why); }
    std::optional<std::string> finish_execution(uint64_t steps) override { return inner_.finish_execution(steps); }
    bool exhausted() const override { return inner_.exhausted(); }

private:
    Strategy& inner_;
    const std::function<void(const Choice&, int)>& fn_;
};

auto size_key(const RunRecord& r) { return std::make_tuple(r.preemptions, r.steps, r.schedule.choices.size()); }

// Shrinking, fewest preemptions first, then fewest steps; a candidate is
// kept when it fails the same way (the same kind of violation) and is
// smaller. Two moves, within o.shrink_executions executions:
//  - a preemption-bounded search with a bound one below the failure's
//    preemptions (it meets the fewest-preemption failures first), within
//    half the budget;
//  - greedy edits of the failing schedule, one preemption at a time: let the
//    preempted thread go on instead; drop the switch (the later choices move
//    one earlier); keep the prefix up to the switch and run without
//    preemption after it. Each edit is rerun leniently and the schedule
//    actually taken is what is kept.
RunRecord shrink(const TestFn& test, RunRecord best, const ExploreOptions& o, uint64_t* executions) {
    uint64_t budget = o.shrink_executions;
    auto better = [&](RunRecord& r) {
        if (r.violation.kind != best.violation.kind || size_key(r) >= size_key(best)) return false;
        best = std::move(r);
        return true;
    };
    auto attempt = [&](std::vector<uint16_t> choices) {
        if (budget == 0) return false;
        --budget;
        ++*executions;
        ReplayStrategy rs(Schedule{std::move(choices), best.schedule.values}, ReplayStrategy::Mode::Lenient);
        (void)rs.next_execution();
        RunRecord r = run_execution(test, rs, o.limits);
        return better(r);
    };
    auto edits = [&] {
        bool improved = true;
        while (improved && budget > 0) {
            improved = false;
            const std::vector<uint16_t> ch = best.schedule.choices;
            const std::vector<int16_t> cur = best.currents;
            for (size_t i = 0; i < ch.size() && !improved; ++i) {
                if (cur[i] < 0 || ch[i] == cur[i]) continue;  // not a preemption
                std::vector<uint16_t> keep_going = ch;
                keep_going[i] = static_cast<uint16_t>(cur[i]);
                std::vector<uint16_t> dropped = ch;
                dropped.erase(dropped.begin() + static_cast<std::ptrdiff_t>(i));
                improved = attempt(std::move(keep_going)) || attempt(std::move(dropped)) ||
                           (i + 1 < ch.size() &&
                            attempt(std::vector<uint16_t>(ch.begin(), ch.begin() + static_cast<std::ptrdiff_t>(i) + 1)));
            }
        }
    };
    // A preemption-bounded search with a bound one below the failure's
    // preemptions runs bounds 0, 1, ... in turn, so the first failure it
    // meets has the fewest preemptions: a random or PCT schedule may preempt
    // dozens of times where one or two suffice, which this finds far sooner
    // than editing the preemptions one at a time. Half the budget at most;
    // the greedy edits then shorten what it left.
    if (best.preemptions > 0) {
        BoundedStrategy bs(best.preemptions - 1);
        for (uint64_t left = budget / 2 + 1; left > 0 && budget > 0 && bs.next_execution(); --left) {
            --budget;
            ++*executions;
            RunRecord r = run_execution(test, bs, o.limits);
            if (better(r)) break;
        }
    }
    edits();
    return best;
}

// One execution whose outcome is dropped, run first by explore() and
// replay(): the model initialises some process-wide state lazily (the first
// execution in a process takes a few more steps), and a schedule must mean
// the same execution whether or not it is the process's first.
void warm_up(const TestFn& test, SchedulerLimits limits) {
    ReplayStrategy none(Schedule{}, ReplayStrategy::Mode::Lenient);
    (void)none.next_execution();
    (void)run_execution(test, none, limits);
}

}  // namespace

uint64_t shard_seed(uint64_t seed, int index, int count) {
    if (count <= 1) return seed;
    // splitmix64 of (seed, index): parts draw unrelated streams.
    uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (static_cast<uint64_t>(index) + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

const char* to_string(StrategyKind k) {
    switch (k) {
    case StrategyKind::Random: return "random";
    case StrategyKind::Pct: return "pct";
    case StrategyKind::Bounded: return "bounded";
    }
    return "?";
}

RunRecord run_execution(const TestFn& test, Strategy& strategy, SchedulerLimits limits) {
    // Callbacks queued by an earlier execution would otherwise run (and
    // batch grace periods) inside this one: each execution starts clean.
    sync::rcu_barrier();
    RunRecord rec;
    Execution e;
    try {
        e = test();
    } catch (const std::exception& ex) {
        rec.violation = {ViolationKind::Exception, std::string("set-up threw: ") + ex.what()};
        return rec;
    }
    {
        DeterministicScheduler s(strategy, limits, e.invariant);
        rec = s.run(e.threads);
    }
    if (auto err = strategy.finish_execution(rec.steps); err && !rec.violation)
        rec.violation = {ViolationKind::Diverged, *err};
    if (!rec.violation && e.kernel) {
        if (pl_kernel_check(e.kernel) != 0)
            rec.violation = {ViolationKind::Kernel, std::string("pl_kernel_check: ") + pl_last_error()};
        else if (pl_warning_count(e.kernel, nullptr) > 0)
            rec.violation = {ViolationKind::Kernel, std::string("kernel log: ") + pl_dmesg(e.kernel)};
    }
    if (!rec.violation && e.check) {
        try {
            if (auto bad = e.check()) rec.violation = {ViolationKind::Check, *bad};
        } catch (const std::exception& ex) {
            rec.violation = {ViolationKind::Exception, std::string("check threw: ") + ex.what()};
        }
    }
    if (e.teardown) {
        try {
            e.teardown();
        } catch (const std::exception& ex) {
            if (!rec.violation) rec.violation = {ViolationKind::Exception, std::string("teardown threw: ") + ex.what()};
        }
    }
    return rec;
}

ExploreResult explore(const ExploreOptions& o, const TestFn& test) {
    ExploreResult res;
    std::unique_ptr<Strategy> strategy = make_strategy(o);
    auto* bounded = dynamic_cast<BoundedStrategy*>(strategy.get());
    if (o.warm_up == ExploreOptions::WarmUp::Yes) warm_up(test, o.limits);
    const auto t0 = Clock::now();
    double next_progress = o.progress_seconds;
    while (true) {
        if (o.max_executions && res.executions >= o.max_executions) break;
        if (o.max_seconds > 0 || o.progress) {
            res.seconds = since(t0);
            if (o.max_seconds > 0 && res.seconds >= o.max_seconds) break;
            if (o.progress && res.seconds >= next_progress) {
                o.progress(res);
                next_progress = res.seconds + o.progress_seconds;
            }
        }
        if (!strategy->next_execution()) {
            res.exhausted = strategy->exhausted();
            break;
        }
        RunRecord r = run_execution(test, *strategy, o.limits);
        ++res.executions;
        if (bounded) res.bound_reached = bounded->bound();
        if (r.violation) {
            res.found = std::move(r);
            break;
        }
    }
    res.seconds = since(t0);
    if (res.found && o.shrink == ExploreOptions::Shrink::Yes) {
        const auto t1 = Clock::now();
        res.shrunk = shrink(test, *res.found, o, &res.shrink_executions);
        res.shrink_seconds = since(t1);
    }
    return res;
}

RunRecord replay(const TestFn& test, std::string_view schedule, SchedulerLimits limits,
                 const std::function<void(const Choice&, int)>& on_decision) {
    std::string err;
    std::optional<Schedule> s = parse_schedule(schedule, &err);
    if (!s) {
        RunRecord r;
        r.violation = {ViolationKind::Diverged, err};
        return r;
    }
    warm_up(test, limits);
    ReplayStrategy rs(std::move(*s), ReplayStrategy::Mode::Strict);
    (void)rs.next_execution();
    if (!on_decision) return run_execution(test, rs, limits);
    WatchedStrategy watched(rs, on_decision);
    return run_execution(test, watched, limits);
}

std::string ExploreResult::summary() const {
    std::string out;
    const RunRecord* f = failure();
    if (!f) {
        out = "no violation in " + std::to_string(executions) + " executions (" + std::to_string(seconds) + " s)";
        if (exhausted) out += "; the bounded space is exhausted at bound " + std::to_string(bound_reached);
        return out;
    }
    out = std::string("violation (") + to_string(f->violation.kind) + "): " + f->violation.message + "\n";
    out += "found after " + std::to_string(executions) + " executions (" + std::to_string(seconds) + " s)";
    if (shrunk)
        out += "; shrunk from " + std::to_string(found->preemptions) + " preemptions, " +
               std::to_string(found->steps) + " steps in " + std::to_string(shrink_executions) + " executions";
    out += "\nschedule: " + to_string(f->schedule) + " (" + std::to_string(f->preemptions) + " preemptions, " +
           std::to_string(f->steps) + " steps)";
    return out;
}

}  // namespace pl::explore
