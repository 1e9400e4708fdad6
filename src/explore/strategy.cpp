#include "explore/strategy.h"

#include <algorithm>

namespace pl::explore {
namespace {

bool can_run(const Choice& c, int t) { return std::find(c.runnable.begin(), c.runnable.end(), t) != c.runnable.end(); }

std::string list(std::span<const int> ts) {
    std::string s;
    for (int t : ts) s += (s.empty() ? "" : ",") + std::to_string(t);
    return s;
}

// rng() % n, not std::uniform_int_distribution: its algorithm differs between
// libstdc++ and libc++, and a seed must name the same schedules everywhere.
uint64_t below(std::mt19937_64& rng, uint64_t n) { return rng() % n; }

}  // namespace

int default_choice(const Choice& c) {
    if (c.current >= 0 && can_run(c, c.current)) return c.current;
    return c.runnable.front();
}

// ---- random ----------------------------------------------------------------

int RandomStrategy::choose(const Choice& c, std::string*) {
    return c.runnable[below(rng_, c.runnable.size())];
}

int RandomStrategy::choose_value(const ValueChoice& c, std::string*) { return static_cast<int>(below(rng_, c.n)); }

// ---- PCT -------------------------------------------------------------------

PctStrategy::PctStrategy(uint64_t seed, int depth, uint64_t initial_steps)
    : rng_(seed), depth_(std::max(depth, 1)), est_steps_(std::max<uint64_t>(initial_steps, 1)) {}

bool PctStrategy::next_execution() {
    primed_ = false;
    return true;
}

int PctStrategy::choose(const Choice& c, std::string*) {
    if (!primed_) {
        // Initial priorities depth .. depth+n-1 in random order (Fisher-Yates),
        // so that the d-1 change points can each go below all of them.
        prio_.resize(static_cast<size_t>(c.nthreads));
        for (int i = 0; i < c.nthreads; ++i) prio_[static_cast<size_t>(i)] = depth_ + i;
        for (size_t i = prio_.size(); i > 1; --i) std::swap(prio_[i - 1], prio_[below(rng_, i)]);
        change_points_.clear();
        for (int i = 0; i + 1 < depth_; ++i) change_points_.push_back(1 + below(rng_, est_steps_));
        std::sort(change_points_.begin(), change_points_.end());
        next_change_ = 0;
        primed_ = true;
    }
    auto highest = [&] {
        int best = c.runnable.front();
        for (int t : c.runnable)
            if (prio_[static_cast<size_t>(t)] > prio_[static_cast<size_t>(best)]) best = t;
        return best;
    };
    int h = highest();
    // A change point passed since the last decision: the thread that would
    // run drops to priority d-1-i, below every initial priority.
    while (next_change_ < change_points_.size() && change_points_[next_change_] <= c.step) {
        prio_[static_cast<size_t>(h)] = depth_ - 1 - static_cast<int>(next_change_);
        ++next_change_;
        h = highest();
    }
    return h;
}

int PctStrategy::choose_value(const ValueChoice& c, std::string*) { return static_cast<int>(below(rng_, c.n)); }

std::optional<std::string> PctStrategy::finish_execution(uint64_t steps) {
    // The initial guess only stands until an execution has been seen.
    est_steps_ = observed_ ? std::max(est_steps_, steps) : std::max<uint64_t>(steps, 1);
    observed_ = true;
    return std::nullopt;
}

// ---- iterative preemption bounding -------------------------------------------

bool BoundedStrategy::next_execution() {
    pos_ = 0;
    preemptions_ = 0;
    if (!started_) {
        started_ = true;
        return true;
    }
    while (!stack_.empty() && stack_.back().alternatives.empty()) stack_.pop_back();
    if (stack_.empty()) {
        // Everything within this bound was run: start over with one more.
        if (bound_ < max_bound_) {
            ++bound_;
            return true;
        }
        exhausted_ = true;
        return false;
    }
    Frame& f = stack_.back();
    f.chosen = f.alternatives.back();
    f.alternatives.pop_back();
    return true;
}

std::string BoundedStrategy::mismatch(const Frame& f, const std::string& offered) const {
    const std::string earlier = f.current == kValueFrame ? "a choice among " + std::to_string(f.runnable.size()) + " values"
                                                         : "threads " + list(f.runnable);
    return "nondeterministic model: decision point " + std::to_string(pos_) + " offered " + offered +
           " where an earlier execution of the same prefix offered " + earlier;
}

int BoundedStrategy::choose(const Choice& c, std::string* why) {
    if (pos_ < stack_.size()) {
        const Frame& f = stack_[pos_];
        if (f.current != c.current || !std::equal(f.runnable.begin(), f.runnable.end(), c.runnable.begin(),
                                                  c.runnable.end())) {
            if (why) *why = mismatch(f, "threads " + list(c.runnable));
            return -1;
        }
        ++pos_;
        if (f.current >= 0 && f.chosen != f.current) ++preemptions_;
        return f.chosen;
    }
    Frame f{std::vector<int>(c.runnable.begin(), c.runnable.end()), c.current, default_choice(c), {}};
    // Pushed highest first so that the lowest-numbered alternative runs next.
    for (auto it = c.runnable.rbegin(); it != c.runnable.rend(); ++it) {
        if (*it == f.chosen) continue;
        const int cost = (c.current >= 0 && *it != c.current) ? 1 : 0;
        if (preemptions_ + cost > bound_) continue;
        // A first preemption here: only in the part this decision point falls to.
        if (cost && preemptions_ == 0 && static_cast<int>(stack_.size() % static_cast<size_t>(shard_count_)) != shard_index_)
            continue;
        f.alternatives.push_back(*it);
    }
    stack_.push_back(std::move(f));
    ++pos_;
    return stack_.back().chosen;
}

int BoundedStrategy::choose_value(const ValueChoice& c, std::string* why) {
    if (pos_ < stack_.size()) {
        const Frame& f = stack_[pos_];
        if (f.current != kValueFrame || f.runnable.size() != c.n) {
            if (why) *why = mismatch(f, "a choice among " + std::to_string(c.n) + " values");
            return -1;
        }
        ++pos_;
        return f.chosen;
    }
    Frame f{{}, kValueFrame, 0, {}};
    for (unsigned v = 0; v < c.n; ++v) f.runnable.push_back(static_cast<int>(v));
    for (unsigned v = c.n; v-- > 1;) f.alternatives.push_back(static_cast<int>(v));  // 1 runs next
    stack_.push_back(std::move(f));
    ++pos_;
    return 0;
}

// ---- replay ------------------------------------------------------------------

bool ReplayStrategy::next_execution() {
    if (ran_) return false;
    ran_ = true;
    pos_ = 0;
    value_pos_ = 0;
    return true;
}

int ReplayStrategy::choose(const Choice& c, std::string* why) {
    if (pos_ < schedule_.choices.size()) {
        const int want = schedule_.choices[pos_++];
        if (can_run(c, want)) return want;
        if (mode_ == Mode::Lenient) return default_choice(c);
        if (why)
            *why = "schedule diverged at choice " + std::to_string(pos_ - 1) + ": thread " + std::to_string(want) +
                   " cannot run (runnable: " + list(c.runnable) + ")";
        return -1;
    }
    if (mode_ == Mode::Lenient) return default_choice(c);
    if (why)
        *why = "schedule diverged: it ends after " + std::to_string(schedule_.choices.size()) +
               " choices but the execution reached another decision point";
    return -1;
}

int ReplayStrategy::choose_value(const ValueChoice& c, std::string* why) {
    if (value_pos_ < schedule_.values.size()) {
        const unsigned want = schedule_.values[value_pos_++];
        if (want < c.n) return static_cast<int>(want);
        if (mode_ == Mode::Lenient) return 0;
        if (why)
            *why = "schedule diverged at value " + std::to_string(value_pos_ - 1) + ": " + std::to_string(want) +
                   " is not below " + std::to_string(c.n);
        return -1;
    }
    if (mode_ == Mode::Lenient) return 0;
    if (why)
        *why = "schedule diverged: it has " + std::to_string(schedule_.values.size()) +
               " values but the model made another choice";
    return -1;
}

std::optional<std::string> ReplayStrategy::finish_execution(uint64_t) {
    if (mode_ == Mode::Strict && pos_ < schedule_.choices.size())
        return "schedule diverged: the execution ended after " + std::to_string(pos_) + " of its " +
               std::to_string(schedule_.choices.size()) + " choices";
    if (mode_ == Mode::Strict && value_pos_ < schedule_.values.size())
        return "schedule diverged: the execution ended after " + std::to_string(value_pos_) + " of its " +
               std::to_string(schedule_.values.size()) + " values";
    return std::nullopt;
}

}  // namespace pl::explore
