// pinlab — physical memory: the frame array, zones, the buddy allocator,
// CMA pageblocks, the hugetlb pool, ZONE_DEVICE pgmaps, I/O memory, the zero
// pages and frame contents. Behavioural reference: upstream mm/page_alloc.c
// (buddy, __rmqueue CMA balancing), mm/hugetlb.c (pool and reservations) and
// mm/memremap.c (pgmaps); the code is the model's own.
//
// Locking (all leaf locks, never nested except io_lock → buf_lock):
//   Zone::lock   free lists and free counters of one zone
//   huge_lock    the hugetlb pools
//   dev_lock     the pgmap table and the pgmaps' free bitmaps
//   io_lock      I/O memory ranges and their contents
//   buf_lock     the pool of 4 KiB content buffers
// No lock is held while a compactor hook or a pgmap's page_free runs.
//
// Page fields that other threads may read concurrently (flags, refcount,
// mapcount, compound_head, mapping/index, data) are always written through
// sync::store & co. The buddy links (lru.buddy) of a free
// block belong to the zone lock.
//
// Frame bytes are read and written as relaxed atomics (words where aligned),
// so that a CPU access racing with a "DMA" through a pin, which is legal on
// real hardware, is not a C++ data race (TSan-clean).
#include "mm/physmem.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cassert>
#include <cstring>
#include <map>

#if defined(__SANITIZE_ADDRESS__)
#define PL_PHYSMEM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PL_PHYSMEM_ASAN 1
#endif
#endif
#if defined(PL_PHYSMEM_ASAN)
#include <sanitizer/asan_interface.h>
#define PL_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define PL_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define PL_POISON(p, n) ((void)(p), (void)(n))
#define PL_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace pl {
namespace {

constexpr unsigned NR_CLASSES = 2;  // free lists per order: regular pageblocks, CMA pageblocks
constexpr unsigned CLS_REGULAR = 0;
constexpr unsigned CLS_CMA = 1;
constexpr uint32_t NO_PFN = PFN_LINK_NONE;
constexpr pfn_t BAD_PFN = ~pfn_t{0};

constexpr uint64_t flag(PageFlag f) { return 1ULL << f; }
constexpr uint64_t zone_bits(ZoneId z) { return static_cast<uint64_t>(z) << PAGE_ZONE_SHIFT; }
constexpr uint64_t order_bits(unsigned o) { return static_cast<uint64_t>(o) << PAGE_ORDER_SHIFT; }
constexpr uint64_t round_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

constexpr uint64_t kFrameWords = PAGE_SIZE / sizeof(uint64_t);
constexpr size_t kBuffersPerChunk = 64;  // 256 KiB per pool chunk

// The I/O space ends at a 52-bit physical address, as on x86-64.
constexpr pfn_t kIomemLimit = pfn_t{1} << (52 - PAGE_SHIFT);

// Set while this thread runs the compactor hook: allocations made by
// compaction itself (migration targets) do not compact again (upstream:
// PF_MEMALLOC stops direct compaction from recursing).
thread_local bool t_in_compaction = false;

// --- frame bytes as relaxed atomics ----------------------------------------

inline uint8_t byte_load(const uint8_t* p) {
    return std::atomic_ref<uint8_t>(*const_cast<uint8_t*>(p)).load(std::memory_order_relaxed);
}
inline void byte_store(uint8_t* p, uint8_t v) { std::atomic_ref<uint8_t>(*p).store(v, std::memory_order_relaxed); }
inline uint64_t word_load(const uint8_t* p) {
    return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(const_cast<uint8_t*>(p)))
        .load(std::memory_order_relaxed);
}
inline void word_store(uint8_t* p, uint64_t v) {
    std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(p)).store(v, std::memory_order_relaxed);
}

// frame (shared, 8-aligned base) → private buffer
void frame_load(void* dst, const uint8_t* src, size_t len) {
    auto* d = static_cast<uint8_t*>(dst);
    size_t i = 0;
    for (; i < len && (reinterpret_cast<uintptr_t>(src + i) & 7); ++i) d[i] = byte_load(src + i);
    for (; i + 8 <= len; i += 8) {
        uint64_t w = word_load(src + i);
        std::memcpy(d + i, &w, 8);
    }
    for (; i < len; ++i) d[i] = byte_load(src + i);
}

// private buffer → frame
void frame_store(uint8_t* dst, const void* src, size_t len) {
    const auto* s = static_cast<const uint8_t*>(src);
    size_t i = 0;
    for (; i < len && (reinterpret_cast<uintptr_t>(dst + i) & 7); ++i) byte_store(dst + i, s[i]);
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        std::memcpy(&w, s + i, 8);
        word_store(dst + i, w);
    }
    for (; i < len; ++i) byte_store(dst + i, s[i]);
}

// True when the caller's bytes are all zero (len > 0).
bool all_zero(const void* buf, size_t len) {
    const auto* b = static_cast<const uint8_t*>(buf);
    return b[0] == 0 && std::memcmp(b, b + 1, len - 1) == 0;
}

// frame → frame (both whole, 8-aligned)
void frame_copy(uint8_t* dst, const uint8_t* src) {
    for (size_t i = 0; i < PAGE_SIZE; i += 8) word_store(dst + i, word_load(src + i));
}

}  // namespace

// ---------------------------------------------------------------------------
// Impl: everything behind the interface
// ---------------------------------------------------------------------------

struct PhysMem::Impl {
    // ---- buddy allocator -----------------------------------------------------
    struct FreeList {
        uint32_t head = NO_PFN;
        uint32_t tail = NO_PFN;
    };
    struct Zone {
        ZoneId id = ZoneId::Normal;
        pfn_t start = 0;
        pfn_t end = 0;
        mutable sync::Spinlock lock;
        FreeList lists[MAX_ORDER + 1][NR_CLASSES] PL_GUARDED_BY(lock);
        uint64_t nr_free PL_GUARDED_BY(lock) = 0;      // all free pages of the zone
        uint64_t nr_free_cma PL_GUARDED_BY(lock) = 0;  // of which in CMA pageblocks
    };

    Page* pages = nullptr;
    uint64_t ram_pages = 0;
    uint64_t device_pages = 0;
    Zone zones[2];                      // indexed by ZoneId::Normal / ZoneId::Movable
    std::vector<uint8_t> pageblock_mt;  // MigrateType per RAM pageblock; fixed after create()

    // ---- hugetlb ---------------------------------------------------------------
    struct HugePool {
        std::vector<Folio*> free;  // refcount 0, PG_hugetlb, compound
        uint64_t nr = 0;
        uint64_t resv = 0;
    };
    mutable sync::Spinlock huge_lock;
    HugePool pools[2] PL_GUARDED_BY(huge_lock);

    // ---- ZONE_DEVICE -------------------------------------------------------------
    struct PgmapRec {
        std::unique_ptr<DevPagemap> pgmap;
        std::vector<uint64_t> used;  // bitmap: page handed out by pgmap_alloc (or given to ops)
        uint64_t nr_used = 0;
    };
    mutable sync::Spinlock dev_lock;
    std::vector<PgmapRec> pgmaps PL_GUARDED_BY(dev_lock);  // sorted by start_pfn

