// FOLL_LONGTERM (spec §6): folio_is_longterm_pinnable, the migration loop of
// __gup_longterm_locked() and memalloc_pin_save() for faults taken meanwhile.
#include <functional>

#include "gup/foll_flags.h"
#include "gup/gup_longterm.h"
#include "gup/longterm_pinnable.h"
#include "test_kernel.h"

namespace pl::test {
namespace {

constexpr unsigned long kHuge = 2UL << 20;

class GupLongterm : public KernelTest {
protected:
    void SetUp() override {
        // A quarter of RAM in ZONE_MOVABLE: anonymous and page-cache folios
        // (GFP_HIGHUSER_MOVABLE) are born there, as on a machine booted with
        // movablecore=.
        boot("ram=512M movable=128M hugetlb_2m=4 hugetlb_1g=0");
        pl_set_current(t);
    }
    unsigned long stat(const char* n) { return pl_vmstat(k, n); }
    ZoneId zone_of(page* p) { return page_folio(reinterpret_cast<Page*>(p))->zone(); }
    bool pinnable(page* p) { return folio_is_longterm_pinnable(*kern().mem, page_folio(reinterpret_cast<Page*>(p))); }
    long pin(unsigned long a, unsigned long n, unsigned flags, page** pages) {
        mmap_read_lock(pl_task_mm(t));
        long r = ::pin_user_pages(a, n, flags, pages);
        mmap_read_unlock(pl_task_mm(t));
        return r;
    }
    void expect_balanced() { EXPECT_EQ(stat("nr_foll_pin_acquired"), stat("nr_foll_pin_released")); }

public:
    // For the table rows' setup functions.
    unsigned long map_anon(unsigned long len) { return map(len); }
    unsigned long map_file(const char* fs, unsigned long len, int prot, int flags) {
        last_file = file(fs, len);
        return map(t, len, prot, flags, last_file);
    }
    pl_file* last_file = nullptr;
};

// ---- §6 folio_is_longterm_pinnable ------------------------------------------------------

TEST_F(GupLongterm, PinnabilityByZone) {
    unsigned long a = map(4 * kPage);
    ASSERT_EQ(pl_memset(t, a, 1, 4 * kPage), static_cast<long>(4 * kPage));
    page* p = pg(t, a);
    ASSERT_NE(p, nullptr);
    // §6: "false in ZONE_MOVABLE".
    EXPECT_EQ(zone_of(p), ZoneId::Movable) << "precondition: movable allocations land in ZONE_MOVABLE";
    EXPECT_FALSE(pinnable(p));
    // §6: "true for the zero folio" (even though it lives nowhere movable).
    unsigned long z = map(kPage, PROT_READ);
    char c;
    ASSERT_EQ(pl_read(t, z, &c, 1), 1);
    ASSERT_TRUE(is_zero_page(pg(t, z)));
    EXPECT_TRUE(pinnable(pg(t, z)));
}

// ---- §6 the migration loop, one row per backing and API ---------------------------------

struct MigrateRow {
    const char* why;
    std::function<unsigned long(GupLongterm&, unsigned long len)> setup;  // mapped, populated
    unsigned flags;                                                      // FOLL_LONGTERM implied
    bool fast;
};

TEST_F(GupLongterm, UnpinnableFoliosAreMigratedThenPinned) {
    constexpr unsigned long kN = 8;
    const MigrateRow rows[] = {
        {"§6 anon R/W, pin_user_pages: movable pages migrate, the range is re-pinned",
         [](GupLongterm& f, unsigned long len) { return f.map_anon(len); }, FOLL_WRITE, false},
        {"§6 anon R/W, pin_user_pages_fast: GUP-fast refuses unpinnable folios, the slow path migrates",
         [](GupLongterm& f, unsigned long len) { return f.map_anon(len); }, FOLL_WRITE, true},
        {"§6 anon R/O longterm pins migrate too",
         [](GupLongterm& f, unsigned long len) { return f.map_anon(len); }, 0, false},
        {"§6 shared memfd: page-cache folios migrate (shmem is longterm-pinnable R/W)",
         [](GupLongterm& f, unsigned long len) {
             return f.map_file("memfd", len, PROT_READ | PROT_WRITE, MAP_SHARED);
         },
         FOLL_WRITE, false},
        {"§6 shared ext4 mapping, R/O longterm pin (allowed: only R/W needs dirty tracking): the page-cache folio migrates",
         [](GupLongterm& f, unsigned long len) { return f.map_file("ext4", len, PROT_READ, MAP_SHARED); },
         0, true},
    };
    for (const auto& r : rows) {
        SCOPED_TRACE(r.why);
        const unsigned long len = kN * kPage;
        last_file = nullptr;
        unsigned long a = r.setup(*this, len);
        // Populate with recognisable bytes (through a file write for R/O maps).
        std::vector<unsigned long> old_pfn(kN);
        for (unsigned long i = 0; i < kN; ++i) {
            if (pl_write(t, a + i * kPage, "x", 1) != 1) {
                ASSERT_NE(last_file, nullptr) << "a read-only mapping is filled through its file";
                std::string s = "page" + std::to_string(i);
                ASSERT_EQ(pl_pwrite(last_file, s.c_str(), s.size() + 1, i * kPage), static_cast<long>(s.size() + 1));
            } else {
                put_str(t, a + i * kPage, "page" + std::to_string(i));
            }
            char c;
            ASSERT_EQ(pl_read(t, a + i * kPage, &c, 1), 1);
            ASSERT_NE(pg(t, a + i * kPage), nullptr);
            EXPECT_EQ(zone_of(pg(t, a + i * kPage)), ZoneId::Movable) << "precondition";
            old_pfn[i] = page_to_pfn(pg(t, a + i * kPage));
        }
        const unsigned long migrated0 = stat("pgmigrate_success");
        std::vector<page*> pages(kN, nullptr);
        long n = r.fast ? ::pin_user_pages_fast(a, static_cast<int>(kN), r.flags | FOLL_LONGTERM, pages.data())
                        : pin(a, kN, r.flags | FOLL_LONGTERM, pages.data());
        ASSERT_EQ(n, static_cast<long>(kN)) << pl_last_error();
        EXPECT_GE(stat("pgmigrate_success") - migrated0, kN) << "every folio moved";
        for (unsigned long i = 0; i < kN; ++i) {
            SCOPED_TRACE(i);
            EXPECT_TRUE(pinnable(pages[i])) << "§6: after the loop every pinned folio is longterm-pinnable";
            EXPECT_NE(page_to_pfn(pages[i]), old_pfn[i]);
            EXPECT_EQ(pages[i], pg(t, a + i * kPage)) << "the page table maps the pinned (new) frame";
            EXPECT_TRUE(folio_maybe_dma_pinned(page_folio(pages[i])));
            char buf[16] = {};
            ASSERT_EQ(pl_page_read(pages[i], 0, buf, sizeof buf - 1), 0);
            EXPECT_EQ(std::string(buf), "page" + std::to_string(i)) << "contents moved with the folio";
        }
        // Exactly kN pins are outstanding: the first round's were dropped (§6).
        EXPECT_EQ(stat("nr_foll_pin_acquired") - stat("nr_foll_pin_released"), kN);
        unpin_user_pages(pages.data(), kN);
        expect_balanced();
        ASSERT_EQ(pl_munmap(t, a, len), 0);
        ASSERT_EQ(pl_kernel_check(k), 0) << pl_last_error();
    }
}

TEST_F(GupLongterm, FaultsDuringALongtermPinAllocateOutsideMovable) {
    // §6: memalloc_pin_save() — a range that is not populated yet is faulted
    // in with pages that are longterm-pinnable from birth: nothing migrates.
    unsigned long a = map(4 * kPage);
    const unsigned long migrated0 = stat("pgmigrate_success");
    page* pages[4] = {};
    ASSERT_EQ(pin(a, 4, FOLL_WRITE | FOLL_LONGTERM, pages), 4);
    for (page* p : pages) EXPECT_EQ(zone_of(p), ZoneId::Normal);
    EXPECT_EQ(stat("pgmigrate_success"), migrated0);
    unpin_user_pages(pages, 4);
    // The scope ends with the pin: a later ordinary fault is movable again.
    unsigned long b = map(kPage);
    ASSERT_EQ(pl_memset(t, b, 1, kPage), static_cast<long>(kPage));
    EXPECT_EQ(zone_of(pg(t, b)), ZoneId::Movable);
    expect_balanced();
}

TEST_F(GupLongterm, ReadOnlyLongtermPinOfPrivateFilePageUnsharesInstead) {
    // §7: a R/O longterm pin of a page-cache page in a COW mapping unshares
    // it (FAULT_FLAG_UNSHARE) — the pinned page is a fresh anonymous copy,
    // allocated outside MOVABLE because of memalloc_pin_save(): nothing
    // needs migrating.
    unsigned long len = 2 * kPage;
    unsigned long a = map_file("ext4", len, PROT_READ, MAP_PRIVATE);
    ASSERT_EQ(pl_pwrite(last_file, "cache", 6, 0), 6);
    char c;
    ASSERT_EQ(pl_read(t, a, &c, 1), 1);
    ASSERT_FALSE(PageAnon(pg(t, a))) << "precondition: the page cache is mapped";
    const unsigned long migrated0 = stat("pgmigrate_success");
    page* p = nullptr;
    ASSERT_EQ(pin(a, 1, FOLL_LONGTERM, &p), 1);
    EXPECT_TRUE(PageAnon(p));
    EXPECT_TRUE(PageAnonExclusive(p));
    EXPECT_EQ(zone_of(p), ZoneId::Normal);
    EXPECT_EQ(stat("pgmigrate_success"), migrated0);
    char buf[8] = {};
    ASSERT_EQ(pl_page_read(p, 0, buf, 6), 0);
    EXPECT_STREQ(buf, "cache");
    unpin_user_page(p);
    expect_balanced();
}

TEST_F(GupLongterm, SharedFileWritePinsWereAllowedBeforeV6_5) {
    // writable_file_mapping_allowed() and gup_fast_folio_allowed() came with
    // Lorenzo Stoakes' series in v6.5; a v6.4 kernel pins shared ext4 R/W
    // long-term (the bug class the series closed), a current one refuses.
    for (const char* cfg : {"era=v6.4 ram=256M hugetlb_2m=0 hugetlb_1g=0", "ram=256M hugetlb_2m=0 hugetlb_1g=0"}) {
        SCOPED_TRACE(cfg);
        reboot(cfg);
        pl_set_current(t);
        const bool v6_4 = std::string(cfg).find("v6.4") != std::string::npos;
        unsigned long a = map_file("ext4", kPage, PROT_READ | PROT_WRITE, MAP_SHARED);
        put_str(t, a, "ext4");
        page* p = nullptr;
        EXPECT_EQ(pin(a, 1, FOLL_WRITE | FOLL_LONGTERM, &p), v6_4 ? 1 : -EFAULT);
        if (v6_4) unpin_user_page(p);
        EXPECT_EQ(::pin_user_pages_fast(a, 1, FOLL_WRITE | FOLL_LONGTERM, &p), v6_4 ? 1 : -EFAULT);
        if (v6_4) {
            EXPECT_EQ(pl_vmstat(k, "gup_fast_pages"), 1u) << "and GUP-fast took it locklessly";
            unpin_user_page(p);
        }
        expect_balanced();
    }
}

TEST_F(GupLongterm, ShortTermPinsDoNotMigrate) {
    unsigned long a = map(2 * kPage);
    ASSERT_EQ(pl_memset(t, a, 1, 2 * kPage), static_cast<long>(2 * kPage));
    unsigned long pfn = page_to_pfn(pg(t, a));
    page* pages[2] = {};
    ASSERT_EQ(pin(a, 2, FOLL_WRITE, pages), 2);
    EXPECT_EQ(page_to_pfn(pages[0]), pfn) << "§6: if !LONGTERM just pin";
    unpin_user_pages(pages, 2);
    expect_balanced();
}

TEST_F(GupLongterm, PmdMappedThpMigratesAsAWhole) {
    reboot("ram=512M movable=128M thp=always");
    pl_set_current(t);
    unsigned long raw = map(3 * kHuge);
    unsigned long a = (raw + kHuge - 1) & ~(kHuge - 1);
    ASSERT_EQ(pl_memset(t, a, 7, kHuge), static_cast<long>(kHuge));
    ASSERT_EQ(level(t, a), PtLevel::Pmd) << "precondition: PMD-mapped THP";
    ASSERT_EQ(zone_of(pg(t, a)), ZoneId::Movable);
    std::vector<page*> pages(512);
    ASSERT_EQ(pin(a, 512, FOLL_WRITE | FOLL_LONGTERM, pages.data()), 512);
    Folio* f = page_folio(reinterpret_cast<Page*>(pages[0]));
    EXPECT_EQ(f->nr_pages(), 512u) << "the THP moved as one folio";
    EXPECT_EQ(f->zone(), ZoneId::Normal);
    EXPECT_EQ(f->pincount(), 512) << "§5: one _pincount per pinned subpage";
    for (int i = 0; i < 512; ++i) EXPECT_EQ(page_folio(reinterpret_cast<Page*>(pages[i])), f);
    unsigned char byte = 0;
    ASSERT_EQ(pl_page_read(pages[300], 5, &byte, 1), 0);
    EXPECT_EQ(byte, 7);
    unpin_user_pages(pages.data(), 512);
    expect_balanced();
}

TEST_F(GupLongterm, CmaPageblocksAreNotLongtermPinnable) {
    // Most of RAM in CMA pageblocks: upstream's balancing sends movable
    // allocations there once CMA holds over half of the zone's free memory.
    reboot("ram=512M cma=384M hugetlb_2m=0");
    pl_set_current(t);
    unsigned long a = map(kPage);
    ASSERT_EQ(pl_memset(t, a, 3, kPage), static_cast<long>(kPage));
    page* p = pg(t, a);
    ASSERT_EQ(kern().mem->pageblock_migratetype(page_to_pfn(p)), MigrateType::Cma) << "precondition";
    EXPECT_FALSE(pinnable(p)) << "§6: MIGRATE_CMA pageblocks";
    page* pinned = nullptr;
    ASSERT_EQ(pin(a, 1, FOLL_WRITE | FOLL_LONGTERM, &pinned), 1);
    EXPECT_NE(kern().mem->pageblock_migratetype(page_to_pfn(pinned)), MigrateType::Cma);
    EXPECT_TRUE(pinnable(pinned));
    unpin_user_page(pinned);
    expect_balanced();
}

TEST_F(GupLongterm, MigrationFailureDropsEveryPinAndSaysEnomem) {
    // Another (short-term) pin holds the folio: migration cannot move it, so
    // migrate_pages() leaves it behind and the longterm pin fails with
    // -ENOMEM, having dropped every pin it took (§6).
    unsigned long a = map(2 * kPage);
    ASSERT_EQ(pl_memset(t, a, 1, 2 * kPage), static_cast<long>(2 * kPage));
    page* held = nullptr;
    ASSERT_EQ(pin(a + kPage, 1, 0, &held), 1);
    const long outstanding = static_cast<long>(stat("nr_foll_pin_acquired") - stat("nr_foll_pin_released"));
    page* pages[2] = {};
    EXPECT_EQ(pin(a, 2, FOLL_WRITE | FOLL_LONGTERM, pages), -ENOMEM);
    EXPECT_EQ(static_cast<long>(stat("nr_foll_pin_acquired") - stat("nr_foll_pin_released")), outstanding);
    EXPECT_GT(stat("pgmigrate_fail"), 0u);
    // The failed round still migrated the first page. Through GUP-fast that
    // page is now pinned locklessly; the slow path's -ENOMEM for the second
    // cannot be returned because the caller must unpin the first
    // (gup_fast_fallback(): "nr_pinned if any, else the error").
    ASSERT_TRUE(pinnable(pg(t, a)));
    EXPECT_EQ(::pin_user_pages_fast(a, 2, FOLL_WRITE | FOLL_LONGTERM, pages), 1);
    unpin_user_page(pages[0]);
    EXPECT_EQ(::pin_user_pages_fast(a + kPage, 1, FOLL_WRITE | FOLL_LONGTERM, pages), -ENOMEM);
    unpin_user_page(held);
    // Once the other pin is gone the longterm pin succeeds.
    ASSERT_EQ(pin(a, 2, FOLL_WRITE | FOLL_LONGTERM, pages), 2);
    unpin_user_pages(pages, 2);
    expect_balanced();
}

TEST_F(GupLongterm, CheckAndMigrateKeepsPinnableRanges) {
    // check_and_migrate_movable_pages() on pins of pinnable folios: 0, the
    // pins stay (the loop's exit condition).
    unsigned long a = map(2 * kPage);
    page* pages[2] = {};
    ASSERT_EQ(pin(a, 2, FOLL_WRITE | FOLL_LONGTERM, pages), 2);
    EXPECT_EQ(check_and_migrate_movable_pages(kern(), reinterpret_cast<Page**>(pages), 2), 0);
    EXPECT_NE(pages[0], nullptr);
    unpin_user_pages(pages, 2);
    expect_balanced();
}

}  // namespace
}  // namespace pl::test

