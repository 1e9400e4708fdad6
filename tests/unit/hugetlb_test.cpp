// hugetlb: private COW, shared hugetlbfs mappings, reservations, 1 GiB
// pages, PageAnonExclusive and fork's copy of possibly pinned huge pages.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

// Internal headers first: kapi.h defines VM_* macros of its own.
#include "kernel/kernel.h"
#include "mm/folio.h"
#include "mm/mm_struct.h"
#include "mm/physmem.h"
#include "mm/vmstat.h"
#include "pinlab/kapi.h"

namespace pl {
namespace {

constexpr unsigned long kHuge = 2UL << 20;
constexpr unsigned long kGig = 1UL << 30;
constexpr int kRW = PROT_READ | PROT_WRITE;
constexpr int kPrivHuge = MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB;
constexpr int kSharedHuge = MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB;

Kernel* K(pl_kernel* k) { return reinterpret_cast<Kernel*>(k); }
MmStruct* M(task_struct* t) { return reinterpret_cast<MmStruct*>(::pl_task_mm(t)); }
Folio* F(page* p) { return pl::page_folio(reinterpret_cast<Page*>(p)); }

class Hugetlb : public ::testing::Test {
protected:
    void boot(const char* cfg) {
        k_ = ::pl_kernel_new(cfg);
        ASSERT_NE(k_, nullptr) << ::pl_last_error();
    }
    void TearDown() override {
        if (k_) ::pl_kernel_free(k_);
    }
    HugetlbStats stats(HugeSize s = HugeSize::Size2M) const { return K(k_)->mem->hugetlb_stats(s); }
    void expect_check() {
        EXPECT_EQ(::pl_kernel_check(k_), 0) << ::pl_last_error();
    }
    // Every huge page is back in the pool, no reservation is left, and the
    // kernel's state adds up.
    void expect_pool_restored(uint64_t free_pages) {
        EXPECT_EQ(stats().free, free_pages);
        EXPECT_EQ(stats().resv, 0u);
        expect_check();
    }
    static long put_str(task_struct* t, unsigned long addr, const std::string& s) {
        return ::pl_write(t, addr, s.c_str(), s.size() + 1);
    }
    static std::string get_str(task_struct* t, unsigned long addr) {
        char buf[64] = {};
        long r = ::pl_read(t, addr, buf, sizeof buf - 1);
        if (r < 0) return "<" + std::to_string(r) + ">";
        return buf;
    }
    static bool pte_has(task_struct* t, unsigned long addr, const char* what) {
        return std::string(::pl_pte_describe(t, addr)).find(what) != std::string::npos;
    }

