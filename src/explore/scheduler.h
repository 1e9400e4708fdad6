// pinlab — the explorer's deterministic scheduler (issue 8).
//
// Runs the model threads of one execution so that exactly one runs at a
// time. Every interleaving point of the model (src/base/sync/sched_point.h)
// lands in at_point() of the running thread; where more than one thread could
// go on, the Strategy picks which, and the baton passes to it. A thread that
// must wait for another (Backoff::pause(): a spinning lock, the mmap_lock,
// an RCU grace period...) calls blocked(): it is set aside until some other
// thread takes a step, and retries then. The choices taken are the
// execution's Schedule: replaying them reproduces the execution exactly, as
// long as the model itself is deterministic.
//
// The baton is the scheduler's own std::mutex and condition variables, not
// src/base/sync's: those announce themselves here and would recurse.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/sync/sched_point.h"
#include "explore/schedule.h"
#include "explore/strategy.h"

namespace pl::explore {

enum class ViolationKind : uint8_t {
    None,
    Check,      // the test's check after the threads finished failed
    Invariant,  // the test's invariant, checked at every step, failed
    Kernel,     // pl_kernel_check() failed or the kernel log has reports
    Deadlock,   // every live thread kept waiting with no step taken
    StepLimit,  // the execution ran past SchedulerLimits::max_steps (a livelock)
    Hang,       // no step for SchedulerLimits::hang_seconds: a thread waits outside src/base/sync
    Exception,  // a model thread, the set-up or a check threw
    Diverged,   // a replayed schedule did not fit the execution, or the model is nondeterministic
};
const char* to_string(ViolationKind k);

struct Violation {
    ViolationKind kind = ViolationKind::None;
    std::string message;
    explicit operator bool() const { return kind != ViolationKind::None; }
};

// What one execution did.
struct RunRecord {
    Schedule schedule;            // the choice at each decision point
    std::vector<int16_t> currents;  // per decision point: the thread that could have gone on, or -1
    uint64_t steps = 0;           // interleaving points and waits passed
    int preemptions = 0;          // decision points where the running thread could go on but was switched away
    Violation violation;
};

struct SchedulerLimits {
    uint64_t max_steps = 100000;
    // Rounds in which every live thread waited and none took a step before
    // the execution counts as deadlocked.
    int deadlock_rounds = 3;
    // Wall-clock seconds without a step before the execution counts as hung:
    // the running thread waits on something the explorer cannot see (a
    // std::mutex held by a paused thread across an interleaving point).
    double hang_seconds = 5;
};

class DeterministicScheduler final : public sync::Scheduler {
public:
    // `invariant` (optional) runs at every step, on the running thread with
    // every other thread paused at an interleaving point; it must not wait
    // for a lock (its own interleaving points are ignored).
    DeterministicScheduler(Strategy& strategy, SchedulerLimits limits,
                           std::function<std::optional<std::string>()> invariant = {});
    ~DeterministicScheduler() override;
    DeterministicScheduler(const DeterministicScheduler&) = delete;
    DeterministicScheduler& operator=(const DeterministicScheduler&) = delete;

    // Runs one execution: a std::thread per body, serialised; returns when
    // all have ended. Usable once.
    RunRecord run(const std::vector<std::function<void()>>& bodies);

    void at_point(sync::Point p, const void* addr) override;
    void blocked(const void* addr) override;

private:
    enum class State : uint8_t { Runnable, Blocked, Done };

    void thread_main(int self, const std::function<void()>& body);
    void on_exit(int self);
    int decide(int current);  // under mu_; -1 when the execution was aborted
    void collect(State want);
    void unblock_all();
    void hand_to(int next);
    void wait_turn(int self, std::unique_lock<std::mutex>& lk);
    void abort_locked(ViolationKind kind, std::string message);
    bool count_step();  // under mu_; false when the step limit was hit

    Strategy& strategy_;
    SchedulerLimits limits_;
    std::function<std::optional<std::string>()> invariant_;
    std::atomic<bool> in_invariant_{false};

    std::mutex mu_;
    std::unique_ptr<std::condition_variable[]> turn_;  // one per thread
    std::condition_variable done_;
    int n_ = 0;
    int current_ = -1;
    int finished_ = 0;
    bool aborting_ = false;
    int no_progress_rounds_ = 0;
    std::vector<State> state_;
    std::vector<const void*> waiting_on_;
    std::vector<int> cands_;
    RunRecord rec_;
};

}  // namespace pl::explore
