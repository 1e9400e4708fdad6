// GUP's remaining entry points (spec §1): get_user_pages_fast_only(),
// get_user_page_vma_remote(), fixup_user_fault(), get_dump_page(),
// memfd_pin_folios() with folio_add_pin(s)(), and populate through GUP
// (faultin_page_range() for MADV_POPULATE_*, __mm_populate() for
// MAP_POPULATE). Rows cite /work/shared/reference/linux-gup-spec.md sections
// and the upstream function whose rule they check.
#include <chrono>
#include <csignal>
#include <functional>
#include <future>

#include "fs/file.h"
#include "fs/inode.h"
#include "gup/foll_flags.h"
#include "gup/populate.h"
#include "test_kernel.h"

namespace pl::test {
namespace {

constexpr unsigned long kHuge = 2UL << 20;

class GupExtra : public KernelTest {
protected:
    void SetUp() override {
        KernelTest::SetUp();
        pl_set_current(t);
    }
    unsigned long stat(const char* n) { return pl_vmstat(k, n); }
    void expect_pins_balanced() {
        EXPECT_EQ(stat("nr_foll_pin_acquired"), stat("nr_foll_pin_released")) << "§5: pins balance at rest";
    }
    bool present(unsigned long a) { return pte::present(entry(t, a)); }
    bool writable(unsigned long a) { return pte::write(entry(t, a)); }
    // The page-cache folio at index, without taking a reference.
    Folio* cached(pl_file* f, pgoff_t index) {
        AddressSpace& m = reinterpret_cast<File*>(f)->inode->mapping;
        sync::SpinGuard g(m.i_pages_lock);
        return m.peek_folio_locked(index);
    }
    unsigned long readers() { return mm().mmap_lock.readers(); }

public:
    // For the table rows' setup functions.
    using KernelTest::file;
    using KernelTest::map;
    using KernelTest::t;
    unsigned long map_anon(unsigned long len, int prot = PROT_READ | PROT_WRITE) {
        return map(t, len, prot, MAP_PRIVATE | MAP_ANONYMOUS);
    }
    unsigned long map_file(const char* fs, unsigned long size, unsigned long len, int prot, int flags) {
        return map(t, len, prot, flags, file(fs, size));
    }
    unsigned long map_dev(const char* dev, unsigned long len) {
        pl_file* d = pl_dev_open(k, dev);
        EXPECT_NE(d, nullptr) << pl_last_error();
        files.push_back(d);
        return map(t, len, PROT_READ | PROT_WRITE, MAP_SHARED, d);
    }
    // A PMD-aligned anonymous THP, faulted in.
    unsigned long map_thp() {
        unsigned long a = map(t, 2 * kHuge);
        a = (a + kHuge - 1) & ~(kHuge - 1);
        put_str(t, a, "thp");
        EXPECT_EQ(level(t, a), PtLevel::Pmd);
        return a;
    }
    void touch(unsigned long a, unsigned long n) {
        ASSERT_EQ(pl_memset(t, a, 0x5a, n * kPage), static_cast<long>(n * kPage));
    }
};

// ==== get_user_pages_fast_only() ==========================================================

// Runs get_user_pages_fast_only() on another thread (with t as current)
// while this thread holds t's mmap_lock for write: GUP-fast never takes the
// lock, so it must finish anyway. *returned: whether it did within 10 s.
int fast_only_under_write_lock(task_struct* t, unsigned long a, int nr, unsigned flags, page** pages,
                               bool* returned) {
    mmap_write_lock(pl_task_mm(t));
    auto fut = std::async(std::launch::async, [=] {
        pl_set_current(t);
        return ::get_user_pages_fast_only(a, nr, flags, pages);
    });
    *returned = fut.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
    mmap_write_unlock(pl_task_mm(t));
    return fut.get();
}

struct FastOnlyRow {
    const char* why;
    std::function<unsigned long(GupExtra&)> setup;  // returns the start address
    int nr;
    unsigned flags;
    int expect;  // pages taken
};

TEST_F(GupExtra, FastOnlyTakesWhatTheLocklessWalkTakesAndNeverFaults) {
    const FastOnlyRow rows[] = {
        {"§1 fast_only: present, writable anon pages are all taken",
         [](GupExtra& s) {
             unsigned long a = s.map_anon(4 * kPage);
             s.touch(a, 4);
             return a;
         },
         4, FOLL_WRITE, 4},
        {"§1 fast_only never faults: an absent first page gives 0",
         [](GupExtra& s) { return s.map_anon(4 * kPage); }, 4, 0, 0},
        {"§4 gup_fast(): the walk stops at the first absent page, the prefix counts",
         [](GupExtra& s) {
             unsigned long a = s.map_anon(4 * kPage);
             s.touch(a, 2);
             return a;
         },
         4, 0, 2},
        {"§4 gup_fast_pte_range(): special PTEs (remap_pfn_range) are never taken",
         [](GupExtra& s) { return s.map_dev("pfnmap", 4 * kPage); }, 4, 0, 0},
        {"§4 gup_fast_pmd_leaf(): a THP PMD leaf is taken in one grab",
         [](GupExtra& s) { return s.map_thp(); }, 512, FOLL_WRITE, 512},
        {"§4 pte_access_permitted(): FOLL_WRITE on the R/O zero-page PTE needs a fault: 0",
         [](GupExtra& s) {
             unsigned long a = s.map_anon(kPage);
             char c;
             EXPECT_EQ(pl_read(s.t, a, &c, 1), 1);
             return a;
         },
         1, FOLL_WRITE, 0},
    };
    for (const FastOnlyRow& r : rows) {
        SCOPED_TRACE(r.why);
        unsigned long a = r.setup(*this);
        const unsigned long faults = stat("pgfault"), allocated = pl_nr_allocated_pages(k);
        const unsigned long walked = stat("gup_fast_pages");
        const bool was_present = present(a);
        std::vector<page*> pages(static_cast<size_t>(r.nr), nullptr);
        bool returned = false;
        int got = fast_only_under_write_lock(t, a, r.nr, r.flags, pages.data(), &returned);
        EXPECT_TRUE(returned) << "§1: fast_only never takes the mmap_lock";
        EXPECT_EQ(got, r.expect);
        EXPECT_EQ(stat("pgfault"), faults) << "§1: fast_only never faults";
        EXPECT_EQ(pl_nr_allocated_pages(k), allocated) << "nothing allocated";
        EXPECT_EQ(stat("gup_fast_pages"), walked + static_cast<unsigned long>(std::max(got, 0)));
        for (int i = 0; i < got; ++i) {
            EXPECT_EQ(pages[static_cast<size_t>(i)], pg(t, a + static_cast<unsigned long>(i) * kPage));
            put_page(pages[static_cast<size_t>(i)]);  // GET references (FOLL_GET)
        }
        EXPECT_EQ(present(a), was_present) << "no entry was faulted in";
    }
    EXPECT_EQ(stat("nr_foll_pin_acquired"), 0u) << "GET, never PIN";
}

TEST_F(GupExtra, FastOnlyTakesGetReferences) {
    unsigned long a = map_anon(kPage);
    touch(a, 1);
    const int ref = page_ref_count(pg(t, a));
    page* p[1] = {};
    ASSERT_EQ(::get_user_pages_fast_only(a, 1, 0, p), 1);
    EXPECT_EQ(page_ref_count(p[0]), ref + 1) << "§1: GET|FAST_ONLY: +1 reference";
    put_page(p[0]);
    EXPECT_EQ(page_ref_count(pg(t, a)), ref);
}

struct FastOnlyArgRow {
    const char* why;
    unsigned flags;
    bool with_pages;
    int nr;
    int expect;
};

TEST_F(GupExtra, FastOnlyArgumentRules) {
    expect_reports("warn");  // the invalid flag combinations WARN
    unsigned long a = map_anon(2 * kPage);
    touch(a, 2);
    const FastOnlyArgRow rows[] = {
        {"§2 is_valid_gup_args(): internal FOLL_PIN from a caller", FOLL_PIN, true, 1, -EINVAL},
        {"§2 is_valid_gup_args(): internal FOLL_FAST_ONLY from a caller", FOLL_FAST_ONLY, true, 1, -EINVAL},
        {"§2 is_valid_gup_args(): LONGTERM without PIN", FOLL_LONGTERM, true, 1, -EINVAL},
        {"§2 is_valid_gup_args(): GET without pages", 0, false, 1, -EINVAL},
        {"§2 gup_fast_fallback(): NOWAIT outside the fast set", FOLL_NOWAIT, true, 1, -EINVAL},
        {"§2 gup_fast_fallback(): DUMP outside the fast set", FOLL_DUMP, true, 1, -EINVAL},
        {"§2 gup_fast_fallback(): FORCE is in the fast set", FOLL_FORCE, true, 2, 2},
        {"§1 nr_pages == 0 → 0", 0, true, 0, 0},
        {"§1 gup_fast_fallback(): a negative count overflows the length", 0, true, -1, -EOVERFLOW},
    };
    for (const FastOnlyArgRow& r : rows) {
        SCOPED_TRACE(r.why);
        page* p[2] = {};
        int got = ::get_user_pages_fast_only(a, r.nr, r.flags, r.with_pages ? p : nullptr);
        EXPECT_EQ(got, r.expect);
        for (int i = 0; i < got; ++i) put_page(p[i]);
    }
    page* p[1] = {};
    EXPECT_EQ(::get_user_pages_fast_only(TASK_SIZE - kPage, 4, 0, p), -EFAULT) << "§1: end beyond TASK_SIZE";
}

TEST_F(GupExtra, FastOnlyWithoutGupFastGetsNothing) {
    // §4: !CONFIG_HAVE_GUP_FAST → gup_fast() returns 0; fast_only does not fall back.
    reboot("ram=512M hugetlb_2m=0 hugetlb_1g=0 arch.gup_fast=off");
    pl_set_current(t);
    unsigned long a = map_anon(2 * kPage);
    touch(a, 2);
    page* p[2] = {};
    EXPECT_EQ(::get_user_pages_fast_only(a, 2, 0, p), 0);
    EXPECT_EQ(::get_user_pages_fast(a, 2, 0, p), 2) << "get_user_pages_fast() falls back to the slow path";
    put_page(p[0]);
    put_page(p[1]);
}

// ==== get_user_page_vma_remote() ===========================================================

struct VmaRemoteRow {
    const char* why;
    std::function<unsigned long(GupExtra&)> setup;
    int flags;
    long expect_err;  // 0: a page
};

TEST_F(GupExtra, GetUserPageVmaRemote) {
    expect_reports("warn");
    const VmaRemoteRow rows[] = {
        {"include/linux/mm.h: one page plus its VMA",
         [](GupExtra& s) {
             unsigned long a = s.map_anon(2 * kPage);
             s.touch(a, 2);
             return a + kPage;
         },
         0, 0},
        {"get_user_pages_remote() faults the page in (FOLL_WRITE)",
         [](GupExtra& s) { return s.map_anon(2 * kPage); }, static_cast<int>(FOLL_WRITE), 0},
        {"§3 no VMA → ERR_PTR(-EFAULT)",
         [](GupExtra& s) {
             unsigned long a = s.map_anon(2 * kPage);
             EXPECT_EQ(pl_munmap(s.t, a, 2 * kPage), 0);
             return a;
         },
         0, -EFAULT},
        {"§3 check_vma_flags(): VM_IO|VM_PFNMAP → ERR_PTR(-EFAULT)",
         [](GupExtra& s) { return s.map_dev("pfnmap", kPage); }, 0, -EFAULT},
        {"§3 check_vma_flags(): FOLL_WRITE on a R/O VMA → ERR_PTR(-EFAULT)",
         [](GupExtra& s) { return s.map_anon(kPage, PROT_READ); }, static_cast<int>(FOLL_WRITE), -EFAULT},
        {"mm.h: FOLL_NOWAIT is refused with a WARN → ERR_PTR(-EINVAL)",
         [](GupExtra& s) { return s.map_anon(kPage); }, static_cast<int>(FOLL_NOWAIT), -EINVAL},
        {"§2 is_valid_gup_args(): internal FOLL_PIN → ERR_PTR(-EINVAL)",
         [](GupExtra& s) { return s.map_anon(kPage); }, static_cast<int>(FOLL_PIN), -EINVAL},
    };
    for (const VmaRemoteRow& r : rows) {
        SCOPED_TRACE(r.why);
        unsigned long a = r.setup(*this);
        vm_area_struct* vma = nullptr;
        mmap_read_lock(pl_task_mm(t));
        page* p = ::get_user_page_vma_remote(pl_task_mm(t), a, r.flags, &vma);
        EXPECT_EQ(readers(), 1u) << "the caller's lock is never dropped (locked == NULL)";
        mmap_read_unlock(pl_task_mm(t));
        if (r.expect_err) {
            ASSERT_TRUE(IS_ERR(p));
            EXPECT_EQ(PTR_ERR(p), r.expect_err);
            EXPECT_EQ(vma, nullptr) << "*vmap untouched on error";
            continue;
        }
        ASSERT_FALSE(IS_ERR_OR_NULL(p));
        EXPECT_EQ(p, pg(t, a));
        ASSERT_NE(vma, nullptr);
        EXPECT_LE(pl_vma_start(vma), a);
        EXPECT_GT(pl_vma_end(vma), a);
        put_page(p);
    }
    EXPECT_NE(std::string(pl_dmesg(k)).find("get_user_page_vma_remote"), std::string::npos) << "NOWAIT warned";
    EXPECT_TRUE(IS_ERR(::get_user_page_vma_remote(nullptr, 0, 0, nullptr)));
}

// ==== fixup_user_fault() ====================================================================

struct FixupErrRow {
    const char* why;
    std::function<unsigned long(GupExtra&)> setup;
    unsigned fault_flags;
    bool with_unlocked;
    int expect;
};

TEST_F(GupExtra, FixupUserFaultErrors) {
    expect_reports("warn");
    const FixupErrRow rows[] = {
        {"fixup_user_fault(): no VMA → -EFAULT",
         [](GupExtra& s) {
             unsigned long a = s.map_anon(kPage);
             EXPECT_EQ(pl_munmap(s.t, a, kPage), 0);
             return a;
         },
         0, true, -EFAULT},
        {"vma_permits_fault(): write fault on a R/O VMA → -EFAULT",
         [](GupExtra& s) { return s.map_anon(kPage, PROT_READ); }, FAULT_FLAG_WRITE, true, -EFAULT},
        {"vma_permits_fault(): read fault on a PROT_NONE VMA → -EFAULT",
         [](GupExtra& s) { return s.map_anon(kPage, PROT_NONE); }, 0, true, -EFAULT},
        {"vm_fault_to_errno(): SIGBUS (shared ext4 page beyond EOF) → -EFAULT",
         [](GupExtra& s) { return s.map_file("ext4", kPage, 2 * kPage, PROT_READ, MAP_SHARED) + kPage; }, 0,
         true, -EFAULT},
        {"model: ALLOW_RETRY without `unlocked` (upstream writes through NULL) → -EINVAL",
         [](GupExtra& s) { return s.map_anon(kPage); }, FAULT_FLAG_ALLOW_RETRY, false, -EINVAL},
    };
    for (const FixupErrRow& r : rows) {
        SCOPED_TRACE(r.why);
        unsigned long a = r.setup(*this);
        bool unlocked = false;
        mmap_read_lock(pl_task_mm(t));
        EXPECT_EQ(::fixup_user_fault(pl_task_mm(t), a, r.fault_flags, r.with_unlocked ? &unlocked : nullptr),
                  r.expect);
        EXPECT_EQ(readers(), 1u) << "returns with the mmap_lock held";
        mmap_read_unlock(pl_task_mm(t));
        EXPECT_FALSE(unlocked);
    }
    EXPECT_EQ(::fixup_user_fault(nullptr, 0, 0, nullptr), -EINVAL);
}

TEST_F(GupExtra, FixupUserFaultWriteBreaksCow) {
    // fixup_user_fault() always runs handle_mm_fault(): a write fault on a
    // page shared with a child after fork COWs it (do_wp_page), no reference taken.
    unsigned long a = map_anon(kPage);
    put_str(t, a, "parent");
    task_struct* c = pl_fork(t);
    ASSERT_NE(c, nullptr);
    page* shared = pg(t, a);
    ASSERT_FALSE(writable(a));
    bool unlocked = false;
    mmap_read_lock(pl_task_mm(t));
    EXPECT_EQ(::fixup_user_fault(pl_task_mm(t), a, FAULT_FLAG_WRITE, &unlocked), 0);
    EXPECT_EQ(readers(), 1u);
    mmap_read_unlock(pl_task_mm(t));
    EXPECT_FALSE(unlocked) << "an anonymous COW never drops the lock";
    EXPECT_TRUE(writable(a)) << "the PTE is fixed up, not just the page";
    EXPECT_NE(pg(t, a), shared);
    EXPECT_EQ(pg(c, a), shared) << "the child keeps the original";
    EXPECT_EQ(get_str(t, a), "parent");
    EXPECT_EQ(page_ref_count(pg(t, a)), 1) << "no reference is left behind";
}

TEST_F(GupExtra, FixupUserFaultRetriesAFileFaultThatDroppedTheLock) {
    // filemap_fault() with ALLOW_RETRY drops the mmap_lock for "I/O" and
    // returns VM_FAULT_RETRY: fixup_user_fault() re-takes the lock, sets
    // *unlocked and retries with FAULT_FLAG_TRIED.
    pl_file* f = file("ext4", 2 * kPage);
    unsigned long a = map(t, 2 * kPage, PROT_READ, MAP_SHARED, f);
    const unsigned long majflt = stat("pgmajfault");
    bool unlocked = false;
    mmap_read_lock(pl_task_mm(t));
    EXPECT_EQ(::fixup_user_fault(pl_task_mm(t), a, 0, &unlocked), 0);
    EXPECT_EQ(readers(), 1u) << "returns with the mmap_lock held again";
    mmap_read_unlock(pl_task_mm(t));
    EXPECT_TRUE(unlocked) << "the caller learns that the lock was dropped";
    EXPECT_GT(stat("pgmajfault"), majflt);
    EXPECT_TRUE(present(a));

    // Without `unlocked` no ALLOW_RETRY is passed: the fault keeps the lock.
    unlocked = false;
    mmap_read_lock(pl_task_mm(t));
    EXPECT_EQ(::fixup_user_fault(pl_task_mm(t), a + kPage, 0, nullptr), 0);
    EXPECT_EQ(readers(), 1u);
    mmap_read_unlock(pl_task_mm(t));
    EXPECT_TRUE(present(a + kPage));
}

TEST_F(GupExtra, FixupUserFaultFatalSignal) {
    unsigned long a = map_anon(kPage);
    ASSERT_EQ(pl_task_signal(t, SIGKILL), 0);
    bool unlocked = false;
    mmap_read_lock(pl_task_mm(t));
    // `unlocked` adds KILLABLE: a pending fatal signal stops it before the fault.
    EXPECT_EQ(::fixup_user_fault(pl_task_mm(t), a, FAULT_FLAG_WRITE, &unlocked), -EINTR);
    EXPECT_FALSE(present(a));
    // Without KILLABLE the signal is not looked at.
    EXPECT_EQ(::fixup_user_fault(pl_task_mm(t), a, FAULT_FLAG_WRITE, nullptr), 0);
    mmap_read_unlock(pl_task_mm(t));
    EXPECT_TRUE(writable(a));
    pl_task_clear_signals(t);
}

TEST_F(GupExtra, FixupUserFaultOnAPoisonedPage) {
    // vm_fault_to_errno(ret, 0): VM_FAULT_HWPOISON without FOLL_HWPOISON → -EFAULT.
    unsigned long a = map_anon(kPage);
    touch(a, 1);
    ASSERT_EQ(pl_memory_failure(k, page_to_pfn(pg(t, a))), 0);
    ++baseline;  // a poisoned frame never returns to the allocator
    bool unlocked = false;
    mmap_read_lock(pl_task_mm(t));
    EXPECT_EQ(::fixup_user_fault(pl_task_mm(t), a, 0, &unlocked), -EFAULT);
    mmap_read_unlock(pl_task_mm(t));
}

// ==== get_dump_page() =========================================================================

TEST_F(GupExtra, GetDumpPageHolesAndPages) {
    unsigned long a = map_anon(4 * kPage);
    touch(a + kPage, 1);
    char c;
    ASSERT_EQ(pl_read(t, a + 2 * kPage, &c, 1), 1);  // the zero page
    ASSERT_TRUE(is_zero_page(pg(t, a + 2 * kPage)));
    unsigned long dev = map_dev("pfnmap", kPage);

    // §2 FOLL_DUMP: an anonymous hole is a hole in the core file; nothing is allocated.
    const unsigned long allocated = pl_nr_allocated_pages(k);
    int locked = 0;
    EXPECT_EQ(::get_dump_page(a, &locked), nullptr);
    EXPECT_EQ(pl_nr_allocated_pages(k), allocated);
    EXPECT_FALSE(present(a));
    EXPECT_EQ(locked, 0) << "__get_user_pages_locked(): took and released the lock";
    EXPECT_FALSE(mm().mmap_lock.is_locked());

    // A present page: FOLL_GET, one more reference, put_page() by the dumper.
    const int ref = page_ref_count(pg(t, a + kPage));
    page* p = ::get_dump_page(a + kPage, &locked);
    ASSERT_EQ(p, pg(t, a + kPage));
    EXPECT_EQ(page_ref_count(p), ref + 1);
    put_page(p);

    // follow_page_pte(): with FOLL_DUMP the zero page is a hole too.
    EXPECT_EQ(::get_dump_page(a + 2 * kPage, &locked), nullptr);
    // §3 check_vma_flags(): VM_IO|VM_PFNMAP → -EFAULT → NULL.
    EXPECT_EQ(::get_dump_page(dev, &locked), nullptr);
    // No VMA at all.
    EXPECT_EQ(::get_dump_page(a + 4 * kPage + 64 * kHuge, &locked), nullptr);
    EXPECT_EQ(locked, 0);
    EXPECT_FALSE(mm().mmap_lock.is_locked());

    // *locked == 1: the caller holds the lock and keeps it.
    locked = 1;
    mmap_read_lock(pl_task_mm(t));
    p = ::get_dump_page(a + kPage, &locked);
    EXPECT_EQ(p, pg(t, a + kPage));
    EXPECT_EQ(locked, 1);
    EXPECT_EQ(readers(), 1u);
    mmap_read_unlock(pl_task_mm(t));
    put_page(p);
}

TEST_F(GupExtra, GetDumpPageForcesUnreadableMappings) {
    // §2 FOLL_FORCE: a PROT_NONE mapping (VM_MAYREAD) is dumped too.
    unsigned long a = map_anon(kPage);
    put_str(t, a, "secret");
    ASSERT_EQ(pl_mprotect(t, a, kPage, PROT_NONE), 0);
    int locked = 0;
    page* p = ::get_dump_page(a, &locked);
    ASSERT_NE(p, nullptr);
    char buf[7] = {};
    ASSERT_EQ(pl_page_read(p, 0, buf, 6), 0);
    EXPECT_STREQ(buf, "secret");
    put_page(p);
    // An unpopulated file mapping is faulted in: only anonymous holes are
    // dump holes (no_page_table()).
    pl_file* f = file("tmpfs", kPage);
    ASSERT_EQ(pl_pwrite(f, "file", 4, 0), 4);
    unsigned long fa = map(t, kPage, PROT_READ, MAP_SHARED, f);
    p = ::get_dump_page(fa, &locked);
    ASSERT_NE(p, nullptr);
    put_page(p);
    pl_set_current(nullptr);
    EXPECT_EQ(::get_dump_page(a, &locked), nullptr) << "no current mm";
    pl_set_current(t);
}

// ==== memfd_pin_folios() ========================================================================

TEST_F(GupExtra, MemfdPinFoliosOnShmem) {
    pl_file* f = file("memfd", 8 * kPage);
    ASSERT_EQ(pl_pwrite(f, "zero", 4, 0), 4);
    ASSERT_EQ(pl_pwrite(f, "two", 3, 2 * kPage), 3);
    ASSERT_EQ(cached(f, 1), nullptr);
    const unsigned long allocated = pl_nr_allocated_pages(k);
    folio* fo[8] = {};
    unsigned long off = ~0UL;
    // [kPage + 100, 4*kPage + 7]: the folios at indices 1..4, pinned once each.
    ASSERT_EQ(::memfd_pin_folios(f, kPage + 100, 4 * kPage + 7, fo, 8, &off), 4);
    EXPECT_EQ(off, 100u) << "offset_in_folio(first folio, start)";
    EXPECT_EQ(pl_nr_allocated_pages(k), allocated + 3) << "memfd_alloc_folio(): indices 1, 3, 4 were holes";
    for (pgoff_t i = 0; i < 4; ++i) {
        EXPECT_EQ(reinterpret_cast<Folio*>(fo[i]), cached(f, i + 1)) << "file order";
        EXPECT_TRUE(folio_maybe_dma_pinned(fo[i]));
        EXPECT_EQ(folio_ref_count(fo[i]), 1 + GUP_PIN_COUNTING_BIAS) << "§5: page cache + one pin";
    }
    EXPECT_EQ(stat("nr_foll_pin_acquired"), 4u);
    EXPECT_EQ(cached(f, 5), nullptr) << "nothing beyond end";
    unpin_folios(fo, 4);
    expect_pins_balanced();

    // max_folios caps the count; nothing beyond the last pinned folio is allocated.
    pl_file* g = file("tmpfs", 8 * kPage);
    ASSERT_EQ(::memfd_pin_folios(g, 0, 8 * kPage - 1, fo, 2, &off), 2);
    EXPECT_EQ(off, 0u);
    EXPECT_NE(cached(g, 1), nullptr);
    EXPECT_EQ(cached(g, 2), nullptr);
    unpin_folios(fo, 2);
    expect_pins_balanced();
}

TEST_F(GupExtra, MemfdPinFoliosOnHugetlb) {
    pl_file* f = file("memfd-hugetlb", 2 * kHuge);
    ASSERT_EQ(pl_fallocate(f, 0, kHuge, kHuge), 0);  // the second huge page only
    folio* fo[4] = {};
    unsigned long off = 0;
    // Huge-page granularity: [kHuge + 5, 2*kHuge - 1] is one folio, offset 5.
    ASSERT_EQ(::memfd_pin_folios(f, kHuge + 5, 2 * kHuge - 1, fo, 4, &off), 1);
    EXPECT_EQ(off, 5u);
    Folio* hf = reinterpret_cast<Folio*>(fo[0]);
    EXPECT_TRUE(hf->is_hugetlb());
    EXPECT_EQ(hf->nr_pages(), 512u);
    EXPECT_EQ(hf->pincount(), 1) << "§5: a large folio counts pins in _pincount";
    EXPECT_EQ(cached(f, 512), hf);

    // folio_add_pins(): more pins on the pinned folio, to unpin page by page.
    ASSERT_EQ(::folio_add_pins(fo[0], 511), 0);
    EXPECT_EQ(hf->pincount(), 512);
    unpin_user_page_range_dirty_lock(::folio_page(fo[0], 0), 512, false);
    EXPECT_EQ(hf->pincount(), 0);
    EXPECT_FALSE(folio_maybe_dma_pinned(fo[0]));
    expect_pins_balanced();

    // The whole file: the missing first huge page comes from the pool.
    ASSERT_EQ(::memfd_pin_folios(f, 0, 2 * kHuge - 1, fo, 4, &off), 2);
    EXPECT_EQ(off, 0u);
    EXPECT_EQ(reinterpret_cast<Folio*>(fo[0]), cached(f, 0));
    EXPECT_EQ(reinterpret_cast<Folio*>(fo[1]), hf);
    unpin_folios(fo, 2);
    expect_pins_balanced();
}

TEST_F(GupExtra, MemfdPinFoliosHugetlbPoolRunsDry) {
    // memfd_alloc_folio(): no pool page → -ENOMEM; the pins taken so far go.
    pl_file* f = file("memfd-hugetlb", 10 * kHuge);  // the pool has 8
    std::vector<folio*> fo(10, nullptr);
    unsigned long off = 0;
    EXPECT_EQ(::memfd_pin_folios(f, 0, 10 * kHuge - 1, fo.data(), 10, &off), -ENOMEM);
    expect_pins_balanced();
    EXPECT_NE(cached(f, 0), nullptr) << "allocated folios stay in the page cache";
}

struct MemfdArgRow {
    const char* why;
    const char* fs;  // nullptr: no file
    long long start, end;
    unsigned max;
    bool null_out;
};

TEST_F(GupExtra, MemfdPinFoliosArgumentRules) {
    const MemfdArgRow rows[] = {
        {"memfd_pin_folios(): not shmem or hugetlb (ext4) → -EINVAL", "ext4", 0, 0, 1, false},
        {"memfd_pin_folios(): secretmem is not shmem → -EINVAL", "secretmem", 0, 0, 1, false},
        {"memfd_pin_folios(): start < 0 → -EINVAL", "memfd", -1, 0, 1, false},
        {"memfd_pin_folios(): start > end → -EINVAL", "memfd", 2, 1, 1, false},
        {"memfd_pin_folios(): end >= i_size → -EINVAL", "memfd", 0, 4 * static_cast<long long>(kPage), 1, false},
        {"memfd_pin_folios(): max_folios == 0 → -EINVAL", "memfd", 0, 0, 0, false},
        {"memfd_pin_folios(): no memfd → -EINVAL", nullptr, 0, 0, 1, false},
        {"model: NULL folios/offset (upstream writes through them) → -EINVAL", "memfd", 0, 0, 1, true},
    };
    for (const MemfdArgRow& r : rows) {
        SCOPED_TRACE(r.why);
        pl_file* f = r.fs ? file(r.fs, 4 * kPage) : nullptr;
        folio* fo[1] = {};
        unsigned long off = 0;
        EXPECT_EQ(::memfd_pin_folios(f, r.start, r.end, r.null_out ? nullptr : fo, r.max, r.null_out ? nullptr : &off),
                  -EINVAL);
        EXPECT_EQ(fo[0], nullptr);
    }
    EXPECT_EQ(stat("nr_foll_pin_acquired"), 0u);
}

TEST_F(GupExtra, MemfdPinFoliosMigratesOutOfZoneMovable) {
    // §6: the folios are pinned with FOLL_LONGTERM semantics: page-cache
    // folios in ZONE_MOVABLE are migrated (check_and_migrate_movable_folios)
    // and the whole range pinned again.
    reboot("ram=512M movable=256M hugetlb_2m=0 hugetlb_1g=0");
    pl_set_current(t);
    constexpr unsigned long n = 8;
    pl_file* f = file("memfd", n * kPage);
    for (unsigned long i = 0; i < n; ++i) {
        std::string s = "page " + std::to_string(i);
        ASSERT_EQ(pl_pwrite(f, s.c_str(), s.size() + 1, i * kPage), static_cast<long>(s.size() + 1));
    }
    unsigned long a = map(t, n * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    ASSERT_EQ(get_str(t, a), "page 0");  // page 0 is mapped as well
    std::vector<Folio*> before;
    for (pgoff_t i = 0; i < n; ++i) {
        before.push_back(cached(f, i));
        ASSERT_EQ(before.back()->zone(), ZoneId::Movable) << "precondition: shmem folios born in ZONE_MOVABLE";
        EXPECT_FALSE(::folio_is_longterm_pinnable(reinterpret_cast<folio*>(before.back())));
    }
    const unsigned long migrated = stat("pgmigrate_success");
    std::vector<folio*> fo(n, nullptr);
    unsigned long off = 1;
    ASSERT_EQ(::memfd_pin_folios(f, 0, n * kPage - 1, fo.data(), n, &off), static_cast<long>(n));
    EXPECT_EQ(off, 0u);
    EXPECT_EQ(stat("pgmigrate_success"), migrated + n);
    for (pgoff_t i = 0; i < n; ++i) {
        SCOPED_TRACE(i);
        Folio* nf = reinterpret_cast<Folio*>(fo[i]);
        EXPECT_NE(nf, before[i]) << "migrated";
        EXPECT_EQ(nf, cached(f, i)) << "the page cache holds the new folio";
        EXPECT_TRUE(::folio_is_longterm_pinnable(fo[i]));
        EXPECT_NE(nf->zone(), ZoneId::Movable);
        EXPECT_TRUE(folio_maybe_dma_pinned(fo[i]));
        char buf[16] = {};
        ASSERT_EQ(pl_page_read(::folio_page(fo[i], 0), 0, buf, 8), 0);
        EXPECT_EQ(std::string(buf), "page " + std::to_string(i)) << "contents moved along";
    }
    EXPECT_EQ(pg(t, a), ::folio_page(fo[0], 0)) << "migration moved the user mapping to the new folio";
    EXPECT_EQ(get_str(t, a), "page 0");
    EXPECT_EQ(stat("nr_foll_pin_acquired") - stat("nr_foll_pin_released"), n) << "only the final pins remain";
    unpin_folios(fo.data(), n);
    expect_pins_balanced();
}

TEST_F(GupExtra, FolioPinHelpers) {
    expect_reports("warn", 1);  // folio_add_pin() on an unpinned folio
    pl_file* f = file("memfd", kPage);
    folio* fo[2] = {};
    unsigned long off = 0;
    ASSERT_EQ(::memfd_pin_folios(f, 0, 0, fo, 1, &off), 1);
    page* p = ::folio_page(fo[0], 0);
    EXPECT_TRUE(::page_maybe_dma_pinned(p));
    const int ref = folio_ref_count(fo[0]);
    // folio_add_pin(): one more pin on a pinned small folio: +GUP_PIN_COUNTING_BIAS.
    ::folio_add_pin(fo[0]);
    EXPECT_EQ(folio_ref_count(fo[0]), ref + GUP_PIN_COUNTING_BIAS);
    fo[1] = fo[0];
    unpin_folios(fo, 2);  // unpin_folios(): equal neighbours are one gup_put_folio()
    EXPECT_FALSE(::page_maybe_dma_pinned(p));
    expect_pins_balanced();
    // folio_add_pin() on a folio nobody pinned: WARN (and the pin is taken).
    ::folio_add_pin(fo[0]);
    EXPECT_NE(std::string(pl_dmesg(k)).find("folio_add_pin"), std::string::npos);
    unpin_folio(fo[0]);
    expect_pins_balanced();
    EXPECT_FALSE(::page_maybe_dma_pinned(nullptr));
    EXPECT_EQ(::folio_is_longterm_pinnable(nullptr), 0);
    EXPECT_NE(std::string(pl_last_error()), "");
    EXPECT_EQ(::folio_add_pins(nullptr, 1), -EINVAL);
}

// ==== populate: MADV_POPULATE_(READ|WRITE) and MAP_POPULATE ========================================

struct PopulateRow {
    const char* why;
    std::function<unsigned long(GupExtra&)> setup;  // a 4-page range
    int advice;
    int expect;
    int populated;  // pages present afterwards, from the start (-1: don't check)
};

TEST_F(GupExtra, MadvisePopulateErrorMapping) {
    const PopulateRow rows[] = {
        {"§9 selftests/mm/pfnmap.c: MADV_POPULATE_READ on VM_PFNMAP → EINVAL",
         [](GupExtra& s) { return s.map_dev("pfnmap", 4 * kPage); }, MADV_POPULATE_READ, -EINVAL, -1},
        {"§9 selftests/mm/pfnmap.c: MADV_POPULATE_WRITE on VM_PFNMAP → EINVAL",
         [](GupExtra& s) { return s.map_dev("pfnmap", 4 * kPage); }, MADV_POPULATE_WRITE, -EINVAL, -1},
        {"§3 FOLL_MADV_POPULATE: a hole at the start → ENOMEM, nothing populated after it",
         [](GupExtra& s) {
             unsigned long a = s.map_anon(4 * kPage);
             EXPECT_EQ(pl_munmap(s.t, a, kPage), 0);
             return a;
         },
         MADV_POPULATE_READ, -ENOMEM, 0},
        {"§3 FOLL_MADV_POPULATE: a hole in the middle → ENOMEM after populating up to it",
         [](GupExtra& s) {
             unsigned long a = s.map_anon(4 * kPage);
             EXPECT_EQ(pl_munmap(s.t, a + 2 * kPage, kPage), 0);
             return a;
         },
         MADV_POPULATE_WRITE, -ENOMEM, 2},
        {"§3 check_vma_flags() → -EINVAL: POPULATE_WRITE on a R/O mapping (no FOLL_FORCE)",
         [](GupExtra& s) { return s.map_anon(4 * kPage, PROT_READ); }, MADV_POPULATE_WRITE, -EINVAL, 0},
        {"§3 check_vma_flags() → -EINVAL: POPULATE_READ on PROT_NONE",
         [](GupExtra& s) { return s.map_anon(4 * kPage, PROT_NONE); }, MADV_POPULATE_READ, -EINVAL, 0},
        {"§3 check_vma_flags() → -EINVAL: secretmem",
         [](GupExtra& s) {
             return s.map_file("secretmem", 4 * kPage, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED);
         },
         MADV_POPULATE_WRITE, -EINVAL, 0},
        {"§3 FOLL_MADV_POPULATE: a R/O VMA after two writable pages → EINVAL, populated up to it",
         [](GupExtra& s) {
             unsigned long a = s.map_anon(4 * kPage);
             EXPECT_EQ(pl_mprotect(s.t, a + 2 * kPage, 2 * kPage, PROT_READ), 0);
             return a;
         },
         MADV_POPULATE_WRITE, -EINVAL, 2},
        {"madvise_populate(): VM_FAULT_SIGBUS (shared ext4 beyond EOF) → EFAULT",
         [](GupExtra& s) { return s.map_file("ext4", 2 * kPage, 4 * kPage, PROT_READ, MAP_SHARED); },
         MADV_POPULATE_READ, -EFAULT, 2},
        {"faultin_page_range(): populates a private file mapping writable (COW now)",
         [](GupExtra& s) {
             return s.map_file("ext4", 4 * kPage, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE);
         },
         MADV_POPULATE_WRITE, 0, 4},
        {"faultin_page_range(): READ maps the zero page into anonymous memory",
         [](GupExtra& s) { return s.map_anon(4 * kPage); }, MADV_POPULATE_READ, 0, 4},
        {"faultin_page_range(): hugetlb",
         [](GupExtra& s) {
             return s.map_file("memfd-hugetlb", kHuge, kHuge, PROT_READ | PROT_WRITE, MAP_SHARED);
         },
         MADV_POPULATE_WRITE, 0, 4},
    };
    for (const PopulateRow& r : rows) {
        SCOPED_TRACE(r.why);
        unsigned long a = r.setup(*this);
        EXPECT_EQ(pl_madvise(t, a, 4 * kPage, r.advice), r.expect);
        EXPECT_FALSE(mm().mmap_lock.is_locked());
        if (r.populated < 0) continue;
        for (int i = 0; i < 4; ++i) {
            unsigned long x = a + static_cast<unsigned long>(i) * kPage;
            EXPECT_EQ(present(x), i < r.populated) << "page " << i;
            if (i < r.populated && r.advice == MADV_POPULATE_WRITE) {
                EXPECT_TRUE(writable(x)) << "page " << i;
            }
        }
    }
    expect_pins_balanced();
}

TEST_F(GupExtra, MadvisePopulatePoisonAndSignals) {
    // §2 FOLL_HWPOISON in faultin_page_range(): -EHWPOISON, not -EFAULT.
    unsigned long a = map_anon(2 * kPage);
    touch(a, 2);
    ASSERT_EQ(pl_memory_failure(k, page_to_pfn(pg(t, a + kPage))), 0);
    ++baseline;
    EXPECT_EQ(pl_madvise(t, a, 2 * kPage, MADV_POPULATE_READ), -EHWPOISON);
    // §3 step 2: a fatal signal → -EINTR.
    unsigned long b = map_anon(2 * kPage);
    ASSERT_EQ(pl_task_signal(t, SIGKILL), 0);
    EXPECT_EQ(pl_madvise(t, b, 2 * kPage, MADV_POPULATE_WRITE), -EINTR);
    EXPECT_FALSE(present(b));
    pl_task_clear_signals(t);
    EXPECT_EQ(pl_madvise(t, b, 2 * kPage, MADV_POPULATE_WRITE), 0);
    EXPECT_TRUE(writable(b + kPage));
}

TEST_F(GupExtra, MadvisePopulateReadOfUncachedFileDropsAndRetakesTheLock) {
    // FOLL_UNLOCKABLE: the filemap fault drops the lock; __get_user_pages_locked()
    // retries and madvise_populate() re-takes the lock; the call still succeeds.
    pl_file* f = file("ext4", 4 * kPage);
    unsigned long a = map(t, 4 * kPage, PROT_READ, MAP_SHARED, f);
    const unsigned long majflt = stat("pgmajfault");
    EXPECT_EQ(pl_madvise(t, a, 4 * kPage, MADV_POPULATE_READ), 0);
    // One major fault: do_sync_mmap_readahead() reads the whole (4-page)
    // file around the first page, and fault-around maps the rest on the retry.
    EXPECT_EQ(stat("pgmajfault"), majflt + 1);
    for (int i = 0; i < 4; ++i) EXPECT_TRUE(present(a + static_cast<unsigned long>(i) * kPage));
    EXPECT_FALSE(mm().mmap_lock.is_locked());
    // Without read-ahead (read_ahead_kb 0) every page is its own major fault
    // and its own lock drop.
    reboot("ram=512M hugetlb_2m=8 hugetlb_1g=0 readahead_kb=0");
    f = file("ext4", 4 * kPage);
    a = map(t, 4 * kPage, PROT_READ, MAP_SHARED, f);
    const unsigned long majflt0 = stat("pgmajfault");
    EXPECT_EQ(pl_madvise(t, a, 4 * kPage, MADV_POPULATE_READ), 0);
    EXPECT_EQ(stat("pgmajfault"), majflt0 + 4);
    for (int i = 0; i < 4; ++i) EXPECT_TRUE(present(a + static_cast<unsigned long>(i) * kPage));
    EXPECT_FALSE(mm().mmap_lock.is_locked());
}

struct MapPopulateRow {
    const char* why;
    std::function<unsigned long(GupExtra&, int extra_flags)> map;
    int extra_flags;
    bool expect_present;
    int expect_writable;  // -1: not checked
};

TEST_F(GupExtra, MapPopulateThroughGup) {
    const MapPopulateRow rows[] = {
        {"populate_vma_page_range(): private writable anon → write fault, COW broken now",
         [](GupExtra& s, int fl) { return s.map(s.t, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | fl); },
         MAP_POPULATE, true, true},
        {"populate_vma_page_range(): private writable file → COWed to anon pages",
         [](GupExtra& s, int fl) {
             return s.map(s.t, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | fl, s.file("ext4", 4 * kPage));
         },
         MAP_POPULATE, true, true},
        {"populate_vma_page_range(): shared writable file → read fault only (not dirtied)",
         [](GupExtra& s, int fl) {
             return s.map(s.t, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED | fl, s.file("ext4", 4 * kPage));
         },
         MAP_POPULATE, true, false},
        {"populate_vma_page_range(): PROT_NONE → -EFAULT, ignored by mm_populate()",
         [](GupExtra& s, int fl) { return s.map(s.t, 4 * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | fl); },
         MAP_POPULATE, false, false},
        {"do_mmap(): MAP_POPULATE|MAP_NONBLOCK populates nothing",
         [](GupExtra& s, int fl) { return s.map(s.t, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | fl); },
         MAP_POPULATE | MAP_NONBLOCK, false, false},
        {"do_mmap(): MAP_LOCKED populates (VM_LOCKED)",
         [](GupExtra& s, int fl) { return s.map(s.t, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | fl); },
         MAP_LOCKED, true, true},
        {"populate_vma_page_range(): MAP_HUGETLB private writable → hugetlb write fault",
         [](GupExtra& s, int fl) {
             return s.map(s.t, kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | fl);
         },
         MAP_POPULATE, true, true},
        {"populate_vma_page_range(): FOLL_FORCE read fault of a write-only shared mapping",
         [](GupExtra& s, int fl) { return s.map(s.t, 4 * kPage, PROT_WRITE, MAP_SHARED | fl, s.file("tmpfs", 4 * kPage)); },
         MAP_POPULATE, true, -1},
    };
    for (const MapPopulateRow& r : rows) {
        SCOPED_TRACE(r.why);
        unsigned long a = r.map(*this, r.extra_flags);
        EXPECT_FALSE(mm().mmap_lock.is_locked()) << "mm_populate() runs after the write lock is released";
        for (int i = 0; i < 4; ++i) {
            unsigned long x = a + static_cast<unsigned long>(i) * kPage;
            EXPECT_EQ(present(x), r.expect_present) << "page " << i;
            if (r.expect_writable >= 0) {
                EXPECT_EQ(writable(x), r.expect_writable == 1) << "page " << i;
            }
        }
    }
    // __mm_populate() skips VM_IO|VM_PFNMAP VMAs: mmap still succeeds.
    pl_file* d = pl_dev_open(k, "pfnmap");
    files.push_back(d);
    EXPECT_GT(pl_mmap(t, 0, kPage, PROT_READ, MAP_SHARED | MAP_POPULATE, d, 0), 0);
}

TEST_F(GupExtra, MmPopulateReportsOrIgnoresErrors) {
    // __mm_populate(): with errors reported (mlock()), the first failing VMA
    // stops it; with errors ignored (MAP_POPULATE), it goes on to the next VMA.
    unsigned long a = map_anon(6 * kPage);
    ASSERT_EQ(pl_mprotect(t, a + 2 * kPage, 2 * kPage, PROT_NONE), 0);
    EXPECT_EQ(__mm_populate(mm(), a, 6 * kPage, PopulateErrors::Report), -EFAULT);
    EXPECT_TRUE(present(a + kPage));
    EXPECT_FALSE(present(a + 4 * kPage)) << "stopped at the PROT_NONE VMA";
    EXPECT_FALSE(mm().mmap_lock.is_locked());
    EXPECT_EQ(__mm_populate(mm(), a, 6 * kPage, PopulateErrors::Ignore), 0);
    EXPECT_TRUE(present(a + 5 * kPage)) << "went on past it";
    EXPECT_FALSE(present(a + 2 * kPage));
    // A hole is skipped, not an error (find_vma_intersection()).
    unsigned long b = map_anon(3 * kPage);
    ASSERT_EQ(pl_munmap(t, b + kPage, kPage), 0);
    EXPECT_EQ(__mm_populate(mm(), b, 3 * kPage, PopulateErrors::Report), 0);
    EXPECT_TRUE(present(b + 2 * kPage));
}

TEST_F(GupExtra, PopulateVmaPageRangeLeavesLockOnFaultAlone) {
    // populate_vma_page_range(): VM_LOCKONFAULT never broke COW here: the
    // pages count as done without a fault.
    unsigned long a = map_anon(2 * kPage);
    mmap_write_lock(pl_task_mm(t));
    Vma* v = mm().vma_lookup(a);
    v->flags |= VM_LOCKONFAULT;
    EXPECT_EQ(populate_vma_page_range(*v, a, a + 2 * kPage, nullptr), 2);
    EXPECT_FALSE(present(a));
    v->flags &= ~VM_LOCKONFAULT;
    // With the lock held for write (locked == nullptr: never dropped).
    EXPECT_EQ(populate_vma_page_range(*v, a, a + 2 * kPage, nullptr), 2);
    mmap_write_unlock(pl_task_mm(t));
    EXPECT_TRUE(writable(a + kPage));
}

}  // namespace
}  // namespace pl::test
