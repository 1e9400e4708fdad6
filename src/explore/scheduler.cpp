#include "explore/scheduler.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <exception>
#include <thread>

namespace pl::explore {
namespace {

// Thrown into a model thread to unwind it when its execution was cut short
// (deadlock, step limit, another thread's failure). Deliberately not a
// std::exception, so that model code catching those lets it through.
struct ExecutionAborted {};

thread_local int tl_self = -1;

// After an abort the threads run freely, no longer serialised, until each
// reaches a place where unwinding is safe: a wait, the start of a lock
// acquisition, a load (never a release, a store or a read-modify-write:
// those run in destructors — unlock, put — where a throw would terminate).
// While already unwinding, never throw again.
bool unwind_safe(sync::Point p) {
    switch (p) {
    case sync::Point::LockAcquire:
    case sync::Point::AtomicLoad:
    case sync::Point::SeqRead:
    case sync::Point::Wait:
    case sync::Point::RcuSync: return true;
    default: return false;
    }
}

void bail_if_safe(bool safe_point) {
    if (safe_point && std::uncaught_exceptions() == 0) throw ExecutionAborted{};
}

std::string hex(const void* p) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%p", p);
    return buf;
}

// How long a thread waiting for the baton keeps yielding the CPU (looking
// at its word after each yield) before it sleeps in the kernel. Measured on
// the 2-core VM (bench/explore_bench.cpp): on an idle machine a sleeping
// thread takes tens of microseconds to wake (the idle vCPU is halted), so
// sleeping at once made a two-thread execution ~70 us, and a time-bounded
// yield loop ~3 us; on a loaded one, yields hand the CPU to the thread the
// baton went to, and the bound keeps a waiter from yielding for long behind
// other processes. Spinning on the word (pause) was slower in both cases:
// the spinner keeps the thread it waits for off the CPU.
constexpr std::chrono::nanoseconds kYieldFor{20'000};

}  // namespace

// A binary semaphore on one futex word: post() makes one wait() return,
// whether it comes before or after. The waiter yields the CPU for a while
// (kYieldFor), looking at the word after each yield, and only then sleeps;
// post() enters the kernel only when the waiter sleeps. Ordering: post()
// releases, wait() acquires.
class DeterministicScheduler::Gate {
public:
    void post() {
        if (w_.exchange(kPosted, std::memory_order_acq_rel) == kSleeping)
            syscall(SYS_futex, &w_, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
    }
    // True when posted; false when `timeout` (relative; null: none) passed first.
    bool wait(const timespec* timeout = nullptr) {
        if (w_.load(std::memory_order_acquire) == kPosted) return consume();
        const auto t0 = std::chrono::steady_clock::now();
        do {
            std::this_thread::yield();
            if (w_.load(std::memory_order_acquire) == kPosted) return consume();
        } while (std::chrono::steady_clock::now() - t0 < kYieldFor);
        uint32_t v = kEmpty;
        if (!w_.compare_exchange_strong(v, kSleeping, std::memory_order_acquire)) return consume();
        while (true) {
            const long r = syscall(SYS_futex, &w_, FUTEX_WAIT_PRIVATE, kSleeping, timeout, nullptr, 0);
            const int err = r == 0 ? 0 : errno;
            if (w_.load(std::memory_order_acquire) == kPosted) return consume();
            if (err == ETIMEDOUT) {
                v = kSleeping;
                if (w_.compare_exchange_strong(v, kEmpty, std::memory_order_acquire)) return false;
                return consume();  // posted just now
            }
        }
    }
    // Drops a post nobody waited for (an abort's wake-up of a thread that
    // was running). Only while no post can come.
    void reset() { w_.store(kEmpty, std::memory_order_relaxed); }

private:
    static constexpr uint32_t kEmpty = 0, kPosted = 1, kSleeping = 2;
    bool consume() {
        w_.store(kEmpty, std::memory_order_relaxed);
        return true;
    }
    std::atomic<uint32_t> w_{kEmpty};
};

// A pooled OS thread: sleeps on its gate; a post is its turn to run (the
// first one of an execution starts its body). The job fields are written by
// the thread calling run() before the execution's first post, which reaches
// this thread through a chain of posts (release/acquire).
struct DeterministicScheduler::Worker {
    Gate gate;
    std::thread thread;
    DeterministicScheduler* sched = nullptr;
    int index = -1;
    const std::function<void()>* body = nullptr;
    bool stop = false;  // set before the post that ends the thread

