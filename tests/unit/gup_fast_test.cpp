// GUP-fast (spec §4): what the lockless walk takes, where it stops and hands
// over to the slow path, and the architecture switches seed 003 was about.
// vmstat gup_fast_pages says how many pages the lockless walk itself took.
#include <functional>

#include "gup/foll_flags.h"
#include "gup/gup_fast.h"
#include "test_kernel.h"

#include "fs/file.h"
#include "fs/inode.h"

namespace pl::test {
namespace {

using namespace pte;

class GupFast : public KernelTest {
protected:
    void SetUp() override {
        KernelTest::SetUp();
        pl_set_current(t);
    }
    unsigned long fast_pages() { return pl_vmstat(k, "gup_fast_pages"); }
    void unpin(std::vector<page*>& v, int n) { unpin_user_pages(v.data(), static_cast<unsigned long>(n)); }
};

// §4: pre-faulted, writable, exclusive pages are pinned without any lock.
TEST_F(GupFast, PrefaultedPagesArePinnedLocklessly) {
    unsigned long a = map(16 * kPage);
    ASSERT_EQ(pl_memset(t, a, 1, 16 * kPage), static_cast<long>(16 * kPage));
    unsigned long faults = pl_vmstat(k, "pgfault");
    std::vector<page*> pages(16);
    ASSERT_EQ(pin_user_pages_fast(a, 16, FOLL_WRITE, pages.data()), 16);
    EXPECT_EQ(fast_pages(), 16u);
    EXPECT_EQ(pl_vmstat(k, "pgfault"), faults) << "no fault, no slow path";
    EXPECT_EQ(page_ref_count(pages[3]), 1 + GUP_PIN_COUNTING_BIAS);
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), 16u);
    unpin(pages, 16);
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_released"), 16u);
}

// §4: the walk stops at the first entry it cannot take; the slow path faults
// in the rest.
TEST_F(GupFast, StopsAtAMissingEntryAndTheSlowPathFinishes) {
    unsigned long a = map(8 * kPage);
    ASSERT_EQ(pl_memset(t, a, 1, 4 * kPage), static_cast<long>(4 * kPage));
    std::vector<page*> pages(8);
    ASSERT_EQ(pin_user_pages_fast(a, 8, FOLL_WRITE, pages.data()), 8);
    EXPECT_EQ(fast_pages(), 4u);
    unpin(pages, 8);
}

// §4 + §5: a THP is one grab of all covered subpages.
TEST_F(GupFast, ThpIsOneBatch) {
    unsigned long a = map(2UL << 20);
    ASSERT_EQ(pl_write(t, a, "x", 1), 1);
    std::vector<page*> pages(512);
    ASSERT_EQ(pin_user_pages_fast(a, 512, FOLL_WRITE, pages.data()), 512);
    EXPECT_EQ(fast_pages(), 512u);
    Folio* f = page_folio(reinterpret_cast<Page*>(pages[0]));
    EXPECT_EQ(f->pincount(), 512);
    EXPECT_EQ(f->ref_count(), 1 + 512);
    unpin(pages, 512);
    EXPECT_EQ(f->pincount(), 0);
}

// §4: special entries (remap_pfn_range) stop the walk; the slow path refuses
// VM_IO|VM_PFNMAP with -EFAULT.
TEST_F(GupFast, SpecialPtesAreRefused) {
    pl_file* d = pl_dev_open(k, "pfnmap");
    files.push_back(d);
    unsigned long a = map(t, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, d);
    std::vector<page*> pages(4);
    EXPECT_EQ(pin_user_pages_fast(a, 4, FOLL_WRITE, pages.data()), -EFAULT);
    EXPECT_EQ(fast_pages(), 0u);
}

// §4: with a R/O PTE of a page shared after fork, a R/O pin must unshare:
// the fast walk backs out and the slow path unshares.
TEST_F(GupFast, ReadOnlyPinOfASharedPageFallsBackToUnshare) {
    unsigned long a = map(kPage);
    put_str(t, a, "before fork");
    task_struct* c = pl_fork(t);
    page* shared = pg(t, a);
    std::vector<page*> pages(1);
    ASSERT_EQ(pin_user_pages_fast(a, 1, 0, pages.data()), 1);
    EXPECT_EQ(fast_pages(), 0u);
    EXPECT_NE(pages[0], shared) << "the slow path unshared the page";
    EXPECT_TRUE(PageAnonExclusive(pages[0]));
    EXPECT_EQ(pg(c, a), shared);
    unpin(pages, 1);
}