    // ---- I/O memory ------------------------------------------------------------------
    mutable sync::Spinlock io_lock;
    pfn_t io_base = 0;
    pfn_t io_top PL_GUARDED_BY(io_lock) = 0;                        // bump pointer
    std::map<pfn_t, uint64_t> io_used PL_GUARDED_BY(io_lock);       // start → nr_pages
    std::map<pfn_t, uint64_t> io_holes PL_GUARDED_BY(io_lock);      // freed ranges below io_top
    std::unordered_map<pfn_t, uint8_t*> io_data PL_GUARDED_BY(io_lock);

    // ---- content buffers ----------------------------------------------------------
    mutable sync::Spinlock buf_lock;
    std::vector<uint8_t*> buf_free PL_GUARDED_BY(buf_lock);
    std::vector<std::unique_ptr<uint64_t[]>> buf_chunks PL_GUARDED_BY(buf_lock);
    std::atomic<uint64_t> nr_buffers{0};

    ~Impl();

    Page* pg(pfn_t pfn) const { return pages + pfn; }
    ZoneId ram_zone(pfn_t pfn) const { return pfn >= zones[1].start ? ZoneId::Movable : ZoneId::Normal; }
    Zone& zone(ZoneId z) { return zones[static_cast<unsigned>(z)]; }
    const Zone& zone(ZoneId z) const { return zones[static_cast<unsigned>(z)]; }
    unsigned cls_of(pfn_t pfn) const {
        return pageblock_mt[pfn >> pageblock_order] == static_cast<uint8_t>(MigrateType::Cma) ? CLS_CMA
                                                                                             : CLS_REGULAR;
    }

    void list_add(Zone& z, pfn_t pfn, unsigned order, unsigned cls, bool to_tail) PL_REQUIRES(z.lock);
    void list_del(Zone& z, pfn_t pfn, unsigned order, unsigned cls) PL_REQUIRES(z.lock);
    pfn_t rmqueue_smallest(Zone& z, unsigned order, unsigned cls) PL_REQUIRES(z.lock);
    pfn_t rmqueue(ZoneId zid, unsigned order, bool movable);
    void free_block(pfn_t pfn, unsigned order);
    void seed_range(pfn_t start, pfn_t end);

    void prep_new_folio(pfn_t pfn, unsigned order, ZoneId z);
    void release_data(Page* p);
    void return_to_buddy(Folio* folio);

    uint8_t* buf_get();
    void buf_put(uint8_t* b);
    uint8_t* page_buf_for_write(Page* p);

    Folio* make_pool_folio(Folio* f);
    void reset_pool_folio(Folio* f);

    PgmapRec* find_rec(pfn_t pfn) PL_REQUIRES(dev_lock);
    static bool bits_free(const PgmapRec& r, uint64_t off, uint64_t n);
    static void bits_set(PgmapRec& r, uint64_t off, uint64_t n, bool v);
};

PhysMem::Impl::~Impl() {
    // Buffers still attached to frames are owned by their chunks.
    sync::SpinGuard g(buf_lock);
    for (auto& c : buf_chunks) PL_UNPOISON(c.get(), kBuffersPerChunk * PAGE_SIZE);
}

// --- free lists ------------------------------------------------------------------

void PhysMem::Impl::list_add(Zone& z, pfn_t pfn, unsigned order, unsigned cls, bool to_tail) {
    FreeList& fl = z.lists[order][cls];
    Page* p = pg(pfn);
    p->lru.buddy.order = order;
    if (to_tail) {
        p->lru.buddy.next = NO_PFN;
        p->lru.buddy.prev = fl.tail;
        if (fl.tail != NO_PFN) pg(fl.tail)->lru.buddy.next = static_cast<uint32_t>(pfn);
        else fl.head = static_cast<uint32_t>(pfn);
        fl.tail = static_cast<uint32_t>(pfn);
    } else {
        p->lru.buddy.prev = NO_PFN;
        p->lru.buddy.next = fl.head;
        if (fl.head != NO_PFN) pg(fl.head)->lru.buddy.prev = static_cast<uint32_t>(pfn);
        else fl.tail = static_cast<uint32_t>(pfn);
        fl.head = static_cast<uint32_t>(pfn);
    }
    sync::store(p->flags, zone_bits(z.id) | flag(PG_buddy), sync::memory_order_release);
    z.nr_free += 1ULL << order;
    if (cls == CLS_CMA) z.nr_free_cma += 1ULL << order;
}

void PhysMem::Impl::list_del(Zone& z, pfn_t pfn, unsigned order, unsigned cls) {
    FreeList& fl = z.lists[order][cls];
    Page* p = pg(pfn);
    if (p->lru.buddy.prev != NO_PFN) pg(p->lru.buddy.prev)->lru.buddy.next = p->lru.buddy.next;
    else fl.head = p->lru.buddy.next;
    if (p->lru.buddy.next != NO_PFN) pg(p->lru.buddy.next)->lru.buddy.prev = p->lru.buddy.prev;
    else fl.tail = p->lru.buddy.prev;
    p->lru.track = Page::RefTrack{0, 0};
    sync::store(p->flags, zone_bits(z.id), sync::memory_order_release);
    z.nr_free -= 1ULL << order;
    if (cls == CLS_CMA) z.nr_free_cma -= 1ULL << order;
}

// __rmqueue_smallest(): the smallest free block of at least `order`, split
// down; the upper halves go back to the free lists (expand()).
pfn_t PhysMem::Impl::rmqueue_smallest(Zone& z, unsigned order, unsigned cls) {
    for (unsigned o = order; o <= MAX_ORDER; ++o) {
        uint32_t head = z.lists[o][cls].head;
        if (head == NO_PFN) continue;
        pfn_t pfn = head;
        list_del(z, pfn, o, cls);
        while (o > order) {
            --o;
            list_add(z, pfn + (pfn_t{1} << o), o, cls, false);
        }
        return pfn;
    }
    return BAD_PFN;
}

// __rmqueue(): movable requests use CMA pageblocks first when they hold more
// than half of the zone's free pages, and fall back to them when the regular
// ones cannot serve the request; others never touch CMA.
pfn_t PhysMem::Impl::rmqueue(ZoneId zid, unsigned order, bool movable) {
    Zone& z = zone(zid);
    if (z.start == z.end) return BAD_PFN;
    sync::SpinGuard g(z.lock);
    if (z.nr_free < (1ULL << order)) return BAD_PFN;
    pfn_t pfn = BAD_PFN;
    if (movable && z.nr_free_cma > z.nr_free / 2) pfn = rmqueue_smallest(z, order, CLS_CMA);
    if (pfn == BAD_PFN) pfn = rmqueue_smallest(z, order, CLS_REGULAR);
    if (pfn == BAD_PFN && movable) pfn = rmqueue_smallest(z, order, CLS_CMA);
    return pfn;
}

// __free_one_page(): merge with free buddies of the same order, never across
// the zone's edges nor between CMA and regular pageblocks.
void PhysMem::Impl::free_block(pfn_t pfn, unsigned order) {
    ZoneId zid = ram_zone(pfn);
    Zone& z = zone(zid);
    unsigned cls = cls_of(pfn);
    sync::SpinGuard g(z.lock);
    while (order < MAX_ORDER) {
        pfn_t buddy = pfn ^ (pfn_t{1} << order);
        if (buddy < z.start || buddy + (pfn_t{1} << order) > z.end) break;
        if (cls_of(buddy) != cls) break;
        Page* b = pg(buddy);
        if (!(sync::load(b->flags, sync::memory_order_acquire) & flag(PG_buddy)) || b->lru.buddy.order != order) break;
        list_del(z, buddy, order, cls);
        pfn = std::min(pfn, buddy);
        ++order;
    }
    list_add(z, pfn, order, cls, false);
}

