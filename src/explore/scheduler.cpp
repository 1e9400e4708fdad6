#include "explore/scheduler.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
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

RunRecord DeterministicScheduler::run(const std::vector<std::function<void()>>& bodies) {
    n_ = static_cast<int>(bodies.size());
    if (n_ == 0) return rec_;
    turn_ = std::make_unique<std::condition_variable[]>(bodies.size());
    state_.assign(bodies.size(), State::Runnable);
    waiting_on_.assign(bodies.size(), nullptr);
    std::vector<std::thread> threads;
    threads.reserve(bodies.size());
    for (int i = 0; i < n_; ++i)
        threads.emplace_back([this, i, &bodies] { thread_main(i, bodies[static_cast<size_t>(i)]); });
    {
        std::unique_lock lk(mu_);
        collect(State::Runnable);
        const int first = decide(-1);  // which thread starts is a choice too
        if (first >= 0) hand_to(first);
        // The watchdog: a hang cannot be seen from inside (the running thread
        // is stuck outside the explorer); aborting lets the paused threads
        // run freely, which releases what the stuck one waits for.
        uint64_t last_steps = rec_.steps;
        auto last_change = std::chrono::steady_clock::now();
        while (!done_.wait_for(lk, std::chrono::milliseconds(100), [&] { return finished_ == n_; })) {
            const auto now = std::chrono::steady_clock::now();
            if (rec_.steps != last_steps || aborting_) {
                last_steps = rec_.steps;
                last_change = now;
            } else if (std::chrono::duration<double>(now - last_change).count() > limits_.hang_seconds) {
                abort_locked(ViolationKind::Hang,
                             "no interleaving point for " + std::to_string(limits_.hang_seconds) + " s after step " +
                                 std::to_string(rec_.steps) + ": thread " + std::to_string(current_) +
                                 " waits outside src/base/sync (a std::mutex held across an interleaving point?)");
            }
        }
    }
    for (auto& t : threads) t.join();
    return std::move(rec_);
}

void DeterministicScheduler::thread_main(int self, const std::function<void()>& body) {
    tl_self = self;
    bool skip;
    {
        std::unique_lock lk(mu_);
        wait_turn(self, lk);
        skip = aborting_;
    }
    if (!skip) {
        sync::set_thread_scheduler(this);
        try {
            body();
        } catch (const ExecutionAborted&) {
        } catch (const std::exception& e) {
            std::lock_guard g(mu_);
            abort_locked(ViolationKind::Exception, "thread " + std::to_string(self) + " threw: " + e.what());
        } catch (...) {
            std::lock_guard g(mu_);
            abort_locked(ViolationKind::Exception, "thread " + std::to_string(self) + " threw a non-standard exception");
        }
        sync::set_thread_scheduler(nullptr);
    }
    on_exit(self);
    tl_self = -1;
}

void DeterministicScheduler::on_exit(int self) {
    std::unique_lock lk(mu_);
    state_[static_cast<size_t>(self)] = State::Done;
    if (++finished_ == n_) {
        done_.notify_one();
        return;
    }
    if (aborting_) return;
    // An exit is progress: whoever waited on this thread may go on now.
    no_progress_rounds_ = 0;
    unblock_all();
    collect(State::Runnable);
    const int next = decide(-1);
    if (next >= 0) hand_to(next);
}

void DeterministicScheduler::at_point(sync::Point p, const void*) {
    if (in_invariant_.load(std::memory_order_relaxed)) return;
    const int self = tl_self;
    std::unique_lock lk(mu_);
    const bool safe = unwind_safe(p);
    if (aborting_ || !count_step()) {
        lk.unlock();
        bail_if_safe(safe);
        return;
    }
    no_progress_rounds_ = 0;
    unblock_all();
    if (invariant_) {
        in_invariant_.store(true, std::memory_order_relaxed);
        lk.unlock();
        std::optional<std::string> bad;
        try {
            bad = invariant_();
        } catch (const std::exception& e) {
            bad = std::string("the invariant threw: ") + e.what();
        }
        lk.lock();
        in_invariant_.store(false, std::memory_order_relaxed);
        if (bad) {
            abort_locked(ViolationKind::Invariant, *bad);
            lk.unlock();
            bail_if_safe(safe);
            return;
        }
    }
    collect(State::Runnable);
    const int next = decide(self);
    if (next >= 0 && next != self) {
        hand_to(next);
        wait_turn(self, lk);
    }
    if (aborting_) {
        lk.unlock();
        bail_if_safe(safe);
    }
}

void DeterministicScheduler::blocked(const void* addr) {
    if (in_invariant_.load(std::memory_order_relaxed)) {
        std::this_thread::yield();
        return;
    }
    const int self = tl_self;
    std::unique_lock lk(mu_);
    if (aborting_ || !count_step()) {
        lk.unlock();
        if (std::uncaught_exceptions() > 0) std::this_thread::yield();  // unwinding: wait for the holder to unwind too
        bail_if_safe(true);
        return;
    }
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
            abort_locked(ViolationKind::Deadlock, std::move(msg));
            lk.unlock();
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
    if (next >= 0 && next != self) {
        hand_to(next);
        wait_turn(self, lk);
    }
    if (aborting_) {
        lk.unlock();
        bail_if_safe(true);
    }
}

int DeterministicScheduler::decide(int current) {
    if (cands_.size() == 1) return cands_.front();
    Choice c{cands_, current, n_, rec_.steps, rec_.schedule.choices.size()};
    std::string why;
    const int t = strategy_.choose(c, &why);
    if (t < 0 || std::find(cands_.begin(), cands_.end(), t) == cands_.end()) {
        abort_locked(ViolationKind::Diverged,
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

void DeterministicScheduler::hand_to(int next) {
    current_ = next;
    turn_[static_cast<size_t>(next)].notify_one();
}

void DeterministicScheduler::wait_turn(int self, std::unique_lock<std::mutex>& lk) {
    turn_[static_cast<size_t>(self)].wait(lk, [&] { return current_ == self || aborting_; });
}

void DeterministicScheduler::abort_locked(ViolationKind kind, std::string message) {
    if (aborting_) return;
    aborting_ = true;
    rec_.violation = {kind, std::move(message)};
    for (int t = 0; t < n_; ++t) turn_[static_cast<size_t>(t)].notify_one();
}

bool DeterministicScheduler::count_step() {
    if (++rec_.steps <= limits_.max_steps) return true;
    abort_locked(ViolationKind::StepLimit,
                 "more than " + std::to_string(limits_.max_steps) + " steps (a livelock or a hang?)");
    return false;
}

}  // namespace pl::explore
