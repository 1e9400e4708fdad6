// pinlab — struct page: the 64-byte metadata record of one 4 KiB frame.
//
// Upstream overlays struct folio on the first pages of a compound page; so do
// we: a folio's head is an ordinary Page, and large-folio fields (_pincount,
// _entire_mapcount, _large_mapcount, _nr_pages_mapped) live in page[1], the
// first tail, as upstream keeps them there.
//
// The record is plain data in a zero-filled mapping (so 64 GiB of simulated
// RAM costs nothing until touched): all concurrent access goes through
// sync::load/store/fetch_* (std::atomic_ref). Counts are stored 0-based
// (upstream stores _mapcount as -1-based); the accessors return what
// page_mapcount() and friends return upstream.
#pragma once

#include <cstdint>

#include "base/sync/atomic.h"
#include "base/units.h"

namespace pl {

// Page flags (PG_*), bits of Page::flags.
enum PageFlag : unsigned {
    PG_locked = 0,
    PG_referenced,
    PG_uptodate,
    PG_dirty,
    PG_lru,
    PG_head,          // first page of a large folio
    PG_active,
    PG_writeback,
    PG_reserved,      // never freed to the allocator (zero page, pfnmap device frames)
    PG_private,
    PG_swapbacked,    // anon or shmem
    PG_hwpoison,      // memory failure: access gives SIGBUS / -EHWPOISON
    PG_anon_exclusive,// PageAnonExclusive: only this process maps it, writable without COW
    PG_mlocked,
    PG_buddy,         // free, in the buddy allocator (head of a free block)
    PG_hugetlb,       // folio belongs to the hugetlb pool
    PG_isolated,      // taken off the LRU for migration
    PG_secretmem,     // removed from the direct map (memfd_secret)
    PG_large_rmappable,
    PG_soft_offline,
    PG_readahead,     // read-ahead marker (upstream shares the bit with PG_reclaim): a hit starts async readahead
    PG_pfn_inserted,  // model-only: mapped by vmf_insert_pfn*() with no reference held (seed 003)
    PG_bad_page,      // model-only: bad_page() took the frame out of circulation (see PhysMem::free_folio)
    PG__count
};

enum class ZoneId : uint8_t { Normal = 0, Movable = 1, Device = 2 };

// Layout of the flags word above the PG_ bits.
inline constexpr unsigned PAGE_ORDER_SHIFT = 48;  // folio order, head pages only
inline constexpr uint64_t PAGE_ORDER_MASK = 0xffULL << PAGE_ORDER_SHIFT;
inline constexpr unsigned PAGE_ZONE_SHIFT = 56;
inline constexpr uint64_t PAGE_ZONE_MASK = 0x7ULL << PAGE_ZONE_SHIFT;

inline constexpr uint32_t PFN_LINK_NONE = 0xffffffffu;

struct Page {
    uint64_t flags;          // PG_* bits | order | zone
    int32_t refcount;        // _refcount (on the head for a large folio)
    int32_t mapcount;        // per-page PTE mappings, 0-based (upstream _mapcount + 1)
    uintptr_t compound_head; // tail pages: head address | 1; otherwise 0

    struct HeadFields {      // small page or head of a large folio
        uintptr_t mapping;   // AddressSpace*, or AnonVma* | PAGE_MAPPING_ANON
        pgoff_t index;       // page-cache index, or linear anon index
    };
    struct Folio1Fields {    // page[1] of a large folio
        int32_t pincount;        // _pincount: FOLL_PIN pins of the folio
        int32_t entire_mapcount; // PMD/PUD mappings, 0-based
        int32_t large_mapcount;  // all mappings of any part, 0-based
        int32_t nr_pages_mapped; // subpages with a PTE mapping
    };
    union {
        HeadFields h;
        Folio1Fields f1;
    } u;

    uint8_t* data;           // the frame's bytes; nullptr means all zero

    // A free block's head (PG_buddy): the buddy allocator's links. Any other
    // page: the model's own bookkeeping of references that no page table or
    // page cache accounts for, kept on the folio's head (no upstream field;
    // it takes the place of the lru links an allocated folio leaves free).
    struct BuddyLinks {
        uint32_t next;       // free-list links, as pfns (PFN_LINK_NONE = none)
        uint32_t prev;
        uint64_t order;      // buddy order of the free block
    };
    struct RefTrack {
        uint64_t gup;        // the pin tracker's word (src/debug/pin_tracker.cpp)
        int64_t ledger;      // Kernel::ref_note(): drivers' and get_page() references
    };
    union {
        BuddyLinks buddy;
        RefTrack track;
    } lru;
};
static_assert(sizeof(Page) == 64, "struct page must stay 64 bytes (issue 7 memory target)");

inline constexpr uintptr_t PAGE_MAPPING_ANON = 1;

// --- flag helpers (atomic) ---------------------------------------------------

inline bool test_bit(const Page* p, PageFlag f) {
    return sync::load(p->flags, sync::memory_order_acquire) & (1ULL << f);
}
inline void set_bit(Page* p, PageFlag f) { sync::fetch_or(p->flags, 1ULL << f); }
inline void clear_bit(Page* p, PageFlag f) { sync::fetch_and(p->flags, ~(1ULL << f)); }
inline bool test_and_set_bit(Page* p, PageFlag f) {
    return sync::fetch_or(p->flags, 1ULL << f) & (1ULL << f);
}
inline bool test_and_clear_bit(Page* p, PageFlag f) {
    return sync::fetch_and(p->flags, ~(1ULL << f)) & (1ULL << f);
}

inline bool PageTail(const Page* p) { return sync::load(p->compound_head, sync::memory_order_acquire) & 1; }
inline Page* compound_head(Page* p) {
    uintptr_t h = sync::load(p->compound_head, sync::memory_order_acquire);
    return (h & 1) ? reinterpret_cast<Page*>(h - 1) : p;
}
inline const Page* compound_head(const Page* p) { return compound_head(const_cast<Page*>(p)); }

inline ZoneId page_zone_id(const Page* p) {
    return static_cast<ZoneId>((sync::peek(p->flags) & PAGE_ZONE_MASK) >> PAGE_ZONE_SHIFT);
}

// PageAnonExclusive and friends are per page (the head for PMD-mapped folios).
inline bool PageAnonExclusive(const Page* p) { return test_bit(p, PG_anon_exclusive); }
inline void SetPageAnonExclusive(Page* p) { set_bit(p, PG_anon_exclusive); }
inline void ClearPageAnonExclusive(Page* p) { clear_bit(p, PG_anon_exclusive); }
inline bool PageHWPoison(const Page* p) { return test_bit(p, PG_hwpoison); }
inline bool PageReserved(const Page* p) { return test_bit(p, PG_reserved); }

// page_mapcount(): PTE mappings of this page plus, for a large folio,
// the mappings of the whole folio (upstream's definition before 6.12).
int page_mapcount(const Page* p);

}  // namespace pl
