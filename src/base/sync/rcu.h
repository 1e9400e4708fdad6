// pinlab — RCU-like reclamation.
//
// GUP-fast walks page tables with interrupts off; upstream, that blocks the
// TLB-shootdown IPI (or the RCU grace period of MMU_GATHER_RCU_TABLE_FREE)
// that must complete before a page table is freed. The model's lockless
// walkers enter an RCU read-side section instead, and page tables are freed
// through call_rcu(), so a walker never touches freed memory.
//
// Epoch-based: a reader publishes the global epoch it entered under; a grace
// period ends once every reader that was inside has left.
#pragma once

#include <cstdint>
#include <functional>

namespace pl::sync {

void rcu_read_lock();
void rcu_read_unlock();
// Waits until every read-side section that began before the call has ended.
void synchronize_rcu();
// Runs `fn` after a grace period. Callbacks run from later call_rcu,
// synchronize_rcu or rcu_barrier calls.
void call_rcu(std::function<void()> fn);
// Runs every pending callback (after a grace period).
void rcu_barrier();
// Callbacks queued and not yet run (for tests).
uint64_t rcu_pending();

class RcuReadGuard {
public:
    RcuReadGuard() { rcu_read_lock(); }
    ~RcuReadGuard() { rcu_read_unlock(); }
    RcuReadGuard(const RcuReadGuard&) = delete;
    RcuReadGuard& operator=(const RcuReadGuard&) = delete;
};

}  // namespace pl::sync