// Boot: [start, end) of one zone and one migratetype class becomes free as
// the largest naturally aligned blocks; only block heads are touched.
void PhysMem::Impl::seed_range(pfn_t start, pfn_t end) {
    if (start >= end) return;
    Zone& z = zone(ram_zone(start));
    unsigned cls = cls_of(start);
    sync::SpinGuard g(z.lock);
    pfn_t pfn = start;
    while (pfn < end) {
        unsigned order = MAX_ORDER;
        if (pfn) order = std::min<unsigned>(order, static_cast<unsigned>(std::countr_zero(pfn)));
        while ((pfn_t{1} << order) > end - pfn) --order;
        list_add(z, pfn, order, cls, true);
        pfn += pfn_t{1} << order;
    }
}

// prep_new_page() + prep_compound_page().
void PhysMem::Impl::prep_new_folio(pfn_t pfn, unsigned order, ZoneId z) {
    Page* head = pg(pfn);
    const unsigned long n = 1UL << order;
    const uint64_t zb = zone_bits(z);
    const uintptr_t tail_link = reinterpret_cast<uintptr_t>(head) | 1;
    constexpr auto relaxed = sync::memory_order_relaxed;
    for (unsigned long i = 0; i < n; ++i) {
        Page* p = head + i;
        if (sync::load(p->data, relaxed)) release_data(p);  // never expected: freed frames have no contents
        sync::store(p->refcount, 0, relaxed);
        sync::store(p->mapcount, 0, relaxed);
        if (i == 1) {
            sync::store(p->u.f1.pincount, 0, relaxed);
            sync::store(p->u.f1.entire_mapcount, 0, relaxed);
            sync::store(p->u.f1.large_mapcount, 0, relaxed);
            sync::store(p->u.f1.nr_pages_mapped, 0, relaxed);
        } else {
            sync::store(p->u.h.mapping, uintptr_t{0}, relaxed);
            sync::store(p->u.h.index, pgoff_t{0}, relaxed);
        }
        p->lru.track = Page::RefTrack{0, 0};
        if (i == 0) {
            sync::store(p->flags, zb | order_bits(order) | (order ? flag(PG_head) : 0), relaxed);
            sync::store(p->compound_head, uintptr_t{0}, relaxed);
        } else {
            sync::store(p->flags, zb, relaxed);
            sync::store(p->compound_head, tail_link, sync::memory_order_release);
        }
    }
    // Publish the count last: a speculative getter holding a stale pointer
    // sees 0 (and fails) until the folio is complete.
    sync::store(head->refcount, 1, sync::memory_order_release);
}

// --- contents buffers ---------------------------------------------------------------

uint8_t* PhysMem::Impl::buf_get() {
    uint8_t* b;
    {
        sync::SpinGuard g(buf_lock);
        if (buf_free.empty()) {
            // Not value-initialised: the chunk costs nothing until used.
            std::unique_ptr<uint64_t[]> chunk(new uint64_t[kBuffersPerChunk * kFrameWords]);
            auto* base = reinterpret_cast<uint8_t*>(chunk.get());
            PL_POISON(base, kBuffersPerChunk * PAGE_SIZE);
            buf_free.reserve(buf_free.size() + kBuffersPerChunk);
            for (size_t i = kBuffersPerChunk; i-- > 0;) buf_free.push_back(base + i * PAGE_SIZE);
            buf_chunks.push_back(std::move(chunk));
        }
        b = buf_free.back();
        buf_free.pop_back();
    }
    PL_UNPOISON(b, PAGE_SIZE);
    std::memset(b, 0, PAGE_SIZE);
    return b;
}

void PhysMem::Impl::buf_put(uint8_t* b) {
    PL_POISON(b, PAGE_SIZE);
    sync::SpinGuard g(buf_lock);
    buf_free.push_back(b);
}

// The frame's buffer, attached on first use. Two first writers race through
// a compare-exchange on Page::data; the loser returns its buffer.
uint8_t* PhysMem::Impl::page_buf_for_write(Page* p) {
    uint8_t* d = sync::load(p->data, sync::memory_order_acquire);
    if (d) return d;
    uint8_t* nb = buf_get();
    uint8_t* expected = nullptr;
    if (sync::compare_exchange(p->data, expected, nb, sync::memory_order_acq_rel)) {
        nr_buffers.fetch_add(1, std::memory_order_relaxed);
        return nb;
    }
    buf_put(nb);
    return expected;
}

void PhysMem::Impl::release_data(Page* p) {
    if (!sync::load(p->data, sync::memory_order_relaxed)) return;
    uint8_t* d = sync::exchange(p->data, static_cast<uint8_t*>(nullptr), sync::memory_order_acq_rel);
    if (!d) return;
    nr_buffers.fetch_sub(1, std::memory_order_relaxed);
    buf_put(d);
}

// free_pages_prepare() + __free_pages(): contents go, compound state goes,
// and the block returns to the buddy. Hardware-poisoned pages stay out of
// the allocator (upstream takes them off for good); their neighbours are
// freed one by one.
void PhysMem::Impl::return_to_buddy(Folio* folio) {
    Page* head = folio->head();
    const pfn_t pfn = static_cast<pfn_t>(head - pages);
    const unsigned order = folio->order();
    const unsigned long n = 1UL << order;
    const uint64_t zb = zone_bits(ram_zone(pfn));
    constexpr auto relaxed = sync::memory_order_relaxed;
    bool poisoned = false;
    for (unsigned long i = 0; i < n; ++i) {
        Page* p = head + i;
        release_data(p);
        uint64_t f = sync::load(p->flags, relaxed);
        bool hw = f & flag(PG_hwpoison);
        poisoned |= hw;
        sync::store(p->flags, zb | (hw ? flag(PG_hwpoison) : 0), relaxed);
        sync::store(p->compound_head, uintptr_t{0}, relaxed);
        sync::store(p->refcount, 0, relaxed);
        sync::store(p->mapcount, 0, relaxed);
        sync::store(p->u.h.mapping, uintptr_t{0}, relaxed);
        sync::store(p->u.h.index, pgoff_t{0}, relaxed);
        p->lru.track = Page::RefTrack{0, 0};
    }
    if (!poisoned) {
        free_block(pfn, order);
        return;
    }
    for (unsigned long i = 0; i < n; ++i)
        if (!(sync::load(head[i].flags, relaxed) & flag(PG_hwpoison))) free_block(pfn + i, 0);
}

// --- hugetlb pool folios ---------------------------------------------------------------

// A freshly allocated folio joins a pool: PG_hugetlb, refcount 0 (frozen).
Folio* PhysMem::Impl::make_pool_folio(Folio* f) {
    f->set(PG_hugetlb);
    sync::store(f->head()->refcount, 0, sync::memory_order_release);
    return f;
}

