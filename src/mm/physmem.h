// pinlab — physical memory: the frame array, zones, the buddy allocator,
// CMA pageblocks, the hugetlb pool, ZONE_DEVICE pgmaps, I/O memory without a
// struct page, the shared zero pages, and the bytes in every frame.
//
// Physical address space (pfns):
//   [0, ram_pages)                       RAM: ZONE_NORMAL, then ZONE_MOVABLE on top
//   [ram_pages, ram_pages + device_pages) ZONE_DEVICE, handed out by memremap_pages()
//   [iomem_base, ...)                     device I/O memory: pfn_valid() is false
//
// The Page array covers RAM and ZONE_DEVICE and lives in one MAP_NORESERVE
// mapping, so untouched metadata costs no real memory.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "base/config.h"
#include "base/result.h"
#include "base/sync/atomic.h"
#include "base/sync/spinlock.h"
#include "mm/folio.h"
#include "mm/gfp.h"

namespace pl {

// Buddy orders run up to a 1 GiB block, so gigantic hugetlb pages come
// straight from the buddy (upstream: alloc_contig_range / CMA).
inline constexpr unsigned MAX_ORDER = PUD_ORDER;

enum class MigrateType : uint8_t { Movable = 0, Cma = 1, Isolate = 2 };

enum class HugeSize : uint8_t { Size2M = 0, Size1G = 1 };
inline constexpr unsigned huge_order(HugeSize s) { return s == HugeSize::Size2M ? PMD_ORDER : PUD_ORDER; }

// MEMORY_DEVICE_* pgmap types that GUP distinguishes.
enum class PgmapType : uint8_t { Fsdax, DeviceCoherent, P2pdma, DevicePrivate, Generic };

struct DevPagemap;
// dev_pagemap_ops: called when a ZONE_DEVICE page's refcount drops to zero.
class DevPagemapOps {
public:
    virtual ~DevPagemapOps() = default;
    virtual void page_free(DevPagemap& pgmap, Folio* folio) = 0;
};

struct DevPagemap {
    PgmapType type;
    pfn_t start_pfn;
    unsigned long nr_pages;
    DevPagemapOps* ops;  // may be null: pages return to the pgmap's free pool
    void* owner;         // the driver or file system that created it
};

struct ZoneStats {
    uint64_t present_pages = 0;
    uint64_t free_pages = 0;
    uint64_t free_cma_pages = 0;
};

struct HugetlbStats {
    uint64_t nr = 0;    // nr_hugepages
    uint64_t free = 0;  // free_hugepages
    uint64_t resv = 0;  // resv_hugepages
};

class PhysMem {
public:
    static Result<std::unique_ptr<PhysMem>> create(const Config& cfg);
    ~PhysMem();
    PhysMem(const PhysMem&) = delete;
    PhysMem& operator=(const PhysMem&) = delete;

    // --- pfn <-> page ----------------------------------------------------------
    uint64_t ram_pages() const { return ram_pages_; }
    pfn_t device_base() const { return ram_pages_; }
    pfn_t iomem_base() const { return iomem_base_; }
    // pfn_valid(): the pfn has a struct page (RAM or ZONE_DEVICE).
    bool pfn_valid(pfn_t pfn) const { return pfn < ram_pages_ + device_pages_; }
    Page* pfn_to_page(pfn_t pfn) const { return pfn_valid(pfn) ? pages_ + pfn : nullptr; }
    pfn_t page_to_pfn(const Page* p) const { return static_cast<pfn_t>(p - pages_); }
    bool owns(const Page* p) const { return p >= pages_ && p < pages_ + ram_pages_ + device_pages_; }