    void main() {
        sync::prime_reused_thread();
        while (true) {
            gate.wait();
            if (stop) return;
            sched->thread_main(index, *body);
        }
    }
};

namespace {

using Worker = DeterministicScheduler::Worker;

// The process's pooled OS threads. Never destroyed (the threads may still
// be asleep in it at exit); release_idle_threads() ends them cleanly.
class Pool {
public:
    static Pool& get() {
        static Pool* p = new Pool;
        return *p;
    }
    void acquire(size_t n, std::vector<Worker*>* out) {
        out->clear();
        std::lock_guard g(mu_);
        while (out->size() < n) {
            if (idle_.empty()) {
                auto* w = new Worker;
                w->thread = std::thread([w] { w->main(); });
                out->push_back(w);
            } else {
                out->push_back(idle_.back());
                idle_.pop_back();
            }
        }
    }
    // After each of them ended its model thread.
    void release(const std::vector<Worker*>& ws) {
        std::lock_guard g(mu_);
        idle_.insert(idle_.end(), ws.begin(), ws.end());
    }
    size_t release_idle() {
        std::vector<Worker*> ws;
        {
            std::lock_guard g(mu_);
            ws.swap(idle_);
        }
        for (Worker* w : ws) {
            w->stop = true;
            w->gate.post();
            w->thread.join();
            delete w;
        }
        return ws.size();
    }

private:
    std::mutex mu_;
    std::vector<Worker*> idle_;
};

}  // namespace

const char* to_string(ViolationKind k) {
    switch (k) {
    case ViolationKind::None: return "none";
    case ViolationKind::Check: return "check";
    case ViolationKind::Invariant: return "invariant";
    case ViolationKind::Kernel: return "kernel";
    case ViolationKind::Deadlock: return "deadlock";
    case ViolationKind::StepLimit: return "step limit";
    case ViolationKind::Hang: return "hang";
    case ViolationKind::Exception: return "exception";
    case ViolationKind::Diverged: return "diverged";
    }
    return "?";
}

DeterministicScheduler::DeterministicScheduler(Strategy& strategy, SchedulerLimits limits,
                                               std::function<std::optional<std::string>()> invariant)
    : strategy_(strategy), limits_(limits), invariant_(std::move(invariant)) {}

DeterministicScheduler::~DeterministicScheduler() = default;

size_t DeterministicScheduler::release_idle_threads() { return Pool::get().release_idle(); }

RunRecord DeterministicScheduler::run(const std::vector<std::function<void()>>& bodies) {
    n_ = static_cast<int>(bodies.size());
    if (n_ == 0) return std::move(rec_);
    const size_t n = bodies.size();
    state_.assign(n, State::Runnable);
    waiting_on_.assign(n, nullptr);
    exited_.assign(n, 0);
    cands_.reserve(n);
    rec_.schedule.choices.reserve(64);
    rec_.currents.reserve(64);
    // The caller's own gate: it outlives this scheduler, so the last thread
    // may post it after the caller could have returned.
    thread_local Gate tl_done;
    done_ = &tl_done;
    done_->reset();
    Pool::get().acquire(n, &workers_);
    for (int i = 0; i < n_; ++i) {
        Worker* w = workers_[static_cast<size_t>(i)];
        w->sched = this;
        w->index = i;
        w->body = &bodies[static_cast<size_t>(i)];
    }
    // The caller holds the baton until it hands it to the first thread
    // (which thread starts is a choice too).
    collect(State::Runnable);
    const int first = decide(-1);
    if (first >= 0) {
        running_.store(first, std::memory_order_relaxed);
        workers_[static_cast<size_t>(first)]->gate.post();
    }
    // The watchdog: a hang cannot be seen from inside (the running thread is
    // stuck outside the explorer); aborting lets the paused threads run
    // freely, which releases what the stuck one waits for.
    const timespec tick{0, 100 * 1000 * 1000};
    uint64_t last_steps = progress_.load(std::memory_order_relaxed);
    auto last_change = std::chrono::steady_clock::now();
    while (!done_->wait(&tick)) {
        const auto now = std::chrono::steady_clock::now();
        const uint64_t steps = progress_.load(std::memory_order_relaxed);
        if (steps != last_steps || aborting()) {
            last_steps = steps;
            last_change = now;
        } else if (std::chrono::duration<double>(now - last_change).count() > limits_.hang_seconds) {
            abort(ViolationKind::Hang, "no interleaving point for " + std::to_string(limits_.hang_seconds) +
                                           " s after step " + std::to_string(steps) + ": thread " +
                                           std::to_string(running_.load(std::memory_order_relaxed)) +
                                           " waits outside src/base/sync (a std::mutex held across an "
                                           "interleaving point?)");
        }
    }
    // Every thread ended: each is back waiting on its gate.
    Pool::get().release(workers_);
    workers_.clear();
    return std::move(rec_);
}

void DeterministicScheduler::thread_main(int self, const std::function<void()>& body) {
    tl_self = self;
    if (!aborting()) {
        sync::set_thread_scheduler(this);
        try {
            body();
        } catch (const ExecutionAborted&) {
        } catch (const std::exception& e) {
            abort(ViolationKind::Exception, "thread " + std::to_string(self) + " threw: " + e.what());
        } catch (...) {
            abort(ViolationKind::Exception, "thread " + std::to_string(self) + " threw a non-standard exception");
        }
        sync::set_thread_scheduler(nullptr);
        // The next model thread on this OS thread must find it as fresh.
        sync::reset_reused_thread();
    }
    tl_self = -1;
    on_exit(self);
}

void DeterministicScheduler::on_exit(int self) {
    int next = -1;
    if (!aborting()) {
        // Still the baton's holder. An exit is progress: whoever waited on
        // this thread may go on now.
        state_[static_cast<size_t>(self)] = State::Done;
        no_progress_rounds_ = 0;
        unblock_all();
        collect(State::Runnable);
        if (!cands_.empty()) next = decide(-1);
    }
    Gate* done = done_;  // the caller's: it outlives this scheduler
    bool last;
    {
        // Under ctl_mu_, against an abort from the watchdog: no wake-up may
        // reach this thread's gate once it ended (its next execution would
        // start early), so drop one that came while it ran; and the next
        // thread is woken only while it has not ended.
        std::lock_guard g(ctl_mu_);
        exited_[static_cast<size_t>(self)] = 1;
        workers_[static_cast<size_t>(self)]->gate.reset();
        last = ++finished_ == n_;
        if (!last && next >= 0 && !exited_[static_cast<size_t>(next)]) {
            running_.store(next, std::memory_order_relaxed);
            workers_[static_cast<size_t>(next)]->gate.post();
        }
    }
    // This thread's last use of the scheduler: once the caller sees `done`
    // it goes on and destroys it.
    if (last) done->post();
}

void DeterministicScheduler::switch_to(int self, int next) {
    running_.store(next, std::memory_order_relaxed);
    Gate& mine = workers_[static_cast<size_t>(self)]->gate;
    workers_[static_cast<size_t>(next)]->gate.post();
    mine.wait();
}

void DeterministicScheduler::at_point(sync::Point p, const void*) {
    if (in_invariant_.load(std::memory_order_relaxed)) return;
    const bool safe = unwind_safe(p);
    if (aborting() || !count_step()) {
        bail_if_safe(safe);
        return;
    }
    const int self = tl_self;
    no_progress_rounds_ = 0;
    unblock_all();
    if (invariant_) [[unlikely]] {
        in_invariant_.store(true, std::memory_order_relaxed);
        std::optional<std::string> bad;
        try {
            bad = invariant_();
        } catch (const std::exception& e) {
            bad = std::string("the invariant threw: ") + e.what();
        }
        in_invariant_.store(false, std::memory_order_relaxed);
        if (bad) {
            abort(ViolationKind::Invariant, *bad);
            bail_if_safe(safe);
            return;
        }
    }
    collect(State::Runnable);
    const int next = decide(self);
    if (next >= 0 && next != self) switch_to(self, next);
    if (aborting()) bail_if_safe(safe);
}

void DeterministicScheduler::blocked(const void* addr) {
    if (in_invariant_.load(std::memory_order_relaxed)) {
        std::this_thread::yield();
        return;
    }
    if (aborting() || !count_step()) {
        if (std::uncaught_exceptions() > 0) std::this_thread::yield();  // unwinding: wait for the holder to unwind too
        bail_if_safe(true);
        return;
    }
    const int self = tl_self;
    state_[static_cast<size_t>(self)] = State::Blocked;
    waiting_on_[static_cast<size_t>(self)] = addr;
    collect(State::Runnable);
    int next;
    if (cands_.empty()) {
        // Every live thread waits on another. Let each retry once more (what
        // it waits for may have changed without an interleaving point); after
        // deadlock_rounds rounds with no step taken, it is a deadlock.
        if (++no_progress_rounds_ > limits_.deadlock_rounds) {
            std::string msg = "every live thread waits:";
            for (int t = 0; t < n_; ++t)
                if (state_[static_cast<size_t>(t)] != State::Done)
                    msg += " thread " + std::to_string(t) + " on " + hex(waiting_on_[static_cast<size_t>(t)]) + ";";
            msg.pop_back();
            abort(ViolationKind::Deadlock, std::move(msg));
            bail_if_safe(true);
            return;
        }
        unblock_all();
        // Round-robin from the next thread: no choice to record.
        next = self;
        for (int i = 1; i <= n_; ++i) {
            const int t = (self + i) % n_;
            if (state_[static_cast<size_t>(t)] == State::Runnable) {
                next = t;
                break;
            }
        }
    } else {
        next = decide(-1);  // a forced switch: not a preemption
    }
    if (next >= 0 && next != self) switch_to(self, next);
    if (aborting()) bail_if_safe(true);
}

unsigned DeterministicScheduler::choose(unsigned n, const void*) {
    // The baton's holder asks: no lock. Not a step (nothing else can run).
    if (in_invariant_.load(std::memory_order_relaxed) || aborting()) return 0;
    n = std::min(n, 65536u);  // a schedule records values as 16 bits
    const ValueChoice c{n, tl_self, rec_.steps, rec_.schedule.values.size()};
    std::string why;
    const int v = strategy_.choose_value(c, &why);
    if (v < 0 || static_cast<unsigned>(v) >= n) {
        abort(ViolationKind::Diverged,
              why.empty() ? "the strategy chose value " + std::to_string(v) + " of " + std::to_string(n) : why);
        return 0;
    }
    rec_.schedule.values.push_back(static_cast<uint16_t>(v));
    return static_cast<unsigned>(v);
}

int DeterministicScheduler::decide(int current) {
    if (cands_.size() == 1) return cands_.front();
    Choice c{cands_, current, n_, rec_.steps, rec_.schedule.choices.size()};
    std::string why;
    const int t = strategy_.choose(c, &why);
    if (t < 0 || std::find(cands_.begin(), cands_.end(), t) == cands_.end()) {
        abort(ViolationKind::Diverged,
              why.empty() ? "the strategy chose thread " + std::to_string(t) + ", which cannot run" : why);
        return -1;
    }
    rec_.schedule.choices.push_back(static_cast<uint16_t>(t));
    rec_.currents.push_back(static_cast<int16_t>(current));
    if (current >= 0 && t != current) ++rec_.preemptions;
    return t;
}

void DeterministicScheduler::collect(State want) {
    cands_.clear();
    for (int t = 0; t < n_; ++t)
        if (state_[static_cast<size_t>(t)] == want) cands_.push_back(t);
}

void DeterministicScheduler::unblock_all() {
    for (auto& s : state_)
        if (s == State::Blocked) s = State::Runnable;
}

void DeterministicScheduler::abort(ViolationKind kind, std::string message) {
    std::lock_guard g(ctl_mu_);
    if (aborting_.load(std::memory_order_relaxed)) return;
    rec_.violation = {kind, std::move(message)};
    aborting_.store(true, std::memory_order_release);
    // Wake every thread still to end; each sees the abort and unwinds.
    for (int t = 0; t < n_; ++t)
        if (!exited_[static_cast<size_t>(t)]) workers_[static_cast<size_t>(t)]->gate.post();
}

bool DeterministicScheduler::count_step() {
    progress_.store(++rec_.steps, std::memory_order_relaxed);
    if (rec_.steps <= limits_.max_steps) return true;
    abort(ViolationKind::StepLimit, "more than " + std::to_string(limits_.max_steps) + " steps (a livelock or a hang?)");
    return false;
}

}  // namespace pl::explore