// §4 gup_fast_folio_allowed(): FOLL_PIN|FOLL_LONGTERM|FOLL_WRITE never takes a
// dirty-tracked file folio locklessly; shmem is fine.
TEST_F(GupFast, LongtermWritePinsOfFileFoliosNeedTheSlowPath) {
    pl_file* ext4 = file("ext4", kPage);
    pl_file* memfd = file("memfd", kPage);
    unsigned long e = map(t, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, ext4);
    unsigned long m = map(t, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, memfd);
    put_str(t, e, "e");
    put_str(t, m, "m");
    std::vector<page*> pages(1);
    EXPECT_EQ(pin_user_pages_fast(e, 1, FOLL_WRITE | FOLL_LONGTERM, pages.data()), -EFAULT) << "spec §6";
    EXPECT_EQ(fast_pages(), 0u);
    ASSERT_EQ(pin_user_pages_fast(m, 1, FOLL_WRITE | FOLL_LONGTERM, pages.data()), 1);
    EXPECT_EQ(fast_pages(), 1u);
    unpin(pages, 1);
}

// §4: without CONFIG_HAVE_GUP_FAST everything goes slow; without
// ARCH_HAS_PTE_SPECIAL the PTE level bails but PMD leaves still go fast.
TEST_F(GupFast, ArchitectureSwitches) {
    reboot("ram=256M hugetlb_2m=0 arch.gup_fast=off");
    pl_set_current(t);
    unsigned long a = map(kPage);
    put_str(t, a, "x");
    std::vector<page*> pages(512);
    ASSERT_EQ(pin_user_pages_fast(a, 1, FOLL_WRITE, pages.data()), 1);
    EXPECT_EQ(fast_pages(), 0u);
    unpin(pages, 1);

    reboot("ram=256M hugetlb_2m=0 arch.pte_special=off");
    pl_set_current(t);
    a = map(kPage);
    put_str(t, a, "x");
    ASSERT_EQ(pin_user_pages_fast(a, 1, FOLL_WRITE, pages.data()), 1);
    EXPECT_EQ(fast_pages(), 0u) << "the PTE level cannot tell special entries apart";
    unpin(pages, 1);
    unsigned long h = map(2UL << 20);
    put_str(t, h, "thp");
    ASSERT_EQ(pin_user_pages_fast(h, 512, FOLL_WRITE, pages.data()), 512);
    EXPECT_EQ(fast_pages(), 512u) << "PMD leaves are never special: they still go fast";
    unpin(pages, 512);
}

// §4: while fork holds write_protect_seq odd, GUP-fast does not pin at all.
TEST_F(GupFast, ForkInProgressMakesPinsGoSlow) {
    unsigned long a = map(4 * kPage);
    ASSERT_EQ(pl_memset(t, a, 1, 4 * kPage), static_cast<long>(4 * kPage));
    std::vector<page*> pages(4);
    mm().write_protect_seq.write_begin();
    unsigned long got = gup_fast(mm(), a, 4, FOLL_PIN | FOLL_WRITE, reinterpret_cast<Page**>(pages.data()));
    mm().write_protect_seq.write_end();
    EXPECT_EQ(got, 0u);
    // A GET is not affected by the seqcount.
    got = gup_fast(mm(), a, 4, FOLL_GET | FOLL_WRITE, reinterpret_cast<Page**>(pages.data()));
    EXPECT_EQ(got, 4u);
    for (page* p : pages) put_page(p);
}

// Seed 003: a driver's huge PFN entry in I/O memory, on a kernel where PMDs
// cannot be marked special and the pfn is not devmap: the entry looks like a
// normal THP to GUP-fast, which would use a struct page that does not exist.
// The model stops there and counts it.
struct Bo {
    pfn_t base;
};
class BoOps final : public VmOperations {
public:
    const char* name() const override { return "seed003-bo"; }
    vm_fault_t fault(VmFault& vmf) const override {
        return vmf_insert_mixed(*vmf.vma, vmf.address, static_cast<Bo*>(vmf.vma->private_data)->base + vmf.pgoff);
    }
    bool has_huge_fault() const override { return true; }
    vm_fault_t huge_fault(VmFault& vmf, unsigned order) const override {
        if (order != PMD_ORDER) return VM_FAULT_FALLBACK;
        return vmf_insert_pfn_pmd(*vmf.vma, vmf.address, static_cast<Bo*>(vmf.vma->private_data)->base + vmf.pgoff,
                                  PFN_DEV, vmf.flags & FAULT_FLAG_WRITE);
    }
};
const BoOps kBoOps;
class BoFops final : public FileOperations {
public:
    Status mmap(File& f, Vma& vma) const override {
        vma.flags |= VM_MIXEDMAP;
        vma.ops = &kBoOps;
        vma.private_data = f.private_data;
        return ok_status();
    }
};
const BoFops kBoFops;

