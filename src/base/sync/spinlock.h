// pinlab — spinlock_t, with RAII guards. Models the kernel's spinlocks
// (page-table lock, zone lock, i_pages lock); never sleeps for long.
#pragma once

#include <atomic>

#include "base/sync/sched_point.h"
#include "base/sync/thread_annotations.h"

namespace pl::sync {

class PL_CAPABILITY("spinlock") Spinlock {
public:
    Spinlock() = default;
    Spinlock(const Spinlock&) = delete;
    Spinlock& operator=(const Spinlock&) = delete;

    void lock() PL_ACQUIRE() {
        point(Point::LockAcquire, this);
        Backoff b(this);
        while (true) {
            if (!held_.load(std::memory_order_relaxed) &&
                !held_.exchange(true, std::memory_order_acquire))
                return;
            b.pause();
        }
    }
    bool try_lock() PL_TRY_ACQUIRE(true) {
        point(Point::LockAcquire, this);
        return !held_.load(std::memory_order_relaxed) &&
               !held_.exchange(true, std::memory_order_acquire);
    }
    void unlock() PL_RELEASE() {
        point(Point::LockRelease, this);
        held_.store(false, std::memory_order_release);
    }
    bool is_locked() const { return held_.load(std::memory_order_relaxed); }

private:
    std::atomic<bool> held_{false};
};

class PL_SCOPED_CAPABILITY SpinGuard {
public:
    explicit SpinGuard(Spinlock& l) PL_ACQUIRE(l) : l_(l) { l_.lock(); }
    ~SpinGuard() PL_RELEASE() { l_.unlock(); }
    SpinGuard(const SpinGuard&) = delete;
    SpinGuard& operator=(const SpinGuard&) = delete;

private:
    Spinlock& l_;
};

}  // namespace pl::sync
