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
// The model threads run on a process-wide pool of OS threads, reused from
// one execution to the next (creating and joining a thread per body per
// execution was most of an execution's cost); src/base/sync's
// ThreadReuseHooks make a reused thread look fresh to the model. The baton
// is a futex word per pooled thread (yield for 20 us, then sleep), not
// src/base/sync's primitives: those announce themselves here and would
// recurse. While the baton is held, the scheduler's state belongs to its
// holder; a mutex guards only aborting and a thread's exit.
#pragma once

#include <atomic>
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

    // Runs one execution: each body on a pooled OS thread, serialised;
    // returns when all have ended. Usable once.
    RunRecord run(const std::vector<std::function<void()>>& bodies);

    void at_point(sync::Point p, const void* addr) override;
    void blocked(const void* addr) override;
    unsigned choose(unsigned n, const void* addr) override;

    // Ends the pooled OS threads that are idle now (all of them, when no
    // execution runs) and returns how many: the next executions start on
    // fresh threads. For tests (a reused thread must behave as a fresh one)
    // and for a clean exit; never needed otherwise.
    static size_t release_idle_threads();

    struct Worker;  // a pooled OS thread (scheduler.cpp)
    class Gate;     // a futex word: the baton (scheduler.cpp)

private:
    enum class State : uint8_t { Runnable, Blocked, Done };

    void thread_main(int self, const std::function<void()>& body);
    void on_exit(int self);
    int decide(int current);  // baton held; -1 when the execution was aborted
    void collect(State want);
    void unblock_all();
    void switch_to(int self, int next);  // baton held: pass it on and wait for it
    void abort(ViolationKind kind, std::string message);
    bool count_step();  // baton held; false when the step limit was hit
    bool aborting() const { return aborting_.load(std::memory_order_acquire); }

    Strategy& strategy_;
    SchedulerLimits limits_;
    std::function<std::optional<std::string>()> invariant_;
    std::atomic<bool> in_invariant_{false};
    std::atomic<bool> aborting_{false};
    // Mirrors for the watchdog (the main thread), which holds no baton.
    std::atomic<uint64_t> progress_{0};
    std::atomic<int> running_{-1};

    // Guards aborting (the violation, waking every thread) against threads
    // exiting; never taken on the path of an ordinary step.
    std::mutex ctl_mu_;
    std::vector<uint8_t> exited_;  // under ctl_mu_
    int finished_ = 0;             // under ctl_mu_
    std::vector<Worker*> workers_;
    Gate* done_ = nullptr;    // the caller's: posted by the last thread to end

    // Owned by the baton's holder.
    int n_ = 0;
    int no_progress_rounds_ = 0;
    std::vector<State> state_;
    std::vector<const void*> waiting_on_;
    std::vector<int> cands_;
    RunRecord rec_;
};

}  // namespace pl::explore