namespace pl::test {
namespace {

// A FOLL_LONGTERM pin of a driver page that sits in CMA but is not on the
// LRU (a v6.5 CMA dma-buf heap page, faulted in with get_page()): it cannot
// be isolated for migration. Before v6.14 (1aaf8c122918)
// collect_longterm_unpinnable_folios() still counted it, so
// __gup_longterm_locked() dropped and retook the pins forever; the model
// stops after its round cap with a WARN and -ENOMEM.
class GupLongtermNonLru : public KernelTest {
protected:
    void SetUp() override {
        KernelTest::SetUp();
        reboot("ram=512M hugetlb_2m=8 hugetlb_1g=0 cma=64M era=v6.5");
    }
};

TEST_F(GupLongtermNonLru, NonLruCmaPageLoopsBeforeV6_14) {
    expect_reports("warn", 1);
    pl_file* f = pl_dma_heap_alloc(k, "cma", kPage, 0, 0);
    ASSERT_NE(f, nullptr) << pl_last_error();
    files.push_back(f);
    unsigned long a = map(t, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    ASSERT_EQ(pl_memset(t, a, 3, kPage), static_cast<long>(kPage));
    pl_set_current(t);
    page* p[1] = {};
    const unsigned long acquired = pl_vmstat(k, "nr_foll_pin_acquired");
    EXPECT_EQ(pin_user_pages_fast(a, 1, FOLL_WRITE | FOLL_LONGTERM, p), -ENOMEM);
    EXPECT_GT(pl_vmstat(k, "nr_foll_pin_acquired") - acquired, 1UL) << "pinned, dropped and pinned again";
    EXPECT_EQ(pl_pin_balance(k, nullptr), 0);
    EXPECT_NE(std::string(pl_dmesg(k)).find("migration rounds"), std::string::npos) << pl_dmesg(k);
    // Without FOLL_LONGTERM nothing needs to move.
    ASSERT_EQ(pin_user_pages_fast(a, 1, FOLL_WRITE, p), 1);
    unpin_user_page(p[0]);
}

}  // namespace
}  // namespace pl::test
