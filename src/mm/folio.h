// pinlab — struct folio: a view of a head Page (order 0..PUD_ORDER).
//
// A Folio* is the address of its head Page reinterpreted; it has no data
// members of its own, exactly as upstream's struct folio overlays the pages.
#pragma once

#include <cstdint>

#include "mm/page.h"

namespace pl {

class AddressSpace;
class AnonVma;
struct DevPagemap;

// GUP_PIN_COUNTING_BIAS: a FOLL_PIN on a small folio adds this to _refcount.
inline constexpr int GUP_PIN_COUNTING_BIAS = 1 << 10;

class Folio {
public:
    Folio() = delete;
    Folio(const Folio&) = delete;

    static Folio* of(Page* head) { return reinterpret_cast<Folio*>(head); }
    static const Folio* of(const Page* head) { return reinterpret_cast<const Folio*>(head); }

    Page* head() { return reinterpret_cast<Page*>(this); }
    const Page* head() const { return reinterpret_cast<const Page*>(this); }
    Page* page(unsigned long i) { return head() + i; }
    const Page* page(unsigned long i) const { return head() + i; }
    // Index of `p` inside this folio.
    unsigned long page_index(const Page* p) const { return static_cast<unsigned long>(p - head()); }

    unsigned order() const {
        return static_cast<unsigned>((sync::peek(head()->flags) & PAGE_ORDER_MASK) >> PAGE_ORDER_SHIFT);
    }
    unsigned long nr_pages() const { return 1UL << order(); }
    uint64_t size() const { return PAGE_SIZE << order(); }
    bool is_large() const { return test_bit(head(), PG_head); }
    ZoneId zone() const { return page_zone_id(head()); }

    // --- flags (on the head) ---------------------------------------------
    bool test(PageFlag f) const { return test_bit(head(), f); }
    void set(PageFlag f) { set_bit(head(), f); }
    void clear(PageFlag f) { clear_bit(head(), f); }
    bool test_and_set(PageFlag f) { return test_and_set_bit(head(), f); }
    bool test_and_clear(PageFlag f) { return test_and_clear_bit(head(), f); }
    bool is_dirty() const { return test(PG_dirty); }
    bool is_writeback() const { return test(PG_writeback); }
    bool is_locked() const { return test(PG_locked); }
    bool is_hugetlb() const { return test(PG_hugetlb); }
    bool is_reserved() const { return test(PG_reserved); }
    bool is_zone_device() const { return zone() == ZoneId::Device; }

    // --- _refcount ----------------------------------------------------------
    int ref_count() const { return sync::load(head()->refcount); }
    void ref_add(int n) { sync::fetch_add(head()->refcount, n); }
    // Returns true when the count dropped to zero (the caller frees).
    bool ref_sub_and_test(int n) { return sync::fetch_sub(head()->refcount, n) == n; }
    // folio_try_get / folio_ref_try_add: fails on a frozen (zero) count.
    bool ref_try_add(int n) {
        int v = sync::load(head()->refcount, sync::memory_order_relaxed);
        do {
            if (v <= 0) return false;
        } while (!sync::compare_exchange(head()->refcount, v, v + n));
        return true;
    }
    // folio_ref_freeze: succeeds only if the count is exactly `expected`,
    // leaving it at 0 so that speculative getters (GUP-fast) fail.
    bool ref_freeze(int expected) {
        int v = expected;
        return sync::compare_exchange(head()->refcount, v, 0);
    }
    void ref_unfreeze(int count) { sync::store(head()->refcount, count, sync::memory_order_release); }
    void set_ref_count(int n) { sync::store(head()->refcount, n); }

    // --- mapping / index ------------------------------------------------------
    uintptr_t raw_mapping() const { return sync::load(head()->u.h.mapping, sync::memory_order_acquire); }
    void set_raw_mapping(uintptr_t m) { sync::store(head()->u.h.mapping, m, sync::memory_order_release); }
    bool is_anon() const { return raw_mapping() & PAGE_MAPPING_ANON; }
    AnonVma* anon_vma() const {
        uintptr_t m = raw_mapping();
        return (m & PAGE_MAPPING_ANON) ? reinterpret_cast<AnonVma*>(m & ~PAGE_MAPPING_ANON) : nullptr;
    }
    AddressSpace* mapping() const {
        uintptr_t m = raw_mapping();
        return (m & PAGE_MAPPING_ANON) ? nullptr : reinterpret_cast<AddressSpace*>(m);
    }
    pgoff_t index() const { return sync::load(head()->u.h.index); }
    void set_index(pgoff_t i) { sync::store(head()->u.h.index, i); }

    // --- large-folio counters (page[1]); 0 for small folios --------------------
    int pincount() const { return is_large() ? sync::load(page(1)->u.f1.pincount) : 0; }
    void pincount_add(int n) { sync::fetch_add(page(1)->u.f1.pincount, n); }
    int entire_mapcount() const { return is_large() ? sync::load(page(1)->u.f1.entire_mapcount) : 0; }
    void entire_mapcount_add(int n) { sync::fetch_add(page(1)->u.f1.entire_mapcount, n); }
    int large_mapcount() const { return is_large() ? sync::load(page(1)->u.f1.large_mapcount) : 0; }
    void large_mapcount_add(int n) { sync::fetch_add(page(1)->u.f1.large_mapcount, n); }
    int nr_pages_mapped() const { return is_large() ? sync::load(page(1)->u.f1.nr_pages_mapped) : 0; }
    void nr_pages_mapped_add(int n) { sync::fetch_add(page(1)->u.f1.nr_pages_mapped, n); }

    // folio_mapcount(): all mappings of any part of the folio.
    int mapcount() const { return is_large() ? large_mapcount() : sync::load(head()->mapcount); }
    bool mapped() const { return mapcount() > 0; }

    // folio_maybe_dma_pinned(): exact for large folios (the pincount), a
    // refcount heuristic with false positives for small ones.
    bool maybe_dma_pinned() const {
        if (is_large()) return pincount() > 0;
        return static_cast<unsigned>(ref_count()) >= static_cast<unsigned>(GUP_PIN_COUNTING_BIAS);
    }

    // --- PG_locked: folio_lock()/folio_unlock() --------------------------------
    void lock();
    bool trylock() { return !test_and_set(PG_locked); }
    void unlock() { clear(PG_locked); }
};

inline Folio* page_folio(Page* p) { return Folio::of(compound_head(p)); }
inline const Folio* page_folio(const Page* p) { return Folio::of(compound_head(p)); }

// RAII folio lock.
class FolioLockGuard {
public:
    explicit FolioLockGuard(Folio* f) : f_(f) { f_->lock(); }
    ~FolioLockGuard() { f_->unlock(); }
    FolioLockGuard(const FolioLockGuard&) = delete;
    FolioLockGuard& operator=(const FolioLockGuard&) = delete;

private:
    Folio* f_;
};

}  // namespace pl