    // --- the buddy allocator -----------------------------------------------------
    // A folio of 2^order pages: refcount 1, mapcounts 0, mapping NULL, contents
    // zero, compound if order > 0. -ENOMEM when no block fits; never throws.
    // Placement: __GFP_MOVABLE (after current_gfp_context) allocations try
    // ZONE_MOVABLE first, then ZONE_NORMAL, using CMA pageblocks there when
    // they hold more than half of the zone's free pages (as __rmqueue
    // balances); others take ZONE_NORMAL non-CMA blocks only. If nothing fits
    // and __GFP_NORETRY is clear, a compaction pass is tried once.
    Result<Folio*> alloc_folio(unsigned order, gfp_t gfp);
    // Allocate inside one zone only (migration targets, tests).
    Result<Folio*> alloc_folio_in(ZoneId zone, unsigned order, gfp_t gfp);
    // cma_alloc() reduced to one block: a folio of 2^order pages taken from
    // ZONE_NORMAL's MIGRATE_CMA pageblocks only (dma-buf's CMA heap). -ENOMEM
    // when the config has no CMA or no free CMA block of that order.
    Result<Folio*> cma_alloc_folio(unsigned order);
    // Called when a folio's refcount reaches zero: hugetlb folios go back to
    // their pool, ZONE_DEVICE folios to their pgmap (ops->page_free), others to
    // the buddy. Contents are released. Reserved pages are never freed.
    void free_folio(Folio* folio);
    // folio_put(): drop one reference and free on the last one.
    void folio_put(Folio* folio) {
        if (folio->ref_sub_and_test(1)) free_folio(folio);
    }
    void folio_put_refs(Folio* folio, int refs) {
        if (folio->ref_sub_and_test(refs)) free_folio(folio);
    }

    MigrateType pageblock_migratetype(pfn_t pfn) const;
    bool is_cma_page(const Page* p) const { return pageblock_migratetype(page_to_pfn(p)) == MigrateType::Cma; }
    ZoneStats zone_stats(ZoneId z) const;
    uint64_t nr_free_pages() const;
    uint64_t nr_allocated_pages() const;  // RAM pages handed out and not yet freed

    // Compaction hook: the migration layer installs a function that tries to
    // free a block of `order` in `zone` by moving movable folios away.
    using CompactFn = bool (*)(void* ctx, ZoneId zone, unsigned order);
    void set_compactor(CompactFn fn, void* ctx) { compact_fn_ = fn; compact_ctx_ = ctx; }

    // bad_page() reporter: the kernel installs a function that WARNs.
    using BadPageFn = void (*)(void* ctx, pfn_t pfn, const char* reason);
    void set_bad_page_reporter(BadPageFn fn, void* ctx) { bad_page_fn_ = fn; bad_page_ctx_ = ctx; }
    // Free hook: called as a folio's last reference goes, before its frames
    // return to the allocator (its bookkeeping words are reused there).
    using FreeFn = void (*)(void* ctx, Folio* folio);
    void set_free_hook(FreeFn fn, void* ctx) { free_fn_ = fn; free_ctx_ = ctx; }
    // The heads of allocated folios (RAM, hugetlb pools, ZONE_DEVICE) whose
    // bookkeeping words (Page::lru.track) are not zero; walks allocated and
    // free blocks, not every frame. For the invariant checker and leak scans.
    std::vector<Folio*> folios_with_track() const;
    // Frames taken out of circulation by bad_page().
    uint64_t nr_bad_pages() const;

        // Free block heads of `zone` within [start, end), for the compactor.
    // Walks only free-list heads (cheap).
    std::vector<std::pair<pfn_t, unsigned>> free_blocks(ZoneId zone) const;

    // --- hugetlb pool --------------------------------------------------------------
    HugetlbStats hugetlb_stats(HugeSize s) const;
    // Take a free huge folio (refcount 1, PG_hugetlb). -ENOMEM when none.
    // `reserved` says the caller holds a reservation for it.
    Result<Folio*> hugetlb_alloc(HugeSize s, bool reserved);
    // Reservations made at mmap (private) or per file range (shared).
    Status hugetlb_reserve(HugeSize s, uint64_t n);
    void hugetlb_unreserve(HugeSize s, uint64_t n);
    // Grow/shrink the pool (nr_hugepages); returns the new size.
    uint64_t hugetlb_set_pool(HugeSize s, uint64_t n);

