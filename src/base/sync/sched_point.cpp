#include "base/sync/sched_point.h"

#include <chrono>
#include <thread>

namespace pl::sync {
namespace detail {
std::atomic<bool> g_any_scheduler{false};
thread_local Scheduler* tl_scheduler = nullptr;
}  // namespace detail

void set_thread_scheduler(Scheduler* s) {
    detail::tl_scheduler = s;
    // Never reset to false: other threads may still be controlled, and a stale
    // true only costs a thread-local read.
    if (s) detail::g_any_scheduler.store(true, std::memory_order_relaxed);
}

Scheduler* thread_scheduler() { return detail::tl_scheduler; }

namespace {
// Constant-initialised, so that registration from other files' static
// initialisers works in any order. Registered before main(), read after.
constexpr int kMaxHooks = 16;
ThreadReuseHooks g_hooks[kMaxHooks];
std::atomic<int> g_nhooks{0};
}  // namespace

bool register_thread_reuse_hooks(ThreadReuseHooks h) {
    const int i = g_nhooks.load(std::memory_order_relaxed);
    if (i >= kMaxHooks) return false;
    g_hooks[i] = h;
    g_nhooks.store(i + 1, std::memory_order_release);
    return true;
}

void prime_reused_thread() {
    const int n = g_nhooks.load(std::memory_order_acquire);
    for (int i = 0; i < n; ++i)
        if (g_hooks[i].prime) g_hooks[i].prime();
}

void reset_reused_thread() {
    const int n = g_nhooks.load(std::memory_order_acquire);
    for (int i = 0; i < n; ++i)
        if (g_hooks[i].reset) g_hooks[i].reset();
}

void Backoff::pause() {
    if (Scheduler* s = detail::tl_scheduler) {
        s->blocked(addr_);
        return;
    }
    ++spins_;
    if (spins_ < 64) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    } else if (spins_ < 256) {
        std::this_thread::yield();
    } else {
        std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
}

}  // namespace pl::sync