// A pool folio back from use: contents and per-use state go, the compound
// structure and PG_hugetlb stay.
void PhysMem::Impl::reset_pool_folio(Folio* f) {
    Page* head = f->head();
    const unsigned order = f->order();
    const unsigned long n = 1UL << order;
    const uint64_t zb = zone_bits(ram_zone(static_cast<pfn_t>(head - pages)));
    constexpr auto relaxed = sync::memory_order_relaxed;
    for (unsigned long i = 0; i < n; ++i) {
        Page* p = head + i;
        release_data(p);
        sync::store(p->mapcount, 0, relaxed);
        if (i == 0) {
            sync::store(p->u.h.mapping, uintptr_t{0}, relaxed);
            sync::store(p->u.h.index, pgoff_t{0}, relaxed);
            sync::store(p->flags, zb | order_bits(order) | flag(PG_head) | flag(PG_hugetlb), relaxed);
        } else {
            if (i == 1) {
                sync::store(p->u.f1.pincount, 0, relaxed);
                sync::store(p->u.f1.entire_mapcount, 0, relaxed);
                sync::store(p->u.f1.large_mapcount, 0, relaxed);
                sync::store(p->u.f1.nr_pages_mapped, 0, relaxed);
            }
            sync::store(p->flags, zb, relaxed);
        }
    }
    sync::store(head->refcount, 0, sync::memory_order_release);
}

// --- pgmap bitmaps ---------------------------------------------------------------------

PhysMem::Impl::PgmapRec* PhysMem::Impl::find_rec(pfn_t pfn) {
    auto it = std::upper_bound(pgmaps.begin(), pgmaps.end(), pfn,
                               [](pfn_t v, const PgmapRec& r) { return v < r.pgmap->start_pfn; });
    if (it == pgmaps.begin()) return nullptr;
    --it;
    if (pfn >= it->pgmap->start_pfn + it->pgmap->nr_pages) return nullptr;
    return &*it;
}

bool PhysMem::Impl::bits_free(const PgmapRec& r, uint64_t off, uint64_t n) {
    for (uint64_t i = off; i < off + n;) {
        if ((i & 63) == 0 && i + 64 <= off + n) {
            if (r.used[i >> 6]) return false;
            i += 64;
        } else {
            if (r.used[i >> 6] & (1ULL << (i & 63))) return false;
            ++i;
        }
    }
    return true;
}

void PhysMem::Impl::bits_set(PgmapRec& r, uint64_t off, uint64_t n, bool v) {
    for (uint64_t i = off; i < off + n; ++i) {
        if (v) r.used[i >> 6] |= 1ULL << (i & 63);
        else r.used[i >> 6] &= ~(1ULL << (i & 63));
    }
}

// ---------------------------------------------------------------------------
// Creation
// ---------------------------------------------------------------------------

Result<std::unique_ptr<PhysMem>> PhysMem::create(const Config& cfg) {
    constexpr uint64_t pb_bytes = pageblock_nr_pages * PAGE_SIZE;
    if (cfg.ram < pb_bytes || cfg.ram % pb_bytes || cfg.movable % pb_bytes || cfg.cma % pb_bytes ||
        cfg.device_mem % pb_bytes || cfg.movable + cfg.cma >= cfg.ram)
        return Error(EINVAL);
    const uint64_t ram_pages = cfg.ram >> PAGE_SHIFT;
    const uint64_t device_pages = cfg.device_mem >> PAGE_SHIFT;
    if (ram_pages + device_pages >= NO_PFN) return Error(EINVAL);  // links are 32-bit pfns

    std::unique_ptr<PhysMem> pm(new PhysMem());
    pm->impl_ = std::make_unique<Impl>();
    Impl& im = *pm->impl_;

    const size_t bytes = (ram_pages + device_pages) * sizeof(Page);
    void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) return Error(ENOMEM);
    pm->pages_ = static_cast<Page*>(mem);
    pm->ram_pages_ = ram_pages;
    pm->device_pages_ = device_pages;
    pm->iomem_base_ = round_up(ram_pages + device_pages, pfn_t{1} << PUD_ORDER);
    im.pages = pm->pages_;
    im.ram_pages = ram_pages;
    im.device_pages = device_pages;
    im.io_base = pm->iomem_base_;
    {
        sync::SpinGuard g(im.io_lock);
        im.io_top = pm->iomem_base_;
    }

    const pfn_t normal_end = (cfg.ram - cfg.movable) >> PAGE_SHIFT;
    const pfn_t cma_start = normal_end - (cfg.cma >> PAGE_SHIFT);
    im.zones[0].id = ZoneId::Normal;
    im.zones[0].start = 0;
    im.zones[0].end = normal_end;
    im.zones[1].id = ZoneId::Movable;
    im.zones[1].start = normal_end;
    im.zones[1].end = ram_pages;
    im.pageblock_mt.assign(ram_pages >> pageblock_order, static_cast<uint8_t>(MigrateType::Movable));
    for (pfn_t pb = cma_start >> pageblock_order; pb < (normal_end >> pageblock_order); ++pb)
        im.pageblock_mt[pb] = static_cast<uint8_t>(MigrateType::Cma);

    im.seed_range(0, cma_start);
    im.seed_range(cma_start, normal_end);
    im.seed_range(normal_end, ram_pages);

    // Boot-time hugetlb pages: gigantic first, as hugepagesz=1G hugepages=N
    // is processed before the fragmentation that 2 MiB pages cause. Best
    // effort, as upstream: the pool gets what ZONE_NORMAL can give.
    auto reserve_boot_pages = [&](HugeSize hs, uint64_t n) {
        unsigned order = huge_order(hs);
        for (uint64_t i = 0; i < n; ++i) {
            pfn_t pfn = im.rmqueue(ZoneId::Normal, order, false);
            if (pfn == BAD_PFN) break;
            im.prep_new_folio(pfn, order, ZoneId::Normal);
            Folio* f = im.make_pool_folio(Folio::of(im.pg(pfn)));
            sync::SpinGuard g(im.huge_lock);
            im.pools[static_cast<unsigned>(hs)].free.push_back(f);
            im.pools[static_cast<unsigned>(hs)].nr++;
        }
    };
    reserve_boot_pages(HugeSize::Size1G, cfg.hugetlb_1g);
    reserve_boot_pages(HugeSize::Size2M, cfg.hugetlb_2m);

    // The shared zero pages.
    pfn_t zpfn = im.rmqueue(ZoneId::Normal, 0, false);
    if (zpfn == BAD_PFN) return Error(ENOMEM);
    im.prep_new_folio(zpfn, 0, ZoneId::Normal);
    set_bit(im.pg(zpfn), PG_reserved);
    pm->zero_pfn_ = zpfn;
    pm->zero_folio_ = Folio::of(im.pg(zpfn));
    pfn_t hpfn = im.rmqueue(ZoneId::Normal, PMD_ORDER, false);
    if (hpfn != BAD_PFN) {
        im.prep_new_folio(hpfn, PMD_ORDER, ZoneId::Normal);
        for (unsigned long i = 0; i < pageblock_nr_pages; ++i) set_bit(im.pg(hpfn + i), PG_reserved);
        pm->huge_zero_folio_ = Folio::of(im.pg(hpfn));
    }
    return pm;
}

PhysMem::~PhysMem() {
    impl_.reset();  // content buffers and pgmaps
    if (pages_) munmap(pages_, (ram_pages_ + device_pages_) * sizeof(Page));
}

// ---------------------------------------------------------------------------
// The buddy allocator
// ---------------------------------------------------------------------------