TEST_F(GupFast, Seed003HugePfnWithoutPmdSpecial) {
    for (bool pmd_special : {true, false}) {
        reboot(pmd_special ? "ram=256M hugetlb_2m=0" : "ram=256M hugetlb_2m=0 arch.pmd_special=off");
        pl_set_current(t);
        Bo bo{*kern().mem->iomem_alloc(512)};
        auto* f = new File(kern().inode_new(FsKind::Device), &kBoFops, "bo");
        f->private_data = &bo;
        files.push_back(reinterpret_cast<pl_file*>(f));
        unsigned long hole = map(4UL << 20, PROT_NONE);
        unsigned long at = (hole + (2UL << 20) - 1) & ~((2UL << 20) - 1);
        unsigned long a = map(t, 2UL << 20, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                              reinterpret_cast<pl_file*>(f), 0, at);
        put_str(t, a, "vram");
        ASSERT_EQ(level(t, a), PtLevel::Pmd);
        std::vector<page*> pages(1);
        int r = pin_user_pages_fast(a, 1, FOLL_WRITE, pages.data());
        EXPECT_LT(r, 0) << "no struct page to pin, on either path";
        EXPECT_EQ(fast_pages(), 0u);
        EXPECT_EQ(pl_vmstat(k, "gup_fast_no_page"), pmd_special ? 0u : 1u)
            << (pmd_special ? "a special PMD stops the walk cleanly"
                            : "without pmd_special the walk reaches a pfn with no struct page");
    }
}


// ---- §4 per-entry rules, one row each --------------------------------------------------
// `fast`: pages the lockless walk takes (vmstat gup_fast_pages); `ret`: what
// pin_user_pages_fast()/get_user_pages_fast() return once the slow path has
// handled the rest.

