// FOLL_LONGTERM migration in batches (issue 7): check_and_migrate_movable_pages()
// collects each unpinnable folio once and hands the list to migrate_pages(),
// which unmaps a batch of up to NR_MAX_BATCHED_MIGRATION pages before moving
// any of it, leaves the folios it could not move on the list (upstream
// mm/migrate.c migrate_pages()/migrate_pages_batch()), and moves each frame's
// contents to its target (folio_mc_copy()).
#include <cstring>
#include <vector>

#include "gup/foll_flags.h"
#include "gup/longterm_pinnable.h"
#include "mm/internal.h"
#include "test_kernel.h"

namespace pl::test {
namespace {

class LongtermMigrateBatch : public KernelTest {
protected:
    void SetUp() override {
        // Anonymous and page-cache folios are born in ZONE_MOVABLE.
        boot("ram=512M movable=128M hugetlb_2m=0 hugetlb_1g=0 thp=never");
        pl_set_current(t);
    }
    unsigned long stat(const char* n) { return pl_vmstat(k, n); }
    void repeated(unsigned long gap);
    static Folio* folio_of(page* p) { return page_folio(reinterpret_cast<Page*>(p)); }
    long pin(unsigned long a, unsigned long n, unsigned flags, page** pages) {
        mmap_read_lock(pl_task_mm(t));
        const long r = ::pin_user_pages(a, n, flags, pages);
        mmap_read_unlock(pl_task_mm(t));
        return r;
    }
    // Page i of a mapping carries its own index in its first word.
    void tag(unsigned long a, unsigned long pages) {
        for (unsigned long i = 0; i < pages; ++i) {
            const uint64_t v = 0x1000 + i;
            ASSERT_EQ(pl_write(t, a + i * kPage, &v, sizeof v), 8);
        }
    }
    uint64_t tag_at(unsigned long addr) {
        uint64_t v = 0;
        EXPECT_EQ(pl_read(t, addr, &v, sizeof v), 8);
        return v;
    }
};

// collect_longterm_unpinnable_folios(): a folio that appears twice in the
// array, not next to itself (one shmem page mapped at two addresses of the
// range), is isolated once — a second isolation reference would make its
// own migration fail (folio_migrate_mapping()'s reference check), -ENOMEM.
// `gap` pages are allocated between the two file pages, so that their pfns
// lie close together (0) or far apart (6000: collect()'s set of seen folios
// switches from a pfn bitmap to a hash of the folios).

TEST_F(LongtermMigrateBatch, AFolioRepeatedInTheRangeIsIsolatedOnce) { repeated(0); }
TEST_F(LongtermMigrateBatch, AFolioRepeatedInAScatteredRangeIsIsolatedOnce) { repeated(6000); }

void LongtermMigrateBatch::repeated(unsigned long gap) {
    pl_file* f = file("memfd", 2 * kPage);
    const unsigned long a = map(3 * kPage);  // reserve three consecutive pages
    map(t, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, f, 0, a);
    map(t, kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, f, 0, a + 2 * kPage);
    put_str(t, a, "zero");
    if (gap) {
        const unsigned long g = map(gap * kPage);
        ASSERT_EQ(pl_madvise(t, g, gap * kPage, MADV_POPULATE_WRITE), 0) << pl_last_error();
    }
    put_str(t, a + kPage, "one");
    if (gap) {
        const long d = static_cast<long>(page_to_pfn(pg(t, a + kPage))) - static_cast<long>(page_to_pfn(pg(t, a)));
        ASSERT_GT(d < 0 ? -d : d, 5000) << "precondition: the two file pages lie far apart";
    }
    ASSERT_EQ(get_str(t, a + 2 * kPage), "zero");  // faults the second mapping in
    ASSERT_EQ(pg(t, a), pg(t, a + 2 * kPage)) << "precondition: file page 0 mapped twice";
    ASSERT_EQ(folio_at(t, a)->zone(), ZoneId::Movable) << "precondition";
    const unsigned long migrated0 = stat("pgmigrate_success");
    page* pages[3] = {};
    ASSERT_EQ(pin(a, 3, FOLL_WRITE | FOLL_LONGTERM, pages), 3);
    EXPECT_EQ(pages[0], pages[2]);
    for (page* p : pages) EXPECT_TRUE(folio_is_longterm_pinnable(*kern().mem, folio_of(p)));
    EXPECT_EQ(stat("pgmigrate_success") - migrated0, 2u) << "two folios, each migrated once";
    EXPECT_EQ(get_str(t, a + 2 * kPage), "zero");
    EXPECT_EQ(get_str(t, a + kPage), "one");
    unpin_user_pages(pages, 3);
    EXPECT_EQ(stat("nr_foll_pin_acquired"), stat("nr_foll_pin_released"));
}

// migrate_pages() over more than one batch (600 pages: 512 + 88), two of
// them pinned by someone else: those two stay on the list, still held by the
// caller's reference; every other folio moved to a GFP_USER target with its
// contents and mapping.
TEST_F(LongtermMigrateBatch, MigratePagesLeavesWhatCannotMoveOnTheList) {
    constexpr unsigned long kN = 600;
    const unsigned long a = map(kN * kPage);
    tag(a, kN);
    page* held[2] = {};
    ASSERT_EQ(pin(a + 100 * kPage, 1, 0, &held[0]), 1);
    ASSERT_EQ(pin(a + 550 * kPage, 1, 0, &held[1]), 1);
    std::vector<Folio*> list;
    for (unsigned long i = 0; i < kN; ++i) {
        Folio* f = folio_at(t, a + i * kPage);
        ASSERT_EQ(f->zone(), ZoneId::Movable) << "precondition: page " << i;
        f->ref_add(1);  // the isolation reference migrate_pages() consumes
        list.push_back(f);
    }
    const unsigned long migrated0 = stat("pgmigrate_success");
    const uint64_t buffers0 = kern().mem->nr_data_buffers();
    EXPECT_EQ(migrate_pages(kern(), list, GFP_USER, MigrateReason::LongtermPin), 2u);
    ASSERT_EQ(list.size(), 2u);
    EXPECT_EQ(list[0], folio_of(held[0]));
    EXPECT_EQ(list[1], folio_of(held[1]));
    for (Folio* f : list) kern().mem->folio_put(f);  // putback_movable_pages()
    EXPECT_EQ(stat("pgmigrate_success") - migrated0, kN - 2);
    // The contents moved with the frames: no buffer was added or lost.
    EXPECT_EQ(kern().mem->nr_data_buffers(), buffers0);
    for (unsigned long i = 0; i < kN; ++i) {
        const bool pinned = i == 100 || i == 550;
        EXPECT_EQ(folio_at(t, a + i * kPage)->zone(), pinned ? ZoneId::Movable : ZoneId::Normal) << "page " << i;
        EXPECT_EQ(tag_at(a + i * kPage), 0x1000 + i) << "page " << i;
    }
    unpin_user_pages(held, 2);
}

// folio_mc_copy() of a frame that was never written: its contents are zero
// and stay so on the target, which gets no contents buffer either.
TEST_F(LongtermMigrateBatch, ABufferlessFrameMigratesBufferless) {
    constexpr unsigned long kN = 8;
    const unsigned long a = map(kN * kPage);
    ASSERT_EQ(pl_madvise(t, a, kN * kPage, MADV_POPULATE_WRITE), 0) << pl_last_error();
    ASSERT_EQ(folio_at(t, a)->zone(), ZoneId::Movable) << "precondition";
    const uint64_t buffers0 = kern().mem->nr_data_buffers();
    page* pages[kN] = {};
    ASSERT_EQ(pin(a, kN, FOLL_WRITE | FOLL_LONGTERM, pages), static_cast<long>(kN));
    EXPECT_EQ(kern().mem->nr_data_buffers(), buffers0);
    for (unsigned long i = 0; i < kN; ++i) {
        EXPECT_EQ(folio_of(pages[i])->zone(), ZoneId::Normal);
        EXPECT_EQ(tag_at(a + i * kPage), 0u);
    }
    unpin_user_pages(pages, kN);
}

}  // namespace
}  // namespace pl::test