Result<Folio*> PhysMem::alloc_folio(unsigned order, gfp_t gfp) {
    if (order > MAX_ORDER) return Error(ENOMEM);
    gfp = current_gfp_context(gfp);
    const bool movable = gfp & __GFP_MOVABLE;
    // The zonelist, highest zone first.
    ZoneId zl[2];
    unsigned nz = 0;
    if (movable) zl[nz++] = ZoneId::Movable;
    zl[nz++] = ZoneId::Normal;

    auto attempt = [&]() -> pfn_t {
        for (unsigned i = 0; i < nz; ++i) {
            pfn_t pfn = impl_->rmqueue(zl[i], order, movable);
            if (pfn != BAD_PFN) return pfn;
        }
        return BAD_PFN;
    };
    pfn_t pfn = attempt();
    if (pfn == BAD_PFN && !(gfp & __GFP_NORETRY) && compact_fn_ && !t_in_compaction) {
        // One direct-compaction pass over the zonelist; a zone that reports
        // progress is followed by a retry of the whole zonelist.
        t_in_compaction = true;
        for (unsigned i = 0; i < nz && pfn == BAD_PFN; ++i)
            if (compact_fn_(compact_ctx_, zl[i], order)) pfn = attempt();
        t_in_compaction = false;
    }
    if (pfn == BAD_PFN) return Error(ENOMEM);
    impl_->prep_new_folio(pfn, order, impl_->ram_zone(pfn));
    return Folio::of(pages_ + pfn);
}

Result<Folio*> PhysMem::cma_alloc_folio(unsigned order) {
    if (order > MAX_ORDER) return Error(ENOMEM);
    auto& z = impl_->zone(ZoneId::Normal);
    pfn_t pfn = BAD_PFN;
    {
        sync::SpinGuard g(z.lock);
        if (z.nr_free_cma >= (1ULL << order)) pfn = impl_->rmqueue_smallest(z, order, CLS_CMA);
    }
    if (pfn == BAD_PFN) return Error(ENOMEM);
    impl_->prep_new_folio(pfn, order, ZoneId::Normal);
    return Folio::of(pages_ + pfn);
}

Result<Folio*> PhysMem::alloc_folio_in(ZoneId zone, unsigned order, gfp_t gfp) {
    if (zone == ZoneId::Device) return Error(EINVAL);
    if (order > MAX_ORDER) return Error(ENOMEM);
    gfp = current_gfp_context(gfp);
    const bool movable = gfp & __GFP_MOVABLE;
    pfn_t pfn = impl_->rmqueue(zone, order, movable);
    if (pfn == BAD_PFN && !(gfp & __GFP_NORETRY) && compact_fn_ && !t_in_compaction) {
        t_in_compaction = true;
        if (compact_fn_(compact_ctx_, zone, order)) pfn = impl_->rmqueue(zone, order, movable);
        t_in_compaction = false;
    }
    if (pfn == BAD_PFN) return Error(ENOMEM);
    impl_->prep_new_folio(pfn, order, zone);
    return Folio::of(pages_ + pfn);
}

void PhysMem::free_folio(Folio* folio) {
    Page* head = folio->head();
    assert(owns(head) && !PageTail(head));
    const pfn_t pfn = page_to_pfn(head);
    const uint64_t f = sync::load(head->flags);
    if (f & flag(PG_reserved)) return;  // the zero pages and reserved frames are never freed
    if (f & flag(PG_buddy)) {
        assert(!"free_folio: double free of a free block");
        return;
    }
    if (free_fn_) free_fn_(free_ctx_, folio);

    if (pfn >= ram_pages_) {
        // ZONE_DEVICE: free_zone_device_folio().
        DevPagemap* pgmap = page_pgmap(head);
        if (!pgmap) return;
        const unsigned order = folio->order();
        const unsigned long n = 1UL << order;
        constexpr auto relaxed = sync::memory_order_relaxed;
        if (pgmap->ops) {
            // The driver owns the folio: it keeps its shape and contents
            // (an fsdax block still holds file data), loses its mapping
            // and per-use flags, and goes to ops->page_free.
            for (unsigned long i = 0; i < n; ++i) {
                Page* p = head + i;
                uint64_t keep = zone_bits(ZoneId::Device) |
                                (i == 0 ? (f & (PAGE_ORDER_MASK | flag(PG_head))) : 0);
                sync::store(p->flags, keep, relaxed);
                sync::store(p->mapcount, 0, relaxed);
                if (i == 1) {
                    sync::store(p->u.f1.pincount, 0, relaxed);
                    sync::store(p->u.f1.entire_mapcount, 0, relaxed);
                    sync::store(p->u.f1.large_mapcount, 0, relaxed);
                    sync::store(p->u.f1.nr_pages_mapped, 0, relaxed);
                } else if (i == 0) {
                    sync::store(p->u.h.mapping, uintptr_t{0}, relaxed);
                    sync::store(p->u.h.index, pgoff_t{0}, relaxed);
                }
            }
            pgmap->ops->page_free(*pgmap, folio);
            return;
        }
        // Back to the pgmap's own pool: the block dissolves, contents go.
        for (unsigned long i = 0; i < n; ++i) {
            Page* p = head + i;
            impl_->release_data(p);
            sync::store(p->flags, zone_bits(ZoneId::Device), relaxed);
            sync::store(p->compound_head, uintptr_t{0}, relaxed);
            sync::store(p->refcount, 0, relaxed);
            sync::store(p->mapcount, 0, relaxed);
            sync::store(p->u.h.mapping, uintptr_t{0}, relaxed);
            sync::store(p->u.h.index, pgoff_t{0}, relaxed);
            p->lru.track = Page::RefTrack{0, 0};
        }
        sync::SpinGuard g(impl_->dev_lock);
        if (Impl::PgmapRec* r = impl_->find_rec(pfn); r && r->pgmap.get() == pgmap) {
            Impl::bits_set(*r, pfn - pgmap->start_pfn, n, false);
            r->nr_used -= n;
        }
        return;
    }

    // free_page_is_bad(): a RAM folio freed while still in a page cache (a
    // reference was dropped that its holder still counts on, e.g. a
    // put_page() that ate a pin) would leave the cache pointing at a free
    // frame. Upstream's bad_page() says "Bad page state" and takes the
    // frame out of circulation; the model does the same, and keeps the
    // page cache's reference for it so that the cache (whose lookups would
    // otherwise spin on a refcount of zero) can still truncate it: the
    // frame is freed for good when truncation drops that reference.
    if (!(f & flag(PG_hugetlb)) && head->u.h.mapping && !folio->is_anon() && !(f & flag(PG_bad_page))) {
        sync::store(head->flags, f | flag(PG_bad_page));
        nr_bad_pages_.fetch_add(folio->nr_pages());
        folio->ref_add(1);
        if (bad_page_fn_) bad_page_fn_(bad_page_ctx_, pfn, "non-NULL mapping: freed while still in the page cache");
        return;
    }
    if (f & flag(PG_bad_page)) {
        sync::store(head->flags, f & ~flag(PG_bad_page));
        nr_bad_pages_.fetch_sub(folio->nr_pages());
        if (head->u.h.mapping && !folio->is_anon()) {
            folio->ref_add(1);  // still cached: keep it out of circulation
            sync::store(head->flags, f);
            nr_bad_pages_.fetch_add(folio->nr_pages());
            return;
        }
    }

    if (f & flag(PG_hugetlb)) {
        // free_huge_folio(): back to the pool, still compound. A poisoned
        // one is dissolved instead and the pool shrinks.
        const unsigned order = folio->order();
        const unsigned idx = order == PUD_ORDER ? 1 : 0;
        bool poisoned = false;
        for (unsigned long i = 0; i < folio->nr_pages() && !poisoned; ++i)
            poisoned = PageHWPoison(head + i);
        if (poisoned) {
            {
                sync::SpinGuard g(impl_->huge_lock);
                impl_->pools[idx].nr--;
            }
            folio->clear(PG_hugetlb);
            impl_->return_to_buddy(folio);
            return;
        }
        impl_->reset_pool_folio(folio);
        sync::SpinGuard g(impl_->huge_lock);
        impl_->pools[idx].free.push_back(folio);
        return;
    }

    impl_->return_to_buddy(folio);
}

