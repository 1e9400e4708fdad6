// pinlab — how the explorer picks the next thread at a decision point.
//
// Strategies (issue 8): uniform random, PCT (Burckhardt, Kothari, Musuvathi,
// Nagarakatte, "A Randomized Scheduler with Probabilistic Guarantees of
// Finding Bugs", ASPLOS 2010) and iterative preemption bounding (Musuvathi &
// Qadeer, "Iterative Context Bounding for Systematic Testing of Multithreaded
// Programs", PLDI 2007), plus the replay of a given schedule. Every strategy
// is deterministic given its seed: the same seed yields the same schedules.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "explore/schedule.h"

namespace pl::explore {

// A decision point: more than one thread could run next.
struct Choice {
    std::span<const int> runnable;  // sorted thread indices
    int current = -1;               // the thread that could go on (a switch away is a preemption), or -1
    int nthreads = 0;               // threads of this execution
    uint64_t step = 0;              // scheduler steps so far in this execution
    size_t index = 0;               // decision points so far in this execution
};

// A nondeterministic choice of the model itself (sync::choose()): a value
// in [0, n) for the running thread.
struct ValueChoice {
    unsigned n = 2;
    int thread = -1;     // the thread asking
    uint64_t step = 0;   // scheduler steps so far in this execution
    size_t index = 0;    // value choices so far in this execution
};

class Strategy {
public:
    virtual ~Strategy() = default;
    // Prepares the next execution; false when there is none left (the
    // bounded space is exhausted, or a replay was already run).
    virtual bool next_execution() = 0;
    // A member of c.runnable, or -1 when the strategy cannot follow the
    // execution (a replayed schedule diverged); *why says how.
    virtual int choose(const Choice& c, std::string* why) = 0;
    // A value in [0, c.n), or -1 when the strategy cannot follow the
    // execution (*why says how). By default 0, the model's usual outcome.
    virtual int choose_value(const ValueChoice& /*c*/, std::string* /*why*/) { return 0; }
    // After an execution that ran to its end: an error when the strategy
    // saw the execution go wrong (a replayed schedule not used up).
    virtual std::optional<std::string> finish_execution(uint64_t /*steps*/) { return std::nullopt; }
    // True once next_execution() returned false because everything within
    // the strategy's bound was explored.
    virtual bool exhausted() const { return false; }
};

// The default choice where a strategy has no opinion: let the current thread
// go on (no preemption), else the lowest-numbered runnable thread.
int default_choice(const Choice& c);

// Uniformly random among the runnable threads at every decision point.
class RandomStrategy final : public Strategy {
public:
    explicit RandomStrategy(uint64_t seed) : rng_(seed) {}
    bool next_execution() override { return true; }
    int choose(const Choice& c, std::string* why) override;
    int choose_value(const ValueChoice& c, std::string* why) override;

private:
    std::mt19937_64 rng_;
};

// PCT with depth d: random distinct thread priorities, the highest-priority
// runnable thread runs; at d-1 random change points (steps drawn uniformly
// over the estimated length of an execution) the running thread drops below
// every other. A bug of depth d is found with probability >= 1/(n k^(d-1)).
// The length estimate is `initial_steps` for the first execution, then the
// longest execution seen.
class PctStrategy final : public Strategy {
public:
    PctStrategy(uint64_t seed, int depth, uint64_t initial_steps = 64);
    bool next_execution() override;
    int choose(const Choice& c, std::string* why) override;
    // Uniform: PCT's bound is about thread order only.
    int choose_value(const ValueChoice& c, std::string* why) override;
    std::optional<std::string> finish_execution(uint64_t steps) override;

private:
    std::mt19937_64 rng_;
    int depth_;
    uint64_t est_steps_;
    bool observed_ = false;
    bool primed_ = false;                 // priorities drawn for this execution
    std::vector<int> prio_;               // by thread; higher runs first
    std::vector<uint64_t> change_points_; // sorted steps; consumed from the front
    size_t next_change_ = 0;
};

// Iterative preemption bounding: a stateless depth-first search of every
// schedule with at most `bound` preemptions, for bound = 0, 1, ..., max_bound
// in turn (so a bug is met first with the fewest preemptions). Each execution
// replays the prefix of choices on the search stack and then lets threads go
// on without preemption, pushing a frame at each new decision point; the next
// execution flips the deepest frame that still has an alternative within the
// bound. Switches forced by a thread blocking or exiting are free, and so
// are the model's value choices (every value is tried, 0 first).
class BoundedStrategy final : public Strategy {
public:
    explicit BoundedStrategy(int max_bound) : max_bound_(max_bound) {}
    bool next_execution() override;
    int choose(const Choice& c, std::string* why) override;
    int choose_value(const ValueChoice& c, std::string* why) override;
    bool exhausted() const override { return exhausted_; }
    int bound() const { return bound_; }
    // Explore only part `index` (0-based) of `count` of the tree: the
    // schedules whose first preemption is at a decision point numbered
    // index modulo count (the schedule without preemption runs in every
    // part: the search needs it to find the decision points).
    void set_shard(int index, int count) {
        shard_count_ = count < 1 ? 1 : count;
        shard_index_ = index < 0 ? 0 : index % shard_count_;
    }

private:
    struct Frame {
        std::vector<int> runnable;      // a value choice: 0 .. n-1
        int current;                    // a value choice: -2
        int chosen;
        std::vector<int> alternatives;  // still to try, last first
    };
    static constexpr int kValueFrame = -2;
    std::string mismatch(const Frame& f, const std::string& offered) const;
    int max_bound_;
    int bound_ = 0;
    bool started_ = false;
    bool exhausted_ = false;
    std::vector<Frame> stack_;
    size_t pos_ = 0;
    int preemptions_ = 0;  // in this execution so far
    int shard_index_ = 0;
    int shard_count_ = 1;
};

// Follows a schedule. Strict: any mismatch (a choice naming a thread that
// cannot run, the schedule running out or not used up) is an error — that is
// `replay`. Lenient: a choice that cannot be followed, or one past the end,
// is replaced by default_choice() — how the shrinker tries edited schedules.
class ReplayStrategy final : public Strategy {
public:
    enum class Mode : uint8_t { Strict, Lenient };
    ReplayStrategy(Schedule s, Mode mode) : schedule_(std::move(s)), mode_(mode) {}
    bool next_execution() override;
    int choose(const Choice& c, std::string* why) override;
    int choose_value(const ValueChoice& c, std::string* why) override;  // lenient: 0 where it cannot follow
    std::optional<std::string> finish_execution(uint64_t steps) override;

private:
    Schedule schedule_;
    Mode mode_;
    bool ran_ = false;
    size_t pos_ = 0;
    size_t value_pos_ = 0;
};

}  // namespace pl::explore
