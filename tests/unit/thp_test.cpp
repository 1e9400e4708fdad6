// Transparent huge pages: PMD faults, the huge zero page, splitting, COW of a
// THP after fork, MADV_COLLAPSE (upstream mm/huge_memory.c, mm/khugepaged.c).
#include "test_kernel.h"

namespace pl::test {
namespace {

using namespace pte;

constexpr unsigned long kHuge = 2UL << 20;

class Thp : public KernelTest {
protected:
    // A 2 MiB-aligned anonymous range of n huge pages.
    unsigned long map_huge(unsigned long n = 1) { return map(n * kHuge); }
};

TEST_F(Thp, WriteFaultMapsAPmdThp) {
    unsigned long a = map_huge();
    ASSERT_EQ(a % kHuge, 0u) << "anonymous mappings of whole PMDs are PMD-aligned";
    put_str(t, a + 5 * kPage, "thp");
    EXPECT_EQ(level(t, a), PtLevel::Pmd);
    Folio* f = folio_at(t, a);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->order(), PMD_ORDER);
    EXPECT_EQ(f->entire_mapcount(), 1);
    EXPECT_EQ(f->ref_count(), 1);
    EXPECT_TRUE(PageAnonExclusive(f->head()));
    EXPECT_EQ(get_str(t, a + 5 * kPage), "thp");
    EXPECT_EQ(pl_vmstat(k, "thp_fault_alloc"), 1u);
}

TEST_F(Thp, ReadFaultMapsTheHugeZeroPageAndAWriteReplacesIt) {
    unsigned long a = map_huge();
    EXPECT_EQ(get_str(t, a), "");
    EXPECT_EQ(level(t, a), PtLevel::Pmd);
    EXPECT_TRUE(is_zero_page(pg(t, a)));
    EXPECT_FALSE(write(entry(t, a)));
    put_str(t, a + kPage, "w");
    EXPECT_FALSE(is_zero_page(pg(t, a)));
    EXPECT_EQ(folio_at(t, a)->order(), PMD_ORDER);
    EXPECT_EQ(get_str(t, a + kPage), "w");
}

TEST_F(Thp, NeverAndMadviseModes) {
    reboot("ram=256M hugetlb_2m=0 thp=never");
    unsigned long a = map_huge();
    put_str(t, a, "x");
    EXPECT_EQ(level(t, a), PtLevel::Pte);
    reboot("ram=256M hugetlb_2m=0 thp=madvise");
    unsigned long b = map_huge(2);
    ASSERT_EQ(pl_madvise(t, b + kHuge, kHuge, MADV_HUGEPAGE), 0);
    put_str(t, b, "x");
    put_str(t, b + kHuge, "y");
    EXPECT_EQ(level(t, b), PtLevel::Pte);
    EXPECT_EQ(level(t, b + kHuge), PtLevel::Pmd);
}

//   [ THP: 512 pages, one PMD ]   munmap(page 7)   [ 7 pages ][ hole ][ 504 pages ]
//                                 ─────────────►   one PTE table, folio still order 9
TEST_F(Thp, PartialMunmapSplitsThePmdAndKeepsTheFolio) {
    unsigned long a = map_huge();
    put_str(t, a, "head");
    put_str(t, a + 100 * kPage, "tail");
    Folio* f = folio_at(t, a);
    ASSERT_EQ(pl_munmap(t, a + 7 * kPage, kPage), 0);
    EXPECT_EQ(level(t, a), PtLevel::Pte);
    EXPECT_EQ(folio_at(t, a), f);
    EXPECT_EQ(f->entire_mapcount(), 0);
    EXPECT_EQ(f->large_mapcount(), 511);
    EXPECT_EQ(f->nr_pages_mapped(), 511);
    EXPECT_EQ(f->ref_count(), 511) << "one reference per PTE mapping";
    EXPECT_TRUE(PageAnonExclusive(f->page(100))) << "the head's flag spreads to every subpage";
    EXPECT_EQ(get_str(t, a), "head");
    EXPECT_EQ(get_str(t, a + 100 * kPage), "tail");
    EXPECT_EQ(get_str(t, a + 7 * kPage), "<EFAULT>");
}

TEST_F(Thp, CowAfterForkSplitsAndCopiesOneSubpage) {
    unsigned long a = map_huge();
    put_str(t, a + 3 * kPage, "parent");
    task_struct* c = pl_fork(t);
    ASSERT_NE(c, nullptr);
    Folio* f = folio_at(t, a);
    EXPECT_EQ(folio_at(c, a), f);
    EXPECT_EQ(f->entire_mapcount(), 2);
    EXPECT_FALSE(PageAnonExclusive(f->head()));
    put_str(c, a + 3 * kPage, "child");
    EXPECT_EQ(level(c, a), PtLevel::Pte) << "the child's PMD was split";
    EXPECT_EQ(folio_at(c, a + 3 * kPage)->order(), 0u) << "only the written subpage was copied";
    EXPECT_EQ(folio_at(c, a + 4 * kPage), f);
    EXPECT_EQ(get_str(t, a + 3 * kPage), "parent");
    EXPECT_EQ(get_str(c, a + 3 * kPage), "child");
}

TEST_F(Thp, ForkWithAPinnedThpCopiesAtPteLevel) {
    unsigned long a = map_huge();
    put_str(t, a, "pinned");
    Folio* f = folio_at(t, a);
    mm().set_flag(MMF_HAS_PINNED);
    f->ref_add(1);  // a large folio pin: +1 ref, +1 pincount
    f->pincount_add(1);
    kern().ref_note(f, 1);
    task_struct* c = pl_fork(t);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(level(t, a), PtLevel::Pte) << "copy_huge_pmd() split the parent's PMD";
    EXPECT_NE(folio_at(c, a), f);
    EXPECT_TRUE(PageAnonExclusive(f->page(0)));
    EXPECT_EQ(get_str(c, a), "pinned");
    f->pincount_add(-1);
    kern().ref_note(f, -1);
    f->ref_sub_and_test(1);
}

TEST_F(Thp, CollapseBuildsAThpFromPtes) {
    reboot("ram=256M hugetlb_2m=0 thp=never");
    unsigned long a = map_huge();
    for (unsigned i = 0; i < 512; i += 64) put_str(t, a + i * kPage, "p" + std::to_string(i));
    EXPECT_EQ(level(t, a), PtLevel::Pte);
    ASSERT_EQ(pl_madvise(t, a, kHuge, MADV_COLLAPSE), 0) << pl_last_error();
    EXPECT_EQ(level(t, a), PtLevel::Pmd);
    EXPECT_EQ(folio_at(t, a)->order(), PMD_ORDER);
    for (unsigned i = 0; i < 512; i += 64) EXPECT_EQ(get_str(t, a + i * kPage), "p" + std::to_string(i));
    EXPECT_EQ(get_str(t, a + kPage), "");
}

TEST_F(Thp, CollapseRefusesPagesWithExtraReferences) {
    reboot("ram=256M hugetlb_2m=0 thp=never");
    unsigned long a = map_huge();
    put_str(t, a, "x");
    page* p = pg(t, a);
    get_page(p);
    EXPECT_EQ(pl_madvise(t, a, kHuge, MADV_COLLAPSE), -EAGAIN);
    put_page(p);
    EXPECT_EQ(pl_madvise(t, a, kHuge, MADV_COLLAPSE), 0);
}

TEST_F(Thp, CollapseAfterForkLeavesTheChildItsPages) {
    reboot("ram=256M hugetlb_2m=0 thp=never");
    unsigned long a = map_huge();
    put_str(t, a, "before");
    task_struct* c = pl_fork(t);
    ASSERT_EQ(pl_madvise(t, a, kHuge, MADV_COLLAPSE), 0);
    put_str(t, a, "parent");
    EXPECT_EQ(get_str(c, a), "before");
    EXPECT_EQ(get_str(t, a), "parent");
}

TEST_F(Thp, SplitFolioRefusedWhileReferenced) {
    unsigned long a = map_huge();
    put_str(t, a, "x");
    ASSERT_EQ(pl_munmap(t, a + kHuge - kPage, kPage), 0);  // PTE-map it
    Folio* f = folio_at(t, a);
    PhysMem& mem = *kern().mem;
    f->ref_add(1);
    f->lock();
    f->ref_add(1);  // somebody else's reference (a GUP pin, say)
    Status refused = split_folio(mem, f);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error(), Error(EBUSY));
    f->ref_sub_and_test(1);
    Status s = split_folio(mem, f);
    EXPECT_TRUE(s.ok());
    f->unlock();
    mem.folio_put(f);
    EXPECT_EQ(folio_at(t, a + kPage)->order(), 0u);
    EXPECT_EQ(get_str(t, a), "x");
}

}  // namespace
}  // namespace pl::test