uint64_t PhysMem::nr_bad_pages() const { return nr_bad_pages_.load(); }

std::vector<Folio*> PhysMem::folios_with_track() const {
    std::vector<Folio*> out;
    auto tracked = [](const Page* p) {
        return sync::load(p->lru.track.gup, sync::memory_order_relaxed) != 0 ||
               sync::load(p->lru.track.ledger, sync::memory_order_relaxed) != 0;
    };
    // Block by block: a free block is skipped by its buddy order, a folio by
    // its own; the zone lock keeps free blocks from changing under the walk.
    for (const auto& z : impl_->zones) {
        sync::SpinGuard g(z.lock);
        for (pfn_t pfn = z.start; pfn < z.end;) {
            const Page* p = pages_ + pfn;
            const uint64_t f = sync::load(p->flags, sync::memory_order_relaxed);
            if (f & flag(PG_buddy)) {
                pfn += 1ULL << p->lru.buddy.order;
            } else if (sync::load(p->compound_head, sync::memory_order_relaxed) & 1) {
                pfn += 1;  // a tail met out of step (a folio being split): its head was seen
            } else {
                if (tracked(p)) out.push_back(Folio::of(const_cast<Page*>(p)));
                pfn += (f & flag(PG_head)) ? 1ULL << ((f & PAGE_ORDER_MASK) >> PAGE_ORDER_SHIFT) : 1;
            }
        }
    }
    sync::SpinGuard g(impl_->dev_lock);
    for (const auto& r : impl_->pgmaps) {
        const DevPagemap& pm = *r.pgmap;
        for (pfn_t pfn = pm.start_pfn; pfn < pm.start_pfn + pm.nr_pages; ++pfn) {
            const Page* p = pages_ + pfn;
            if (!(sync::load(p->compound_head, sync::memory_order_relaxed) & 1) && tracked(p))
                out.push_back(Folio::of(const_cast<Page*>(p)));
        }
    }
    return out;
}

MigrateType PhysMem::pageblock_migratetype(pfn_t pfn) const {
    if (pfn >= ram_pages_) return MigrateType::Movable;
    return static_cast<MigrateType>(impl_->pageblock_mt[pfn >> pageblock_order]);
}

ZoneStats PhysMem::zone_stats(ZoneId z) const {
    ZoneStats s;
    if (z == ZoneId::Device) {
        // Device memory is not in the buddy: present = what pgmaps cover,
        // free = what their own pools can still hand out.
        sync::SpinGuard g(impl_->dev_lock);
        for (const auto& r : impl_->pgmaps) {
            s.present_pages += r.pgmap->nr_pages;
            s.free_pages += r.pgmap->nr_pages - r.nr_used;
        }
        return s;
    }
    const Impl::Zone& zn = impl_->zone(z);
    s.present_pages = zn.end - zn.start;
    sync::SpinGuard g(zn.lock);
    s.free_pages = zn.nr_free;
    s.free_cma_pages = zn.nr_free_cma;
    return s;
}

uint64_t PhysMem::nr_free_pages() const {
    uint64_t n = 0;
    for (const auto& z : impl_->zones) {
        sync::SpinGuard g(z.lock);
        n += z.nr_free;
    }
    return n;
}

uint64_t PhysMem::nr_allocated_pages() const { return ram_pages_ - nr_free_pages(); }

std::vector<std::pair<pfn_t, unsigned>> PhysMem::free_blocks(ZoneId zone) const {
    std::vector<std::pair<pfn_t, unsigned>> out;
    if (zone == ZoneId::Device) return out;
    const Impl::Zone& z = impl_->zone(zone);
    {
        sync::SpinGuard g(z.lock);
        for (unsigned o = 0; o <= MAX_ORDER; ++o)
            for (unsigned c = 0; c < NR_CLASSES; ++c)
                for (uint32_t pfn = z.lists[o][c].head; pfn != NO_PFN; pfn = impl_->pg(pfn)->lru.buddy.next)
                    out.emplace_back(pfn, o);
    }
    std::sort(out.begin(), out.end());
    return out;
}

// ---------------------------------------------------------------------------
// hugetlb
// ---------------------------------------------------------------------------

HugetlbStats PhysMem::hugetlb_stats(HugeSize s) const {
    sync::SpinGuard g(impl_->huge_lock);
    const Impl::HugePool& hp = impl_->pools[static_cast<unsigned>(s)];
    return HugetlbStats{hp.nr, hp.free.size(), hp.resv};
}

// dequeue_hugetlb_folio_vma(): without a reservation the caller may only
// take pages nobody has reserved.
Result<Folio*> PhysMem::hugetlb_alloc(HugeSize s, bool reserved) {
    Folio* f;
    {
        sync::SpinGuard g(impl_->huge_lock);
        Impl::HugePool& hp = impl_->pools[static_cast<unsigned>(s)];
        if (hp.free.empty()) return Error(ENOMEM);
        if (reserved && hp.resv > 0) hp.resv--;
        else if (hp.free.size() <= hp.resv) return Error(ENOMEM);
        f = hp.free.back();
        hp.free.pop_back();
    }
    sync::store(f->head()->refcount, 1, sync::memory_order_release);
    return f;
}

// hugetlb_acct_memory(): no overcommit (nr_overcommit_hugepages = 0).
Status PhysMem::hugetlb_reserve(HugeSize s, uint64_t n) {
    sync::SpinGuard g(impl_->huge_lock);
    Impl::HugePool& hp = impl_->pools[static_cast<unsigned>(s)];
    if (hp.free.size() < hp.resv || hp.free.size() - hp.resv < n) return Error(ENOMEM);
    hp.resv += n;
    return ok_status();
}

void PhysMem::hugetlb_unreserve(HugeSize s, uint64_t n) {
    sync::SpinGuard g(impl_->huge_lock);
    Impl::HugePool& hp = impl_->pools[static_cast<unsigned>(s)];
    hp.resv -= std::min(n, hp.resv);
}

