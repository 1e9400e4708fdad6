// Transparent huge pages: PMD faults, the huge zero page, splitting, COW of a
// THP after fork, MADV_COLLAPSE (upstream mm/huge_memory.c, mm/khugepaged.c).
#include "gup/longterm_pinnable.h"
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

// try_grab_folio() / gup_put_folio() skip only the 4 KiB zero page
// (is_zero_folio()); the huge zero folio is pinned like any large folio:
// _pincount and one reference per page, NR_FOLL_PIN_ACQUIRED/RELEASED. The
// host (Linux 6.18) counts +1 for a pin on the huge zero page, +0 for the 4K
// one (examples/conform/regress_huge_zero_pin.pin). Both walks: with
// pmd_special the lockless one leaves the huge zero PMD to follow_huge_pmd().
TEST_F(Thp, PinsOnTheHugeZeroPageAreCountedNotOnTheSmallOne) {
    for (const char* cfg : {"ram=256M hugetlb_2m=0 thp=always arch.pmd_special=on",
                            "ram=256M hugetlb_2m=0 thp=always arch.pmd_special=off"}) {
        SCOPED_TRACE(cfg);
        reboot(cfg);
        const unsigned long huge = map_huge();
        const unsigned long small = map(kPage);  // no room for a PMD: do_anonymous_page()
        EXPECT_EQ(get_str(t, huge + 3 * kPage), "");
        EXPECT_EQ(get_str(t, small), "");
        ASSERT_EQ(level(t, huge), PtLevel::Pmd);
        Folio* hz = folio_at(t, huge);
        Folio* z = folio_at(t, small);
        ASSERT_TRUE(hz && z);
        ASSERT_TRUE(kern().mem->is_huge_zero_folio(hz));
        ASSERT_TRUE(kern().mem->is_zero_folio(z));
        // folio_is_longterm_pinnable(): the small one by rule, the huge one
        // by its zone (allocated without __GFP_MOVABLE).
        EXPECT_TRUE(folio_is_longterm_pinnable(*kern().mem, z));
        EXPECT_TRUE(folio_is_longterm_pinnable(*kern().mem, hz));
        struct Row {
            const char* why;
            unsigned long addr;
            int nr;
            unsigned flags;
            bool fast;
            bool counted;
        };
        const Row rows[] = {
            {"huge zero, pin_user_pages_fast()", huge + 2 * kPage, 3, 0, true, true},
            {"huge zero, pin_user_pages_remote()", huge + 2 * kPage, 3, 0, false, true},
            {"4K zero page, pin_user_pages_fast()", small, 1, 0, true, false},
            {"4K zero page, pin_user_pages_remote()", small, 1, 0, false, false},
        };
        for (const Row& r : rows) {
            SCOPED_TRACE(r.why);
            Folio* f = r.counted ? hz : z;
            const unsigned long acq = pl_vmstat(k, "nr_foll_pin_acquired");
            const unsigned long rel = pl_vmstat(k, "nr_foll_pin_released");
            const int ref = f->ref_count();
            const int pins = r.counted ? f->pincount() : 0;
            std::vector<page*> pages(r.nr, nullptr);
            long n;
            if (r.fast) {
                pl_set_current(t);
                n = pin_user_pages_fast(r.addr, r.nr, r.flags, pages.data());
            } else {
                int locked = 1;
                mmap_read_lock(pl_task_mm(t));
                n = pin_user_pages_remote(pl_task_mm(t), r.addr, r.nr, r.flags, pages.data(), &locked);
                if (locked) mmap_read_unlock(pl_task_mm(t));
            }
            ASSERT_EQ(n, r.nr) << pl_last_error();
            for (page* p : pages) EXPECT_EQ(page_folio(reinterpret_cast<Page*>(p)), f);
            const int want = r.counted ? r.nr : 0;
            EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired") - acq, static_cast<unsigned long>(want));
            EXPECT_EQ(f->ref_count() - ref, want) << "large folio: one reference per pin";
            if (r.counted) {
                EXPECT_EQ(f->pincount() - pins, want);
            }
            EXPECT_EQ(f->maybe_dma_pinned(), r.counted);
            EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();  // the pins are in the ledger
            unpin_user_pages(pages.data(), pages.size());
            EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_released") - rel, static_cast<unsigned long>(want));
            EXPECT_EQ(f->ref_count(), ref);
            if (r.counted) {
                EXPECT_EQ(f->pincount(), pins);
            }
        }
        EXPECT_TRUE(kern().mem->is_huge_zero_folio(folio_at(t, huge))) << "still mapped, never migrated";
    }
}