class GupFastRules : public GupFast {
public:
    unsigned long anon(int prot, bool populate) {
        unsigned long a = map(t, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
        if (populate) put_str(t, a, "anon");
        if (prot != (PROT_READ | PROT_WRITE)) {
            EXPECT_EQ(pl_mprotect(t, a, kPage, prot), 0);
        }
        return a;
    }
    unsigned long filemap(const char* fs, int prot, int flags) {
        pl_file* f = file(fs, kPage);
        unsigned long a = map(t, kPage, prot, flags, f);
        if (prot & PROT_WRITE) {
            put_str(t, a, "file");  // a write fault: the PTE ends up writable (and dirty)
        } else {
            EXPECT_EQ(pl_pwrite(f, "file", 5, 0), 5);
            char c;
            EXPECT_EQ(pl_read(t, a, &c, 1), 1);
        }
        return a;
    }
    unsigned long zero_page() {
        unsigned long a = map(t, kPage, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS);
        char c;
        EXPECT_EQ(pl_read(t, a, &c, 1), 1);
        EXPECT_TRUE(is_zero_page(pg(t, a)));
        return a;
    }
    unsigned long hugetlb() {
        unsigned long a = map(t, 2UL << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB);
        put_str(t, a, "huge");
        return a;
    }
    unsigned long shared_after_fork() {
        unsigned long a = anon(PROT_READ | PROT_WRITE, true);
        child = pl_fork(t);
        EXPECT_NE(child, nullptr);
        return a;
    }
    task_struct* child = nullptr;
};

struct FastRow {
    const char* rule;
    std::function<unsigned long(GupFastRules&)> setup;
    unsigned flags;  // FOLL_PIN unless `get`
    bool get;
    unsigned long fast;
    long ret;
};

TEST_F(GupFastRules, PerEntryRules) {
    const int rw = PROT_READ | PROT_WRITE;
    const FastRow rows[] = {
        {"present, writable, exclusive anon PTE: taken", [&](GupFastRules& f) { return f.anon(rw, true); },
         FOLL_WRITE, false, 1, 1},
        {"pte_none: stop; the slow path faults", [&](GupFastRules& f) { return f.anon(rw, false); }, FOLL_WRITE,
         false, 0, 1},
        {"!pte_access_permitted(write) on a R/O PTE: stop; the slow path write-faults (COW)",
         [&](GupFastRules& f) {
             return f.shared_after_fork();  // both map it R/O now
         },
         FOLL_WRITE, false, 0, 1},
        {"PROT_NONE VMA: the walk stops; check_vma_flags() -EFAULT",
         [&](GupFastRules& f) { return f.anon(PROT_NONE, true); }, 0, false, 0, -EFAULT},
        {"zero page: do_anonymous_page() maps it with pte_mkspecial → the walk stops; the slow path pins it "
         "without a reference",
         [&](GupFastRules& f) { return f.zero_page(); }, 0, false, 0, 1},
        {"zero page, R/O GET: special PTE → slow path (GET does take a reference)",
         [&](GupFastRules& f) { return f.zero_page(); }, 0, true, 0, 1},
        {"R/O pin of a page shared with a child: gup_must_unshare() → slow unshare",
         [&](GupFastRules& f) { return f.shared_after_fork(); }, 0, false, 0, 1},
        {"R/O GET of a page shared with a child: no unshare needed for GET",
         [&](GupFastRules& f) { return f.shared_after_fork(); }, 0, true, 1, 1},
        {"hugetlb PMD leaf: one grab", [&](GupFastRules& f) { return f.hugetlb(); }, FOLL_WRITE, false, 1, 1},
        {"R/O longterm pin of a page-cache page in a private mapping: no VMA to judge → slow unshare",
         [&](GupFastRules& f) { return f.filemap("ext4", PROT_READ, MAP_PRIVATE); }, FOLL_LONGTERM, false, 0, 1},
        {"R/O short-term pin of the same page: taken (no unshare for short-term file pins)",
         [&](GupFastRules& f) { return f.filemap("ext4", PROT_READ, MAP_PRIVATE); }, 0, false, 1, 1},
        {"R/W longterm pin of shared ext4: gup_fast_folio_allowed() rejects → slow -EFAULT",
         [&](GupFastRules& f) { return f.filemap("ext4", rw, MAP_SHARED); }, FOLL_WRITE | FOLL_LONGTERM, false, 0,
         -EFAULT},
        {"R/W longterm pin of shared memfd: shmem is allowed",
         [&](GupFastRules& f) { return f.filemap("memfd", rw, MAP_SHARED); }, FOLL_WRITE | FOLL_LONGTERM, false, 1,
         1},
        {"secretmem: small folios are checked for secretmem → slow -EFAULT",
         [&](GupFastRules& f) { return f.filemap("secretmem", rw, MAP_SHARED); }, FOLL_WRITE, false, 0, -EFAULT},
        {"fsdax, short-term pin: ZONE_DEVICE pages with a struct page are taken",
         [&](GupFastRules& f) { return f.filemap("fsdax", rw, MAP_SHARED); }, FOLL_WRITE, false, 1, 1},
        {"fsdax, longterm: not longterm-pinnable → slow, check_vma_flags() -EOPNOTSUPP",
         [&](GupFastRules& f) { return f.filemap("fsdax", rw, MAP_SHARED); }, FOLL_WRITE | FOLL_LONGTERM, false, 0,
         -EOPNOTSUPP},
    };
    for (const auto& r : rows) {
        SCOPED_TRACE(r.rule);
        child = nullptr;
        unsigned long a = r.setup(*this);
        const unsigned long fast0 = fast_pages();
        const unsigned long ref_before = pg(t, a) ? static_cast<unsigned long>(page_ref_count(pg(t, a))) : 0;
        page* p = nullptr;
        int n = r.get ? get_user_pages_fast(a, 1, r.flags, &p) : pin_user_pages_fast(a, 1, r.flags, &p);
        EXPECT_EQ(n, r.ret);
        EXPECT_EQ(fast_pages() - fast0, r.fast);
        if (n == 1) {
            if (is_zero_page(p) && !r.get) {
                EXPECT_EQ(static_cast<unsigned long>(page_ref_count(p)), ref_before) << "§5: the zero page is never pinned";
            }
            if (r.get)
                put_page(p);
            else
                unpin_user_page(p);
        }
        if (child) pl_exit(child);
        EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), pl_vmstat(k, "nr_foll_pin_released"));
        ASSERT_EQ(pl_kernel_check(k), 0) << pl_last_error();
    }
}

}  // namespace
}  // namespace pl::test
