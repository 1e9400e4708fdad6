// Migration, compaction and memory failure: contents and mappings survive a
// move, exclusivity is kept, referenced (maybe pinned) folios are refused,
// THPs move, placement follows the gfp, compaction builds a free 2 MiB block
// in a fragmented zone, and a poisoned page SIGBUSes.
#include <atomic>
#include <thread>
#include <vector>

#include "test_kernel.h"

namespace pl::test {
namespace {

constexpr int kRW = PROT_READ | PROT_WRITE;
constexpr unsigned long kHuge = 2UL << 20;

class Migrate : public KernelTest {
protected:
    unsigned long pfn(task_struct* task, unsigned long addr) {
        page* p = pg(task, addr);
        return p ? page_to_pfn(p) : 0;
    }
    long vm(const char* name) { return static_cast<long>(pl_vmstat(k, name)); }
    bool pte_has(task_struct* task, unsigned long addr, const char* what) {
        return std::string(pl_pte_describe(task, addr)).find(what) != std::string::npos;
    }
    // migrate_folio() of the folio mapped at addr, with the caller's reference.
    Status migrate_at(task_struct* task, unsigned long addr, gfp_t gfp, MigrateReason why) {
        Folio* f = folio_at(task, addr);
        EXPECT_NE(f, nullptr);
        if (!f) return Error(EFAULT);
        EXPECT_TRUE(f->ref_try_add(1));
        Status s = migrate_folio(kern(), f, gfp, why);
        if (!s) kern().mem->folio_put(f);
        return s;
    }
    bool has_free_block(ZoneId z, unsigned order) {
        for (auto [p, o] : kern().mem->free_blocks(z))
            if (o >= order) return true;
        return false;
    }
};

TEST_F(Migrate, AnonPageKeepsContentsAndMappingsInParentAndChild) {
    unsigned long a = map(4 * kPage);
    put_str(t, a, "before fork");
    put_str(t, a + kPage, "second page");
    task_struct* child = pl_fork(t);
    ASSERT_NE(child, nullptr) << pl_last_error();
    unsigned long old = pfn(t, a);
    ASSERT_EQ(pfn(child, a), old);
    long ok0 = vm("pgmigrate_success");

    ASSERT_EQ(pl_migrate_page(t, a), 0) << pl_last_error();
    unsigned long moved = pfn(t, a);
    EXPECT_NE(moved, old);
    EXPECT_EQ(pfn(child, a), moved) << "the child's mapping must follow the folio";
    EXPECT_EQ(get_str(t, a), "before fork");
    EXPECT_EQ(get_str(child, a), "before fork");
    EXPECT_EQ(page_mapcount(pg(t, a)), 2);
    EXPECT_EQ(page_ref_count(pg(t, a)), 2);
    EXPECT_FALSE(PageAnonExclusive(pg(t, a)));  // shared after fork
    EXPECT_FALSE(pte_has(t, a, "write"));
    EXPECT_EQ(vm("pgmigrate_success"), ok0 + 1);
    EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();

    // COW still works on the migrated page.
    put_str(child, a, "child wrote");
    EXPECT_EQ(get_str(t, a), "before fork");
    EXPECT_EQ(get_str(child, a), "child wrote");
    EXPECT_NE(pfn(child, a), pfn(t, a));
    EXPECT_EQ(get_str(t, a + kPage), "second page");
    EXPECT_EQ(get_str(child, a + kPage), "second page");
}

TEST_F(Migrate, KeepsPageAnonExclusiveAndWritability) {
    unsigned long a = map(2 * kPage);
    put_str(t, a, "exclusive");
    ASSERT_TRUE(PageAnonExclusive(pg(t, a)));
    ASSERT_TRUE(pte_has(t, a, "write"));
    unsigned long old = pfn(t, a);
    ASSERT_EQ(pl_migrate_page(t, a), 0) << pl_last_error();
    EXPECT_NE(pfn(t, a), old);
    EXPECT_TRUE(PageAnonExclusive(pg(t, a)));
    EXPECT_TRUE(pte_has(t, a, "write"));
    EXPECT_TRUE(pte_has(t, a, "dirty"));
    long cow = vm("cow_copies");
    put_str(t, a, "still mine");
    EXPECT_EQ(vm("cow_copies"), cow) << "an exclusive page is written in place";

    // Read-only but exclusive: a MigrationReadExclusive entry.
    ASSERT_EQ(pl_mprotect(t, a, 2 * kPage, PROT_READ), 0);
    old = pfn(t, a);
    ASSERT_EQ(pl_migrate_page(t, a), 0) << pl_last_error();
    EXPECT_NE(pfn(t, a), old);
    EXPECT_TRUE(PageAnonExclusive(pg(t, a)));
    EXPECT_FALSE(pte_has(t, a, "write"));
    ASSERT_EQ(pl_mprotect(t, a, 2 * kPage, kRW), 0);
    unsigned long now = pfn(t, a);
    put_str(t, a, "reused");
    EXPECT_EQ(pfn(t, a), now) << "the exclusive page is reused, not copied";
    EXPECT_EQ(vm("cow_copies"), cow);
    EXPECT_EQ(get_str(t, a), "reused");
}

TEST_F(Migrate, PageCacheFolioOfSharedFileMappingSeenByTwoTasks) {
    for (const char* fs : {"tmpfs", "ext4"}) {
        SCOPED_TRACE(fs);
        pl_file* f = file(fs, 4 * kPage);
        task_struct* t2 = pl_task_new(k);
        ASSERT_NE(t2, nullptr);
        unsigned long a1 = map(t, 4 * kPage, kRW, MAP_SHARED, f);
        unsigned long a2 = map(t2, 4 * kPage, kRW, MAP_SHARED, f);
        put_str(t, a1 + kPage, "in the file");
        ASSERT_EQ(get_str(t2, a2 + kPage), "in the file");
        unsigned long old = pfn(t, a1 + kPage);
        ASSERT_EQ(pfn(t2, a2 + kPage), old);
        ASSERT_TRUE(PageDirty(pg(t, a1 + kPage)));

        ASSERT_EQ(pl_migrate_page(t2, a2 + kPage), 0) << pl_last_error();
        unsigned long moved = pfn(t, a1 + kPage);
        EXPECT_NE(moved, old);
        EXPECT_EQ(pfn(t2, a2 + kPage), moved);
        EXPECT_EQ(page_mapcount(pg(t, a1 + kPage)), 2);
        EXPECT_EQ(page_ref_count(pg(t, a1 + kPage)), 3);  // two mappings + the page cache
        EXPECT_TRUE(PageDirty(pg(t, a1 + kPage)));
        EXPECT_FALSE(PageAnon(pg(t, a1 + kPage)));
        EXPECT_EQ(get_str(t, a1 + kPage), "in the file");
        // The page cache holds the new folio: read() and the other task agree.
        char buf[16] = {};
        ASSERT_EQ(pl_pread(f, buf, 12, kPage), 12);
        EXPECT_STREQ(buf, "in the file");
        put_str(t2, a2 + kPage, "written by 2");
        EXPECT_EQ(get_str(t, a1 + kPage), "written by 2");
        ASSERT_EQ(pl_pread(f, buf, 13, kPage), 13);
        EXPECT_STREQ(buf, "written by 2");
        EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
        pl_exit(t2);
    }
}

TEST_F(Migrate, PageCacheFolioMappedPrivatelyStaysCopyOnWrite) {
    pl_file* f = file("ext4", 2 * kPage);
    ASSERT_EQ(pl_pwrite(f, "file data", 10, 0), 10);
    unsigned long a = map(t, 2 * kPage, kRW, MAP_PRIVATE, f);
    ASSERT_EQ(get_str(t, a), "file data");  // maps the cache page read-only
    unsigned long old = pfn(t, a);
    ASSERT_FALSE(PageAnon(pg(t, a)));
    ASSERT_EQ(pl_migrate_page(t, a), 0) << pl_last_error();
    EXPECT_NE(pfn(t, a), old);
    EXPECT_FALSE(pte_has(t, a, "write"));
    EXPECT_EQ(get_str(t, a), "file data");
    put_str(t, a, "private");  // COW: the file keeps its data
    EXPECT_TRUE(PageAnon(pg(t, a)));
    char buf[16] = {};
    ASSERT_EQ(pl_pread(f, buf, 10, 0), 10);
    EXPECT_STREQ(buf, "file data");
}

TEST_F(Migrate, RefusesFolioWithExtraReference) {
    unsigned long a = map(kPage);
    put_str(t, a, "held");
    page* p = pg(t, a);
    get_page(p);  // as a driver holding the page (or a GUP reference) would
    long fail0 = vm("pgmigrate_fail");
    EXPECT_EQ(pl_migrate_page(t, a), -EBUSY);
    EXPECT_EQ(vm("pgmigrate_fail"), fail0 + 1);
    // Nothing changed: same page, mapped writable and exclusive again.
    EXPECT_EQ(pg(t, a), p);
    EXPECT_TRUE(PageAnonExclusive(p));
    EXPECT_TRUE(pte_has(t, a, "write"));
    EXPECT_TRUE(pte_has(t, a, "present"));
    EXPECT_EQ(page_mapcount(p), 1);
    EXPECT_EQ(page_ref_count(p), 2);
    EXPECT_EQ(get_str(t, a), "held");
    EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
    put_page(p);
    EXPECT_EQ(pl_migrate_page(t, a), 0) << pl_last_error();
    EXPECT_NE(pg(t, a), p);
    EXPECT_EQ(get_str(t, a), "held");
}

TEST_F(Migrate, RefusesZeroPageAndPfnMappings) {
    unsigned long a = map(kPage, PROT_READ);
    char c;
    ASSERT_EQ(pl_read(t, a, &c, 1), 1);  // the shared zero page
    EXPECT_EQ(pl_migrate_page(t, a), -EFAULT);  // no normal page there
    pl_file* dev = pl_dev_open(k, "pfnmap");
    ASSERT_NE(dev, nullptr) << pl_last_error();
    files.push_back(dev);
    unsigned long d = map(t, kPage, kRW, MAP_SHARED, dev);
    EXPECT_EQ(pl_migrate_page(t, d), -EFAULT);
    // A driver's page inserted with vm_insert_page(): not movable.
    pl_file* mix = pl_dev_open(k, "mixedmap");
    ASSERT_NE(mix, nullptr) << pl_last_error();
    files.push_back(mix);
    unsigned long m = map(t, kPage, kRW, MAP_SHARED, mix);
    ASSERT_NE(pg(t, m), nullptr);
    EXPECT_EQ(pl_migrate_page(t, m), -EBUSY);
}

TEST_F(Migrate, PmdMappedThp) {
    unsigned long a = map(kHuge);
    put_str(t, a, "thp head");
    put_str(t, a + 300 * kPage, "thp page 300");
    ASSERT_EQ(level(t, a), PtLevel::Pmd) << "expected a PMD-mapped THP";
    Folio* old = folio_at(t, a);
    ASSERT_EQ(old->order(), PMD_ORDER);
    long ok0 = vm("pgmigrate_success");
    ASSERT_EQ(pl_migrate_page(t, a + 7 * kPage), 0) << pl_last_error();
    Folio* nf = folio_at(t, a);
    EXPECT_NE(nf, old);
    EXPECT_EQ(nf->order(), PMD_ORDER);
    EXPECT_EQ(folio_at(t, a + 511 * kPage), nf);
    // Upstream keeps the PMD mapping (PMD migration entries); the model
    // migrates it PTE-mapped.
    EXPECT_EQ(level(t, a), PtLevel::Pte);
    EXPECT_EQ(nf->mapcount(), 512);
    EXPECT_EQ(nf->ref_count(), 512);
    EXPECT_TRUE(PageAnonExclusive(pg(t, a + 300 * kPage)));
    EXPECT_EQ(get_str(t, a), "thp head");
    EXPECT_EQ(get_str(t, a + 300 * kPage), "thp page 300");
    EXPECT_EQ(vm("pgmigrate_success"), ok0 + 512);
    put_str(t, a + 511 * kPage, "last");
    EXPECT_EQ(get_str(t, a + 511 * kPage), "last");
}

TEST_F(Migrate, PteMappedThp) {
    unsigned long a = map(kHuge);
    put_str(t, a, "thp head");
    put_str(t, a + 100 * kPage, "page 100");
    ASSERT_EQ(level(t, a), PtLevel::Pmd);
    // Unmapping the last page splits the PMD: 511 PTEs map the large folio.
    ASSERT_EQ(pl_munmap(t, a + 511 * kPage, kPage), 0);
    ASSERT_EQ(level(t, a), PtLevel::Pte);
    Folio* old = folio_at(t, a);
    ASSERT_EQ(old->order(), PMD_ORDER);
    ASSERT_EQ(old->mapcount(), 511);
    ASSERT_EQ(pl_migrate_page(t, a + 100 * kPage), 0) << pl_last_error();
    Folio* nf = folio_at(t, a);
    EXPECT_NE(nf, old);
    EXPECT_EQ(nf->order(), PMD_ORDER);
    EXPECT_EQ(nf->mapcount(), 511);
    EXPECT_EQ(nf->nr_pages_mapped(), 511);
    EXPECT_EQ(sync::load(nf->page(511)->mapcount), 0);
    EXPECT_EQ(get_str(t, a), "thp head");
    EXPECT_EQ(get_str(t, a + 100 * kPage), "page 100");
}

TEST_F(Migrate, HugetlbFolioNeedsAFreePoolPage) {
    unsigned long a = map(t, kHuge, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB);
    put_str(t, a + 3 * kPage, "huge");
    Folio* old = folio_at(t, a);
    ASSERT_TRUE(old->is_hugetlb());
    ASSERT_EQ(pl_migrate_page(t, a), 0) << pl_last_error();
    Folio* nf = folio_at(t, a);
    EXPECT_NE(nf, old);
    EXPECT_TRUE(nf->is_hugetlb());
    EXPECT_EQ(level(t, a), PtLevel::Pmd);
    EXPECT_TRUE(PageAnonExclusive(nf->head()));
    EXPECT_EQ(get_str(t, a + 3 * kPage), "huge");
    EXPECT_EQ(kern().mem->hugetlb_stats(HugeSize::Size2M).free, 7u);

    // With the pool's only page in use there is nowhere to go.
    reboot("ram=512M hugetlb_2m=1 hugetlb_1g=0");
    a = map(t, kHuge, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB);
    put_str(t, a, "only one");
    old = folio_at(t, a);
    EXPECT_EQ(pl_migrate_page(t, a), -ENOMEM);
    EXPECT_EQ(folio_at(t, a), old);
    EXPECT_EQ(get_str(t, a), "only one");
}

TEST_F(Migrate, PlacementFollowsGfpFromMovableToNormal) {
    reboot("ram=512M movable=128M hugetlb_2m=0 hugetlb_1g=0");
    unsigned long a = map(4 * kPage);
    put_str(t, a, "movable");
    put_str(t, a + kPage, "second");
    ASSERT_EQ(folio_at(t, a)->zone(), ZoneId::Movable);
    // A movable target stays in ZONE_MOVABLE while it has room...
    ASSERT_EQ(pl_migrate_page(t, a), 0) << pl_last_error();
    EXPECT_EQ(folio_at(t, a)->zone(), ZoneId::Movable);
    // ...an unmovable one (a FOLL_LONGTERM pin's) goes to ZONE_NORMAL.
    ASSERT_TRUE(migrate_at(t, a, GFP_USER, MigrateReason::LongtermPin));
    EXPECT_EQ(folio_at(t, a)->zone(), ZoneId::Normal);
    EXPECT_EQ(get_str(t, a), "movable");
    {
        MemallocPinScope scope;  // memalloc_pin_save(): movable requests lose __GFP_MOVABLE
        ASSERT_TRUE(migrate_at(t, a + kPage, GFP_HIGHUSER_MOVABLE, MigrateReason::LongtermPin));
    }
    EXPECT_EQ(folio_at(t, a + kPage)->zone(), ZoneId::Normal);

    // Fill ZONE_MOVABLE: movable targets fall back to ZONE_NORMAL.
    unsigned long b = map(kPage);
    put_str(t, b, "fallback");
    ASSERT_EQ(folio_at(t, b)->zone(), ZoneId::Movable);
    std::vector<Folio*> filler;
    for (unsigned order : {PMD_ORDER, 0u})
        while (auto f = kern().mem->alloc_folio_in(ZoneId::Movable, order, GFP_HIGHUSER_MOVABLE | __GFP_NORETRY))
            filler.push_back(*f);
    ASSERT_EQ(kern().mem->zone_stats(ZoneId::Movable).free_pages, 0u);
    ASSERT_EQ(pl_migrate_page(t, b), 0) << pl_last_error();
    EXPECT_EQ(folio_at(t, b)->zone(), ZoneId::Normal);
    EXPECT_EQ(get_str(t, b), "fallback");
    for (Folio* f : filler) kern().mem->folio_put(f);
}

TEST_F(Migrate, CompactionFreesA2MBlockInAFragmentedZone) {
    reboot("ram=64M hugetlb_2m=0 hugetlb_1g=0 thp=never");
    compaction_init(kern());  // (kernel creation installs it too)
    const unsigned long len = 64UL << 20;
    unsigned long a = map(len);
    // Fill RAM with anonymous pages, one tagged byte each.
    unsigned long n = 0;
    for (; n < len / kPage; ++n) {
        unsigned char v = static_cast<unsigned char>(n * 7 + 1);
        if (pl_write(t, a + n * kPage, &v, 1) != 1) break;
    }
    ASSERT_GT(n, 8000u);
    ASSERT_LT(n, len / kPage) << "RAM should have run out";
    // Free every other page: plenty of free memory, no free 2 MiB block.
    for (unsigned long i = 0; i < n; i += 2) ASSERT_EQ(pl_madvise(t, a + i * kPage, kPage, MADV_DONTNEED), 0);
    ASSERT_FALSE(has_free_block(ZoneId::Normal, PMD_ORDER));
    ASSERT_EQ(pl_kernel_check(k), 0) << pl_last_error();

    // Direct compaction through the allocator: a 2 MiB allocation succeeds.
    long ok0 = vm("compact_success");
    auto big = kern().mem->alloc_folio_in(ZoneId::Normal, PMD_ORDER, GFP_KERNEL | __GFP_COMP);
    ASSERT_TRUE(big) << "compaction did not produce an order-9 block";
    EXPECT_GT(vm("compact_success"), ok0);
    kern().mem->folio_put(*big);
    EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();

    // compact_memory: more folios move, more free pageblocks.
    size_t blocks_before = 0, blocks_after = 0;
    for (auto [p, o] : kern().mem->free_blocks(ZoneId::Normal)) blocks_before += o >= PMD_ORDER ? 1u << (o - PMD_ORDER) : 0;
    EXPECT_GT(pl_compact_memory(k), 0);
    for (auto [p, o] : kern().mem->free_blocks(ZoneId::Normal)) blocks_after += o >= PMD_ORDER ? 1u << (o - PMD_ORDER) : 0;
    EXPECT_GT(blocks_after, blocks_before);

    // Every surviving page kept its contents.
    for (unsigned long i = 1; i < n; i += 2) {
        unsigned char v = 0;
        ASSERT_EQ(pl_read(t, a + i * kPage, &v, 1), 1);
        ASSERT_EQ(v, static_cast<unsigned char>(i * 7 + 1)) << "page " << i;
    }
    EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
}

TEST_F(Migrate, MemoryFailureOnAnonPageMakesAccessFault) {
    unsigned long a = map(2 * kPage);
    put_str(t, a, "doomed");
    put_str(t, a + kPage, "fine");
    unsigned long p = pfn(t, a);
    ASSERT_EQ(pl_memory_failure(k, p), 0) << pl_last_error();
    baseline += 1;  // the poisoned frame never returns to the allocator
    EXPECT_TRUE(pte_has(t, a, "hwpoison"));
    char buf[8];
    EXPECT_EQ(pl_read(t, a, buf, 1), -EFAULT);
    EXPECT_EQ(pl_write(t, a, "x", 1), -EFAULT);
    EXPECT_EQ(get_str(t, a + kPage), "fine");
    EXPECT_EQ(pl_memory_failure(k, p), -EHWPOISON);
    EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
    // The mapping can be thrown away and replaced.
    ASSERT_EQ(pl_madvise(t, a, kPage, MADV_DONTNEED), 0);
    put_str(t, a, "new page");
    EXPECT_NE(pfn(t, a), p);
    EXPECT_EQ(get_str(t, a), "new page");
}

TEST_F(Migrate, MemoryFailureOnCleanFilePageDropsItFromTheCache) {
    pl_file* f = file("ext4", 2 * kPage);
    ASSERT_EQ(pl_pwrite(f, "on disk", 8, 0), 8);
    ASSERT_EQ(pl_fsync(f), 0);
    unsigned long a = map(t, 2 * kPage, PROT_READ, MAP_SHARED, f);
    ASSERT_EQ(get_str(t, a), "on disk");
    unsigned long p = pfn(t, a);
    ASSERT_FALSE(PageDirty(pg(t, a)));
    ASSERT_EQ(pl_memory_failure(k, p), 0) << pl_last_error();
    baseline += 1;
    // Clean: only unmapped; a refault reads the data again into a new page.
    EXPECT_FALSE(pte_has(t, a, "hwpoison"));
    EXPECT_EQ(get_str(t, a), "on disk");
    EXPECT_NE(pfn(t, a), p);
}

TEST_F(Migrate, MemoryFailureSplitsAThpAndPoisonsOnePage) {
    unsigned long h = map(kHuge);
    put_str(t, h, "head");
    put_str(t, h + 9 * kPage, "doomed");
    put_str(t, h + 10 * kPage, "neighbour");
    ASSERT_EQ(level(t, h), PtLevel::Pmd);
    unsigned long p = pfn(t, h + 9 * kPage);
    ASSERT_EQ(pl_memory_failure(k, p), 0) << pl_last_error();
    baseline += 1;
    EXPECT_TRUE(pte_has(t, h + 9 * kPage, "hwpoison"));
    char c;
    EXPECT_EQ(pl_read(t, h + 9 * kPage, &c, 1), -EFAULT);
    EXPECT_EQ(get_str(t, h), "head");
    EXPECT_EQ(get_str(t, h + 10 * kPage), "neighbour");
    EXPECT_FALSE(PageCompound(pg(t, h + 10 * kPage))) << "the THP was split";
}

TEST_F(Migrate, MemoryFailureOnPinnedPageFailsButTheFrameIsWithheld) {
    unsigned long a = map(kPage);
    put_str(t, a, "pinned");
    page* pp = pg(t, a);
    unsigned long p = page_to_pfn(pp);
    get_page(pp);  // an extra reference, as a pin would be
    EXPECT_EQ(pl_memory_failure(k, p), -EBUSY);
    baseline += 1;  // once released, the poisoned frame stays out of the buddy allocator
    EXPECT_TRUE(pte_has(t, a, "hwpoison"));  // the mapping went anyway
    EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
    put_page(pp);  // the last reference: freed, but withheld
    EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
}

TEST_F(Migrate, MemoryFailureOnHugetlbfsPageKeepsItCached) {
    pl_file* f = file("hugetlbfs", kHuge);
    unsigned long a = map(t, kHuge, kRW, MAP_SHARED, f);
    put_str(t, a + kPage, "huge file");
    unsigned long p = pfn(t, a + kPage);
    ASSERT_EQ(pl_memory_failure(k, p), 0) << pl_last_error();
    EXPECT_TRUE(pte_has(t, a, "hwpoison"));
    char c;
    EXPECT_EQ(pl_read(t, a, &c, 1), -EFAULT);
    // Another mapping of the file faults on the poisoned cached page.
    task_struct* t2 = pl_task_new(k);
    unsigned long b = map(t2, kHuge, kRW, MAP_SHARED, f);
    EXPECT_EQ(pl_read(t2, b, &c, 1), -EFAULT);
    EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
    // (hugetlb pool pages count as allocated whether in use or not)
}

TEST_F(Migrate, RefusesFsdaxPages) {
    pl_file* f = file("fsdax", 4 * kPage);
    unsigned long a = map(t, 4 * kPage, kRW, MAP_SHARED, f);
    put_str(t, a, "pmem");
    ASSERT_NE(pg(t, a), nullptr);
    EXPECT_EQ(pl_migrate_page(t, a), -EBUSY);
    EXPECT_EQ(get_str(t, a), "pmem");
}

TEST_F(Migrate, MemoryFailureErrors) {
    EXPECT_EQ(pl_memory_failure(k, kern().mem->iomem_base() + 5), -ENXIO);
    // A free frame cannot be taken off the buddy lists in the model.
    auto f = kern().mem->alloc_folio(0, GFP_KERNEL);
    ASSERT_TRUE(f);
    unsigned long p = kern().mem->page_to_pfn((*f)->head());
    kern().mem->folio_put(*f);
    EXPECT_EQ(pl_memory_failure(k, p), -EBUSY);
    EXPECT_FALSE(PageHWPoison(kern().mem->pfn_to_page(p)));
}

// Faults that meet a migration entry wait for it; the writer never sees a
// stale or half-copied page, and nothing is lost.
class MigrateConcurrent : public Migrate {};

TEST_F(MigrateConcurrent, MigrationWhileTheTaskWritesAndForks) {
    unsigned long a = map(4 * kPage);
    unsigned long counter = 0;
    ASSERT_EQ(pl_write(t, a, &counter, sizeof counter), static_cast<long>(sizeof counter));
    std::atomic<bool> stop{false};
    std::atomic<long> migrated{0};
    std::thread migrator([&] {
        while (!stop.load()) {
            int r = pl_migrate_page(t, a);
            if (r == 0) migrated.fetch_add(1);
            else EXPECT_TRUE(r == -EBUSY || r == -EAGAIN || r == -EFAULT) << r;
        }
    });
    unsigned long i = 1;
    for (; i <= 2000 || (migrated.load() < 200 && i < 2000000); ++i) {
        unsigned long v = 0;
        ASSERT_EQ(pl_read(t, a, &v, sizeof v), static_cast<long>(sizeof v));
        ASSERT_EQ(v, i - 1);
        ASSERT_EQ(pl_write(t, a, &i, sizeof i), static_cast<long>(sizeof i));
        if (i % 500 == 0) {
            task_struct* child = pl_fork(t);
            ASSERT_NE(child, nullptr);
            unsigned long cv = 0;
            ASSERT_EQ(pl_read(child, a, &cv, sizeof cv), static_cast<long>(sizeof cv));
            EXPECT_EQ(cv, i);
            pl_exit(child);
        }
    }
    stop.store(true);
    migrator.join();
    EXPECT_GT(migrated.load(), 0) << "after " << i << " writes";
    EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
}

// Compaction moves folios of a task that is faulting, writing and unmapping.
TEST_F(MigrateConcurrent, CompactionWhileTheTaskFaultsAndUnmaps) {
    reboot("ram=64M hugetlb_2m=0 hugetlb_1g=0 thp=never");
    const unsigned long n = 4096;  // 16 MiB of the 64
    unsigned long a = map(n * kPage);
    for (unsigned long i = 0; i < n; ++i) ASSERT_EQ(pl_write(t, a + i * kPage, &i, sizeof i), 8);
    for (unsigned long i = 0; i < n; i += 2) ASSERT_EQ(pl_madvise(t, a + i * kPage, kPage, MADV_DONTNEED), 0);
    std::atomic<bool> stop{false};
    std::atomic<long> moved{0};
    std::thread compactor([&] {
        while (!stop.load()) moved.fetch_add(pl_compact_memory(k));
    });
    for (int round = 0; round < 6 || (moved.load() == 0 && round < 200); ++round) {
        for (unsigned long i = 1; i < n; i += 2) {
            unsigned long v = 0;
            ASSERT_EQ(pl_read(t, a + i * kPage, &v, sizeof v), 8);
            ASSERT_EQ(v, i + round * n) << "page " << i << " round " << round;
            v = i + (round + 1) * n;
            ASSERT_EQ(pl_write(t, a + i * kPage, &v, sizeof v), 8);
        }
        unsigned long b = map((round + 1) * 64 * kPage);
        for (unsigned long j = 0; j < (round + 1) * 64UL; j += 3) put_str(t, b + j * kPage, "tmp");
        ASSERT_EQ(pl_munmap(t, b, (round + 1) * 64 * kPage), 0);
    }
    stop.store(true);
    compactor.join();
    EXPECT_GT(moved.load(), 0);
    EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
}

}  // namespace
}  // namespace pl::test