// do_huge_pmd_anonymous_page() calls vmf_anon_prepare() before it maps the
// huge zero page, so the VMA has an anon_vma and fork's vma_needs_copy()
// copies the huge zero PMD: the child has it mapped without faulting.
// do_anonymous_page()'s 4 KiB zero page is mapped before any anon_vma: a
// VMA holding only that is skipped at fork and the child faults it again.
// Host (Linux 6.18): pagemap present for the huge one, not for the 4K one
// (examples/conform/regress_huge_zero_fork.pin).
TEST_F(Thp, ForkCopiesAHugeZeroPmdButNotALoneSmallZeroPte) {
    const unsigned long huge = map_huge();
    // Read-only, so that it cannot merge with (and share the anon_vma of) `huge`.
    const unsigned long small = map(kPage, PROT_READ);
    EXPECT_EQ(get_str(t, huge + 2044 * 1024), "");
    EXPECT_EQ(get_str(t, small), "");
    EXPECT_NE(mm().vma_lookup(huge)->anon_vma, nullptr) << "vmf_anon_prepare() ran for the huge zero page";
    EXPECT_EQ(mm().vma_lookup(small)->anon_vma, nullptr) << "the 4K zero page needs no anon_vma";
    task_struct* c = pl_fork(t);
    ASSERT_NE(c, nullptr);
    ASSERT_EQ(level(c, huge), PtLevel::Pmd);
    EXPECT_TRUE(kern().mem->is_huge_zero_folio(folio_at(c, huge + 2044 * 1024)));
    EXPECT_FALSE(write(entry(c, huge)));
    EXPECT_EQ(entry(c, small), 0u) << "vma_needs_copy(): no anon_vma, nothing copied";
    EXPECT_EQ(get_str(c, small), "");
    EXPECT_TRUE(is_zero_page(pg(c, small))) << "faulted in again";
    EXPECT_NE(entry(c, small), 0u);
    // The child's write gets it a THP of its own; the parent keeps the zero page.
    put_str(c, huge + kPage, "child");
    EXPECT_FALSE(kern().mem->is_huge_zero_folio(folio_at(c, huge)));
    EXPECT_TRUE(kern().mem->is_huge_zero_folio(folio_at(t, huge)));
    EXPECT_EQ(get_str(t, huge + kPage), "");
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

// do_huge_pmd_wp_page() on a THP shared after fork: the writer's PMD is split
// (__split_huge_pmd()) and do_wp_page() copies the one page; the other keeps
// its PMD. Counts afterwards (CONFIG_PAGE_MAPCOUNT): the parent's PMD is one
// entire mapping, the child's 511 PTEs one per page, each holding a
// reference. Once the child is gone the parent's next write reuses the whole
// PMD (folio_ref_count() == 1). The host agreed on every pagemap bit of this
// (examples/conform/regress_thp_cow_pagemap_exclusive.pin).
TEST_F(Thp, CowOfASharedPmdSplitsOnlyTheWriter) {
    const unsigned long a = map_huge();
    put_str(t, a, "A1#");
    task_struct* c = pl_fork(t);
    ASSERT_NE(c, nullptr);
    Folio* f = folio_at(t, a);
    put_str(c, a, "B2#");
    EXPECT_EQ(level(t, a), PtLevel::Pmd) << "the parent keeps its PMD";
    EXPECT_EQ(level(c, a), PtLevel::Pte);
    EXPECT_NE(folio_at(c, a), f) << "the child's copy of page 0";
    EXPECT_EQ(folio_at(c, a + kPage), f);
    EXPECT_EQ(f->entire_mapcount(), 1);
    EXPECT_EQ(page_mapcount(f->page(0)), 1) << "the parent's PMD only";
    EXPECT_EQ(page_mapcount(f->page(1)), 2) << "the parent's PMD and the child's PTE";
    EXPECT_EQ(page_mapcount(f->page(511)), 2);
    EXPECT_EQ(f->mapcount(), 512) << "1 PMD + 511 PTEs";
    EXPECT_EQ(f->ref_count(), 512);
    EXPECT_FALSE(PageAnonExclusive(f->head()));
    pl_exit(c);
    EXPECT_EQ(f->ref_count(), 1);
    put_str(t, a + kPage, "A2#");
    EXPECT_EQ(level(t, a), PtLevel::Pmd) << "reused, not split";
    EXPECT_EQ(folio_at(t, a + kPage), f);
    EXPECT_TRUE(PageAnonExclusive(f->head()));
    EXPECT_EQ(get_str(t, a), "A1#");
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

// madvise_collapse(): the rules around the collapse itself (found by
// pinlab conform, examples/conform/regress_madv_collapse.pin).
TEST_F(Thp, CollapseNeedsAnAnonVmaAndRoomForAPmd) {
    unsigned long a = map_huge();
    // __thp_vma_allowable_orders(): outside a fault, no anon_vma, no THP.
    EXPECT_EQ(pl_madvise(t, a, kPage, MADV_COLLAPSE), -EINVAL);
    EXPECT_EQ(get_str(t, a), "");  // a read fault: the huge zero page, and an anon_vma
    // A range holding no whole PMD collapses nothing: 0 of 0.
    EXPECT_EQ(pl_madvise(t, a, kPage, MADV_COLLAPSE), 0);
    // find_pmd_or_thp_or_none(): a PMD leaf, the huge zero page too, is
    // SCAN_PMD_MAPPED: done, and left as it is.
    EXPECT_EQ(pl_madvise(t, a, kHuge, MADV_COLLAPSE), 0);
    EXPECT_EQ(level(t, a), PtLevel::Pmd);
    EXPECT_TRUE(is_zero_page(pg(t, a)));
    // thp_vma_suitable_order(): a VMA that cannot hold an aligned PMD.
    unsigned long small = map(16 * kPage);
    put_str(t, small, "x");
    EXPECT_EQ(pl_madvise(t, small, 16 * kPage, MADV_COLLAPSE), -EINVAL);
}

// zap_pmd_range(): a partial MADV_DONTNEED of a huge-zero PMD splits it into
// PTEs of the small zero page (__split_huge_zero_page_pmd()) and zaps only
// the range (examples/conform/regress_huge_zero_partial_zap.pin).
TEST_F(Thp, PartialZapOfTheHugeZeroPageKeepsTheRest) {
    unsigned long a = map_huge();
    EXPECT_EQ(get_str(t, a), "");
    ASSERT_EQ(level(t, a), PtLevel::Pmd);
    ASSERT_EQ(pl_madvise(t, a + kPage, kPage, MADV_DONTNEED), 0);
    EXPECT_EQ(level(t, a), PtLevel::Pte);
    EXPECT_TRUE(is_zero_page(pg(t, a)));
    EXPECT_EQ(pg(t, a + kPage), nullptr);
    EXPECT_TRUE(is_zero_page(pg(t, a + kHuge - kPage)));
}

}  // namespace
}  // namespace pl::test
