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

// Install (or remove, with nullptr) the scheduler for the calling thread.
void set_thread_scheduler(Scheduler* s);
Scheduler* thread_scheduler();

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
