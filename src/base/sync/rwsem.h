// pinlab — rw_semaphore, the mmap_lock's type. Writers are preferred once
// waiting (as the kernel's rwsem hands off to waiting writers), so a stream of
// readers cannot starve fork() or munmap().
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

#include "base/sync/sched_point.h"
#include "base/sync/thread_annotations.h"

namespace pl::sync {

class PL_CAPABILITY("rwsem") Rwsem {
public:
    Rwsem() = default;
    Rwsem(const Rwsem&) = delete;
    Rwsem& operator=(const Rwsem&) = delete;

    void down_read() PL_ACQUIRE_SHARED() { (void)down_read_until([] { return false; }); }
    // Gives up (returns false) when `interrupted()` turns true while waiting,
    // as down_read_killable() does on a fatal signal.
    template <typename Pred>
    bool down_read_until(Pred interrupted) PL_TRY_ACQUIRE_SHARED(true) {
        point(Point::LockAcquire, this);
        Backoff b(this);
        while (!try_read_once()) {
            if (interrupted()) return false;
            b.pause();
        }
        return true;
    }
    bool try_down_read() PL_TRY_ACQUIRE_SHARED(true) {
        point(Point::LockAcquire, this);
        return try_read_once();
    }
    void up_read() PL_RELEASE_SHARED() {
        point(Point::LockRelease, this);
        word_.fetch_sub(1, std::memory_order_release);
    }

    void down_write() PL_ACQUIRE() { (void)down_write_until([] { return false; }); }
    template <typename Pred>
    bool down_write_until(Pred interrupted) PL_TRY_ACQUIRE(true) {
        point(Point::LockAcquire, this);
        // Announce ourselves so that new readers queue behind us.
        waiting_writers_.fetch_add(1, std::memory_order_relaxed);
        Backoff b(this);
        while (!try_write_once()) {
            if (interrupted()) {
                waiting_writers_.fetch_sub(1, std::memory_order_relaxed);
                return false;
            }
            b.pause();
        }
        waiting_writers_.fetch_sub(1, std::memory_order_relaxed);
        return true;
    }
    bool try_down_write() PL_TRY_ACQUIRE(true) {
        point(Point::LockAcquire, this);
        return try_write_once();
    }
    void up_write() PL_RELEASE() {
        point(Point::LockRelease, this);
        writer_.store(std::thread::id(), std::memory_order_relaxed);
        word_.store(0, std::memory_order_release);
    }
    // downgrade_write(): keep the lock, for read, without letting a writer in.
    void downgrade_write() PL_RELEASE() PL_ACQUIRE_SHARED() {
        point(Point::LockRelease, this);
        writer_.store(std::thread::id(), std::memory_order_relaxed);
        word_.store(1, std::memory_order_release);
    }

    bool is_locked() const { return word_.load(std::memory_order_relaxed) & (kWriter | kReaderMask); }
    bool is_write_locked() const { return word_.load(std::memory_order_relaxed) & kWriter; }
    bool is_write_locked_by_me() const {
        return is_write_locked() && writer_.load(std::memory_order_relaxed) == std::this_thread::get_id();
    }
    uint64_t readers() const { return word_.load(std::memory_order_relaxed) & kReaderMask; }

private:
    bool try_read_once() {
        uint64_t v = word_.load(std::memory_order_relaxed);
        if ((v & kWriter) || waiting_writers_.load(std::memory_order_relaxed)) return false;
        return word_.compare_exchange_weak(v, v + 1, std::memory_order_acquire);
    }
    bool try_write_once() {
        uint64_t v = 0;
        if (!word_.compare_exchange_strong(v, kWriter, std::memory_order_acquire)) return false;
        writer_.store(std::this_thread::get_id(), std::memory_order_relaxed);
        return true;
    }

    static constexpr uint64_t kReaderMask = (1ULL << 32) - 1;
    static constexpr uint64_t kWriter = 1ULL << 32;
    std::atomic<uint64_t> word_{0};
    std::atomic<uint32_t> waiting_writers_{0};
    std::atomic<std::thread::id> writer_{};
};

class PL_SCOPED_CAPABILITY ReadGuard {
public:
    explicit ReadGuard(Rwsem& l) PL_ACQUIRE_SHARED(l) : l_(&l) { l_->down_read(); }
    ~ReadGuard() PL_RELEASE_GENERIC() { if (l_) l_->up_read(); }
    ReadGuard(const ReadGuard&) = delete;
    ReadGuard& operator=(const ReadGuard&) = delete;

private:
    Rwsem* l_;
};

class PL_SCOPED_CAPABILITY WriteGuard {
public:
    explicit WriteGuard(Rwsem& l) PL_ACQUIRE(l) : l_(&l) { l_->down_write(); }
    ~WriteGuard() PL_RELEASE() { if (l_) l_->up_write(); }
    WriteGuard(const WriteGuard&) = delete;
    WriteGuard& operator=(const WriteGuard&) = delete;

private:
    Rwsem* l_;
};

}  // namespace pl::sync