// set_max_huge_pages(): grow from the buddy (ZONE_NORMAL, regular
// pageblocks, compaction allowed), shrink by dissolving free pages; pages in
// use or reserved keep the pool from shrinking further.
uint64_t PhysMem::hugetlb_set_pool(HugeSize s, uint64_t n) {
    const unsigned idx = static_cast<unsigned>(s);
    const unsigned order = huge_order(s);
    while (true) {
        {
            sync::SpinGuard g(impl_->huge_lock);
            if (impl_->pools[idx].nr >= n) break;
        }
        auto r = alloc_folio_in(ZoneId::Normal, order, GFP_KERNEL);
        if (!r) break;
        Folio* f = impl_->make_pool_folio(*r);
        sync::SpinGuard g(impl_->huge_lock);
        impl_->pools[idx].free.push_back(f);
        impl_->pools[idx].nr++;
    }
    std::vector<Folio*> dissolve;
    uint64_t nr;
    {
        sync::SpinGuard g(impl_->huge_lock);
        Impl::HugePool& hp = impl_->pools[idx];
        while (hp.nr > n && hp.free.size() > hp.resv) {
            dissolve.push_back(hp.free.back());
            hp.free.pop_back();
            hp.nr--;
        }
        nr = hp.nr;
    }
    for (Folio* f : dissolve) {
        f->clear(PG_hugetlb);
        impl_->return_to_buddy(f);
    }
    return nr;
}

// ---------------------------------------------------------------------------
// ZONE_DEVICE
// ---------------------------------------------------------------------------

// A ZONE_DEVICE page as memremap_pages() hands it out and memunmap_pages()
// leaves it: free (refcount 0), no contents, no mapping, zone bits only.
void PhysMem::reset_device_page(Page* p) {
    constexpr auto relaxed = sync::memory_order_relaxed;
    impl_->release_data(p);
    sync::store(p->refcount, 0, relaxed);
    sync::store(p->mapcount, 0, relaxed);
    sync::store(p->compound_head, uintptr_t{0}, relaxed);
    sync::store(p->u.h.mapping, uintptr_t{0}, relaxed);
    sync::store(p->u.h.index, pgoff_t{0}, relaxed);
    p->lru.track = Page::RefTrack{0, 0};
    sync::store(p->flags, zone_bits(ZoneId::Device), sync::memory_order_release);
}

Result<DevPagemap*> PhysMem::memremap_pages(PgmapType type, unsigned long nr_pages, DevPagemapOps* ops,
                                            void* owner) {
    if (nr_pages == 0 || nr_pages % pageblock_nr_pages) return Error(EINVAL);
    if (nr_pages > device_pages_) return Error(ENOMEM);
    // Ranges of 1 GiB and more are 1 GiB aligned when possible, so that the
    // pgmap can hand out PUD-sized folios.
    const pfn_t align = nr_pages >= (1UL << PUD_ORDER) ? (pfn_t{1} << PUD_ORDER) : pageblock_nr_pages;
    const pfn_t dev_end = ram_pages_ + device_pages_;
    DevPagemap* pgmap = nullptr;
    pfn_t start = BAD_PFN;
    {
        sync::SpinGuard g(impl_->dev_lock);
        auto& v = impl_->pgmaps;
        for (pfn_t a : {align, pfn_t{pageblock_nr_pages}}) {
            pfn_t cursor = ram_pages_;
            size_t pos = 0;
            for (; pos <= v.size(); ++pos) {
                pfn_t gap_end = pos < v.size() ? v[pos].pgmap->start_pfn : dev_end;
                pfn_t cand = round_up(cursor, a);
                if (cand + nr_pages <= gap_end) {
                    start = cand;
                    break;
                }
                if (pos < v.size()) cursor = v[pos].pgmap->start_pfn + v[pos].pgmap->nr_pages;
            }
            if (start != BAD_PFN) {
                Impl::PgmapRec rec;
                rec.pgmap = std::make_unique<DevPagemap>(DevPagemap{type, start, nr_pages, ops, owner});
                rec.used.assign((nr_pages + 63) / 64, 0);
                pgmap = rec.pgmap.get();
                v.insert(v.begin() + static_cast<ptrdiff_t>(pos), std::move(rec));
                break;
            }
        }
    }
    if (start == BAD_PFN) return Error(ENOMEM);
    // The range becomes ZONE_DEVICE pages, free (refcount 0).
    for (pfn_t pfn = start; pfn < start + nr_pages; ++pfn) reset_device_page(pages_ + pfn);
    return pgmap;
}

// memunmap_pages(): the caller has made sure no page is in use any more
// (upstream waits for the pgmap's references to drain).
void PhysMem::memunmap_pages(DevPagemap* pgmap) {
    if (!pgmap) return;
    Impl::PgmapRec rec;
    {
        sync::SpinGuard g(impl_->dev_lock);
        auto& v = impl_->pgmaps;
        auto it = std::find_if(v.begin(), v.end(), [&](const Impl::PgmapRec& r) { return r.pgmap.get() == pgmap; });
        if (it == v.end()) return;
        rec = std::move(*it);
        v.erase(it);
    }
    for (pfn_t pfn = pgmap->start_pfn; pfn < pgmap->start_pfn + pgmap->nr_pages; ++pfn)
        reset_device_page(pages_ + pfn);
}

DevPagemap* PhysMem::page_pgmap(const Page* p) const {
    if (!owns(p)) return nullptr;
    pfn_t pfn = page_to_pfn(p);
    if (pfn < ram_pages_) return nullptr;
    sync::SpinGuard g(impl_->dev_lock);
    Impl::PgmapRec* r = impl_->find_rec(pfn);
    return r ? r->pgmap.get() : nullptr;
}

Result<Folio*> PhysMem::pgmap_alloc(DevPagemap* pgmap, unsigned order) {
    if (!pgmap || order > MAX_ORDER) return Error(EINVAL);
    const uint64_t n = uint64_t{1} << order;
    pfn_t found = BAD_PFN;
    {
        sync::SpinGuard g(impl_->dev_lock);
        Impl::PgmapRec* r = impl_->find_rec(pgmap->start_pfn);
        if (!r || r->pgmap.get() != pgmap) return Error(EINVAL);
        if (n > pgmap->nr_pages - r->nr_used) return Error(ENOMEM);
        const pfn_t end = pgmap->start_pfn + pgmap->nr_pages;
        for (pfn_t pfn = round_up(pgmap->start_pfn, n); pfn + n <= end; pfn += n) {
            uint64_t off = pfn - pgmap->start_pfn;
            if (n == 1 && (off & 63) == 0 && off + 64 <= pgmap->nr_pages && r->used[off >> 6] == ~0ULL) {
                pfn += 63;  // skip a full word
                continue;
            }
            if (Impl::bits_free(*r, off, n)) {
                Impl::bits_set(*r, off, n, true);
                r->nr_used += n;
                found = pfn;
                break;
            }
        }
    }
    if (found == BAD_PFN) return Error(ENOMEM);
    impl_->prep_new_folio(found, order, ZoneId::Device);
    return Folio::of(pages_ + found);
}

// ---------------------------------------------------------------------------
// I/O memory
// ---------------------------------------------------------------------------