    // --- zero pages ----------------------------------------------------------------
    Folio* zero_folio() const { return zero_folio_; }
    Folio* huge_zero_folio() const { return huge_zero_folio_; }  // null if none could be set up
    bool is_zero_pfn(pfn_t pfn) const { return pfn == zero_pfn_; }
    // is_zero_folio()/is_zero_page() upstream mean the 4 KiB shared zero page
    // only: GUP takes no pin on it (try_grab_folio(), gup_put_folio()). The
    // huge zero folio is is_huge_zero_folio(): pinned like any large folio.
    bool is_zero_folio(const Folio* f) const { return f && f == zero_folio_; }
    bool is_huge_zero_folio(const Folio* f) const { return f && f == huge_zero_folio_; }
    // Either zero folio: frames that stay zero, are never migrated, freed or
    // poisoned (what /proc/kpageflags reports as KPF_ZERO_PAGE).
    bool is_any_zero_folio(const Folio* f) const { return is_zero_folio(f) || is_huge_zero_folio(f); }

    // --- ZONE_DEVICE -----------------------------------------------------------------
    // memremap_pages(): carve nr_pages (a multiple of 512) out of device memory.
    // Pages start free (refcount 0). -ENOMEM when device memory is exhausted.
    Result<DevPagemap*> memremap_pages(PgmapType type, unsigned long nr_pages, DevPagemapOps* ops, void* owner);
    void memunmap_pages(DevPagemap* pgmap);
    DevPagemap* page_pgmap(const Page* p) const;
    // zone_device_page_init(): hand out a free page (order 0) or aligned block
    // of a pgmap with refcount 1. -ENOMEM when the pgmap is full.
    Result<Folio*> pgmap_alloc(DevPagemap* pgmap, unsigned order);

    // --- I/O memory (no struct page) ---------------------------------------------------
    // A range of pfns for device BARs and VRAM; contents are kept per pfn.
    Result<pfn_t> iomem_alloc(unsigned long nr_pages);
    void iomem_free(pfn_t start, unsigned long nr_pages);
    bool is_iomem(pfn_t pfn) const;

    // --- contents ----------------------------------------------------------------------
    // Reads and writes of a frame's bytes, for any pfn with contents (RAM,
    // ZONE_DEVICE or iomem). The frame's buffer is allocated on first write.
    // -EINVAL for a range crossing the frame, -EFAULT for a pfn that is not memory.
    Status read_frame(pfn_t pfn, unsigned off, void* buf, unsigned len) const;
    Status write_frame(pfn_t pfn, unsigned off, const void* buf, unsigned len);
    // copy_highpage(): dst's contents become src's.
    void copy_page(Page* dst, const Page* src);
    // folio_mc_copy() for migration, where src is frozen, unmapped and freed
    // next: dst's contents become src's by handing src's buffer over (no
    // bytes copied; src reads as zero afterwards, a bufferless src leaves
    // dst bufferless).
    void move_page_contents(Page* dst, Page* src);
    // Releases a page's buffer (contents become zero).
    void clear_page(Page* p);
    uint64_t nr_data_buffers() const;  // frames whose contents are materialised

private:
    PhysMem() = default;
    void reset_device_page(Page* p);
    struct Impl;
    std::unique_ptr<Impl> impl_;
    Page* pages_ = nullptr;
    uint64_t ram_pages_ = 0;
    uint64_t device_pages_ = 0;
    pfn_t iomem_base_ = 0;
    pfn_t zero_pfn_ = ~0ULL;
    Folio* zero_folio_ = nullptr;
    Folio* huge_zero_folio_ = nullptr;
    CompactFn compact_fn_ = nullptr;
    void* compact_ctx_ = nullptr;
    BadPageFn bad_page_fn_ = nullptr;
    FreeFn free_fn_ = nullptr;
    void* free_ctx_ = nullptr;
    void* bad_page_ctx_ = nullptr;
    sync::Atomic<uint64_t> nr_bad_pages_{0};
};

}  // namespace pl
