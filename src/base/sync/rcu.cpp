#include "base/sync/rcu.h"

#include <atomic>
#include <mutex>
#include <vector>

#include "base/sync/sched_point.h"

namespace pl::sync {
namespace {

struct ReaderSlot {
    std::atomic<uint64_t> epoch{0};  // 0 = outside any read-side section
    unsigned nesting = 0;            // owned by the thread
    ReaderSlot* next = nullptr;
    std::atomic<bool> in_use{true};
};

struct Domain {
    std::atomic<uint64_t> epoch{1};
    std::mutex slots_mu;                  // guards the slot list's shape
    std::atomic<ReaderSlot*> slots{nullptr};
    std::mutex cb_mu;
    std::vector<std::pair<uint64_t, std::function<void()>>> callbacks;  // (epoch queued, fn)
    std::atomic<uint64_t> pending{0};
};

Domain& domain() {
    static Domain* d = new Domain;  // never destroyed: threads may outlive statics
    return *d;
}

// Slots are recycled, never freed, so a concurrent scan never sees freed memory.
ReaderSlot* acquire_slot() {
    Domain& d = domain();
    for (ReaderSlot* s = d.slots.load(std::memory_order_acquire); s; s = s->next) {
        bool expected = false;
        if (s->in_use.compare_exchange_strong(expected, true)) return s;
    }
    std::lock_guard g(d.slots_mu);
    auto* s = new ReaderSlot;
    s->next = d.slots.load(std::memory_order_relaxed);
    d.slots.store(s, std::memory_order_release);
    return s;
}

struct ThreadSlot {
    ReaderSlot* slot = acquire_slot();
    ~ThreadSlot() {
        slot->epoch.store(0, std::memory_order_release);
        slot->nesting = 0;
        slot->in_use.store(false, std::memory_order_release);
    }
};

ReaderSlot& my_slot() {
    static thread_local ThreadSlot t;
    return *t.slot;
}

// Waits until no reader is inside a section entered before epoch `e`.
void wait_for_readers(uint64_t e) {
    Domain& d = domain();
    for (ReaderSlot* s = d.slots.load(std::memory_order_acquire); s; s = s->next) {
        if (s == &my_slot() && s->nesting) continue;  // synchronize inside a read section would deadlock
        Backoff b(s);
        while (true) {
            uint64_t re = s->epoch.load(std::memory_order_seq_cst);
            if (re == 0 || re >= e) break;
            b.pause();
        }
    }
}

void run_ready(uint64_t completed_before) {
    Domain& d = domain();
    std::vector<std::function<void()>> ready;
    {
        std::lock_guard g(d.cb_mu);
        auto& cbs = d.callbacks;
        size_t keep = 0;
        for (auto& cb : cbs) {
            if (cb.first < completed_before) ready.push_back(std::move(cb.second));
            else cbs[keep++] = std::move(cb);
        }
        cbs.resize(keep);
    }
    d.pending.fetch_sub(ready.size());
    for (auto& fn : ready) fn();
}

}  // namespace

void rcu_read_lock() {
    ReaderSlot& s = my_slot();
    if (s.nesting++ == 0) {
        point(Point::RcuRead, &s);
        // seq_cst store, then the reader's seq_cst loads of protected pointers:
        // a grace period that misses this store cannot have unlinked what it reads.
        s.epoch.store(domain().epoch.load(std::memory_order_seq_cst), std::memory_order_seq_cst);
    }
}

void rcu_read_unlock() {
    ReaderSlot& s = my_slot();
    if (--s.nesting == 0) {
        point(Point::RcuRead, &s);
        s.epoch.store(0, std::memory_order_release);
    }
}

void synchronize_rcu() {
    point(Point::RcuSync, nullptr);
    Domain& d = domain();
    uint64_t e = d.epoch.fetch_add(1, std::memory_order_seq_cst) + 1;
    wait_for_readers(e);
    run_ready(e);
}

void call_rcu(std::function<void()> fn) {
    Domain& d = domain();
    {
        std::lock_guard g(d.cb_mu);
        d.callbacks.emplace_back(d.epoch.load(std::memory_order_seq_cst), std::move(fn));
    }
    // Batch grace periods: one synchronize per 64 callbacks keeps frees cheap.
    if (d.pending.fetch_add(1) + 1 >= 64) synchronize_rcu();
}

void rcu_barrier() { synchronize_rcu(); }

uint64_t rcu_pending() { return domain().pending.load(); }

}  // namespace pl::sync
