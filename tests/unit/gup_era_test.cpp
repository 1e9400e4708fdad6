// Historical GUP eras (issue 3): put_user_page*() of v5.3-v5.5 (seed 004),
// the vmas[] output array before v6.5 and its dangling pointers (seed 002),
// and FOLL_SAME_FILE (seed 002 v1-v3, never merged). Rows cite the seed, the
// upstream function and version whose rule they check, and
// /work/shared/reference/linux-gup-spec.md sections.
//
// This file is era-6.4 driver code: it defines PINLAB_KERNEL_API_V6_4, so
// get_user_pages, pin_user_pages, get_user_pages_remote and
// pin_user_pages_remote are the five/seven-argument v6.4 functions here.
#define PINLAB_KERNEL_API_V6_4

#include <functional>
#include <thread>
#include <type_traits>

#include "gup/foll_flags.h"
#include "gup/gup_slow.h"
#include "gup/gup_vmas_tracker.h"
#include "test_kernel.h"

namespace pl::test {
namespace {

// Seed 002 / v6.4 include/linux/mm.h: the kernel names take vmas here.
static_assert(std::is_same_v<decltype(&get_user_pages),
                             long (*)(unsigned long, unsigned long, unsigned int, page**, vm_area_struct**)>);
static_assert(std::is_same_v<decltype(&pin_user_pages_remote),
                             long (*)(mm_struct*, unsigned long, unsigned long, unsigned int, page**,
                                      vm_area_struct**, int*)>);
static_assert(FOLL_SAME_FILE == (1u << 31), "bit 31: clear of public (0-12) and internal (16-22) FOLL_* bits");
static_assert((FOLL_SAME_FILE & (INTERNAL_GUP_FLAGS | FOLL_HONOR_NUMA_FAULT)) == 0);

constexpr const char* kBase = "ram=512M hugetlb_2m=4 hugetlb_1g=0";

std::string cfg(const char* extra) { return std::string(kBase) + " " + extra; }

class GupEra : public KernelTest {
protected:
    void SetUp() override {
        boot(kBase);
        pl_set_current(t);
    }
    void reboot_with(const char* extra) {
        const std::string c = cfg(extra);
        reboot(c.c_str());
        pl_set_current(t);
    }
    std::string dmesg() { return pl_dmesg(k); }
    bool logged(const std::string& what) { return dmesg().find(what) != std::string::npos; }
    unsigned long stat(const char* n) { return pl_vmstat(k, n); }
    mm_struct* cmm() { return pl_task_mm(t); }
    // n anonymous pages, written so they are present.
    unsigned long anon(unsigned long n) {
        unsigned long a = map(n * kPage);
        EXPECT_EQ(pl_memset(t, a, 0x5a, n * kPage), static_cast<long>(n * kPage));
        return a;
    }
    // Two adjacent VMAs of n pages each: mprotect() splits one mapping.
    unsigned long two_vmas(unsigned long n) {
        unsigned long a = anon(2 * n);
        EXPECT_EQ(pl_mprotect(t, a + n * kPage, n * kPage, PROT_READ), 0) << pl_last_error();
        return a;
    }

public:
    // For the FOLL_SAME_FILE rows: 4 pages over two VMAs; `warm`: every page
    // cached and mapped first, so no fault drops the mmap_lock.
    unsigned long two_vmas_pub(unsigned long n) { return two_vmas(n); }
    unsigned long shared_file_at(unsigned long addr, pl_file* f, bool warm) {
        unsigned long b = map(t, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, f, 0, addr);
        if (warm) {
            EXPECT_EQ(pl_memset(t, b, 1, 2 * kPage), static_cast<long>(2 * kPage));
        }
        return b;
    }
    unsigned long anon_then_file() {
        unsigned long a = anon(4);
        shared_file_at(a + 2 * kPage, file("ext4", 2 * kPage), true);
        return a;
    }
    unsigned long one_file_split() {
        pl_file* f = file("ext4", 4 * kPage);
        unsigned long a = map(t, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
        EXPECT_EQ(pl_memset(t, a, 1, 4 * kPage), static_cast<long>(4 * kPage));
        EXPECT_EQ(pl_mprotect(t, a + 2 * kPage, 2 * kPage, PROT_READ), 0);
        return a;
    }
    unsigned long two_files(bool warm) {
        unsigned long a = anon(4);
        shared_file_at(a, file("ext4", 2 * kPage), warm);
        shared_file_at(a + 2 * kPage, file("ext4", 2 * kPage), warm);
        return a;
    }
};

// ---- put_user_page*(): seed 004, v5.2 fc1d8e7cca2d ... v5.6 rename -----------------------

struct PupRow {
    const char* era;
    bool exists;
    const char* hint;  // what the WARN must point to
    const char* why;
};

TEST_F(GupEra, PutUserPagesExistOnlyInV53ToV55) {
    allow_reports("warn");  // eras without put_user_page*() WARN
    const PupRow rows[] = {
        {"v4.8", false, "arrived in v5.2", "v4.8 has no put_user_page*() (fc1d8e7cca2d is v5.2): put_page()"},
        {"v5.3", true, "", "v5.3 mm/gup.c: put_user_pages() = put_page() on each page (GET refs)"},
        {"v5.5", true, "", "v5.5 mm/gup.c: still put_page() semantics"},
        {"v5.8", false, "unpin_user_page", "v5.6 f1f6a7dd9b53 renamed it unpin_user_page*() (FOLL_PIN)"},
        {"current", false, "unpin_user_page", "current: only unpin_user_page*()"},
    };
    for (const PupRow& r : rows) {
        SCOPED_TRACE(r.why);
        reboot_with((std::string("era=") + r.era).c_str());
        unsigned long a = anon(2);
        page* p[2] = {};
        ASSERT_EQ(get_user_pages_fast(a, 2, FOLL_WRITE, p), 2);
        const int held = page_ref_count(p[0]);
        put_user_pages(p, 2);
        if (r.exists) {
            EXPECT_EQ(page_ref_count(p[0]), held - 1) << "the GET reference was dropped";
            EXPECT_EQ(dmesg(), "");
        } else {
            EXPECT_EQ(page_ref_count(p[0]), held) << "nothing released";
            EXPECT_TRUE(logged("put_user_pages() does not exist in era " + std::string(r.era))) << dmesg();
            EXPECT_TRUE(logged(r.hint)) << dmesg();
            EXPECT_NE(std::string(pl_last_error()).find("put_user_pages"), std::string::npos);
            put_page(p[0]);  // what the caller should have called
            put_page(p[1]);
        }
        // put_user_page() follows the same era rule.
        ASSERT_EQ(get_user_pages_fast(a, 1, 0, p), 1);
        const int before = page_ref_count(p[0]);
        put_user_page(p[0]);
        EXPECT_EQ(page_ref_count(p[0]), r.exists ? before - 1 : before);
        if (!r.exists) put_page(p[0]);
    }
}

TEST_F(GupEra, PutUserPagesDirtyLockReleasesAndDirtiesInV53) {
    // v5.3/v5.4 put_user_pages_dirty_lock(): for each page, set_page_dirty_lock()
    // on the head if it is clean, then put_user_page(); make_dirty == false is
    // put_user_pages(). Shared file pages show PG_dirty cleanly.
    reboot_with("era=v5.3");
    pl_file* f = file("ext4", 4 * kPage);
    unsigned long a = map(t, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    page* p[4] = {};
    ASSERT_EQ(get_user_pages_fast(a, 4, 0, p), 4) << "read-only GET: the pages stay clean";
    int refs[4];
    for (int i = 0; i < 4; i++) {
        ASSERT_FALSE(PageDirty(p[i])) << "precondition: read faults leave file pages clean";
        refs[i] = page_ref_count(p[i]);
    }
    put_user_pages_dirty_lock(p, 2, true);
    put_user_pages_dirty_lock(p + 2, 2, false);
    for (int i = 0; i < 4; i++) {
        EXPECT_EQ(page_ref_count(p[i]), refs[i] - 1) << "page " << i << ": GET reference released";
        EXPECT_EQ(PageDirty(p[i]) != 0, i < 2) << "page " << i << ": dirtied only with make_dirty";
    }
    EXPECT_EQ(dmesg(), "");
    EXPECT_EQ(stat("nr_foll_pin_acquired"), 0UL) << "GET references, never pins";
}

TEST_F(GupEra, PutUserPagesDirtyLockWarnsAndLeavesPagesInCurrentEra) {
    expect_reports("warn");
    // era=current: the function does not exist — WARN, no dirtying, nothing
    // released; the caller's put_page() then balances what GUP took.
    pl_file* f = file("ext4", 2 * kPage);
    unsigned long a = map(t, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    page* p[2] = {};
    ASSERT_EQ(get_user_pages_fast(a, 2, 0, p), 2);
    const int ref = page_ref_count(p[0]);
    ASSERT_FALSE(PageDirty(p[0]));
    put_user_pages_dirty_lock(p, 2, true);
    EXPECT_EQ(page_ref_count(p[0]), ref);
    EXPECT_FALSE(PageDirty(p[0]));
    EXPECT_TRUE(logged("put_user_pages_dirty_lock: put_user_pages_dirty_lock() does not exist in era current"))
        << dmesg();
    EXPECT_TRUE(logged("unpin_user_page*()")) << dmesg();
    for (page* x : p) put_page(x);
    EXPECT_EQ(page_ref_count(p[0]), ref - 1);
}

// ---- vmas[]: v6.4 mm/gup.c __get_user_pages() fills vmas[i] per page ----------------------

TEST_F(GupEra, VmasFilledPerPageAcrossTwoVmas) {
    reboot_with("era=v6.4");
    unsigned long a = two_vmas(2);  // [a, a+2p) R/W, [a+2p, a+4p) R/O
    page* p[4] = {};
    vm_area_struct* v[4] = {};
    mmap_read_lock(cmm());
    ASSERT_EQ(get_user_pages(a, 4, 0, p, v), 4);
    // v6.4 __get_user_pages(): "if (vmas) vmas[i] = vma" for every page.
    EXPECT_EQ(v[0], v[1]);
    EXPECT_EQ(v[2], v[3]);
    EXPECT_NE(v[0], v[2]);
    for (unsigned long i = 0; i < 4; i++) EXPECT_EQ(v[i], vma_lookup(cmm(), a + i * kPage)) << "page " << i;
    EXPECT_EQ(pl_vma_start(v[0]), a);
    EXPECT_EQ(pl_vma_end(v[0]), a + 2 * kPage);
    EXPECT_EQ(pl_vma_start(v[3]), a + 2 * kPage);
    EXPECT_EQ(pl_vma_flags(v[3]) & VM_WRITE, 0UL);
    mmap_read_unlock(cmm());
    for (page* x : p) put_page(x);

    // pin_user_pages() (v6.4: __gup_longterm_locked() passed vmas down), and
    // vmas without pages (GUP only faults in; vmas are still filled).
    vm_area_struct* w[4] = {};
    mmap_read_lock(cmm());
    ASSERT_EQ(pin_user_pages(a, 4, FOLL_LONGTERM, p, w), 4);
    for (int i = 0; i < 4; i++) EXPECT_EQ(w[i], v[i]);
    vm_area_struct* x[4] = {};
    ASSERT_EQ(get_user_pages(a, 4, 0, nullptr, x), 4);
    for (int i = 0; i < 4; i++) EXPECT_EQ(x[i], v[i]);
    mmap_read_unlock(cmm());
    unpin_user_pages(p, 4);
    EXPECT_EQ(stat("nr_foll_pin_acquired"), stat("nr_foll_pin_released"));
    EXPECT_EQ(dmesg(), "") << "no VMA was used after the unlock";
}

TEST_F(GupEra, VmasWithLockedIsInvalidInV64) {
    allow_reports("warn");
    // v6.4 is_valid_gup_args(): "if (WARN_ON_ONCE(vmas && (gup_flags &
    // FOLL_UNLOCKABLE))) return false" — `locked` lets GUP drop the lock.
    reboot_with("era=v6.4");
    unsigned long a = anon(1);
    page* p[1] = {};
    vm_area_struct* v[1] = {};
    int locked = 1;
    mmap_read_lock(cmm());
    EXPECT_EQ(get_user_pages_remote(cmm(), a, 1, 0, p, v, &locked), -EINVAL);
    EXPECT_EQ(pin_user_pages_remote(cmm(), a, 1, 0, p, v, &locked), 0) << "§1: pin_* give 0 on invalid args";
    EXPECT_EQ(locked, 1);
    EXPECT_EQ(v[0], nullptr);
    // Without locked, remote GUP fills vmas (FOLL_REMOTE|FOLL_TOUCH).
    ASSERT_EQ(pin_user_pages_remote(cmm(), a, 1, FOLL_WRITE, p, v, nullptr), 1);
    EXPECT_EQ(v[0], vma_lookup(cmm(), a));
    mmap_read_unlock(cmm());
    unpin_user_page(p[0]);
    EXPECT_TRUE(logged("is_valid_gup_args: vmas together with locked")) << dmesg();
}

struct VmasEraRow {
    const char* era;
    bool exists;
    const char* why;
};

TEST_F(GupEra, VmasParameterRemovedInV65) {
    allow_reports("warn");
    const VmasEraRow rows[] = {
        {"v4.8", true, "the array is as old as GUP"},
        {"v5.10", true, "v5.10 get_user_pages(start, nr, flags, pages, vmas)"},
        {"v6.4", true, "v6.4: the last release with vmas (seed 002 merged for v6.5)"},
        {"v6.5", false, "v6.5: 'mm/gup: remove vmas parameter from ...' (seed 002 v4)"},
        {"current", false, "current: no vmas anywhere"},
    };
    for (const VmasEraRow& r : rows) {
        SCOPED_TRACE(r.why);
        reboot_with((std::string("era=") + r.era).c_str());
        unsigned long a = anon(2);
        page* p[2] = {};
        vm_area_struct* v[2] = {};
        const int ref = page_ref_count(pg(t, a));
        mmap_read_lock(cmm());
        const long got = get_user_pages(a, 2, 0, p, v);
        const long pinned = pin_user_pages(a, 2, 0, p, nullptr);
        mmap_read_unlock(cmm());
        if (r.exists) {
            EXPECT_EQ(got, 2);
            EXPECT_EQ(pinned, 2);
            EXPECT_NE(v[0], nullptr);
            unpin_user_pages(p, 2);
            // p[] now holds the pinned pages; the GET references are on the same pages.
            put_page(pg(t, a));
            put_page(pg(t, a + kPage));
            EXPECT_EQ(dmesg(), "");
        } else {
            EXPECT_EQ(got, -EINVAL) << "get_*: -EINVAL";
            EXPECT_EQ(pinned, 0) << "pin_*: 0";
            EXPECT_EQ(v[0], nullptr);
            EXPECT_TRUE(logged("get_user_pages: vmas parameter removed in v6.5 (era " + std::string(r.era)))
                << dmesg();
            EXPECT_TRUE(logged("pin_user_pages: vmas parameter removed in v6.5")) << dmesg();
        }
        EXPECT_EQ(page_ref_count(pg(t, a)), ref) << "balanced";
        EXPECT_EQ(stat("nr_foll_pin_acquired"), stat("nr_foll_pin_released"));
    }
}

// ---- dangling vmas[] entries (seed 002: "the vmas array used to become a set
//      of dangling pointers if access after release of mmap_lock was attempted")

TEST_F(GupEra, DanglingVmaAfterUnlockIsReported) {
    allow_reports("dangling_vma");
    reboot_with("era=v6.4");
    unsigned long a = anon(1);
    page* p[1] = {};
    vm_area_struct* v[1] = {};
    mmap_read_lock(cmm());
    ASSERT_EQ(get_user_pages(a, 1, 0, p, v), 1);
    EXPECT_EQ(pl_vma_start(v[0]), a) << "valid while the lock is held";
    mmap_read_unlock(cmm());
    put_page(p[0]);
    EXPECT_EQ(dmesg(), "");

    // v6.4 kerneldoc: "@vmas are valid only as long as mmap_lock is held".
    EXPECT_EQ(pl_vma_start(v[0]), 0UL);
    EXPECT_NE(std::string(pl_last_error()).find("dangling VMA"), std::string::npos) << pl_last_error();
    EXPECT_EQ(pl_vma_end(v[0]), 0UL);
    EXPECT_EQ(pl_vma_flags(v[0]), 0UL);
    EXPECT_TRUE(logged("WARNING: pl_vma_start: dangling VMA")) << dmesg();
    EXPECT_TRUE(logged("returned by get_user_pages() in vmas[] used after mmap_lock was dropped")) << dmesg();
    EXPECT_TRUE(logged("pl_vma_end: dangling VMA")) << dmesg();
    EXPECT_TRUE(logged("pl_vma_flags: dangling VMA")) << dmesg();

    // Taking the lock again does not revive the old pointer; looking the VMA
    // up afresh does.
    mmap_read_lock(cmm());
    vm_area_struct* fresh = vma_lookup(cmm(), a);
    ASSERT_EQ(fresh, v[0]) << "the VMA itself still exists";
    EXPECT_EQ(pl_vma_start(fresh), a);
    mmap_read_unlock(cmm());
}

TEST_F(GupEra, DanglingVmaAfterMunmapIsReportedWithoutTouchingIt) {
    allow_reports("dangling_vma");
    // The real bug: the VMA is freed. Under ASan any read of it would abort
    // the test; the accessors must decide from their records alone.
    reboot_with("era=v6.4");
    unsigned long a = anon(2);
    vm_area_struct* v[2] = {};
    mmap_read_lock(cmm());
    ASSERT_EQ(get_user_pages(a, 2, 0, nullptr, v), 2);
    mmap_read_unlock(cmm());
    ASSERT_EQ(pl_munmap(t, a, 2 * kPage), 0);
    EXPECT_EQ(pl_vma_start(v[0]), 0UL);
    EXPECT_EQ(pl_vma_flags(v[1]), 0UL);
    EXPECT_TRUE(logged("dangling VMA")) << dmesg();
    // A new mapping may reuse the freed VMA's memory: a pointer obtained
    // afresh is valid whatever its value.
    unsigned long b = anon(1);
    mmap_read_lock(cmm());
    vm_area_struct* nv = vma_lookup(cmm(), b);
    ASSERT_NE(nv, nullptr);
    const size_t warnings = kern().nr_warnings();
    EXPECT_EQ(pl_vma_start(nv), b);
    EXPECT_EQ(kern().nr_warnings(), warnings);
    mmap_read_unlock(cmm());
}

TEST_F(GupEra, DanglingVmaAfterGupDroppedTheLock) {
    allow_reports("dangling_vma");
    // __get_user_pages_locked(): a fault that returns VM_FAULT_RETRY drops the
    // mmap_lock (*locked = 0); VMAs this thread got earlier are gone with it.
    reboot_with("era=v6.4");
    unsigned long a = anon(1);
    pl_file* f = file("ext4", 2 * kPage);
    unsigned long b = map(t, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    vm_area_struct* v[1] = {};
    page* p[2] = {};
    int locked = 1;
    mmap_read_lock(cmm());
    ASSERT_EQ(get_user_pages(a, 1, 0, nullptr, v), 1);
    // vmas == NULL may be combined with locked; the page cache is cold, so
    // filemap drops the lock during the fault.
    ASSERT_EQ(get_user_pages_remote(cmm(), b, 2, 0, p, nullptr, &locked), 2);
    ASSERT_EQ(locked, 0) << "precondition: the fault dropped the lock";
    EXPECT_EQ(pl_vma_start(v[0]), 0UL);
    EXPECT_TRUE(logged("dangling VMA")) << dmesg();
    for (page* x : p) put_page(x);
}

TEST_F(GupEra, VmaRecordsCostNothingWithoutVmas) {
    // Callers that pass no vmas leave no record (and pay one counter read).
    reboot_with("era=v6.4");
    unsigned long a = anon(4);
    page* p[4] = {};
    const long before = vmas_tracked();
    mmap_read_lock(cmm());
    ASSERT_EQ(get_user_pages(a, 4, 0, p, nullptr), 4);
    mmap_read_unlock(cmm());
    EXPECT_EQ(vmas_tracked(), before);
    for (page* x : p) put_page(x);
    vm_area_struct* v[4] = {};
    mmap_read_lock(cmm());
    ASSERT_EQ(get_user_pages(a, 4, 0, nullptr, v), 4);
    mmap_read_unlock(cmm());
    EXPECT_EQ(vmas_tracked(), before + 1) << "one record per VMA, not per page";
    pl_kernel_free(k);  // the kernel's records go with it
    k = nullptr;
    EXPECT_EQ(vmas_tracked(), before);
}

TEST(GupEraConcurrent, AnotherThreadsUnlockDoesNotStaleMyVmas) {
    // The records are per thread and mm: thread B taking and dropping a read
    // lock of the same mm does not end thread A's hold.
    pl_kernel* k = pl_kernel_new(cfg("era=v6.4").c_str());
    ASSERT_NE(k, nullptr) << pl_last_error();
    task_struct* t = pl_task_new(k);
    pl_set_current(t);
    long a = pl_mmap(t, 0, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, nullptr, 0);
    ASSERT_GT(a, 0);
    mm_struct* m = pl_task_mm(t);
    vm_area_struct* v[1] = {};
    mmap_read_lock(m);
    ASSERT_EQ(get_user_pages(static_cast<unsigned long>(a), 1, 0, nullptr, v), 1);
    std::thread other([&] {
        mmap_read_lock(m);
        EXPECT_EQ(pl_vma_start(v[0]), static_cast<unsigned long>(a)) << "A still holds the lock";
        mmap_read_unlock(m);
    });
    other.join();
    EXPECT_EQ(pl_vma_start(v[0]), static_cast<unsigned long>(a));
    mmap_read_unlock(m);
    EXPECT_EQ(pl_vma_start(v[0]), 0UL) << "A's own unlock ends it";
    EXPECT_NE(std::string(pl_dmesg(k)).find("dangling VMA"), std::string::npos);
    EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
    pl_set_current(nullptr);
    pl_exit(t);
    pl_kernel_free(k);
}

// ---- FOLL_SAME_FILE (seed 002 v1-v3; check_vma_flags(): vma->vm_file != file -> -EFAULT)

struct SameFileRow {
    const char* why;
    std::function<unsigned long(GupEra&)> setup;  // 4 pages over two VMAs
    long expect_get;  // get_user_pages_unlocked(), first touch of the range
    long expect_pin;  // pin_user_pages_unlocked() right after
    const char* config = nullptr;  // extra config for this row (reboots; keep such rows last)
};

TEST_F(GupEra, SameFileSlowPathNeedsOneVmFile) {
    reboot_with("gup.foll_same_file=on");
    const SameFileRow rows[] = {
        {"two anonymous VMAs: vm_file NULL twice is the same file",
         [](GupEra& f) { return f.two_vmas_pub(2); }, 4, 4},
        {"anon then an ext4 VMA: -EFAULT at the second VMA, the first VMA's pages returned (partial)",
         [](GupEra& f) { return f.anon_then_file(); }, 2, 2},
        {"two VMAs of one file (mprotect split): same vm_file",
         [](GupEra& f) { return f.one_file_split(); }, 4, 4},
        {"two different files, cached: partial", [](GupEra& f) { return f.two_files(true); }, 2, 2},
        {"two different files, cold cache: the first fault drops the lock, do_sync_mmap_readahead() reads "
         "the whole first file and fault-around maps its second page on the retry, so the only restart is at "
         "page 0 and the second VMA is compared with the first file: partial",
         [](GupEra& f) { return f.two_files(false); }, 2, 2},
        {"two different files, cold cache, no read-ahead (read_ahead_kb 0), *_unlocked: each fault drops the "
         "lock and the retry restarts __get_user_pages() with i == 0, so the patch compared the second VMA with "
         "itself (a hole in v1-v3; io_uring pinned with the lock held, where it cannot happen); warm afterwards: "
         "partial",
         [](GupEra& f) { return f.two_files(false); }, 4, 2, "gup.foll_same_file=on readahead_kb=0"},
    };
    for (const SameFileRow& r : rows) {
        SCOPED_TRACE(r.why);
        if (r.config) reboot_with(r.config);
        unsigned long a = r.setup(*this);
        page* p[4] = {};
        const long got = get_user_pages_unlocked(a, 4, p, FOLL_SAME_FILE);
        EXPECT_EQ(got, r.expect_get);
        for (long i = 0; i < got; i++) put_page(p[i]);
        const long pinned = pin_user_pages_unlocked(a, 4, p, FOLL_SAME_FILE);
        EXPECT_EQ(pinned, r.expect_pin);
        if (pinned > 0) unpin_user_pages(p, static_cast<unsigned long>(pinned));
        // Without the flag the whole range is taken.
        ASSERT_EQ(get_user_pages_unlocked(a, 4, p, 0), 4);
        for (page* x : p) put_page(x);
    }
    EXPECT_EQ(dmesg(), "");
    EXPECT_EQ(stat("nr_foll_pin_acquired"), stat("nr_foll_pin_released"));
}

TEST_F(GupEra, SameFileRefusedByTheFastPath) {
    allow_reports("warn");
    // Jason Gunthorpe on v1 (ZD1GGiHBOj1mRDu4@nvidia.com): "it needs to be
    // rejected in internal_get_user_pages_fast()" — outside its allowed set.
    for (const char* sw : {"gup.foll_same_file=on", "gup.foll_same_file=off"}) {
        SCOPED_TRACE(sw);
        reboot_with(sw);
        unsigned long a = anon(2);
        page* p[2] = {};
        EXPECT_EQ(get_user_pages_fast(a, 2, FOLL_SAME_FILE, p), -EINVAL);
        EXPECT_EQ(pin_user_pages_fast(a, 2, FOLL_SAME_FILE, p), -EINVAL);
        EXPECT_EQ(p[0], nullptr);
    }
}

TEST_F(GupEra, SameFileWithTheSwitchOffWarnsAndFails) {
    expect_reports("warn");
    // Never merged (dropped in v4 of the series): a kernel without the switch
    // does not know the flag.
    unsigned long a = anon(2);
    page* p[2] = {};
    EXPECT_EQ(get_user_pages_unlocked(a, 2, p, FOLL_SAME_FILE), -EINVAL);
    EXPECT_EQ(pin_user_pages_unlocked(a, 2, p, FOLL_SAME_FILE), -EINVAL);
    EXPECT_EQ(p[0], nullptr);
    EXPECT_TRUE(logged("FOLL_SAME_FILE was proposed")) << dmesg();
    EXPECT_TRUE(logged("never merged")) << dmesg();
    EXPECT_EQ(stat("nr_foll_pin_acquired"), 0UL);
}

}  // namespace
}  // namespace pl::test
