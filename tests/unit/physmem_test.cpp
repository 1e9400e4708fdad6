// White-box tests of src/mm/physmem: the buddy allocator, zones and CMA,
// folio prep, hugetlb pool, zero pages, ZONE_DEVICE, I/O memory, contents.
#include "mm/physmem.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <unistd.h>
#include <vector>

namespace pl {
namespace {

std::unique_ptr<PhysMem> make(const char* text) {
    auto cfg = Config::parse(text);
    EXPECT_TRUE(cfg.ok()) << Config::last_error();
    if (!cfg.ok()) return nullptr;
    auto pm = PhysMem::create(*cfg);
    EXPECT_TRUE(pm.ok());
    if (!pm.ok()) return nullptr;
    return std::move(*pm);
}

pfn_t pfn_of(const PhysMem& pm, const Folio* f) { return pm.page_to_pfn(f->head()); }

uint64_t rss_bytes() {
    FILE* f = std::fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long size = 0, resident = 0;
    if (std::fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
    std::fclose(f);
    return static_cast<uint64_t>(resident) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

// ---------------------------------------------------------------------------
// Creation and layout
// ---------------------------------------------------------------------------

TEST(PhysMem, CreateLayout) {
    auto pm = make("ram=256M movable=64M cma=32M device_mem=16M hugetlb_2m=0 hugetlb_1g=0");
    ASSERT_TRUE(pm);
    EXPECT_EQ(pm->ram_pages(), 65536u);
    EXPECT_EQ(pm->device_base(), 65536u);
    EXPECT_GE(pm->iomem_base(), 65536u + 4096u);
    EXPECT_EQ(pm->iomem_base() % (1u << 18), 0u);
    EXPECT_TRUE(pm->pfn_valid(0));
    EXPECT_TRUE(pm->pfn_valid(65536 + 4095));
    EXPECT_FALSE(pm->pfn_valid(65536 + 4096));
    EXPECT_EQ(pm->pfn_to_page(65536 + 4096), nullptr);
    Page* p = pm->pfn_to_page(1234);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(pm->page_to_pfn(p), 1234u);
    EXPECT_TRUE(pm->owns(p));

    ZoneStats n = pm->zone_stats(ZoneId::Normal);
    ZoneStats m = pm->zone_stats(ZoneId::Movable);
    EXPECT_EQ(n.present_pages, 49152u);
    EXPECT_EQ(m.present_pages, 16384u);
    EXPECT_EQ(n.free_cma_pages, 8192u);
    EXPECT_EQ(m.free_pages, 16384u);
    EXPECT_EQ(m.free_cma_pages, 0u);
    // Only the zero pages are allocated.
    EXPECT_EQ(pm->nr_allocated_pages(), 1u + 512u);
    EXPECT_EQ(pm->nr_free_pages(), 65536u - 513u);
    EXPECT_EQ(n.free_pages + m.free_pages, pm->nr_free_pages());

    EXPECT_EQ(pm->pageblock_migratetype(0), MigrateType::Movable);
    EXPECT_EQ(pm->pageblock_migratetype(40960 - 1), MigrateType::Movable);
    EXPECT_EQ(pm->pageblock_migratetype(40960), MigrateType::Cma);
    EXPECT_EQ(pm->pageblock_migratetype(49151), MigrateType::Cma);
    EXPECT_EQ(pm->pageblock_migratetype(49152), MigrateType::Movable);

    // Free blocks are naturally aligned and stay inside their zone and class.
    for (ZoneId z : {ZoneId::Normal, ZoneId::Movable}) {
        for (auto [pfn, order] : pm->free_blocks(z)) {
            EXPECT_EQ(pfn % (1ULL << order), 0u);
            pfn_t last = pfn + (1ULL << order) - 1;
            if (z == ZoneId::Normal) EXPECT_LT(last, 49152u);
            else EXPECT_GE(pfn, 49152u);
            EXPECT_EQ(pm->pageblock_migratetype(pfn), pm->pageblock_migratetype(last));
            EXPECT_TRUE(test_bit(pm->pfn_to_page(pfn), PG_buddy));
        }
    }
}

TEST(PhysMem, CreateRejectsBadConfig) {
    Config c;
    c.ram = 3 << 20;  // not a multiple of 2M
    EXPECT_FALSE(PhysMem::create(c).ok());
    c.ram = 64 << 20;
    c.movable = 64 << 20;
    EXPECT_FALSE(PhysMem::create(c).ok());
}

// ---------------------------------------------------------------------------
// Buddy allocator
// ---------------------------------------------------------------------------

TEST(PhysMem, AllocFreeEveryOrder) {
    auto pm = make("ram=2G hugetlb_2m=0 hugetlb_1g=0 device_mem=0");
    ASSERT_TRUE(pm);
    const uint64_t free0 = pm->nr_free_pages();
    const auto blocks0 = pm->free_blocks(ZoneId::Normal);
    for (unsigned order = 0; order <= MAX_ORDER; ++order) {
        auto r = pm->alloc_folio(order, GFP_KERNEL);
        ASSERT_TRUE(r.ok()) << "order " << order;
        Folio* f = *r;
        EXPECT_EQ(f->order(), order);
        EXPECT_EQ(f->nr_pages(), 1UL << order);
        EXPECT_EQ(pfn_of(*pm, f) % (1ULL << order), 0u);
        EXPECT_EQ(pm->nr_free_pages(), free0 - (1ULL << order));
        EXPECT_EQ(pm->nr_allocated_pages(), pm->ram_pages() - free0 + (1ULL << order));
        pm->folio_put(f);
        EXPECT_EQ(pm->nr_free_pages(), free0);
    }
    EXPECT_EQ(pm->free_blocks(ZoneId::Normal), blocks0);

    // Orders 0..17 held at once (2^18 - 1 pages: more than the first 1 GiB
    // block has left beside the zero pages), then freed in reverse.
    std::vector<Folio*> held;
    uint64_t total = 0;
    for (unsigned order = 0; order < MAX_ORDER; ++order) {
        auto r = pm->alloc_folio(order, order % 2 ? GFP_HIGHUSER_MOVABLE : GFP_KERNEL);
        ASSERT_TRUE(r.ok()) << "order " << order;
        held.push_back(*r);
        total += 1ULL << order;
    }
    EXPECT_EQ(pm->nr_free_pages(), free0 - total);
    // No two folios overlap.
    std::vector<std::pair<pfn_t, pfn_t>> ranges;
    for (Folio* f : held) ranges.emplace_back(pfn_of(*pm, f), pfn_of(*pm, f) + f->nr_pages());
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i) EXPECT_LE(ranges[i - 1].second, ranges[i].first);
    std::reverse(held.begin(), held.end());
    for (Folio* f : held) pm->folio_put(f);
    EXPECT_EQ(pm->nr_free_pages(), free0);
    EXPECT_EQ(pm->free_blocks(ZoneId::Normal), blocks0);
    EXPECT_FALSE(pm->alloc_folio(MAX_ORDER + 1, GFP_KERNEL).ok());
}

TEST(PhysMem, CoalescesInAnyFreeOrder) {
    auto pm = make("ram=128M movable=32M cma=16M hugetlb_2m=0 hugetlb_1g=0 device_mem=0");
    ASSERT_TRUE(pm);
    const auto n0 = pm->free_blocks(ZoneId::Normal);
    const auto m0 = pm->free_blocks(ZoneId::Movable);
    std::mt19937 rng(42);
    std::vector<Folio*> held;
    for (int i = 0; i < 3000; ++i) {
        unsigned order = rng() % 4 == 0 ? rng() % 6 : 0;
        auto r = pm->alloc_folio(order, rng() % 2 ? GFP_HIGHUSER_MOVABLE : GFP_KERNEL);
        ASSERT_TRUE(r.ok());
        held.push_back(*r);
    }
    std::shuffle(held.begin(), held.end(), rng);
    for (Folio* f : held) pm->folio_put(f);
    EXPECT_EQ(pm->free_blocks(ZoneId::Normal), n0);
    EXPECT_EQ(pm->free_blocks(ZoneId::Movable), m0);
}

TEST(PhysMem, SplitSubpagesFreedOneByOne) {
    // What split_folio() does: a large folio becomes order-0 pages, each
    // freed on its own; they coalesce back into one block.
    auto pm = make("ram=64M hugetlb_2m=0 hugetlb_1g=0 device_mem=0");
    ASSERT_TRUE(pm);
    const auto b0 = pm->free_blocks(ZoneId::Normal);
    Folio* f = *pm->alloc_folio(4, GFP_KERNEL);
    for (unsigned long i = 0; i < 16; ++i) {
        Page* p = f->page(i);
        sync::store(p->compound_head, uintptr_t{0});
        sync::store(p->flags, sync::load(p->flags) & PAGE_ZONE_MASK);
        sync::store(p->refcount, 1);
    }
    for (unsigned long i = 16; i-- > 0;) pm->folio_put(Folio::of(pm->pfn_to_page(pfn_of(*pm, f) + i)));
    EXPECT_EQ(pm->free_blocks(ZoneId::Normal), b0);
}

TEST(PhysMem, ZonePlacement) {
    auto pm = make("ram=256M movable=64M hugetlb_2m=0 hugetlb_1g=0 device_mem=0");
    ASSERT_TRUE(pm);
    const pfn_t normal_end = 49152;
    auto mov = pm->alloc_folio(0, GFP_HIGHUSER_MOVABLE);
    ASSERT_TRUE(mov.ok());
    EXPECT_GE(pfn_of(*pm, *mov), normal_end);
    EXPECT_EQ((*mov)->zone(), ZoneId::Movable);
    EXPECT_EQ(page_zone_id((*mov)->head()), ZoneId::Movable);

    auto unmov = pm->alloc_folio(0, GFP_KERNEL);
    ASSERT_TRUE(unmov.ok());
    EXPECT_LT(pfn_of(*pm, *unmov), normal_end);
    EXPECT_EQ((*unmov)->zone(), ZoneId::Normal);

    auto thp = pm->alloc_folio(PMD_ORDER, GFP_TRANSHUGE);
    ASSERT_TRUE(thp.ok());
    EXPECT_EQ((*thp)->zone(), ZoneId::Movable);
    for (unsigned long i = 0; i < (*thp)->nr_pages(); ++i)
        EXPECT_EQ(page_zone_id((*thp)->page(i)), ZoneId::Movable);

    // memalloc_pin_save(): movable requests become unmovable, nested too.
    EXPECT_FALSE(MemallocPinScope::active());
    EXPECT_EQ(current_gfp_context(GFP_HIGHUSER_MOVABLE), GFP_HIGHUSER_MOVABLE);
    {
        MemallocPinScope outer;
        EXPECT_TRUE(MemallocPinScope::active());
        EXPECT_EQ(current_gfp_context(GFP_TRANSHUGE), GFP_TRANSHUGE & ~__GFP_MOVABLE);
        {
            MemallocPinScope inner;
            auto r = pm->alloc_folio(0, GFP_HIGHUSER_MOVABLE);
            ASSERT_TRUE(r.ok());
            EXPECT_EQ((*r)->zone(), ZoneId::Normal);
            pm->folio_put(*r);
        }
        EXPECT_TRUE(MemallocPinScope::active());
        auto r = pm->alloc_folio(0, GFP_HIGHUSER_MOVABLE);
        ASSERT_TRUE(r.ok());
        EXPECT_EQ((*r)->zone(), ZoneId::Normal);
        pm->folio_put(*r);
        // Other threads are not affected.
        std::thread([&] {
            EXPECT_FALSE(MemallocPinScope::active());
            auto r2 = pm->alloc_folio(0, GFP_HIGHUSER_MOVABLE);
            ASSERT_TRUE(r2.ok());
            EXPECT_EQ((*r2)->zone(), ZoneId::Movable);
            pm->folio_put(*r2);
        }).join();
    }
    EXPECT_FALSE(MemallocPinScope::active());

    // alloc_folio_in() stays in its zone.
    auto in_mov = pm->alloc_folio_in(ZoneId::Movable, 3, GFP_KERNEL);
    ASSERT_TRUE(in_mov.ok());
    EXPECT_EQ((*in_mov)->zone(), ZoneId::Movable);
    auto in_norm = pm->alloc_folio_in(ZoneId::Normal, 3, GFP_HIGHUSER_MOVABLE);
    ASSERT_TRUE(in_norm.ok());
    EXPECT_EQ((*in_norm)->zone(), ZoneId::Normal);
    EXPECT_EQ(pm->alloc_folio_in(ZoneId::Device, 0, GFP_KERNEL).error(), Error(EINVAL));

    for (Folio* f : {*mov, *unmov, *thp, *in_mov, *in_norm}) pm->folio_put(f);

    // Movable requests fall back to ZONE_NORMAL once ZONE_MOVABLE is full.
    std::vector<Folio*> held;
    while (pm->zone_stats(ZoneId::Movable).free_pages) {
        auto r = pm->alloc_folio(PMD_ORDER, GFP_HIGHUSER_MOVABLE);
        ASSERT_TRUE(r.ok());
        ASSERT_EQ((*r)->zone(), ZoneId::Movable);
        held.push_back(*r);
    }
    auto fb = pm->alloc_folio(0, GFP_HIGHUSER_MOVABLE);
    ASSERT_TRUE(fb.ok());
    EXPECT_EQ((*fb)->zone(), ZoneId::Normal);
    EXPECT_EQ(pm->alloc_folio_in(ZoneId::Movable, 0, GFP_HIGHUSER_MOVABLE).error(), Error(ENOMEM));
    pm->folio_put(*fb);
    for (Folio* f : held) pm->folio_put(f);
    EXPECT_EQ(pm->zone_stats(ZoneId::Movable).free_pages, 16384u);
}

TEST(PhysMem, UnmovableNeverUsesMovableZone) {
    auto pm = make("ram=128M movable=64M hugetlb_2m=0 hugetlb_1g=0 device_mem=0");
    ASSERT_TRUE(pm);
    std::vector<Folio*> held;
    while (true) {
        auto r = pm->alloc_folio(0, GFP_KERNEL);
        if (!r) {
            EXPECT_EQ(r.error(), Error(ENOMEM));
            break;
        }
        ASSERT_EQ((*r)->zone(), ZoneId::Normal);
        held.push_back(*r);
    }
    EXPECT_EQ(pm->zone_stats(ZoneId::Normal).free_pages, 0u);
    EXPECT_EQ(pm->zone_stats(ZoneId::Movable).free_pages, 16384u);
    for (Folio* f : held) pm->folio_put(f);
}

TEST(PhysMem, CmaBalancing) {
    auto pm = make("ram=256M cma=64M hugetlb_2m=0 hugetlb_1g=0 device_mem=0");
    ASSERT_TRUE(pm);
    EXPECT_EQ(pm->zone_stats(ZoneId::Normal).free_cma_pages, 16384u);
    // CMA holds less than half of the free pages: movable requests take
    // regular pageblocks.
    auto m1 = pm->alloc_folio(0, GFP_HIGHUSER_MOVABLE);
    ASSERT_TRUE(m1.ok());
    EXPECT_FALSE(pm->is_cma_page((*m1)->head()));

    // Unmovable requests never touch CMA, even when nothing else is left.
    std::vector<Folio*> held;
    while (true) {
        ZoneStats s = pm->zone_stats(ZoneId::Normal);
        if (s.free_cma_pages > s.free_pages / 2) break;
        auto r = pm->alloc_folio(PMD_ORDER, GFP_KERNEL);
        ASSERT_TRUE(r.ok());
        ASSERT_FALSE(pm->is_cma_page((*r)->head()));
        held.push_back(*r);
    }
    // Now CMA holds more than half: movable requests go there first.
    auto m2 = pm->alloc_folio(0, GFP_HIGHUSER_MOVABLE);
    ASSERT_TRUE(m2.ok());
    EXPECT_TRUE(pm->is_cma_page((*m2)->head()));
    EXPECT_EQ(pm->pageblock_migratetype(pfn_of(*pm, *m2)), MigrateType::Cma);
    // ...but not under a longterm pin scope.
    {
        MemallocPinScope scope;
        auto r = pm->alloc_folio(0, GFP_HIGHUSER_MOVABLE);
        ASSERT_TRUE(r.ok());
        EXPECT_FALSE(pm->is_cma_page((*r)->head()));
        pm->folio_put(*r);
    }
    while (true) {
        auto r = pm->alloc_folio(0, GFP_KERNEL);
        if (!r) break;
        ASSERT_FALSE(pm->is_cma_page((*r)->head()));
        held.push_back(*r);
    }
    ZoneStats s = pm->zone_stats(ZoneId::Normal);
    EXPECT_EQ(s.free_pages, s.free_cma_pages);
    EXPECT_EQ(s.free_cma_pages, 16384u - 1);
    // Movable requests fall back to CMA when regular blocks are gone.
    auto m3 = pm->alloc_folio(PMD_ORDER, GFP_HIGHUSER_MOVABLE);
    ASSERT_TRUE(m3.ok());
    EXPECT_TRUE(pm->is_cma_page((*m3)->head()));

    for (Folio* f : held) pm->folio_put(f);
    for (Folio* f : {*m1, *m2, *m3}) pm->folio_put(f);
    EXPECT_EQ(pm->zone_stats(ZoneId::Normal).free_cma_pages, 16384u);
}

TEST(PhysMem, ExhaustionAndRecovery) {
    auto pm = make("ram=64M movable=16M hugetlb_2m=0 hugetlb_1g=0 device_mem=0");
    ASSERT_TRUE(pm);
    const uint64_t free0 = pm->nr_free_pages();
    const auto n0 = pm->free_blocks(ZoneId::Normal);
    const auto m0 = pm->free_blocks(ZoneId::Movable);
    std::vector<Folio*> held;
    for (unsigned order : {5u, 2u, 0u}) {
        while (true) {
            auto r = pm->alloc_folio(order, GFP_HIGHUSER_MOVABLE);
            if (!r) {
                EXPECT_EQ(r.error(), Error(ENOMEM));
                break;
            }
            held.push_back(*r);
        }
    }
    EXPECT_EQ(pm->nr_free_pages(), 0u);
    EXPECT_EQ(pm->nr_allocated_pages(), pm->ram_pages());
    for (unsigned order = 0; order <= MAX_ORDER; ++order) {
        EXPECT_EQ(pm->alloc_folio(order, GFP_KERNEL).error(), Error(ENOMEM));
        EXPECT_EQ(pm->alloc_folio(order, GFP_HIGHUSER_MOVABLE).error(), Error(ENOMEM));
        EXPECT_EQ(pm->alloc_folio_in(ZoneId::Normal, order, GFP_KERNEL).error(), Error(ENOMEM));
    }
    EXPECT_EQ(pm->hugetlb_set_pool(HugeSize::Size2M, 4), 0u);  // nothing to grow from
    for (Folio* f : held) pm->folio_put(f);
    EXPECT_EQ(pm->nr_free_pages(), free0);
    EXPECT_EQ(pm->free_blocks(ZoneId::Normal), n0);
    EXPECT_EQ(pm->free_blocks(ZoneId::Movable), m0);
    auto big = pm->alloc_folio(13, GFP_KERNEL);
    EXPECT_TRUE(big.ok());
    if (big) pm->folio_put(*big);
}

struct CompactCtx {
    PhysMem* pm = nullptr;
    Folio* victim = nullptr;
    int calls = 0;
    bool succeed = true;
    bool allocate_inside = false;
    std::vector<ZoneId> zones;
};

bool test_compactor(void* p, ZoneId zone, unsigned) {
    auto* c = static_cast<CompactCtx*>(p);
    c->calls++;
    c->zones.push_back(zone);
    if (c->allocate_inside) {
        // A migration target allocation inside compaction must not recurse.
        auto r = c->pm->alloc_folio(0, GFP_KERNEL);
        if (r) c->pm->folio_put(*r);
    }
    if (!c->succeed || !c->victim) return false;
    c->pm->folio_put(c->victim);
    c->victim = nullptr;
    return true;
}

TEST(PhysMem, CompactorHook) {
    auto pm = make("ram=64M movable=16M hugetlb_2m=0 hugetlb_1g=0 device_mem=0");
    ASSERT_TRUE(pm);
    std::vector<Folio*> held;
    while (auto r = pm->alloc_folio(0, GFP_KERNEL)) held.push_back(*r);
    CompactCtx ctx;
    ctx.pm = pm.get();
    pm->set_compactor(test_compactor, &ctx);

    // __GFP_NORETRY: no compaction.
    EXPECT_FALSE(pm->alloc_folio(0, GFP_KERNEL | __GFP_NORETRY).ok());
    EXPECT_EQ(ctx.calls, 0);

    // Compaction that makes progress: called once, the retry succeeds.
    ctx.victim = held.back();
    held.pop_back();
    auto r = pm->alloc_folio(0, GFP_KERNEL);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(ctx.calls, 1);
    ASSERT_EQ(ctx.zones.size(), 1u);
    EXPECT_EQ(ctx.zones[0], ZoneId::Normal);
    held.push_back(*r);

    // Compaction without progress: ENOMEM, no crash, the hook is called once
    // per zone of the zonelist and does not recurse.
    ctx.calls = 0;
    ctx.zones.clear();
    ctx.succeed = false;
    ctx.allocate_inside = true;
    EXPECT_EQ(pm->alloc_folio(0, GFP_KERNEL).error(), Error(ENOMEM));
    EXPECT_EQ(ctx.calls, 1);
    ctx.calls = 0;
    ctx.zones.clear();
    // Fill ZONE_MOVABLE too, then a movable request compacts both zones.
    while (auto m = pm->alloc_folio_in(ZoneId::Movable, 0, GFP_HIGHUSER_MOVABLE | __GFP_NORETRY))
        held.push_back(*m);
    EXPECT_EQ(pm->alloc_folio(0, GFP_HIGHUSER_MOVABLE).error(), Error(ENOMEM));
    EXPECT_EQ(ctx.calls, 2);
    EXPECT_EQ(ctx.zones, (std::vector<ZoneId>{ZoneId::Movable, ZoneId::Normal}));

    pm->set_compactor(nullptr, nullptr);
    for (Folio* f : held) pm->folio_put(f);
    EXPECT_EQ(pm->nr_allocated_pages(), 513u);
}

// ---------------------------------------------------------------------------
// Folio prep
// ---------------------------------------------------------------------------

TEST(PhysMem, FolioPrepFields) {
    auto pm = make("ram=256M movable=64M hugetlb_2m=0 hugetlb_1g=0 device_mem=0");
    ASSERT_TRUE(pm);
    for (int round = 0; round < 2; ++round) {
        auto r = pm->alloc_folio(PMD_ORDER, GFP_TRANSHUGE);
        ASSERT_TRUE(r.ok());
        Folio* f = *r;
        Page* head = f->head();
        EXPECT_EQ(f->ref_count(), 1);
        EXPECT_EQ(f->order(), PMD_ORDER);
        EXPECT_TRUE(f->is_large());
        EXPECT_TRUE(test_bit(head, PG_head));
        EXPECT_FALSE(test_bit(head, PG_buddy));
        EXPECT_FALSE(f->is_hugetlb());
        EXPECT_FALSE(f->is_reserved());
        EXPECT_FALSE(f->is_locked());
        EXPECT_EQ(f->raw_mapping(), 0u);
        EXPECT_EQ(f->index(), 0u);
        EXPECT_EQ(f->pincount(), 0);
        EXPECT_EQ(f->entire_mapcount(), 0);
        EXPECT_EQ(f->large_mapcount(), 0);
        EXPECT_EQ(f->nr_pages_mapped(), 0);
        EXPECT_EQ(f->mapcount(), 0);
        EXPECT_FALSE(f->maybe_dma_pinned());
        EXPECT_EQ(sync::load(head->compound_head), 0u);
        EXPECT_EQ((sync::load(head->flags) & ~(PAGE_ORDER_MASK | PAGE_ZONE_MASK)), 1ULL << PG_head);
        for (unsigned long i = 1; i < f->nr_pages(); ++i) {
            Page* t = f->page(i);
            EXPECT_TRUE(PageTail(t));
            EXPECT_EQ(compound_head(t), head);
            EXPECT_EQ(page_folio(t), f);
            EXPECT_EQ(f->page_index(t), i);
            EXPECT_EQ(sync::load(t->refcount), 0);
            EXPECT_EQ(sync::load(t->mapcount), 0);
            EXPECT_EQ(sync::load(t->flags), uint64_t{1} << PAGE_ZONE_SHIFT);  // ZONE_MOVABLE only
            EXPECT_EQ(t->data, nullptr);
        }
        // Dirty every field a user would, then free: the next allocation
        // must be clean again (checked by the second round).
        f->set_raw_mapping(0x1000 | PAGE_MAPPING_ANON);
        f->set_index(77);
        f->set(PG_dirty);
        f->set(PG_swapbacked);
        f->pincount_add(3);
        f->entire_mapcount_add(1);
        f->large_mapcount_add(5);
        f->nr_pages_mapped_add(2);
        SetPageAnonExclusive(f->page(5));
        sync::store(f->page(9)->mapcount, 4);
        const pfn_t pfn = pfn_of(*pm, f);
        pm->folio_put(f);
        EXPECT_TRUE(test_bit(pm->pfn_to_page(pfn), PG_buddy));
        EXPECT_EQ(sync::load(pm->pfn_to_page(pfn)->refcount), 0);
        EXPECT_EQ(sync::load(pm->pfn_to_page(pfn + 5)->compound_head), 0u);
        EXPECT_FALSE(PageAnonExclusive(pm->pfn_to_page(pfn + 5)));
    }

    auto small = pm->alloc_folio(0, GFP_KERNEL);
    ASSERT_TRUE(small.ok());
    EXPECT_FALSE((*small)->is_large());
    EXPECT_EQ((*small)->order(), 0u);
    EXPECT_EQ((*small)->pincount(), 0);
    EXPECT_EQ(page_folio((*small)->head()), *small);
    (*small)->ref_add(GUP_PIN_COUNTING_BIAS);
    EXPECT_TRUE((*small)->maybe_dma_pinned());
    pm->folio_put_refs(*small, GUP_PIN_COUNTING_BIAS);
    EXPECT_EQ((*small)->ref_count(), 1);
    pm->folio_put(*small);
}

TEST(PhysMem, PageMapcount) {
    auto pm = make("ram=64M hugetlb_2m=0 hugetlb_1g=0 device_mem=0");
    ASSERT_TRUE(pm);
    Folio* small = *pm->alloc_folio(0, GFP_KERNEL);
    EXPECT_EQ(page_mapcount(small->head()), 0);
    sync::store(small->head()->mapcount, 2);
    EXPECT_EQ(page_mapcount(small->head()), 2);
    EXPECT_EQ(small->mapcount(), 2);

    Folio* big = *pm->alloc_folio(PMD_ORDER, GFP_KERNEL);
    big->entire_mapcount_add(1);  // mapped by one PMD
    sync::store(big->page(3)->mapcount, 2);  // and by two PTEs
    EXPECT_EQ(page_mapcount(big->page(3)), 3);
    EXPECT_EQ(page_mapcount(big->page(4)), 1);
    EXPECT_EQ(page_mapcount(big->head()), 1);
    pm->folio_put(small);
    pm->folio_put(big);
}

TEST(PhysMem, FolioLock) {
    auto pm = make("ram=64M hugetlb_2m=0 hugetlb_1g=0 device_mem=0");
    ASSERT_TRUE(pm);
    Folio* f = *pm->alloc_folio(2, GFP_KERNEL);
    EXPECT_TRUE(f->trylock());
    EXPECT_TRUE(f->is_locked());
    EXPECT_FALSE(f->trylock());
    f->unlock();
    {
        FolioLockGuard g(f);
        EXPECT_TRUE(f->is_locked());
    }
    EXPECT_FALSE(f->is_locked());
    f->lock();
    std::atomic<bool> got{false};
    std::thread t([&] {
        f->lock();
        got = true;
        f->unlock();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_FALSE(got.load());
    f->unlock();
    t.join();
    EXPECT_TRUE(got.load());
    pm->folio_put(f);
}

// ---------------------------------------------------------------------------
// hugetlb
// ---------------------------------------------------------------------------

TEST(PhysMem, HugetlbPool) {
    auto pm = make("ram=4G hugetlb_2m=8 hugetlb_1g=1 device_mem=0");
    ASSERT_TRUE(pm);
    HugetlbStats s2 = pm->hugetlb_stats(HugeSize::Size2M);
    HugetlbStats s1 = pm->hugetlb_stats(HugeSize::Size1G);
    EXPECT_EQ(s2.nr, 8u);
    EXPECT_EQ(s2.free, 8u);
    EXPECT_EQ(s2.resv, 0u);
    EXPECT_EQ(s1.nr, 1u);
    EXPECT_EQ(s1.free, 1u);
    EXPECT_EQ(pm->nr_allocated_pages(), 8u * 512 + 262144 + 513);

    auto g = pm->hugetlb_alloc(HugeSize::Size1G, false);
    ASSERT_TRUE(g.ok());
    EXPECT_EQ((*g)->order(), PUD_ORDER);
    EXPECT_TRUE((*g)->is_hugetlb());
    EXPECT_EQ((*g)->ref_count(), 1);
    EXPECT_EQ((*g)->zone(), ZoneId::Normal);
    EXPECT_EQ(pfn_of(*pm, *g) % (1u << PUD_ORDER), 0u);
    EXPECT_EQ(page_folio((*g)->page(12345)), *g);
    EXPECT_EQ(pm->hugetlb_alloc(HugeSize::Size1G, false).error(), Error(ENOMEM));
    pm->folio_put(*g);
    EXPECT_EQ(pm->hugetlb_stats(HugeSize::Size1G).free, 1u);

    auto h = pm->hugetlb_alloc(HugeSize::Size2M, false);
    ASSERT_TRUE(h.ok());
    Folio* hf = *h;
    EXPECT_EQ(hf->order(), PMD_ORDER);
    EXPECT_TRUE(hf->is_hugetlb());
    EXPECT_TRUE(hf->is_large());
    EXPECT_FALSE(pm->is_cma_page(hf->head()));
    EXPECT_EQ(pm->hugetlb_stats(HugeSize::Size2M).free, 7u);
    // Back to the pool, still compound, refcount 0, contents gone.
    const uint8_t byte = 0x5a;
    ASSERT_TRUE(pm->write_frame(pfn_of(*pm, hf) + 7, 100, &byte, 1).ok());
    EXPECT_EQ(pm->nr_data_buffers(), 1u);
    hf->set_raw_mapping(0x2000);
    hf->entire_mapcount_add(1);
    pm->folio_put(hf);
    EXPECT_EQ(pm->nr_data_buffers(), 0u);
    EXPECT_EQ(hf->ref_count(), 0);
    EXPECT_TRUE(hf->is_hugetlb());
    EXPECT_TRUE(hf->is_large());
    EXPECT_EQ(hf->raw_mapping(), 0u);
    EXPECT_EQ(hf->entire_mapcount(), 0);
    EXPECT_EQ(page_folio(hf->page(3)), hf);
    EXPECT_FALSE(hf->ref_try_add(1));  // GUP-fast cannot grab a free pool page
    EXPECT_EQ(pm->hugetlb_stats(HugeSize::Size2M).free, 8u);
    EXPECT_EQ(pm->nr_allocated_pages(), 8u * 512 + 262144 + 513);

    // Reservations.
    ASSERT_TRUE(pm->hugetlb_reserve(HugeSize::Size2M, 6).ok());
    EXPECT_EQ(pm->hugetlb_stats(HugeSize::Size2M).resv, 6u);
    EXPECT_EQ(pm->hugetlb_reserve(HugeSize::Size2M, 3).negative_errno(), -ENOMEM);
    std::vector<Folio*> unreserved;
    for (int i = 0; i < 2; ++i) {
        auto r = pm->hugetlb_alloc(HugeSize::Size2M, false);
        ASSERT_TRUE(r.ok());
        unreserved.push_back(*r);
    }
    // 6 free, 6 reserved: an unreserved request must not eat them.
    EXPECT_EQ(pm->hugetlb_alloc(HugeSize::Size2M, false).error(), Error(ENOMEM));
    auto rr = pm->hugetlb_alloc(HugeSize::Size2M, true);
    ASSERT_TRUE(rr.ok());
    HugetlbStats st = pm->hugetlb_stats(HugeSize::Size2M);
    EXPECT_EQ(st.free, 5u);
    EXPECT_EQ(st.resv, 5u);
    EXPECT_FALSE(pm->hugetlb_reserve(HugeSize::Size2M, 1).ok());
    pm->hugetlb_unreserve(HugeSize::Size2M, 2);
    EXPECT_EQ(pm->hugetlb_stats(HugeSize::Size2M).resv, 3u);
    EXPECT_TRUE(pm->hugetlb_reserve(HugeSize::Size2M, 2).ok());

    // Grow and shrink the pool.
    EXPECT_EQ(pm->hugetlb_set_pool(HugeSize::Size2M, 16), 16u);
    st = pm->hugetlb_stats(HugeSize::Size2M);
    EXPECT_EQ(st.nr, 16u);
    EXPECT_EQ(st.free, 13u);
    // Cannot shrink below in-use (3) + reserved (5).
    EXPECT_EQ(pm->hugetlb_set_pool(HugeSize::Size2M, 0), 8u);
    st = pm->hugetlb_stats(HugeSize::Size2M);
    EXPECT_EQ(st.free, 5u);
    EXPECT_EQ(st.resv, 5u);
    pm->hugetlb_unreserve(HugeSize::Size2M, 100);
    EXPECT_EQ(pm->hugetlb_stats(HugeSize::Size2M).resv, 0u);
    for (Folio* f : unreserved) pm->folio_put(f);
    pm->folio_put(*rr);
    EXPECT_EQ(pm->hugetlb_set_pool(HugeSize::Size2M, 0), 0u);
    EXPECT_EQ(pm->hugetlb_set_pool(HugeSize::Size1G, 0), 0u);
    EXPECT_EQ(pm->nr_allocated_pages(), 513u);
    EXPECT_EQ(pm->hugetlb_alloc(HugeSize::Size2M, true).error(), Error(ENOMEM));
    EXPECT_EQ(pm->hugetlb_set_pool(HugeSize::Size1G, 2), 2u);
    EXPECT_EQ(pm->hugetlb_stats(HugeSize::Size1G).free, 2u);
}

TEST(PhysMem, HugetlbPoolComesFromRegularNormalBlocks) {
    auto pm = make("ram=512M movable=128M cma=128M hugetlb_2m=64 hugetlb_1g=0 device_mem=0");
    ASSERT_TRUE(pm);
    EXPECT_EQ(pm->hugetlb_stats(HugeSize::Size2M).nr, 64u);
    std::vector<Folio*> all;
    while (auto r = pm->hugetlb_alloc(HugeSize::Size2M, false)) all.push_back(*r);
    ASSERT_EQ(all.size(), 64u);
    for (Folio* f : all) {
        EXPECT_EQ(f->zone(), ZoneId::Normal);
        EXPECT_FALSE(pm->is_cma_page(f->head()));
        pm->folio_put(f);
    }
}

// ---------------------------------------------------------------------------
// Zero pages
// ---------------------------------------------------------------------------

TEST(PhysMem, ZeroPages) {
    auto pm = make("ram=256M hugetlb_2m=0 hugetlb_1g=0 device_mem=0");
    ASSERT_TRUE(pm);
    Folio* z = pm->zero_folio();
    ASSERT_NE(z, nullptr);
    EXPECT_TRUE(z->is_reserved());
    EXPECT_EQ(z->order(), 0u);
    EXPECT_GE(z->ref_count(), 1);
    EXPECT_TRUE(pm->is_zero_pfn(pfn_of(*pm, z)));
    EXPECT_TRUE(pm->is_zero_folio(z));
    EXPECT_FALSE(pm->is_zero_pfn(pfn_of(*pm, z) + 1));

    Folio* hz = pm->huge_zero_folio();
    ASSERT_NE(hz, nullptr);
    EXPECT_TRUE(hz->is_reserved());
    EXPECT_EQ(hz->order(), PMD_ORDER);
    EXPECT_TRUE(hz->is_large());
    // include/linux/mm.h: is_zero_folio() is the 4 KiB zero page only (GUP
    // skips pinning it); the huge one is is_huge_zero_folio().
    EXPECT_FALSE(pm->is_zero_folio(hz));
    EXPECT_TRUE(pm->is_huge_zero_folio(hz));
    EXPECT_FALSE(pm->is_huge_zero_folio(z));
    EXPECT_TRUE(pm->is_any_zero_folio(z));
    EXPECT_TRUE(pm->is_any_zero_folio(hz));
    EXPECT_FALSE(pm->is_huge_zero_folio(nullptr));
    EXPECT_EQ(pfn_of(*pm, hz) % 512, 0u);
    EXPECT_FALSE(pm->is_zero_folio(nullptr));

    uint8_t buf[64];
    std::memset(buf, 0xff, sizeof buf);
    EXPECT_EQ(pm->write_frame(pfn_of(*pm, z), 0, buf, 64).negative_errno(), -EPERM);
    EXPECT_EQ(pm->write_frame(pfn_of(*pm, hz) + 17, 8, buf, 64).negative_errno(), -EPERM);
    EXPECT_EQ(pm->nr_data_buffers(), 0u);
    ASSERT_TRUE(pm->read_frame(pfn_of(*pm, hz) + 17, 0, buf, 64).ok());
    for (uint8_t b : buf) EXPECT_EQ(b, 0);
    // copy_page() into a zero page is refused too.
    Folio* src = *pm->alloc_folio(0, GFP_KERNEL);
    ASSERT_TRUE(pm->write_frame(pfn_of(*pm, src), 0, "x", 1).ok());
    pm->copy_page(z->head(), src->head());
    EXPECT_EQ(z->head()->data, nullptr);
    pm->folio_put(src);

    // Never freed.
    const uint64_t free0 = pm->nr_free_pages();
    z->ref_add(1);
    pm->folio_put(z);
    int rc = z->ref_count();
    pm->free_folio(z);
    pm->free_folio(hz);
    EXPECT_EQ(pm->nr_free_pages(), free0);
    EXPECT_EQ(z->ref_count(), rc);
    EXPECT_TRUE(z->is_reserved());
    EXPECT_FALSE(test_bit(z->head(), PG_buddy));
}

// ---------------------------------------------------------------------------
// ZONE_DEVICE
// ---------------------------------------------------------------------------

struct RecordingOps : DevPagemapOps {
    std::vector<Folio*> freed;
    DevPagemap* last = nullptr;
    void page_free(DevPagemap& pgmap, Folio* folio) override {
        last = &pgmap;
        freed.push_back(folio);
    }
};

TEST(PhysMem, ZoneDevice) {
    auto pm = make("ram=256M hugetlb_2m=0 hugetlb_1g=0 device_mem=64M");
    ASSERT_TRUE(pm);
    const uint64_t ram_free = pm->nr_free_pages();
    int owner = 0;
    EXPECT_EQ(pm->memremap_pages(PgmapType::Generic, 100, nullptr, &owner).error(), Error(EINVAL));
    EXPECT_EQ(pm->memremap_pages(PgmapType::Generic, 0, nullptr, &owner).error(), Error(EINVAL));
    EXPECT_EQ(pm->memremap_pages(PgmapType::Generic, 1UL << 20, nullptr, &owner).error(), Error(ENOMEM));

    auto a = pm->memremap_pages(PgmapType::DeviceCoherent, 4096, nullptr, &owner);
    ASSERT_TRUE(a.ok());
    DevPagemap* A = *a;
    EXPECT_EQ(A->type, PgmapType::DeviceCoherent);
    EXPECT_EQ(A->nr_pages, 4096u);
    EXPECT_EQ(A->owner, &owner);
    EXPECT_GE(A->start_pfn, pm->device_base());
    EXPECT_EQ(A->start_pfn % 512, 0u);
    RecordingOps ops;
    auto b = pm->memremap_pages(PgmapType::DevicePrivate, 1024, &ops, &owner);
    ASSERT_TRUE(b.ok());
    DevPagemap* B = *b;
    EXPECT_TRUE(B->start_pfn >= A->start_pfn + A->nr_pages || B->start_pfn + B->nr_pages <= A->start_pfn);

    EXPECT_EQ(pm->page_pgmap(pm->pfn_to_page(A->start_pfn)), A);
    EXPECT_EQ(pm->page_pgmap(pm->pfn_to_page(A->start_pfn + 4095)), A);
    EXPECT_EQ(pm->page_pgmap(pm->pfn_to_page(B->start_pfn + 7)), B);
    EXPECT_EQ(pm->page_pgmap(pm->pfn_to_page(0)), nullptr);
    EXPECT_TRUE(pm->pfn_valid(A->start_pfn));
    EXPECT_EQ(page_zone_id(pm->pfn_to_page(A->start_pfn + 100)), ZoneId::Device);
    EXPECT_EQ(pm->zone_stats(ZoneId::Device).present_pages, 5120u);
    EXPECT_EQ(pm->zone_stats(ZoneId::Device).free_pages, 5120u);

    // Order-0 and compound allocations.
    auto p0 = pm->pgmap_alloc(A, 0);
    ASSERT_TRUE(p0.ok());
    EXPECT_EQ((*p0)->ref_count(), 1);
    EXPECT_TRUE((*p0)->is_zone_device());
    EXPECT_FALSE((*p0)->is_large());
    EXPECT_EQ(pm->page_pgmap((*p0)->head()), A);
    auto p9 = pm->pgmap_alloc(A, PMD_ORDER);
    ASSERT_TRUE(p9.ok());
    EXPECT_EQ(pfn_of(*pm, *p9) % 512, 0u);
    EXPECT_TRUE((*p9)->is_large());
    EXPECT_EQ((*p9)->order(), PMD_ORDER);
    EXPECT_EQ(page_folio((*p9)->page(100)), *p9);
    EXPECT_EQ(page_zone_id((*p9)->page(100)), ZoneId::Device);
    EXPECT_EQ(pm->zone_stats(ZoneId::Device).free_pages, 5120u - 513);
    EXPECT_EQ(pm->nr_free_pages(), ram_free);  // RAM untouched

    // Contents on device memory.
    const char msg[] = "device";
    ASSERT_TRUE(pm->write_frame(pfn_of(*pm, *p0), 10, msg, sizeof msg).ok());
    char back[sizeof msg] = {};
    ASSERT_TRUE(pm->read_frame(pfn_of(*pm, *p0), 10, back, sizeof msg).ok());
    EXPECT_STREQ(back, msg);

    // No ops: freed pages return to the pgmap's pool.
    pm->folio_put(*p0);
    pm->folio_put(*p9);
    EXPECT_EQ(pm->nr_data_buffers(), 0u);
    EXPECT_EQ(pm->zone_stats(ZoneId::Device).free_pages, 5120u);
    std::vector<Folio*> all;
    while (auto r = pm->pgmap_alloc(A, 0)) all.push_back(*r);
    EXPECT_EQ(all.size(), 4096u);
    EXPECT_EQ(pm->pgmap_alloc(A, 0).error(), Error(ENOMEM));
    EXPECT_EQ(pm->pgmap_alloc(A, 3).error(), Error(ENOMEM));
    for (Folio* f : all) pm->folio_put(f);
    auto again = pm->pgmap_alloc(A, 12);  // 4096 pages: the whole (aligned) pgmap
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(pfn_of(*pm, *again), A->start_pfn);
    pm->folio_put(*again);

    // With ops: page_free is called, the folio keeps its shape.
    auto d = pm->pgmap_alloc(B, 4);
    ASSERT_TRUE(d.ok());
    (*d)->set_raw_mapping(0x4000 | PAGE_MAPPING_ANON);
    SetPageAnonExclusive((*d)->head());
    pm->folio_put(*d);
    ASSERT_EQ(ops.freed.size(), 1u);
    EXPECT_EQ(ops.freed[0], *d);
    EXPECT_EQ(ops.last, B);
    EXPECT_EQ((*d)->ref_count(), 0);
    EXPECT_EQ((*d)->order(), 4u);
    EXPECT_EQ((*d)->raw_mapping(), 0u);
    EXPECT_FALSE(PageAnonExclusive((*d)->head()));
    EXPECT_EQ(page_folio((*d)->page(3)), *d);
    // The driver reuses the page it owns (zone_device_page_init()).
    (*d)->set_ref_count(1);
    pm->folio_put(*d);
    EXPECT_EQ(ops.freed.size(), 2u);

    pm->memunmap_pages(B);
    EXPECT_EQ(pm->page_pgmap(pm->pfn_to_page(pfn_of(*pm, *d))), nullptr);
    // The space is reusable.
    auto c = pm->memremap_pages(PgmapType::P2pdma, 1024, nullptr, nullptr);
    ASSERT_TRUE(c.ok());
    pm->memunmap_pages(*c);
    pm->memunmap_pages(A);
    EXPECT_EQ(pm->zone_stats(ZoneId::Device).present_pages, 0u);
    auto whole = pm->memremap_pages(PgmapType::Fsdax, 16384, nullptr, nullptr);
    ASSERT_TRUE(whole.ok());
    EXPECT_EQ((*whole)->start_pfn, pm->device_base());
    EXPECT_EQ(pm->memremap_pages(PgmapType::Fsdax, 512, nullptr, nullptr).error(), Error(ENOMEM));
}

// ---------------------------------------------------------------------------
// I/O memory
// ---------------------------------------------------------------------------

TEST(PhysMem, Iomem) {
    auto pm = make("ram=64M hugetlb_2m=0 hugetlb_1g=0 device_mem=0");
    ASSERT_TRUE(pm);
    EXPECT_EQ(pm->iomem_alloc(0).error(), Error(EINVAL));
    auto a = pm->iomem_alloc(16);
    ASSERT_TRUE(a.ok());
    const pfn_t s = *a;
    EXPECT_GE(s, pm->iomem_base());
    EXPECT_FALSE(pm->pfn_valid(s));
    EXPECT_EQ(pm->pfn_to_page(s), nullptr);
    EXPECT_TRUE(pm->is_iomem(s));
    EXPECT_TRUE(pm->is_iomem(s + 15));
    EXPECT_FALSE(pm->is_iomem(s + 16));
    EXPECT_FALSE(pm->is_iomem(0));

    auto bar = pm->iomem_alloc(1024);
    ASSERT_TRUE(bar.ok());
    EXPECT_EQ(*bar % 512, 0u);
    EXPECT_TRUE(*bar >= s + 16);

    uint8_t buf[256];
    ASSERT_TRUE(pm->read_frame(s + 3, 0, buf, sizeof buf).ok());
    for (uint8_t b : buf) EXPECT_EQ(b, 0);
    EXPECT_EQ(pm->nr_data_buffers(), 0u);
    for (unsigned i = 0; i < sizeof buf; ++i) buf[i] = static_cast<uint8_t>(i * 7 + 1);
    ASSERT_TRUE(pm->write_frame(s + 3, 4096 - sizeof buf, buf, sizeof buf).ok());
    ASSERT_TRUE(pm->write_frame(*bar + 1000, 1, buf, 5).ok());
    EXPECT_EQ(pm->nr_data_buffers(), 2u);
    uint8_t back[sizeof buf];
    ASSERT_TRUE(pm->read_frame(s + 3, 4096 - sizeof buf, back, sizeof back).ok());
    EXPECT_EQ(std::memcmp(buf, back, sizeof buf), 0);
    EXPECT_EQ(pm->read_frame(s + 3, 4000, back, 200).negative_errno(), -EINVAL);
    EXPECT_EQ(pm->write_frame(s + 16, 0, buf, 1).negative_errno(), -EFAULT);
    EXPECT_EQ(pm->read_frame(*bar + 1024, 0, back, 1).negative_errno(), -EFAULT);

    // Partial free: the middle of the BAR goes, the rest stays.
    pm->iomem_free(*bar + 512, 256);
    EXPECT_TRUE(pm->is_iomem(*bar + 511));
    EXPECT_FALSE(pm->is_iomem(*bar + 512));
    EXPECT_TRUE(pm->is_iomem(*bar + 768));
    pm->iomem_free(s, 16);
    EXPECT_FALSE(pm->is_iomem(s + 3));
    EXPECT_EQ(pm->read_frame(s + 3, 0, back, 1).negative_errno(), -EFAULT);
    EXPECT_EQ(pm->nr_data_buffers(), 1u);
    // The hole is reused, and its old contents are gone.
    auto again = pm->iomem_alloc(4);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, s);
    ASSERT_TRUE(pm->read_frame(s + 3, 4096 - sizeof buf, back, sizeof back).ok());
    for (uint8_t b : back) EXPECT_EQ(b, 0);
    pm->iomem_free(*again, 4);
    pm->iomem_free(*bar, 512);
    pm->iomem_free(*bar + 768, 256);
    EXPECT_EQ(pm->nr_data_buffers(), 0u);
    // Everything was given back: the next range starts at the base again.
    auto fresh = pm->iomem_alloc(2);
    ASSERT_TRUE(fresh.ok());
    EXPECT_EQ(*fresh, s);
    auto huge = pm->iomem_alloc(1UL << 18);
    ASSERT_TRUE(huge.ok());
    EXPECT_EQ(*huge % (1UL << 18), 0u);
}

// ---------------------------------------------------------------------------
// Contents
// ---------------------------------------------------------------------------

TEST(PhysMem, ContentsLazyAndExact) {
    auto pm = make("ram=64M hugetlb_2m=0 hugetlb_1g=0 device_mem=4M");
    ASSERT_TRUE(pm);
    Folio* f = *pm->alloc_folio(2, GFP_KERNEL);
    const pfn_t pfn = pfn_of(*pm, f);
    std::vector<uint8_t> buf(PAGE_SIZE);
    ASSERT_TRUE(pm->read_frame(pfn + 1, 0, buf.data(), PAGE_SIZE).ok());
    for (uint8_t b : buf) ASSERT_EQ(b, 0);
    EXPECT_EQ(pm->nr_data_buffers(), 0u);  // reads do not materialise
    EXPECT_EQ(f->page(1)->data, nullptr);

    // Unaligned offsets and lengths.
    std::mt19937 rng(7);
    std::vector<uint8_t> model(PAGE_SIZE, 0);
    for (int i = 0; i < 200; ++i) {
        unsigned off = rng() % PAGE_SIZE;
        unsigned len = rng() % (PAGE_SIZE - off + 1);
        std::vector<uint8_t> chunk(len);
        for (auto& c : chunk) c = static_cast<uint8_t>(rng());
        ASSERT_TRUE(pm->write_frame(pfn + 1, off, chunk.data(), len).ok());
        std::memcpy(model.data() + off, chunk.data(), len);
    }
    EXPECT_EQ(pm->nr_data_buffers(), 1u);
    EXPECT_NE(f->page(1)->data, nullptr);
    ASSERT_TRUE(pm->read_frame(pfn + 1, 0, buf.data(), PAGE_SIZE).ok());
    EXPECT_EQ(buf, model);
    uint8_t piece[13];
    ASSERT_TRUE(pm->read_frame(pfn + 1, 1001, piece, 13).ok());
    EXPECT_EQ(std::memcmp(piece, model.data() + 1001, 13), 0);

    // Argument checks.
    EXPECT_EQ(pm->write_frame(pfn, 4095, piece, 2).negative_errno(), -EINVAL);
    EXPECT_EQ(pm->read_frame(pfn, 4096, piece, 1).negative_errno(), -EINVAL);
    EXPECT_EQ(pm->read_frame(pfn, 0xffffffffu, piece, 2).negative_errno(), -EINVAL);
    EXPECT_TRUE(pm->read_frame(pfn, 4096, piece, 0).ok());
    EXPECT_EQ(pm->read_frame(pm->ram_pages() + 1024, 0, piece, 1).negative_errno(), -EFAULT);
    EXPECT_EQ(pm->write_frame(pm->iomem_base() + 5, 0, piece, 1).negative_errno(), -EFAULT);
    EXPECT_EQ(pm->read_frame(~pfn_t{0} >> 1, 0, piece, 1).negative_errno(), -EFAULT);
    EXPECT_TRUE(pm->write_frame(pfn, 0, piece, 0).ok());
    EXPECT_EQ(pm->nr_data_buffers(), 1u);  // an empty write materialises nothing

    // copy_page(): a copy, or nothing when the source is all zero.
    pm->copy_page(f->page(2), f->page(1));
    EXPECT_EQ(pm->nr_data_buffers(), 2u);
    EXPECT_NE(f->page(2)->data, f->page(1)->data);
    ASSERT_TRUE(pm->read_frame(pfn + 2, 0, buf.data(), PAGE_SIZE).ok());
    EXPECT_EQ(buf, model);
    const uint8_t one = 1;
    ASSERT_TRUE(pm->write_frame(pfn + 2, 0, &one, 1).ok());
    ASSERT_TRUE(pm->read_frame(pfn + 1, 0, piece, 1).ok());
    EXPECT_EQ(piece[0], model[0]);  // the source is unaffected
    pm->copy_page(f->page(2), f->page(3));
    EXPECT_EQ(f->page(2)->data, nullptr);
    EXPECT_EQ(pm->nr_data_buffers(), 1u);
    pm->copy_page(f->page(1), f->page(1));
    EXPECT_EQ(pm->nr_data_buffers(), 1u);

    // clear_page() and freeing release buffers.
    pm->copy_page(f->page(0), f->page(1));
    pm->clear_page(f->page(1));
    EXPECT_EQ(pm->nr_data_buffers(), 1u);
    ASSERT_TRUE(pm->read_frame(pfn + 1, 0, buf.data(), PAGE_SIZE).ok());
    EXPECT_TRUE(std::all_of(buf.begin(), buf.end(), [](uint8_t b) { return b == 0; }));
    pm->folio_put(f);
    EXPECT_EQ(pm->nr_data_buffers(), 0u);
    // A reused frame reads as zero.
    Folio* g = *pm->alloc_folio(2, GFP_KERNEL);
    EXPECT_EQ(pfn_of(*pm, g), pfn);
    ASSERT_TRUE(pm->read_frame(pfn, 0, buf.data(), PAGE_SIZE).ok());
    EXPECT_TRUE(std::all_of(buf.begin(), buf.end(), [](uint8_t b) { return b == 0; }));
    pm->folio_put(g);

    // Many frames: buffers are recycled through the pool.
    std::vector<Folio*> held;
    for (int i = 0; i < 300; ++i) {
        Folio* h = *pm->alloc_folio(0, GFP_HIGHUSER_MOVABLE);
        uint32_t v = static_cast<uint32_t>(i + 1);  // non-zero: zeros into a zero frame attach no buffer
        ASSERT_TRUE(pm->write_frame(pfn_of(*pm, h), 4092, &v, 4).ok());
        held.push_back(h);
    }
    EXPECT_EQ(pm->nr_data_buffers(), 300u);
    for (int i = 0; i < 300; ++i) {
        uint32_t v = 0;
        ASSERT_TRUE(pm->read_frame(pfn_of(*pm, held[i]), 4092, &v, 4).ok());
        EXPECT_EQ(v, static_cast<uint32_t>(i + 1));
        pm->folio_put(held[i]);
    }
    EXPECT_EQ(pm->nr_data_buffers(), 0u);
}

TEST(PhysMem, LargeRamCostsLittle) {
    const uint64_t before = rss_bytes();
    ASSERT_GT(before, 0u);
    auto pm = make("ram=64G");
    ASSERT_TRUE(pm);
    EXPECT_EQ(pm->ram_pages(), 64ULL << 18);
    EXPECT_EQ(pm->hugetlb_stats(HugeSize::Size1G).nr, 1u);
    EXPECT_EQ(pm->hugetlb_stats(HugeSize::Size2M).nr, 64u);
    // Some use at both ends of RAM.
    std::vector<Folio*> held;
    for (int i = 0; i < 64; ++i) held.push_back(*pm->alloc_folio(i % 10, i % 2 ? GFP_HIGHUSER_MOVABLE : GFP_KERNEL));
    auto g = pm->alloc_folio(MAX_ORDER, GFP_KERNEL);
    ASSERT_TRUE(g.ok());
    held.push_back(*g);
    const uint64_t after = rss_bytes();
    EXPECT_LT(after - std::min(after, before), 256ULL << 20)
        << "RSS grew from " << (before >> 20) << " MiB to " << (after >> 20) << " MiB";
    for (Folio* f : held) pm->folio_put(f);
    EXPECT_EQ(pm->nr_allocated_pages(), 262144u + 64 * 512 + 513);
}

// ---------------------------------------------------------------------------
// Concurrency (also run under TSan)
// ---------------------------------------------------------------------------

TEST(PhysMemConcurrent, RandomAllocFree) {
    auto pm = make("ram=256M movable=64M cma=32M hugetlb_2m=8 hugetlb_1g=0 device_mem=0");
    ASSERT_TRUE(pm);
    const uint64_t free0 = pm->nr_free_pages();
    const auto n0 = pm->free_blocks(ZoneId::Normal);
    const auto m0 = pm->free_blocks(ZoneId::Movable);
    constexpr int kThreads = 4;
    constexpr int kIters = 2500;
    std::atomic<int> failures{0};
    std::barrier start(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            std::mt19937 rng(1000 + t);
            std::vector<std::pair<Folio*, uint32_t>> held;
            start.arrive_and_wait();
            for (int i = 0; i < kIters; ++i) {
                if (held.size() < 48 && rng() % 3 != 0) {
                    unsigned order = rng() % 8 == 0 ? rng() % 11 : rng() % 3;
                    gfp_t gfp = rng() % 2 ? GFP_HIGHUSER_MOVABLE : GFP_KERNEL;
                    if (rng() % 16 == 0) gfp |= __GFP_NORETRY;
                    Result<Folio*> r = rng() % 32 == 0 ? pm->hugetlb_alloc(HugeSize::Size2M, false)
                                                      : pm->alloc_folio(order, gfp);
                    if (!r) {
                        failures++;
                        continue;
                    }
                    Folio* f = *r;
                    if (f->ref_count() != 1 || sync::load(f->head()->mapcount) != 0) failures += 1000;
                    uint32_t tag = static_cast<uint32_t>(rng());
                    pfn_t last = pm->page_to_pfn(f->head()) + f->nr_pages() - 1;
                    if (!pm->write_frame(last, 100, &tag, 4)) failures += 1000;
                    held.emplace_back(f, tag);
                } else if (!held.empty()) {
                    size_t k = rng() % held.size();
                    auto [f, tag] = held[k];
                    held[k] = held.back();
                    held.pop_back();
                    uint32_t v = 0;
                    pfn_t last = pm->page_to_pfn(f->head()) + f->nr_pages() - 1;
                    if (!pm->read_frame(last, 100, &v, 4) || v != tag) failures += 1000;
                    {
                        FolioLockGuard lk(f);
                        f->ref_add(1);
                        pm->folio_put(f);
                    }
                    pm->folio_put(f);
                }
            }
            for (auto [f, tag] : held) pm->folio_put(f);
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_LT(failures.load(), 1000);
    EXPECT_EQ(pm->nr_free_pages(), free0);
    EXPECT_EQ(pm->free_blocks(ZoneId::Normal), n0);
    EXPECT_EQ(pm->free_blocks(ZoneId::Movable), m0);
    EXPECT_EQ(pm->hugetlb_stats(HugeSize::Size2M).free, 8u);
    EXPECT_EQ(pm->nr_data_buffers(), 0u);
}

TEST(PhysMemConcurrent, FirstWritersRace) {
    auto pm = make("ram=64M hugetlb_2m=0 hugetlb_1g=0 device_mem=0");
    ASSERT_TRUE(pm);
    constexpr int kThreads = 4;
    constexpr int kRounds = 200;
    std::vector<Folio*> folios;
    for (int r = 0; r < kRounds; ++r) folios.push_back(*pm->alloc_folio(0, GFP_KERNEL));
    std::barrier sync_point(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            for (int r = 0; r < kRounds; ++r) {
                sync_point.arrive_and_wait();
                uint64_t v = 0x0101010101010101ULL * static_cast<uint64_t>(t + 1);
                (void)pm->write_frame(pm->page_to_pfn(folios[r]->head()), static_cast<unsigned>(t) * 8, &v, 8);
            }
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(pm->nr_data_buffers(), static_cast<uint64_t>(kRounds));
    for (Folio* f : folios) {
        for (int t = 0; t < kThreads; ++t) {
            uint64_t v = 0;
            ASSERT_TRUE(pm->read_frame(pm->page_to_pfn(f->head()), static_cast<unsigned>(t) * 8, &v, 8).ok());
            EXPECT_EQ(v, 0x0101010101010101ULL * static_cast<uint64_t>(t + 1));
        }
        pm->folio_put(f);
    }
    EXPECT_EQ(pm->nr_data_buffers(), 0u);
}

TEST(PhysMemConcurrent, FolioLockExcludes) {
    auto pm = make("ram=64M hugetlb_2m=0 hugetlb_1g=0 device_mem=0");
    ASSERT_TRUE(pm);
    Folio* f = *pm->alloc_folio(0, GFP_KERNEL);
    long counter = 0;  // protected by the folio lock only
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 2000; ++i) {
                FolioLockGuard g(f);
                counter = counter + 1;
            }
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(counter, 6000);
    EXPECT_FALSE(f->is_locked());
    pm->folio_put(f);
}

}  // namespace
}  // namespace pl
