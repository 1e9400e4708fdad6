// The four-level page table: slots, leaves, the skipping walk, and freeing
// tables through RCU.
#include <gtest/gtest.h>

#include "base/sync/rcu.h"
#include "mm/page_table.h"

namespace pl {
namespace {

using namespace pte;

TEST(PageTable, SlotsAreAllocatedOnDemand) {
    PageTable pt;
    vaddr_t a = 0x7f1234567000;
    EXPECT_EQ(pt.pte_slot(a, false), nullptr);
    entry_t* s = pt.pte_slot(a, true);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(pt.nr_tables(), 4u);  // pgd + pud + pmd + pte tables
    EXPECT_EQ(pt.pte_slot(a, false), s);
    EXPECT_EQ(pt.pte_slot(a + PAGE_SIZE, false), s + 1);
    *s = mk(0x42, PRESENT | USER | WRITE);
    PageTable::Leaf l = pt.find_leaf(a + 123);
    EXPECT_EQ(l.slot, s);
    EXPECT_EQ(l.level, PtLevel::Pte);
    EXPECT_EQ(pfn(l.entry), 0x42u);
}

TEST(PageTable, HugeLeavesStopTheDescent) {
    PageTable pt;
    vaddr_t a = 0x40000000;  // 1 GiB aligned
    entry_t* pmd = pt.pmd_slot(a, true);
    *pmd = mk(0x200, PRESENT | USER | HUGE);
    EXPECT_EQ(pt.pte_slot(a, true), nullptr) << "no PTE table under a PMD leaf";
    PageTable::Leaf l = pt.find_leaf(a + 5 * PAGE_SIZE);
    EXPECT_EQ(l.level, PtLevel::Pmd);
    entry_t* pud = pt.pud_slot(a + PUD_SIZE, true);
    *pud = mk(0x40000, PRESENT | USER | HUGE);
    EXPECT_EQ(pt.find_leaf(a + PUD_SIZE + 77 * PAGE_SIZE).level, PtLevel::Pud);
}

//  leaves at:   0x1000 ........ 0x40000000 (PMD) ........ 0x7f0000000000
//  next_leaf walks them in order and skips empty tables whole.
TEST(PageTable, NextLeafSkipsEmptySpace) {
    PageTable pt;
    *pt.pte_slot(0x1000, true) = mk(1, PRESENT | USER);
    *pt.pmd_slot(0x40000000, true) = mk(0x200, PRESENT | USER | HUGE);
    *pt.pte_slot(0x7f0000000000, true) = mk(3, PRESENT | USER);
    std::vector<std::pair<vaddr_t, PtLevel>> seen;
    vaddr_t a = 0;
    while (true) {
        vaddr_t at = a;
        PageTable::Leaf l = pt.next_leaf(&at, TASK_SIZE);
        if (!l.slot) break;
        seen.emplace_back(at, l.level);
        a = at + (1ULL << level_shift(l.level));
    }
    ASSERT_EQ(seen.size(), 3u);
    EXPECT_EQ(seen[0], std::make_pair(vaddr_t{0x1000}, PtLevel::Pte));
    EXPECT_EQ(seen[1], std::make_pair(vaddr_t{0x40000000}, PtLevel::Pmd));
    EXPECT_EQ(seen[2], std::make_pair(vaddr_t{0x7f0000000000}, PtLevel::Pte));
    int n = 0;
    pt.for_each_leaf(0, TASK_SIZE, [&](vaddr_t, PtLevel, entry_t*) { ++n; });
    EXPECT_EQ(n, 3);
}

TEST(PageTable, FreePgtablesOnlyFreesEmptyTablesOutsideNeighbours) {
    PageTable pt;
    vaddr_t a = 0x200000, b = 0x400000;  // two PMDs' worth, in one PTE table each
    *pt.pte_slot(a, true) = mk(1, PRESENT | USER);
    *pt.pte_slot(b, true) = mk(2, PRESENT | USER);
    // Clear a, then free tables in [a, a + 2M) with a neighbour at b.
    *pt.pte_slot(a, false) = 0;
    pt.free_pgtables(a, a + PMD_SIZE, 0, b);
    EXPECT_EQ(pt.pmd_slot(a, false) ? *pt.pmd_slot(a, false) : 1, 0u) << "the empty PTE table is gone";
    EXPECT_NE(pt.pte_slot(b, false), nullptr) << "the neighbour's table stays";
    EXPECT_EQ(pfn(*pt.pte_slot(b, false)), 2u);
    sync::rcu_barrier();
}

TEST(Pte, BitsAndDescriptions) {
    entry_t e = mk(0x1234, PRESENT | USER);
    EXPECT_FALSE(access_permitted(e, true));
    EXPECT_TRUE(access_permitted(mkwrite(e), true));
    EXPECT_FALSE(access_permitted(e | PROTNONE, false));
    EXPECT_TRUE(soft_dirty(mkdirty(e)));
    entry_t m = mk_swp(SwpType::MigrationWrite, 0x99, SOFT_DIRTY | WRITE);
    EXPECT_FALSE(present(m));
    EXPECT_TRUE(is_migration(m));
    EXPECT_EQ(pfn(m), 0x99u);
    EXPECT_TRUE(soft_dirty(m));
    EXPECT_EQ(describe(mkdirty(mkwrite(e))), "present write dirty soft_dirty pfn=0x1234");
    EXPECT_EQ(describe(m), "migration-write soft_dirty pfn=0x99");
    EXPECT_EQ(describe(0), "none");
}

}  // namespace
}  // namespace pl
