// pinlab — atomics of the model.
//
// Two forms, both announcing an interleaving point:
//  * Atomic<T>: a member of a C++ object.
//  * sync::load/store/... on a plain integer field through std::atomic_ref,
//    for struct page-like metadata that lives in a zero-filled mapping and must
//    stay a trivially-copyable 64-byte record.
#pragma once

#include <atomic>
#include <type_traits>

#include "base/sync/sched_point.h"

namespace pl::sync {

using std::memory_order;
using std::memory_order_acq_rel;
using std::memory_order_acquire;
using std::memory_order_relaxed;
using std::memory_order_release;
using std::memory_order_seq_cst;

template <typename T>
class Atomic {
    static_assert(std::is_trivially_copyable_v<T>);

public:
    constexpr Atomic() noexcept : v_() {}
    constexpr Atomic(T v) noexcept : v_(v) {}  // NOLINT
    Atomic(const Atomic&) = delete;
    Atomic& operator=(const Atomic&) = delete;

    T load(memory_order mo = memory_order_seq_cst) const {
        point(Point::AtomicLoad, this);
        return v_.load(mo);
    }
    void store(T v, memory_order mo = memory_order_seq_cst) {
        point(Point::AtomicStore, this);
        v_.store(v, mo);
    }
    T exchange(T v, memory_order mo = memory_order_seq_cst) {
        point(Point::AtomicRmw, this);
        return v_.exchange(v, mo);
    }
    bool compare_exchange(T& expected, T desired, memory_order mo = memory_order_seq_cst) {
        point(Point::AtomicRmw, this);
        return v_.compare_exchange_strong(expected, desired, mo);
    }
    T fetch_add(T d, memory_order mo = memory_order_seq_cst) requires std::is_integral_v<T> {
        point(Point::AtomicRmw, this);
        return v_.fetch_add(d, mo);
    }
    T fetch_sub(T d, memory_order mo = memory_order_seq_cst) requires std::is_integral_v<T> {
        point(Point::AtomicRmw, this);
        return v_.fetch_sub(d, mo);
    }
    T fetch_or(T d, memory_order mo = memory_order_seq_cst) requires std::is_integral_v<T> {
        point(Point::AtomicRmw, this);
        return v_.fetch_or(d, mo);
    }
    T fetch_and(T d, memory_order mo = memory_order_seq_cst) requires std::is_integral_v<T> {
        point(Point::AtomicRmw, this);
        return v_.fetch_and(d, mo);
    }
    // Unannounced read for debugging output and invariant checks run while the
    // world is stopped.
    T peek() const { return v_.load(memory_order_relaxed); }

private:
    std::atomic<T> v_;
};

// --- atomic access to plain fields ------------------------------------------

template <typename T>
inline T load(const T& field, memory_order mo = memory_order_seq_cst) {
    point(Point::AtomicLoad, &field);
    return std::atomic_ref<T>(const_cast<T&>(field)).load(mo);
}
template <typename T>
inline void store(T& field, std::type_identity_t<T> v, memory_order mo = memory_order_seq_cst) {
    point(Point::AtomicStore, &field);
    std::atomic_ref<T>(field).store(v, mo);
}
template <typename T>
inline T exchange(T& field, std::type_identity_t<T> v, memory_order mo = memory_order_seq_cst) {
    point(Point::AtomicRmw, &field);
    return std::atomic_ref<T>(field).exchange(v, mo);
}
template <typename T>
inline bool compare_exchange(T& field, T& expected, std::type_identity_t<T> desired, memory_order mo = memory_order_seq_cst) {
    point(Point::AtomicRmw, &field);
    return std::atomic_ref<T>(field).compare_exchange_strong(expected, desired, mo);
}
template <typename T>
inline T fetch_add(T& field, std::type_identity_t<T> d, memory_order mo = memory_order_seq_cst) {
    point(Point::AtomicRmw, &field);
    return std::atomic_ref<T>(field).fetch_add(d, mo);
}
template <typename T>
inline T fetch_sub(T& field, std::type_identity_t<T> d, memory_order mo = memory_order_seq_cst) {
    point(Point::AtomicRmw, &field);
    return std::atomic_ref<T>(field).fetch_sub(d, mo);
}
template <typename T>
inline T fetch_or(T& field, std::type_identity_t<T> d, memory_order mo = memory_order_seq_cst) {
    point(Point::AtomicRmw, &field);
    return std::atomic_ref<T>(field).fetch_or(d, mo);
}
template <typename T>
inline T fetch_and(T& field, std::type_identity_t<T> d, memory_order mo = memory_order_seq_cst) {
    point(Point::AtomicRmw, &field);
    return std::atomic_ref<T>(field).fetch_and(d, mo);
}
// A relaxed read with no interleaving point, for reporting only.
template <typename T>
inline T peek(const T& field) {
    return std::atomic_ref<T>(const_cast<T&>(field)).load(memory_order_relaxed);
}
// A relaxed store with no interleaving point, for memory no thread may
// legally read any more (poisoning a freed page table, mm.pt_free_rcu=off).
template <typename T>
inline void poke(T& field, std::type_identity_t<T> v) {
    std::atomic_ref<T>(field).store(v, memory_order_relaxed);
}

// smp_mb(): a seq_cst read-modify-write on a private word orders like a full
// fence on every architecture we run on, and TSan understands it.
inline void full_barrier() {
    point(Point::AtomicRmw, nullptr);
    static std::atomic<int> word{0};
    word.fetch_add(0, memory_order_seq_cst);
}

}  // namespace pl::sync