// Ranges are naturally aligned to the largest of 4 KiB, 2 MiB and 1 GiB that
// they cover, so BARs can be mapped with huge pfnmap entries.
Result<pfn_t> PhysMem::iomem_alloc(unsigned long nr_pages) {
    if (nr_pages == 0) return Error(EINVAL);
    const pfn_t align = nr_pages >= (1UL << PUD_ORDER)   ? (pfn_t{1} << PUD_ORDER)
                        : nr_pages >= (1UL << PMD_ORDER) ? (pfn_t{1} << PMD_ORDER)
                                                         : 1;
    Impl& im = *impl_;
    sync::SpinGuard g(im.io_lock);
    pfn_t start = BAD_PFN;
    for (auto it = im.io_holes.begin(); it != im.io_holes.end(); ++it) {
        pfn_t cand = round_up(it->first, align);
        if (cand + nr_pages > it->first + it->second) continue;
        start = cand;
        pfn_t hs = it->first, he = it->first + it->second;
        im.io_holes.erase(it);
        if (hs < cand) im.io_holes.emplace(hs, cand - hs);
        if (cand + nr_pages < he) im.io_holes.emplace(cand + nr_pages, he - (cand + nr_pages));
        break;
    }
    if (start == BAD_PFN) {
        pfn_t cand = round_up(im.io_top, align);
        if (cand > kIomemLimit || nr_pages > kIomemLimit - cand) return Error(ENOMEM);
        if (cand > im.io_top) im.io_holes.emplace(im.io_top, cand - im.io_top);
        start = cand;
        im.io_top = cand + nr_pages;
    }
    im.io_used.emplace(start, nr_pages);
    return start;
}

// Frees [start, start + nr_pages), which must lie inside one range that
// iomem_alloc() handed out; the rest of that range stays allocated.
void PhysMem::iomem_free(pfn_t start, unsigned long nr_pages) {
    if (nr_pages == 0) return;
    Impl& im = *impl_;
    std::vector<uint8_t*> bufs;
    {
        sync::SpinGuard g(im.io_lock);
        auto it = im.io_used.upper_bound(start);
        if (it == im.io_used.begin()) return;
        --it;
        const pfn_t rs = it->first, re = it->first + it->second, end = start + nr_pages;
        if (end > re || end < start) return;
        im.io_used.erase(it);
        if (rs < start) im.io_used.emplace(rs, start - rs);
        if (end < re) im.io_used.emplace(end, re - end);
        // Contents of the freed frames go.
        if (im.io_data.size() < nr_pages) {
            for (auto d = im.io_data.begin(); d != im.io_data.end();) {
                if (d->first >= start && d->first < end) {
                    bufs.push_back(d->second);
                    d = im.io_data.erase(d);
                } else {
                    ++d;
                }
            }
        } else {
            for (pfn_t pfn = start; pfn < end; ++pfn)
                if (auto d = im.io_data.find(pfn); d != im.io_data.end()) {
                    bufs.push_back(d->second);
                    im.io_data.erase(d);
                }
        }
        // The range becomes a hole, merged with its neighbours; holes at the
        // top give the space back to the bump pointer.
        pfn_t hs = start, he = end;
        if (auto nx = im.io_holes.find(he); nx != im.io_holes.end()) {
            he += nx->second;
            im.io_holes.erase(nx);
        }
        auto pv = im.io_holes.lower_bound(hs);
        if (pv != im.io_holes.begin()) {
            --pv;
            if (pv->first + pv->second == hs) {
                hs = pv->first;
                im.io_holes.erase(pv);
            }
        }
        if (he == im.io_top) im.io_top = hs;
        else im.io_holes.emplace(hs, he - hs);
    }
    for (uint8_t* b : bufs) {
        im.nr_buffers.fetch_sub(1, std::memory_order_relaxed);
        im.buf_put(b);
    }
}

bool PhysMem::is_iomem(pfn_t pfn) const {
    if (pfn < iomem_base_) return false;
    sync::SpinGuard g(impl_->io_lock);
    auto it = impl_->io_used.upper_bound(pfn);
    if (it == impl_->io_used.begin()) return false;
    --it;
    return pfn < it->first + it->second;
}

// ---------------------------------------------------------------------------
// Contents
// ---------------------------------------------------------------------------

Status PhysMem::read_frame(pfn_t pfn, unsigned off, void* buf, unsigned len) const {
    if (uint64_t{off} + len > PAGE_SIZE || (len && !buf)) return Error(EINVAL);
    if (pfn_valid(pfn)) {
        const uint8_t* d = sync::load(pages_[pfn].data, sync::memory_order_acquire);
        if (d) frame_load(buf, d + off, len);
        else if (len) std::memset(buf, 0, len);
        return ok_status();
    }
    if (pfn < iomem_base_) return Error(EFAULT);
    Impl& im = *impl_;
    sync::SpinGuard g(im.io_lock);
    auto it = im.io_used.upper_bound(pfn);
    if (it == im.io_used.begin() || pfn >= std::prev(it)->first + std::prev(it)->second) return Error(EFAULT);
    auto d = im.io_data.find(pfn);
    if (d != im.io_data.end()) frame_load(buf, d->second + off, len);
    else if (len) std::memset(buf, 0, len);
    return ok_status();
}

Status PhysMem::write_frame(pfn_t pfn, unsigned off, const void* buf, unsigned len) {
    if (uint64_t{off} + len > PAGE_SIZE || (len && !buf)) return Error(EINVAL);
    Impl& im = *impl_;
    if (pfn_valid(pfn)) {
        Page* p = pages_ + pfn;
        // The zero pages stay zero: a write to them is a model bug.
        if (is_any_zero_folio(page_folio(p))) return Error(EPERM);
        if (len == 0) return ok_status();
        // A frame without a buffer reads as zero: storing zeros changes no
        // byte, so none is attached (gup_test's pre-fault stores one zero
        // byte per freshly zeroed page; upstream's clear_page() already ran).
        if (!sync::load(p->data, sync::memory_order_acquire) && all_zero(buf, len)) return ok_status();
        frame_store(im.page_buf_for_write(p) + off, buf, len);
        return ok_status();
    }
    if (pfn < iomem_base_) return Error(EFAULT);
    sync::SpinGuard g(im.io_lock);
    auto it = im.io_used.upper_bound(pfn);
    if (it == im.io_used.begin() || pfn >= std::prev(it)->first + std::prev(it)->second) return Error(EFAULT);
    if (len == 0) return ok_status();
    uint8_t*& slot = im.io_data[pfn];
    if (!slot) {
        slot = im.buf_get();
        im.nr_buffers.fetch_add(1, std::memory_order_relaxed);
    }
    frame_store(slot + off, buf, len);
    return ok_status();
}

void PhysMem::copy_page(Page* dst, const Page* src) {
    if (dst == src || is_any_zero_folio(page_folio(dst))) return;
    const uint8_t* s = sync::load(src->data, sync::memory_order_acquire);
    if (!s) {
        impl_->release_data(dst);
        return;
    }
    frame_copy(impl_->page_buf_for_write(dst), s);
}

void PhysMem::move_page_contents(Page* dst, Page* src) {
    if (dst == src || is_any_zero_folio(page_folio(dst))) return;
    uint8_t* s = sync::load(src->data, sync::memory_order_acquire);
    if (s) s = sync::exchange(src->data, static_cast<uint8_t*>(nullptr), sync::memory_order_acq_rel);
    if (!s && !sync::load(dst->data, sync::memory_order_relaxed)) return;  // both zero
    uint8_t* old = sync::exchange(dst->data, s, sync::memory_order_acq_rel);
    if (old) {
        impl_->nr_buffers.fetch_sub(1, std::memory_order_relaxed);
        impl_->buf_put(old);
    }
}

void PhysMem::clear_page(Page* p) { impl_->release_data(p); }

uint64_t PhysMem::nr_data_buffers() const { return impl_->nr_buffers.load(std::memory_order_relaxed); }

}  // namespace pl