    pl_kernel* k_ = nullptr;
};

TEST_F(Hugetlb, PrivateAnonWriteFaultMapsExclusivePmd) {
    boot("ram=1G hugetlb_2m=8 hugetlb_1g=0");
    task_struct* t = ::pl_task_new(k_);
    long a = ::pl_mmap(t, 0, 2 * kHuge, kRW, kPrivHuge, nullptr, 0);
    ASSERT_GT(a, 0) << a;
    unsigned long addr = static_cast<unsigned long>(a);
    EXPECT_EQ(addr % kHuge, 0u);
    // The private mapping reserved both huge pages.
    EXPECT_EQ(stats().resv, 2u);
    EXPECT_EQ(stats().free, 8u);

    ASSERT_EQ(put_str(t, addr + kHuge + 123, "hello"), 6);
    EXPECT_EQ(get_str(t, addr + kHuge + 123), "hello");
    page* p = ::pl_virt_to_page(t, addr + kHuge);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(::PageHuge(p));
    EXPECT_TRUE(::PageAnon(p));
    EXPECT_TRUE(::PageAnonExclusive(p));
    EXPECT_EQ(::folio_nr_pages(::page_folio(p)), 512u);
    EXPECT_EQ(::folio_mapcount(::page_folio(p)), 1);
    EXPECT_EQ(::page_ref_count(p), 1);
    EXPECT_TRUE(pte_has(t, addr + kHuge, "level=pmd"));
    EXPECT_TRUE(pte_has(t, addr + kHuge, "write"));
    EXPECT_TRUE(pte_has(t, addr + kHuge, "huge"));
    // The fault consumed one reservation.
    EXPECT_EQ(stats().resv, 1u);
    EXPECT_EQ(stats().free, 7u);
    // A read fault on the other page maps a zeroed, exclusive page read-only.
    char z[16] = {1};
    ASSERT_EQ(::pl_read(t, addr + 5, z, sizeof z), static_cast<long>(sizeof z));
    for (char c : z) EXPECT_EQ(c, 0);
    EXPECT_FALSE(pte_has(t, addr, "write"));
    EXPECT_TRUE(::PageAnonExclusive(::pl_virt_to_page(t, addr)));
    EXPECT_EQ(stats().resv, 0u);
    expect_check();

    ASSERT_EQ(::pl_munmap(t, addr, 2 * kHuge), 0);
    expect_pool_restored(8);
}

TEST_F(Hugetlb, PrivateCowAfterFork) {
    boot("ram=1G hugetlb_2m=8 hugetlb_1g=0");
    task_struct* parent = ::pl_task_new(k_);
    long a = ::pl_mmap(parent, 0, kHuge, kRW, kPrivHuge, nullptr, 0);
    ASSERT_GT(a, 0) << a;
    unsigned long addr = static_cast<unsigned long>(a);
    ASSERT_EQ(put_str(parent, addr + 64, "parent"), 7);
    page* before = ::pl_virt_to_page(parent, addr);
    ASSERT_NE(before, nullptr);
    EXPECT_TRUE(::PageAnonExclusive(before));

    task_struct* child = ::pl_fork(parent);
    ASSERT_NE(child, nullptr) << ::pl_last_error();
    // Shared after fork: same page, no longer exclusive, both read-only.
    EXPECT_EQ(::pl_virt_to_page(child, addr), before);
    EXPECT_FALSE(::PageAnonExclusive(before));
    EXPECT_EQ(::folio_mapcount(::page_folio(before)), 2);
    EXPECT_EQ(::page_ref_count(before), 2);
    EXPECT_FALSE(pte_has(parent, addr, "write"));
    EXPECT_FALSE(pte_has(child, addr, "write"));
    EXPECT_EQ(get_str(child, addr + 64), "parent");
    expect_check();

    // The child's write copies.
    ASSERT_EQ(put_str(child, addr + 64, "child"), 6);
    page* cp = ::pl_virt_to_page(child, addr);
    ASSERT_NE(cp, nullptr);
    EXPECT_NE(cp, before);
    EXPECT_TRUE(::PageAnonExclusive(cp));
    EXPECT_EQ(get_str(child, addr + 64), "child");
    EXPECT_EQ(get_str(parent, addr + 64), "parent");
    EXPECT_EQ(::folio_mapcount(::page_folio(before)), 1);
    // The parent, now the only mapper, reuses its page.
    ASSERT_EQ(put_str(parent, addr + 64, "parent2"), 8);
    EXPECT_EQ(::pl_virt_to_page(parent, addr), before);
    EXPECT_TRUE(::PageAnonExclusive(before));
    EXPECT_EQ(get_str(parent, addr + 64), "parent2");
    EXPECT_EQ(get_str(child, addr + 64), "child");
    expect_check();

    ::pl_exit(child);
    ::pl_exit(parent);
    expect_pool_restored(8);
}

TEST_F(Hugetlb, SharedAnonHugetlbIsSharedWithChild) {
    boot("ram=1G hugetlb_2m=8 hugetlb_1g=0");
    task_struct* parent = ::pl_task_new(k_);
    long a = ::pl_mmap(parent, 0, kHuge, kRW, kSharedHuge, nullptr, 0);
    ASSERT_GT(a, 0) << a;
    unsigned long addr = static_cast<unsigned long>(a);
    EXPECT_EQ(stats().resv, 1u);
    ASSERT_EQ(put_str(parent, addr, "one"), 4);
    task_struct* child = ::pl_fork(parent);
    ASSERT_NE(child, nullptr) << ::pl_last_error();
    ASSERT_EQ(put_str(child, addr, "two"), 4);
    EXPECT_EQ(get_str(parent, addr), "two");
    EXPECT_EQ(::pl_virt_to_page(child, addr), ::pl_virt_to_page(parent, addr));
    EXPECT_FALSE(::PageAnon(::pl_virt_to_page(parent, addr)));
    expect_check();
    ::pl_exit(child);
    ::pl_exit(parent);
    expect_pool_restored(8);
}

TEST_F(Hugetlb, SharedHugetlbfsFileIsCoherentBetweenTasks) {
    boot("ram=1G hugetlb_2m=8 hugetlb_1g=0");
    pl_file* f = ::pl_file_new(k_, "hugetlbfs", 4 << 20);
    ASSERT_NE(f, nullptr) << ::pl_last_error();
    task_struct* t1 = ::pl_task_new(k_);
    task_struct* t2 = ::pl_task_new(k_);
    long a1 = ::pl_mmap(t1, 0, 4 << 20, kRW, MAP_SHARED, f, 0);
    ASSERT_GT(a1, 0) << a1;
    EXPECT_EQ(stats().resv, 2u);  // the inode reserves its two pages
    long a2 = ::pl_mmap(t2, 0, 4 << 20, kRW, MAP_SHARED, f, 0);
    ASSERT_GT(a2, 0) << a2;
    EXPECT_EQ(stats().resv, 2u);  // already reserved
    unsigned long u1 = static_cast<unsigned long>(a1), u2 = static_cast<unsigned long>(a2);

    ASSERT_EQ(put_str(t1, u1 + kHuge + 10, "shared"), 7);
    EXPECT_EQ(get_str(t2, u2 + kHuge + 10), "shared");
    page* p1 = ::pl_virt_to_page(t1, u1 + kHuge);
    page* p2 = ::pl_virt_to_page(t2, u2 + kHuge);
    ASSERT_NE(p1, nullptr);
    EXPECT_EQ(p1, p2);
    EXPECT_FALSE(::PageAnon(p1));
    EXPECT_TRUE(::PageHuge(p1));
    EXPECT_EQ(::folio_mapcount(::page_folio(p1)), 2);
    // The page cache holds folio_nr_pages() references, each mapping one.
    EXPECT_EQ(::page_ref_count(p1), 512 + 2);
    EXPECT_TRUE(pte_has(t2, u2 + kHuge, "write"));
    EXPECT_EQ(stats().resv, 1u);
    EXPECT_EQ(stats().free, 7u);
    // read() sees it too.
    char buf[8] = {};
    ASSERT_EQ(::pl_pread(f, buf, 7, kHuge + 10), 7);
    EXPECT_STREQ(buf, "shared");
    // And a write through t2 shows in t1.
    ASSERT_EQ(put_str(t2, u2 + 4, "back"), 5);
    EXPECT_EQ(get_str(t1, u1 + 4), "back");
    expect_check();

    // Unmapping keeps the page cache; the file's release frees everything.
    ASSERT_EQ(::pl_munmap(t1, u1, 4 << 20), 0);
    ASSERT_EQ(::pl_munmap(t2, u2, 4 << 20), 0);
    EXPECT_EQ(stats().free, 6u);
    EXPECT_EQ(stats().resv, 0u);
    ::pl_file_put(f);
    expect_pool_restored(8);
}

TEST_F(Hugetlb, PrivateMappingOfHugetlbfsFileCopiesOnWrite) {
    boot("ram=1G hugetlb_2m=8 hugetlb_1g=0");
    pl_file* f = ::pl_file_new(k_, "hugetlbfs", 2 << 20);
    ASSERT_NE(f, nullptr) << ::pl_last_error();
    task_struct* t1 = ::pl_task_new(k_);
    task_struct* t2 = ::pl_task_new(k_);
    long a1 = ::pl_mmap(t1, 0, kHuge, kRW, MAP_SHARED, f, 0);
    ASSERT_GT(a1, 0) << a1;
    unsigned long u1 = static_cast<unsigned long>(a1);
    ASSERT_EQ(put_str(t1, u1, "file"), 5);
    long a2 = ::pl_mmap(t2, 0, kHuge, kRW, MAP_PRIVATE, f, 0);
    ASSERT_GT(a2, 0) << a2;
    unsigned long u2 = static_cast<unsigned long>(a2);
    EXPECT_EQ(get_str(t2, u2), "file");
    page* cache = ::pl_virt_to_page(t1, u1);
    EXPECT_EQ(::pl_virt_to_page(t2, u2), cache);  // the page-cache page, read-only
    EXPECT_FALSE(pte_has(t2, u2, "write"));
    ASSERT_EQ(put_str(t2, u2, "mine"), 5);
    page* priv = ::pl_virt_to_page(t2, u2);
    EXPECT_NE(priv, cache);
    EXPECT_TRUE(::PageAnon(priv));
    EXPECT_TRUE(::PageAnonExclusive(priv));
    EXPECT_EQ(get_str(t2, u2), "mine");
    EXPECT_EQ(get_str(t1, u1), "file");
    expect_check();
    ::pl_exit(t2);
    ::pl_exit(t1);
    ::pl_file_put(f);
    expect_pool_restored(8);
}

TEST_F(Hugetlb, MmapFailsWithEnomemWhenPoolCannotCoverIt) {
    boot("ram=1G hugetlb_2m=8 hugetlb_1g=0");
    task_struct* t = ::pl_task_new(k_);
    EXPECT_EQ(::pl_mmap(t, 0, 9 * kHuge, kRW, kPrivHuge, nullptr, 0), -ENOMEM);
    EXPECT_EQ(stats().resv, 0u);
    long a = ::pl_mmap(t, 0, 8 * kHuge, kRW, kPrivHuge, nullptr, 0);
    ASSERT_GT(a, 0) << a;
    EXPECT_EQ(stats().resv, 8u);
    EXPECT_EQ(::pl_mmap(t, 0, kHuge, kRW, kPrivHuge, nullptr, 0), -ENOMEM);
    EXPECT_EQ(::pl_mmap(t, 0, kHuge, kRW, kSharedHuge, nullptr, 0), -ENOMEM);
    // Partial munmap gives back that part's reservations.
    ASSERT_EQ(::pl_munmap(t, static_cast<unsigned long>(a), 2 * kHuge), 0);
    EXPECT_EQ(stats().resv, 6u);
    long b = ::pl_mmap(t, 0, 2 * kHuge, kRW, kPrivHuge, nullptr, 0);
    EXPECT_GT(b, 0) << b;
    EXPECT_EQ(stats().resv, 8u);
    ::pl_exit(t);
    EXPECT_EQ(stats().resv, 0u);
    EXPECT_EQ(stats().free, 8u);
    expect_check();
}

TEST_F(Hugetlb, NoreserveFaultsSigbusWhenPoolIsEmpty) {
    boot("ram=1G hugetlb_2m=2 hugetlb_1g=0");
    task_struct* t1 = ::pl_task_new(k_);
    task_struct* t2 = ::pl_task_new(k_);
    long a1 = ::pl_mmap(t1, 0, 2 * kHuge, kRW, kPrivHuge, nullptr, 0);
    ASSERT_GT(a1, 0) << a1;
    long a2 = ::pl_mmap(t2, 0, kHuge, kRW, kPrivHuge | MAP_NORESERVE, nullptr, 0);
    ASSERT_GT(a2, 0) << a2;  // no reservation needed
    unsigned long u1 = static_cast<unsigned long>(a1), u2 = static_cast<unsigned long>(a2);
    // Both free pages are reserved for t1: t2's fault gets SIGBUS.
    EXPECT_EQ(put_str(t2, u2, "x"), -EFAULT);
    EXPECT_EQ(::pl_virt_to_page(t2, u2), nullptr);
    // t1 still gets its reserved pages.
    EXPECT_EQ(put_str(t1, u1, "a"), 2);
    EXPECT_EQ(put_str(t1, u1 + kHuge, "b"), 2);
    EXPECT_EQ(stats().free, 0u);
    EXPECT_EQ(put_str(t2, u2, "x"), -EFAULT);
    // Once t1 gives a page back, the NORESERVE mapping can fault it in.
    ASSERT_EQ(::pl_munmap(t1, u1, kHuge), 0);
    EXPECT_EQ(put_str(t2, u2, "x"), 2);
    EXPECT_EQ(get_str(t2, u2), "x");
    expect_check();
    ::pl_exit(t1);
    ::pl_exit(t2);
    expect_pool_restored(2);
}

TEST_F(Hugetlb, PoolCountsRestoredAfterExit) {
    boot("ram=1G hugetlb_2m=8 hugetlb_1g=0");
    HugetlbStats initial = stats();
    task_struct* t = ::pl_task_new(k_);
    long a = ::pl_mmap(t, 0, 4 * kHuge, kRW, kPrivHuge, nullptr, 0);
    ASSERT_GT(a, 0) << a;
    long s = ::pl_mmap(t, 0, 2 * kHuge, kRW, kSharedHuge, nullptr, 0);
    ASSERT_GT(s, 0) << s;
    ASSERT_EQ(::pl_memset(t, static_cast<unsigned long>(a), 0x5a, 3 * kHuge), static_cast<long>(3 * kHuge));
    ASSERT_EQ(::pl_memset(t, static_cast<unsigned long>(s), 0x33, kHuge), static_cast<long>(kHuge));
    task_struct* c = ::pl_fork(t);
    ASSERT_NE(c, nullptr) << ::pl_last_error();
    ASSERT_EQ(::pl_memset(c, static_cast<unsigned long>(a), 0x11, 10), 10);
    expect_check();
    ::pl_exit(t);
    ::pl_exit(c);
    HugetlbStats after = stats();
    EXPECT_EQ(after.nr, initial.nr);
    EXPECT_EQ(after.free, initial.free);
    EXPECT_EQ(after.resv, initial.resv);
    expect_check();
}

TEST_F(Hugetlb, UnalignedFixedAddressIsEinval) {
    boot("ram=1G hugetlb_2m=8 hugetlb_1g=0");
    task_struct* t = ::pl_task_new(k_);
    EXPECT_EQ(::pl_mmap(t, 0x40000000UL + 4096, kHuge, kRW, kPrivHuge | MAP_FIXED, nullptr, 0), -EINVAL);
    pl_file* f = ::pl_file_new(k_, "hugetlbfs", 4 << 20);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(::pl_mmap(t, 0x40000000UL + kHuge / 2, kHuge, kRW, MAP_SHARED | MAP_FIXED, f, 0), -EINVAL);
    // An offset that is not a multiple of the huge page size.
    EXPECT_EQ(::pl_mmap(t, 0, kHuge, kRW, MAP_SHARED, f, 4096), -EINVAL);
    long a = ::pl_mmap(t, 0x40000000UL, kHuge, kRW, kPrivHuge | MAP_FIXED, nullptr, 0);
    EXPECT_EQ(a, 0x40000000L);
    // Hugetlb VMAs do not split inside a huge page.
    EXPECT_EQ(::pl_munmap(t, 0x40000000UL + 4096, 4096), -EINVAL);
    EXPECT_EQ(::pl_mprotect(t, 0x40000000UL, 4096, PROT_READ), -EINVAL);
    EXPECT_EQ(stats().resv, 1u);
    ::pl_file_put(f);
    ::pl_exit(t);
    EXPECT_EQ(stats().resv, 0u);
    expect_check();
}

TEST_F(Hugetlb, OneGigPagesMapAtPudLevel) {
    boot("ram=4G hugetlb_2m=0 hugetlb_1g=1");
    EXPECT_EQ(stats(HugeSize::Size1G).free, 1u);
    task_struct* t = ::pl_task_new(k_);
    long a = ::pl_mmap(t, 0, kGig, kRW, kPrivHuge | MAP_HUGE_1GB, nullptr, 0);
    ASSERT_GT(a, 0) << a;
    unsigned long addr = static_cast<unsigned long>(a);
    EXPECT_EQ(addr % kGig, 0u);
    EXPECT_EQ(stats(HugeSize::Size1G).resv, 1u);
    // 2 MiB pages: none configured.
    EXPECT_EQ(::pl_mmap(t, 0, kHuge, kRW, kPrivHuge, nullptr, 0), -ENOMEM);
    ASSERT_EQ(put_str(t, addr + kGig - 100, "gig"), 4);
    EXPECT_EQ(get_str(t, addr + kGig - 100), "gig");
    page* p = ::pl_virt_to_page(t, addr + kGig - 100);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(::PageHuge(p));
    EXPECT_EQ(::folio_nr_pages(::page_folio(p)), 1UL << 18);
    EXPECT_TRUE(::PageAnonExclusive(p));
    EXPECT_TRUE(pte_has(t, addr, "level=pud"));
    EXPECT_EQ(stats(HugeSize::Size1G).free, 0u);
    EXPECT_EQ(stats(HugeSize::Size1G).resv, 0u);
    // A second 1 GiB mapping cannot be reserved.
    EXPECT_EQ(::pl_mmap(t, 0, kGig, kRW, kPrivHuge | MAP_HUGE_1GB, nullptr, 0), -ENOMEM);
    expect_check();
    ASSERT_EQ(::pl_munmap(t, addr, kGig), 0);
    EXPECT_EQ(stats(HugeSize::Size1G).free, 1u);
    ::pl_exit(t);
    expect_check();
}

TEST_F(Hugetlb, PageAnonExclusiveClearedInBothAfterFork) {
    boot("ram=1G hugetlb_2m=8 hugetlb_1g=0");
    task_struct* parent = ::pl_task_new(k_);
    long a = ::pl_mmap(parent, 0, kHuge, kRW, kPrivHuge, nullptr, 0);
    ASSERT_GT(a, 0) << a;
    unsigned long addr = static_cast<unsigned long>(a);
    ASSERT_EQ(put_str(parent, addr, "x"), 2);
    page* p = ::pl_virt_to_page(parent, addr);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(::PageAnonExclusive(p));
    EXPECT_TRUE(pl::PageAnonExclusive(F(p)->head()));
    task_struct* child = ::pl_fork(parent);
    ASSERT_NE(child, nullptr) << ::pl_last_error();
    EXPECT_EQ(::pl_virt_to_page(child, addr), p);
    EXPECT_FALSE(::PageAnonExclusive(::pl_virt_to_page(parent, addr)));
    EXPECT_FALSE(::PageAnonExclusive(::pl_virt_to_page(child, addr)));
    expect_check();
    ::pl_exit(child);
    // The parent's remaining mapping is still R/O and not exclusive until
    // it writes (then it reuses the page: mapcount is 1).
    EXPECT_FALSE(::PageAnonExclusive(p));
    ASSERT_EQ(put_str(parent, addr, "y"), 2);
    EXPECT_EQ(::pl_virt_to_page(parent, addr), p);
    EXPECT_TRUE(::PageAnonExclusive(p));
    ::pl_exit(parent);
    expect_check();
}

TEST_F(Hugetlb, ForkCopiesPossiblyPinnedExclusivePage) {
    boot("ram=1G hugetlb_2m=8 hugetlb_1g=0");
    task_struct* parent = ::pl_task_new(k_);
    long a = ::pl_mmap(parent, 0, 2 * kHuge, kRW, kPrivHuge, nullptr, 0);
    ASSERT_GT(a, 0) << a;
    unsigned long addr = static_cast<unsigned long>(a);
    ASSERT_EQ(put_str(parent, addr + 7, "pinned"), 7);
    ASSERT_EQ(put_str(parent, addr + kHuge + 7, "unpinned"), 9);
    page* p = ::pl_virt_to_page(parent, addr);
    page* q = ::pl_virt_to_page(parent, addr + kHuge);
    ASSERT_NE(p, nullptr);
    ASSERT_NE(q, nullptr);
    // A fake FOLL_PIN on the first page: hugetlb folios are large, so a pin
    // is one reference plus one _pincount.
    Folio* folio = F(p);
    M(parent)->set_flag(MMF_HAS_PINNED);
    folio->ref_add(1);
    folio->pincount_add(1);
    int64_t copies = K(k_)->vmstat.get(Vmstat::fork_pinned_copies);

    task_struct* child = ::pl_fork(parent);
    ASSERT_NE(child, nullptr) << ::pl_last_error();
    page* cp = ::pl_virt_to_page(child, addr);
    ASSERT_NE(cp, nullptr);
    EXPECT_NE(cp, p);  // the child got its own copy at fork
    EXPECT_TRUE(::PageAnonExclusive(p));
    EXPECT_TRUE(::PageAnonExclusive(cp));
    EXPECT_TRUE(pte_has(parent, addr, "write"));  // the parent's entry stays writable
    EXPECT_TRUE(pte_has(child, addr, "write"));
    EXPECT_EQ(get_str(child, addr + 7), "pinned");
    EXPECT_EQ(K(k_)->vmstat.get(Vmstat::fork_pinned_copies), copies + 1);
    // The unpinned page is shared as usual.
    EXPECT_EQ(::pl_virt_to_page(child, addr + kHuge), q);
    EXPECT_FALSE(::PageAnonExclusive(q));
    // Writes through the parent's (pinned) page do not reach the child.
    ASSERT_EQ(put_str(parent, addr + 7, "dma!!!"), 7);
    EXPECT_EQ(::pl_virt_to_page(parent, addr), p);
    EXPECT_EQ(get_str(child, addr + 7), "pinned");

    // Undo the fake pin.
    folio->pincount_add(-1);
    K(k_)->mem->folio_put(folio);
    expect_check();
    ::pl_exit(child);
    ::pl_exit(parent);
    expect_pool_restored(8);
}

TEST_F(Hugetlb, TruncateUnmapsAndFreesPages) {
    boot("ram=1G hugetlb_2m=8 hugetlb_1g=0");
    pl_file* f = ::pl_file_new(k_, "hugetlbfs", 4 << 20);
    ASSERT_NE(f, nullptr) << ::pl_last_error();
    task_struct* t = ::pl_task_new(k_);
    long a = ::pl_mmap(t, 0, 4 << 20, kRW, MAP_SHARED, f, 0);
    ASSERT_GT(a, 0) << a;
    unsigned long u = static_cast<unsigned long>(a);
    ASSERT_EQ(put_str(t, u, "first"), 6);
    ASSERT_EQ(put_str(t, u + kHuge, "second"), 7);
    EXPECT_EQ(stats().free, 6u);
    ASSERT_EQ(::pl_ftruncate(f, kHuge), 0);
    EXPECT_EQ(stats().free, 7u);
    EXPECT_EQ(::pl_virt_to_page(t, u + kHuge), nullptr);
    EXPECT_EQ(get_str(t, u), "first");
    // Beyond EOF: SIGBUS.
    EXPECT_EQ(put_str(t, u + kHuge, "x"), -EFAULT);
    expect_check();
    ::pl_exit(t);
    ::pl_file_put(f);
    expect_pool_restored(8);
}

TEST_F(Hugetlb, FallocateFillsCacheAndRunsOutWithEnospc) {
    boot("ram=1G hugetlb_2m=4 hugetlb_1g=0");
    pl_file* f = ::pl_file_new(k_, "hugetlbfs", 4 << 20);
    ASSERT_NE(f, nullptr) << ::pl_last_error();
    ASSERT_EQ(::pl_fallocate(f, 0, 0, 4 << 20), 0) << ::pl_last_error();
    EXPECT_EQ(stats().free, 2u);
    task_struct* t = ::pl_task_new(k_);
    long a = ::pl_mmap(t, 0, 4 << 20, kRW, MAP_SHARED, f, 0);
    ASSERT_GT(a, 0) << a;
    EXPECT_EQ(stats().resv, 0u);  // nothing left to reserve: both pages are cached
    unsigned long u = static_cast<unsigned long>(a);
    ASSERT_EQ(put_str(t, u + kHuge, "falloc"), 7);
    EXPECT_EQ(stats().free, 2u);  // no new page
    pl_file* g = ::pl_file_new(k_, "hugetlbfs", 8 << 20);
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(::pl_fallocate(g, 0, 0, 8 << 20), -ENOSPC);
    ::pl_file_put(g);
    EXPECT_EQ(stats().free, 2u);
    ::pl_exit(t);
    ::pl_file_put(f);
    expect_pool_restored(4);
}

TEST_F(Hugetlb, SplitVmasShareAndReturnReservations) {
    boot("ram=1G hugetlb_2m=8 hugetlb_1g=0");
    task_struct* t = ::pl_task_new(k_);
    long a = ::pl_mmap(t, 0, 4 * kHuge, kRW, kPrivHuge, nullptr, 0);
    ASSERT_GT(a, 0) << a;
    unsigned long u = static_cast<unsigned long>(a);
    ASSERT_EQ(put_str(t, u + 3 * kHuge, "top"), 4);
    EXPECT_EQ(stats().resv, 3u);
    // Split in three; each part keeps its own huge pages' reservations.
    ASSERT_EQ(::pl_mprotect(t, u + kHuge, 2 * kHuge, PROT_READ), 0);
    EXPECT_EQ(stats().resv, 3u);
    EXPECT_EQ(::pl_write(t, u + kHuge, "x", 1), -EFAULT);  // read-only now
    ASSERT_EQ(put_str(t, u, "low"), 4);                   // consumes index 0
    EXPECT_EQ(stats().resv, 2u);
    ASSERT_EQ(::pl_munmap(t, u + kHuge, kHuge), 0);  // gives back index 1
    EXPECT_EQ(stats().resv, 1u);
    EXPECT_EQ(get_str(t, u + 3 * kHuge), "top");
    EXPECT_EQ(get_str(t, u), "low");
    ASSERT_EQ(::pl_munmap(t, u, 4 * kHuge), 0);
    EXPECT_EQ(stats().resv, 0u);
    EXPECT_EQ(stats().free, 8u);
    ::pl_exit(t);
    expect_check();
}

TEST_F(Hugetlb, MremapMovesPagesAndReservations) {
    boot("ram=1G hugetlb_2m=8 hugetlb_1g=0");
    task_struct* t = ::pl_task_new(k_);
    long a = ::pl_mmap(t, 0, 2 * kHuge, kRW, kPrivHuge, nullptr, 0);
    ASSERT_GT(a, 0) << a;
    unsigned long u = static_cast<unsigned long>(a);
    ASSERT_EQ(put_str(t, u + 9, "moved"), 6);
    EXPECT_EQ(stats().resv, 1u);
    long b = ::pl_mremap(t, u, 2 * kHuge, 2 * kHuge, 3 /* MREMAP_MAYMOVE|MREMAP_FIXED */, 0x40000000UL);
    ASSERT_EQ(b, 0x40000000L) << b;
    unsigned long v = static_cast<unsigned long>(b);
    EXPECT_EQ(get_str(t, v + 9), "moved");
    EXPECT_EQ(stats().resv, 1u);  // the second page's reservation moved along
    ASSERT_EQ(put_str(t, v + kHuge, "second"), 7);
    EXPECT_EQ(stats().resv, 0u);
    ::pl_exit(t);
    expect_pool_restored(8);
}

TEST_F(Hugetlb, PunchHoleRemovesWholePagesIncludingPrivateCopies) {
    boot("ram=1G hugetlb_2m=8 hugetlb_1g=0");
    pl_file* f = ::pl_file_new(k_, "hugetlbfs", 4 << 20);
    ASSERT_NE(f, nullptr) << ::pl_last_error();
    task_struct* t = ::pl_task_new(k_);
    long s = ::pl_mmap(t, 0, 4 << 20, kRW, MAP_SHARED, f, 0);
    ASSERT_GT(s, 0) << s;
    long p = ::pl_mmap(t, 0, 4 << 20, kRW, MAP_PRIVATE, f, 0);
    ASSERT_GT(p, 0) << p;
    unsigned long us = static_cast<unsigned long>(s), up = static_cast<unsigned long>(p);
    ASSERT_EQ(put_str(t, us + kHuge, "cache"), 6);
    ASSERT_EQ(put_str(t, up + kHuge + 100, "cow"), 4);  // private copy of page 1
    EXPECT_TRUE(::PageAnon(::pl_virt_to_page(t, up + kHuge)));
    unsigned long free_before = stats().free;
    // Punch page 1: its cache page and, as upstream's hugetlb_vmdelete_list()
    // does, the private mapping's COW copy go.
    ASSERT_EQ(::pl_fallocate(f, 3, kHuge, kHuge), 0) << ::pl_last_error();
    EXPECT_EQ(stats().free, free_before + 2);
    EXPECT_EQ(::pl_virt_to_page(t, us + kHuge), nullptr);
    EXPECT_EQ(::pl_virt_to_page(t, up + kHuge), nullptr);
    // Refaulting gives a new zeroed page.
    EXPECT_EQ(get_str(t, us + kHuge), "");
    expect_check();
    ::pl_exit(t);
    ::pl_file_put(f);
    expect_pool_restored(8);
}

// Runs under TSan too (suite name ends in Concurrent).
class HugetlbConcurrent : public Hugetlb {};

TEST_F(HugetlbConcurrent, SharedFaultsFindOnePage) {
    boot("ram=1G hugetlb_2m=8 hugetlb_1g=0");
    pl_file* f = ::pl_file_new(k_, "hugetlbfs", 2 << 20);
    ASSERT_NE(f, nullptr) << ::pl_last_error();
    constexpr int kTasks = 4;
    std::vector<task_struct*> ts;
    std::vector<unsigned long> at;
    for (int i = 0; i < kTasks; ++i) {
        ts.push_back(::pl_task_new(k_));
        long a = ::pl_mmap(ts.back(), 0, kHuge, kRW, MAP_SHARED | MAP_NORESERVE, f, 0);
        ASSERT_GT(a, 0) << a;
        at.push_back(static_cast<unsigned long>(a));
    }
    std::vector<std::thread> th;
    std::vector<long> rc(kTasks);
    for (int i = 0; i < kTasks; ++i)
        th.emplace_back([&, i] {
            char c = static_cast<char>('a' + i);
            rc[i] = ::pl_write(ts[i], at[i] + 4096 * i, &c, 1);
        });
    for (auto& x : th) x.join();
    page* first = ::pl_virt_to_page(ts[0], at[0]);
    ASSERT_NE(first, nullptr);
    for (int i = 0; i < kTasks; ++i) {
        EXPECT_EQ(rc[i], 1);
        EXPECT_EQ(::pl_virt_to_page(ts[i], at[i]), first);
    }
    EXPECT_EQ(stats().free, 7u);
    char buf[kTasks] = {};
    for (int i = 0; i < kTasks; ++i) ASSERT_EQ(::pl_read(ts[0], at[0] + 4096 * i, buf + i, 1), 1);
    EXPECT_EQ(std::string(buf, kTasks), "abcd");
    expect_check();
    for (task_struct* t : ts) ::pl_exit(t);
    ::pl_file_put(f);
    EXPECT_EQ(stats().free, 8u);
    expect_check();
}

}  // namespace
}  // namespace pl
