// pinlab — interleaving points.
//
// Every operation on shared model state (an atomic access, a lock acquire or
// release, a wait, a seqcount read, an RCU grace period) announces itself
// here first. In normal runs nothing is installed and the cost is one relaxed
// load of a global flag. The concurrency explorer (src/explore, issue 8)
// installs a per-thread Scheduler and from then on decides which thread runs
// at each point, which is what makes every interleaving reachable and
// replayable.
#pragma once

#include <atomic>
#include <cstdint>

namespace pl::sync {

enum class Point : uint8_t {
    AtomicLoad,
    AtomicStore,
    AtomicRmw,
    LockAcquire,
    LockRelease,
    Wait,          // a blocked thread polling its condition again
    SeqRead,
    SeqWrite,
    RcuRead,
    RcuSync,
    LockDropped,   // GUP's retry loop gave up the mmap_lock
    Resched,       // cond_resched(): a voluntary preemption point (GUP's retry loop)
};

// Implemented by the explorer. One per controlled thread.
class Scheduler {
public:
    virtual ~Scheduler() = default;
    // Called before the operation takes effect; may switch to another thread.
    virtual void at_point(Point p, const void* addr) = 0;
    // Called by a thread that cannot make progress until another thread acts
    // (a lock held elsewhere). The scheduler must run someone else.
    virtual void blocked(const void* addr) = 0;
    // A nondeterministic choice of the model among n > 1 outcomes (see
    // choose() below): a value in [0, n). The explorer lets its strategy pick
    // and records the value in the schedule, so that replay repeats it.
    virtual unsigned choose(unsigned /*n*/, const void* /*addr*/) { return 0; }
};

namespace detail {
extern std::atomic<bool> g_any_scheduler;
extern thread_local Scheduler* tl_scheduler;
}  // namespace detail

inline void point(Point p, const void* addr = nullptr) {
    if (detail::g_any_scheduler.load(std::memory_order_relaxed)) [[unlikely]] {
        if (Scheduler* s = detail::tl_scheduler) s->at_point(p, addr);
    }
}

// A choice the model makes among n outcomes where the real kernel's outcome
// is not determined by the thread order (a random pick, a timeout that may or
// may not fire...). 0, the usual outcome, when no scheduler is installed;
// under the explorer, what its strategy picks, recorded in the schedule.
inline unsigned choose(unsigned n, const void* addr = nullptr) {
    if (n > 1 && detail::g_any_scheduler.load(std::memory_order_relaxed)) [[unlikely]] {
        if (Scheduler* s = detail::tl_scheduler) {
            const unsigned v = s->choose(n, addr);
            return v < n ? v : 0;
        }
    }
    return 0;
}

// Install (or remove, with nullptr) the scheduler for the calling thread.
void set_thread_scheduler(Scheduler* s);
Scheduler* thread_scheduler();

// Thread-local state of the model on a thread reused for many explorer
// executions. The explorer runs its model threads on a pool of OS threads;
// an execution must go the same way whether a model thread is a fresh OS
// thread or one that ran earlier executions. A module with per-thread state
// registers hooks (at static initialisation, at most 16), run on that thread
// with no scheduler installed:
//  - prime: once, when the OS thread starts, before any model thread runs on
//    it: does now what a fresh thread would do lazily, at interleaving points
//    (claiming a vmstat shard);
//  - reset: after each model thread ended on it: forgets what the thread left
//    behind (a cached pin-tracker record, the current task).
struct ThreadReuseHooks {
    void (*prime)() = nullptr;
    void (*reset)() = nullptr;
};
bool register_thread_reuse_hooks(ThreadReuseHooks h);  // false when full
void prime_reused_thread();
void reset_reused_thread();

// Wait politely for another thread: under a scheduler this hands control
// away; otherwise it spins briefly, then yields, then sleeps.
class Backoff {
public:
    explicit Backoff(const void* addr = nullptr) : addr_(addr) {}
    void pause();

private:
    const void* addr_;
    unsigned spins_ = 0;
};

}  // namespace pl::sync
