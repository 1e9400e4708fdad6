// CONFIG_PT_RECLAIM: MADV_DONTNEED frees the PTE tables it leaves empty
// (upstream mm/pt_reclaim.c, zap_pte_range() with zap_details.reclaim_pt,
// v6.15+ "mm: make MADV_DONTNEED free empty page tables"). Found missing by
// `pinlab conform` (examples/conform/regress_pt_reclaim.pin).
#include <thread>
#include <vector>

#include "base/sync/atomic.h"
#include "gup/foll_flags.h"
#include "test_kernel.h"

namespace pl::test {
namespace {

constexpr unsigned long kPmd = 2UL << 20;
// PMD-aligned, so that which PTE table a range covers is known.
constexpr unsigned long kBase = 1UL << 30;

class PtReclaim : public KernelTest {
protected:
    unsigned long map_at(unsigned long len) {
        return map(t, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, nullptr, 0, kBase);
    }
    // Is the PMD slot for addr a PTE table (rather than none or a PMD leaf)?
    bool has_pte_table(unsigned long addr) {
        sync::SpinGuard g(mm().page_table_lock);
        pte::entry_t* pmd = mm().pgtable.pmd_slot(addr, /*alloc=*/false);
        return pmd && pte::is_table(sync::load(*pmd));
    }
    bool pmd_none(unsigned long addr) {
        sync::SpinGuard g(mm().page_table_lock);
        pte::entry_t* pmd = mm().pgtable.pmd_slot(addr, /*alloc=*/false);
        return !pmd || pte::none(sync::load(*pmd));
    }
    void touch(unsigned long addr, unsigned long len) {
        ASSERT_EQ(pl_memset(t, addr, 0x5a, len), static_cast<long>(len)) << pl_last_error();
    }
};

// try_get_and_clear_pmd()/free_pte(): a DONTNEED covering a whole PTE table
// frees it, so the PMD is none afterwards; an adjacent table that the range
// does not cover entirely stays. A table that was already empty before the
// DONTNEED goes too (zap_pmd_range() visits every non-none PMD).
TEST_F(PtReclaim, DontneedOfWholeTableFreesIt) {
    reboot("ram=256M hugetlb_2m=0 hugetlb_1g=0 thp=never");
    const unsigned long a = map_at(3 * kPmd);
    touch(a, 3 * kPmd);
    for (unsigned long off = 0; off < 3 * kPmd; off += kPmd) ASSERT_TRUE(has_pte_table(a + off));

    // [a, a + 2M + 4K): the first table wholly, the second one page of it.
    ASSERT_EQ(pl_madvise(t, a, kPmd + kPage, MADV_DONTNEED), 0) << pl_last_error();
    EXPECT_TRUE(pmd_none(a)) << "empty PTE table left in place";
    EXPECT_TRUE(has_pte_table(a + kPmd)) << "partly covered table must stay";
    EXPECT_EQ(entry(t, a + kPmd), 0u);
    EXPECT_NE(entry(t, a + kPmd + kPage), 0u);

    // The third table, emptied page by page (each DONTNEED smaller than a
    // PMD keeps it), then zapped whole while already empty: freed.
    const unsigned long c = a + 2 * kPmd;
    ASSERT_EQ(pl_madvise(t, c, kPmd / 2, MADV_DONTNEED), 0);
    ASSERT_EQ(pl_madvise(t, c + kPmd / 2, kPmd / 2, MADV_DONTNEED), 0);
    ASSERT_TRUE(has_pte_table(c)) << "reclaim_pt_is_enabled() needs a range of at least PMD_SIZE";
    ASSERT_EQ(pl_madvise(t, c, kPmd, MADV_DONTNEED), 0);
    EXPECT_TRUE(pmd_none(c));

    // The hole faults again as usual (a fresh table, zero-filled data).
    EXPECT_EQ(get_str(t, a + 5 * kPage, 1), "");
    touch(a, kPage);
    EXPECT_TRUE(has_pte_table(a));
}

// The conform repro: a THP split to PTEs (here by a partial DONTNEED), then
// DONTNEED of the whole 2M. With the table freed, the next read fault takes
// do_huge_pmd_anonymous_page(): the huge zero page at PMD level, whose pin
// GUP counts (nr_foll_pin_acquired), unlike the 4K zero page's.
TEST_F(PtReclaim, ReadAfterDontneedMapsHugeZeroPage) {
    reboot("ram=256M hugetlb_2m=0 hugetlb_1g=0 thp=always");
    const unsigned long a = map_at(kPmd);
    touch(a, kPage);
    ASSERT_EQ(level(t, a), PtLevel::Pmd) << "expected a THP";
    ASSERT_EQ(pl_madvise(t, a + kPage, kPage, MADV_DONTNEED), 0);
    ASSERT_TRUE(has_pte_table(a)) << "partial DONTNEED splits the PMD";

    ASSERT_EQ(pl_madvise(t, a, kPmd, MADV_DONTNEED), 0) << pl_last_error();
    EXPECT_TRUE(pmd_none(a));

    EXPECT_EQ(get_str(t, a, 1), "");
    ASSERT_EQ(level(t, a), PtLevel::Pmd);
    Folio* f = folio_at(t, a);
    ASSERT_NE(f, nullptr);
    EXPECT_TRUE(kern().mem->is_any_zero_folio(f));
    EXPECT_EQ(f->nr_pages(), 512u);

    pl_set_current(t);
    const unsigned long before = pl_vmstat(k, "nr_foll_pin_acquired");
    page* p = nullptr;
    ASSERT_EQ(pin_user_pages_fast(a, 1, 0, &p), 1);
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired") - before, 1u) << "huge zero folio pins are counted";
    unpin_user_page(p);
}

// Tables the range does not cover entirely stay even when the range is 2M or
// more (reclaim_pt_is_enabled() looks at the part inside one PMD): here the
// first table keeps the entry at a, the second the one after the range.
TEST_F(PtReclaim, UnalignedRangeKeepsTablesWithEntriesLeft) {
    reboot("ram=256M hugetlb_2m=0 hugetlb_1g=0 thp=never");
    const unsigned long a = map_at(2 * kPmd);
    touch(a, 2 * kPmd);
    ASSERT_EQ(pl_madvise(t, a + kPage, kPmd, MADV_DONTNEED), 0);
    EXPECT_TRUE(has_pte_table(a));
    EXPECT_TRUE(has_pte_table(a + kPmd));
    EXPECT_NE(entry(t, a), 0u);
    EXPECT_NE(entry(t, a + kPmd + kPage), 0u);

    // Smaller than a PMD, even when it empties the table: kept.
    ASSERT_EQ(pl_madvise(t, a, kPage, MADV_DONTNEED), 0);
    EXPECT_TRUE(has_pte_table(a));
}

// A DONTNEED across two VMAs zaps each VMA's part separately
// (madvise_walk_vmas()), and neither part covers the table: it stays, empty.
TEST_F(PtReclaim, OnlyWholeTablesOfOneZapGo) {
    reboot("ram=256M hugetlb_2m=0 hugetlb_1g=0 thp=never");
    const unsigned long a = map_at(kPmd);
    touch(a, kPmd);
    ASSERT_EQ(pl_mprotect(t, a + kPmd / 2, kPmd / 2, PROT_READ), 0) << pl_last_error();
    ASSERT_EQ(pl_madvise(t, a, kPmd, MADV_DONTNEED), 0) << pl_last_error();
    EXPECT_EQ(entry(t, a), 0u);
    EXPECT_EQ(entry(t, a + kPmd - kPage), 0u);
    EXPECT_TRUE(has_pte_table(a)) << "madvise_walk_vmas() zaps each VMA's part on its own";
}

// Eras before v6.15 have no CONFIG_PT_RECLAIM: the empty table stays, and the
// next read maps the 4K zero page in it.
TEST_F(PtReclaim, OlderErasKeepTheTable) {
    reboot("era=v6.5 ram=256M hugetlb_2m=0 hugetlb_1g=0 thp=always");
    const unsigned long a = map_at(kPmd);
    touch(a, kPage);
    ASSERT_EQ(pl_madvise(t, a + kPage, kPage, MADV_DONTNEED), 0);
    ASSERT_TRUE(has_pte_table(a));
    ASSERT_EQ(pl_madvise(t, a, kPmd, MADV_DONTNEED), 0);
    EXPECT_TRUE(has_pte_table(a));
    EXPECT_EQ(get_str(t, a, 1), "");
    EXPECT_EQ(level(t, a), PtLevel::Pte);
    Folio* f = folio_at(t, a);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->nr_pages(), 1u) << "the 4K zero page";
}

// A PTE-level fault in flight keeps a slot into the table across
// page_table_lock drops (held as pte_table_sem for read): the reclaim gives
// up on the table rather than free it under the fault.
TEST_F(PtReclaim, FaultInFlightKeepsTheTable) {
    reboot("ram=256M hugetlb_2m=0 hugetlb_1g=0 thp=never");
    const unsigned long a = map_at(kPmd);
    touch(a, kPmd);
    {
        sync::ReadGuard fault_in_flight(mm().pte_table_sem);
        ASSERT_EQ(pl_madvise(t, a, kPmd, MADV_DONTNEED), 0);
        EXPECT_TRUE(has_pte_table(a));
        EXPECT_EQ(entry(t, a), 0u);
    }
    ASSERT_EQ(pl_madvise(t, a, kPmd, MADV_DONTNEED), 0);
    EXPECT_TRUE(pmd_none(a));
}

// Faults, GUP-fast pins and whole-table DONTNEEDs racing on one 2M range: the
// fault never writes into a freed table (ASan/TSan), GUP-fast's lockless walk
// never reads one (RCU-deferred free), and the books balance at the end
// (TearDown's invariant and leak checks).
class PtReclaimConcurrent : public PtReclaim {};

TEST_F(PtReclaimConcurrent, FaultsPinsAndDontneedOnOneTable) {
    reboot("ram=256M hugetlb_2m=0 hugetlb_1g=0 thp=never");
    const unsigned long a = map_at(kPmd);
    touch(a, kPmd);
    constexpr int kIters = 200;
    sync::Atomic<int> pinned{0};
    std::thread zapper([&] {
        for (int i = 0; i < kIters; ++i) EXPECT_EQ(pl_madvise(t, a, kPmd, MADV_DONTNEED), 0);
    });
    std::thread faulter([&] {
        for (int i = 0; i < kIters; ++i) {
            const unsigned long at = a + (static_cast<unsigned long>(i) * 37 % 512) * kPage;
            EXPECT_EQ(pl_memset(t, at, 0x11, kPage), static_cast<long>(kPage));
        }
    });
    std::thread pinner([&] {
        pl_set_current(t);
        for (int i = 0; i < kIters; ++i) {
            page* p = nullptr;
            const unsigned long at = a + (static_cast<unsigned long>(i) * 53 % 512) * kPage;
            if (pin_user_pages_fast(at, 1, FOLL_WRITE, &p) == 1) {
                pinned.fetch_add(1);
                unpin_user_page(p);
            }
        }
    });
    zapper.join();
    faulter.join();
    pinner.join();
    EXPECT_GT(pinned.load(), 0);
    // No fault left pte_table_sem held: with the threads gone, the reclaim
    // frees the table again.
    ASSERT_EQ(pl_madvise(t, a, kPmd, MADV_DONTNEED), 0);
    EXPECT_TRUE(pmd_none(a));
}

}  // namespace
}  // namespace pl::test
