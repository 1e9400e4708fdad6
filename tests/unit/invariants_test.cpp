// The invariant checker: silent on healthy states, and each invariant caught
// (with a precise message) when deliberately broken through the internals.
// Every break is undone before the fixture's own final checks.
#include "debug/invariants.h"
#include "fs/inode.h"
#include "mm/anon_vma.h"
#include "test_kernel.h"

namespace pl::test {
namespace {

constexpr int kRW = PROT_READ | PROT_WRITE;
constexpr unsigned long kHuge = 2UL << 20;

class Invariants : public KernelTest {
protected:
    void expect_ok() { EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error(); }
    // The check fails and its message contains every one of `words`.
    void expect_broken(std::initializer_list<const char*> words) {
        std::string why;
        Status s = check_invariants(kern(), &why);
        EXPECT_FALSE(s.ok()) << "the checker missed it";
        for (const char* w : words) EXPECT_NE(why.find(w), std::string::npos) << "'" << w << "' not in: " << why;
    }
    // Writes a leaf directly (as a buggy kernel path would).
    pte::entry_t* slot_for(unsigned long addr) {
        sync::SpinGuard g(mm().page_table_lock);
        return mm().pgtable.pte_slot(addr, true);
    }
    void set_entry(pte::entry_t* slot, pte::entry_t e) {
        sync::SpinGuard g(mm().page_table_lock);
        sync::store(*slot, e);
    }
    std::string hex(unsigned long v) {
        char b[32];
        std::snprintf(b, sizeof b, "%#lx", v);
        return b;
    }
};

TEST_F(Invariants, HealthyStatesPass) {
    expect_ok();
    unsigned long a = map(16 * kPage);
    expect_ok();
    for (unsigned long i = 0; i < 16; i += 2) put_str(t, a + i * kPage, "x");
    char c;
    ASSERT_EQ(pl_read(t, a + kPage, &c, 1), 1);  // the zero page
    expect_ok();
    unsigned long h = map(2 * kHuge);  // THPs
    put_str(t, h, "thp");
    put_str(t, h + kHuge + 5 * kPage, "thp2");
    expect_ok();
    pl_file* f = file("ext4", 4 * kPage);
    unsigned long s = map(t, 4 * kPage, kRW, MAP_SHARED, f);
    put_str(t, s, "shared file");
    unsigned long p = map(t, 4 * kPage, kRW, MAP_PRIVATE, f);
    put_str(t, p + kPage, "private copy");
    ASSERT_EQ(get_str(t, p), "shared file");
    expect_ok();
    unsigned long hp = map(t, kHuge, kRW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB);
    put_str(t, hp, "hugetlb");
    expect_ok();
    pl_file* mix = pl_dev_open(k, "mixedmap");
    ASSERT_NE(mix, nullptr);
    files.push_back(mix);
    unsigned long m = map(t, 2 * kPage, kRW, MAP_SHARED, mix);
    ASSERT_EQ(get_str(t, m), "");
    pl_file* pfn = pl_dev_open(k, "pfnmap");
    ASSERT_NE(pfn, nullptr);
    files.push_back(pfn);
    (void)map(t, kPage, kRW, MAP_SHARED, pfn);
    expect_ok();
    pl_file* dax = file("fsdax", 4 * kPage);
    unsigned long d = map(t, 4 * kPage, kRW, MAP_SHARED, dax);
    put_str(t, d + kPage, "pmem");
    pl_file* hf = file("hugetlbfs", kHuge);
    unsigned long hs = map(t, kHuge, kRW, MAP_SHARED, hf);
    put_str(t, hs, "hugetlbfs");
    pl_file* shm = file("memfd", 2 * kPage);
    unsigned long ms = map(t, 2 * kPage, kRW, MAP_SHARED, shm);
    put_str(t, ms, "memfd");
    expect_ok();
    get_page(pg(t, a));  // a ledger reference
    expect_ok();

    task_struct* child = pl_fork(t);
    ASSERT_NE(child, nullptr);
    expect_ok();
    put_str(child, a, "child");
    put_str(child, h + 3 * kPage, "child thp");
    put_str(child, hp, "child hugetlb");
    expect_ok();
    ASSERT_EQ(pl_munmap(t, a + 4 * kPage, 4 * kPage), 0);
    ASSERT_EQ(pl_munmap(t, h + kPage, kPage), 0);  // splits a PMD
    expect_ok();
    put_page(pg(t, a));
    pl_exit(child);
    expect_ok();
    ASSERT_EQ(pl_munmap(t, a, 16 * kPage), 0);
    expect_ok();
}

TEST_F(Invariants, RefcountBumped) {
    unsigned long a = map(kPage);
    put_str(t, a, "x");
    Folio* f = folio_at(t, a);
    f->ref_add(1);
    expect_broken({"refcount", "2 but 1 expected", "1 PTE", hex(page_to_pfn(pg(t, a))).c_str()});
    f->ref_sub_and_test(1);
    expect_ok();
}

TEST_F(Invariants, MapcountCleared) {
    unsigned long a = map(kPage);
    put_str(t, a, "x");
    Page* p = reinterpret_cast<Page*>(pg(t, a));
    sync::store(p->mapcount, 0);
    expect_broken({"mapcount", "0 but 1 PTEs"});
    sync::store(p->mapcount, 1);
    expect_ok();
}

TEST_F(Invariants, ThpEntireMapcountAndHugeBit) {
    unsigned long h = map(kHuge);
    put_str(t, h, "thp");
    ASSERT_EQ(level(t, h), PtLevel::Pmd);
    Folio* f = folio_at(t, h);
    f->entire_mapcount_add(1);
    expect_broken({"entire_mapcount", "2 but 1 PMD/PUD"});
    f->entire_mapcount_add(-1);
    expect_ok();
    PageTable::Leaf leaf = mm().pgtable.find_leaf(h);
    pte::entry_t e = leaf.entry;
    set_entry(leaf.slot, e & ~pte::HUGE);
    expect_broken({"without pte::HUGE"});
    set_entry(leaf.slot, e);
    expect_ok();
}

TEST_F(Invariants, AnonExclusiveOnSharedPage) {
    unsigned long a = map(kPage);
    put_str(t, a, "x");
    task_struct* child = pl_fork(t);
    ASSERT_NE(child, nullptr);
    Page* p = reinterpret_cast<Page*>(pg(t, a));
    ASSERT_FALSE(PageAnonExclusive(p));
    SetPageAnonExclusive(p);
    expect_broken({"PageAnonExclusive", "2 PTE"});
    ClearPageAnonExclusive(p);
    expect_ok();
    // A writable PTE of an anonymous page without the flag.
    put_str(child, a, "mine");
    Page* cp = reinterpret_cast<Page*>(pg(child, a));
    ClearPageAnonExclusive(cp);
    expect_broken({"writable mapping", "without PageAnonExclusive"});
    SetPageAnonExclusive(cp);
    expect_ok();
    pl_exit(child);
}

TEST_F(Invariants, PresentLeafOutsideAnyVma) {
    unsigned long a = map(kPage);
    put_str(t, a, "x");
    const unsigned long stray = 0x10000000UL;
    ASSERT_EQ(mm().vma_lookup(stray), nullptr);
    pte::entry_t* s = slot_for(stray);
    ASSERT_NE(s, nullptr);
    set_entry(s, pte::mk(page_to_pfn(pg(t, a)), pte::PRESENT | pte::USER));
    expect_broken({"outside any VMA", hex(stray).c_str()});
    set_entry(s, 0);
    expect_ok();
}

TEST_F(Invariants, PteAtFreedFrame) {
    unsigned long a = map(2 * kPage);
    put_str(t, a, "x");
    auto f = kern().mem->alloc_folio(0, GFP_KERNEL);
    ASSERT_TRUE(f.ok());
    pfn_t freed = kern().mem->page_to_pfn((*f)->head());
    kern().mem->folio_put(*f);
    pte::entry_t* s = slot_for(a + kPage);  // inside the VMA, not faulted yet
    ASSERT_EQ(*s, 0u);
    set_entry(s, pte::mk(freed, pte::PRESENT | pte::USER | pte::YOUNG));
    expect_broken({"freed frame", hex(freed).c_str()});
    set_entry(s, 0);
    expect_ok();
}

TEST_F(Invariants, StaleMigrationAndBogusSwapEntries) {
    unsigned long a = map(2 * kPage);
    put_str(t, a, "x");
    pte::entry_t* s = slot_for(a + kPage);
    set_entry(s, pte::mk_swp(pte::SwpType::MigrationRead, page_to_pfn(pg(t, a)), 0));
    expect_broken({"migration entry"});
    set_entry(s, pte::SWP | (0xcULL << 1));  // an unknown swap type
    expect_broken({"not a valid swap-style entry"});
    set_entry(s, pte::mk(page_to_pfn(pg(t, a)), pte::USER));  // neither present nor swap
    expect_broken({"not a valid swap-style entry"});
    set_entry(s, 0);
    expect_ok();
}

TEST_F(Invariants, PageCacheIndexAndAnonVmaList) {
    pl_file* f = file("tmpfs", 4 * kPage);
    unsigned long s = map(t, 4 * kPage, kRW, MAP_SHARED, f);
    put_str(t, s + 2 * kPage, "cached");
    Folio* cf = folio_at(t, s + 2 * kPage);
    ASSERT_EQ(cf->index(), 2u);
    cf->set_index(7);
    expect_broken({"page cache", "index"});
    cf->set_index(2);
    expect_ok();

    unsigned long a = map(kPage);
    put_str(t, a, "anon");
    Vma* v = mm().vma_lookup(a);
    ASSERT_NE(v->anon_vma, nullptr);
    v->anon_vma->unlink(v);
    expect_broken({"anon_vma", "not on its list"});
    v->anon_vma->link(v);
    expect_ok();
}

TEST_F(Invariants, LeakedFrame) {
    auto f = kern().mem->alloc_folio(0, GFP_KERNEL);  // nobody owns it: not in the ledger
    ASSERT_TRUE(f.ok());
    expect_broken({"leak", "leaked 1 pages"});
    kern().ref_note(*f, 1);  // owned now
    expect_ok();
    kern().ref_note(*f, -1);
    kern().mem->folio_put(*f);
    expect_ok();
}

TEST_F(Invariants, PinCountersNeverGoNegative) {
    kern().vmstat.add(Vmstat::nr_foll_pin_released, 1);
    expect_broken({"nr_foll_pin_released"});
    kern().vmstat.add(Vmstat::nr_foll_pin_acquired, 1);
    expect_ok();
}

}  // namespace
}  // namespace pl::test
