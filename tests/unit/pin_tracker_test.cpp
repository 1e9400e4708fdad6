// The pin tracker (issue 4, seed 004): every GET and PIN taken through GUP is
// recorded with its owner, and a reference released by the wrong call is
// reported with a stable kind (include/pinlab/kapi.h). Seed 004: John
// Hubbard's planned CONFIG_DEBUG_GET_USER_PAGES_REFERENCES made __put_page()
// WARN on a pinned page; Michal Hocko asked for "some automagic to
// enforce/check" that every GUP reference goes back through the right call.
#include <cstdio>
#include <string>
#include <vector>

#include "debug/pin_tracker.h"
#include "gup/foll_flags.h"
#include "gup/gup_vmas_tracker.h"
#include "mm/mm_struct.h"
#include "mm/vma.h"
#include "test_kernel.h"

namespace pl::test {
namespace {

class PinTracker : public KernelTest {
protected:
    void SetUp() override {
        KernelTest::SetUp();
        pl_set_current(t);
    }
    // n anonymous pages, written so they are present.
    unsigned long anon(unsigned long n) {
        unsigned long a = map(n * kPage);
        EXPECT_EQ(pl_memset(t, a, 0x5a, n * kPage), static_cast<long>(n * kPage));
        return a;
    }
    std::string text(int i) {
        const char* s = pl_warning_text(k, i);
        return s ? s : "<null>";
    }
    bool has(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }
    std::string pfn_hex(page* p) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%#lx", page_to_pfn(p));
        return buf;
    }
    long pin_balance() { return static_cast<long>(pl_vmstat(k, "nr_foll_pin_acquired") - pl_vmstat(k, "nr_foll_pin_released")); }
};

// ---- the C API -------------------------------------------------------------------

TEST_F(PinTracker, ApiRejectsBadArguments) {
    EXPECT_EQ(pl_warning_count(nullptr, nullptr), -EINVAL);
    EXPECT_EQ(pl_warning_text(nullptr, 0), nullptr);
    EXPECT_EQ(pl_warning_text(k, -1), nullptr);
    EXPECT_EQ(pl_warning_text(k, 0), nullptr) << "no report yet";
    EXPECT_EQ(pl_pin_balance(nullptr, nullptr), -EINVAL);
    EXPECT_EQ(pl_warning_count(k, "no_such_kind"), 0);
}

// ---- correct paths report nothing --------------------------------------------------

// unpin_user_pages*() for pin_user_pages*(), put_page() for get_user_pages*()
// (mm/gup.c rules since v5.6): no report, and the global balance of upstream
// (nr_foll_pin_acquired == nr_foll_pin_released) holds at the end.
TEST_F(PinTracker, CorrectReleasesReportNothing) {
    unsigned long a = anon(8);
    std::vector<page*> p(8), g(8);
    ASSERT_EQ(pin_user_pages_fast(a, 8, FOLL_WRITE, p.data()), 8);
    EXPECT_EQ(pl_pin_balance(k, "pin_user_pages_fast"), 8);
    EXPECT_EQ(pl_pin_balance(k, nullptr), pin_balance());
    ASSERT_EQ(get_user_pages_fast(a, 8, 0, g.data()), 8);
    // A put of one's own GET reference on a page pinned by someone else is legal.
    for (page* pg : g) put_page(pg);
    // So is get_page()/put_page() on a pinned page.
    get_page(p[0]);
    put_page(p[0]);
    unpin_user_pages_dirty_lock(p.data(), 8, true);
    mmap_read_lock(pl_task_mm(t));
    ASSERT_EQ(pin_user_pages(a, 4, FOLL_WRITE | FOLL_LONGTERM, p.data()), 4);
    ASSERT_EQ(get_user_pages(a + 4 * kPage, 4, 0, g.data()), 4);
    mmap_read_unlock(pl_task_mm(t));
    unpin_user_pages(p.data(), 4);
    for (int i = 0; i < 4; i++) put_page(g[i]);
    EXPECT_EQ(pl_warning_count(k, nullptr), 0) << pl_dmesg(k);
    EXPECT_EQ(pl_pin_balance(k, nullptr), 0);
    EXPECT_EQ(pin_balance(), 0);
}

// A THP pinned in one call and released in one unpin_user_pages() run
// (gup_put_folio() with refs = the run): no report.
TEST_F(PinTracker, LargeFolioPinsReportNothing) {
    unsigned long a = map(4UL << 20);
    unsigned long h = (a + (2UL << 20) - 1) & ~((2UL << 20) - 1);
    ASSERT_EQ(pl_madvise(t, h, 2UL << 20, MADV_HUGEPAGE), 0);
    ASSERT_EQ(pl_memset(t, h, 1, 2UL << 20), static_cast<long>(2UL << 20));
    std::vector<page*> p(512);
    ASSERT_EQ(pin_user_pages_fast(h, 512, FOLL_WRITE, p.data()), 512);
    EXPECT_EQ(pl_pin_balance(k, "pin_user_pages_fast"), 512);
    get_page(p[3]);
    put_page(p[3]);
    unpin_user_pages(p.data(), 512);
    EXPECT_EQ(pl_warning_count(k, nullptr), 0) << pl_dmesg(k);
    EXPECT_EQ(pl_pin_balance(k, nullptr), 0);
}

// ---- put_page() on a pinned page -----------------------------------------------------

// The "Done when" of issue 4: put_page() on a page from pin_user_pages_fast()
// is reported, naming the page and the pinning call (the WARN_ON_ONCE of
// seed 004's __put_page() with page_ext->pin_count).
TEST_F(PinTracker, PutPageOnPinnedPageNamesPageAndPinningCall) {
    expect_reports("put_page_on_pinned", 1);
    unsigned long a = anon(2);
    page* first[1] = {};
    ASSERT_EQ(pin_user_pages_fast(a + kPage, 1, FOLL_WRITE, first), 1);  // step 1
    page* p[1] = {};
    ASSERT_EQ(pin_user_pages_fast(a, 1, FOLL_WRITE, p), 1);  // step 2
    put_page(p[0]);
    ASSERT_EQ(pl_warning_count(k, "put_page_on_pinned"), 1) << pl_dmesg(k);
    const std::string w = text(0);
    EXPECT_TRUE(has(w, "put_page_on_pinned")) << w;
    EXPECT_TRUE(has(w, "pfn " + pfn_hex(p[0]))) << w;
    EXPECT_TRUE(has(w, "pin_user_pages_fast")) << w;
    EXPECT_TRUE(has(w, "step 2")) << w;
    EXPECT_TRUE(has(std::string(pl_dmesg(k)), w)) << "pl_dmesg() prints every report";
    // Give the eaten reference back and release the pins correctly.
    get_page(p[0]);
    unpin_user_page(p[0]);
    unpin_user_page(first[0]);
    EXPECT_EQ(pl_pin_balance(k, nullptr), 0);
}

// The owner is the innermost PinOwnerScope, not the entry point.
TEST_F(PinTracker, PutPageReportNamesTheDriverScope) {
    expect_reports("put_page_on_pinned", 1);
    unsigned long a = anon(1);
    page* p[1] = {};
    {
        PinOwnerScope drv("io_uring", "io_pin_pages");
        ASSERT_EQ(pin_user_pages_fast(a, 1, FOLL_WRITE | FOLL_LONGTERM, p), 1);
    }
    EXPECT_EQ(pl_pin_balance(k, "io_uring"), 1);
    EXPECT_EQ(pl_pin_balance(k, "pin_user_pages_fast"), 0);
    put_page(p[0]);
    const std::string w = text(0);
    EXPECT_TRUE(has(w, "io_uring:io_pin_pages via pin_user_pages_fast")) << w;
    get_page(p[0]);
    {
        PinOwnerScope drv("io_uring", "io_unpin");
        unpin_user_page(p[0]);
    }
    EXPECT_EQ(pl_pin_balance(k, "io_uring"), 0);
}

// A THP pinned once holds one reference for the pin (large folios count pins
// in _pincount). Unmapped, that reference is all that keeps it; a put_page()
// then frees a folio a device may still be writing: both reports.
TEST_F(PinTracker, PutPageFreeingAPinnedFolioIsReported) {
    expect_reports("put_page_on_pinned", 1);
    expect_reports("pinned_page_moved", 1);
    expect_reports("leak", 1);  // at munmap: the pinned THP has no mapping left
    unsigned long a = map(4UL << 20);
    unsigned long h = (a + (2UL << 20) - 1) & ~((2UL << 20) - 1);
    ASSERT_EQ(pl_madvise(t, h, 2UL << 20, MADV_HUGEPAGE), 0);
    ASSERT_EQ(pl_memset(t, h, 1, 2UL << 20), static_cast<long>(2UL << 20));
    page* p[1] = {};
    ASSERT_EQ(pin_user_pages_fast(h, 1, FOLL_WRITE, p), 1);
    ASSERT_EQ(PageCompound(p[0]), 1);
    ASSERT_EQ(pl_munmap(t, a, 4UL << 20), 0);
    put_page(p[0]);
    EXPECT_EQ(pl_warning_count(k, "pinned_page_moved"), 1) << pl_dmesg(k);
    EXPECT_EQ(pl_pin_balance(k, nullptr), 0) << "the pins went with the frame";
}

// A put_page() that eats a pin on a page-cache page: once the pin is
// released too, the mapping's last put frees a folio the page cache still
// holds. Upstream's free path says "Bad page state" (bad_page(): non-NULL
// mapping) and takes the frame out of circulation, and its page-cache
// lookups would spin on the refcount of zero; the model WARNs the same way,
// keeps the frame, and truncation later frees it: no hang, no reuse.
TEST_F(PinTracker, PutPageOnPinnedCachePageEndsAsABadPageNotAHang) {
    expect_reports("put_page_on_pinned", 1);
    expect_reports("warn", 1);
    pl_file* f = file("ext4", kPage);
    unsigned long a = map(t, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    put_str(t, a, "x");
    page* p[1] = {};
    ASSERT_EQ(pin_user_pages_fast(a, 1, 0, p), 1);
    put_page(p[0]);
    unpin_folio(page_folio(p[0]));
    ASSERT_EQ(pl_munmap(t, a, kPage), 0);  // the mapping's put frees the cached folio
    ASSERT_EQ(pl_warning_count(k, "warn"), 1) << pl_dmesg(k);
    EXPECT_TRUE(has(text(1), "Bad page state")) << pl_dmesg(k);
    EXPECT_EQ(pl_ftruncate(f, 0), 0) << "truncation does not spin, and frees the frame";
    // The put dropped a reference nobody had taken: the reference ledger
    // is one short for good, as the kernel's refcount would be.
    invariants_broken_on_purpose();
    EXPECT_EQ(pl_kernel_check(k), -1);
    EXPECT_TRUE(has(pl_last_error(), "ledger: negative count")) << pl_last_error();
}

// unpin_user_page_range_dirty_lock() with an npages past the end of memory:
// refused with a WARN, nothing released (upstream would walk off the map).
TEST_F(PinTracker, UnpinRangePastTheMemoryMapIsRefused) {
    expect_reports("warn", 1);
    unsigned long a = anon(1);
    page* p[1] = {};
    ASSERT_EQ(pin_user_pages_fast(a, 1, FOLL_WRITE, p), 1);
    unpin_user_page_range_dirty_lock(p[0], 1UL << 30, true);
    EXPECT_EQ(pl_warning_count(k, "warn"), 1) << pl_dmesg(k);
    EXPECT_EQ(pl_pin_balance(k, nullptr), 1) << "nothing released";
    unpin_user_page_range_dirty_lock(p[0], 1, true);
    EXPECT_EQ(pl_pin_balance(k, nullptr), 0);
}

// ---- unpin misuse --------------------------------------------------------------------

// unpin_user_page() of a page taken with FOLL_GET: upstream would subtract
// GUP_PIN_COUNTING_BIAS from a refcount that never had it. Reported, and
// nothing is released, so the GET is still put with put_page().
TEST_F(PinTracker, UnpinOfGetPageIsReported) {
    expect_reports("unpin_not_pinned", 1);
    unsigned long a = anon(1);
    page* g[1] = {};
    ASSERT_EQ(get_user_pages_fast(a, 1, 0, g), 1);
    const long before = pl_vmstat(k, "nr_foll_pin_released");
    unpin_user_page(g[0]);
    ASSERT_EQ(pl_warning_count(k, "unpin_not_pinned"), 1) << pl_dmesg(k);
    EXPECT_TRUE(has(text(0), "FOLL_GET")) << text(0);
    EXPECT_TRUE(has(text(0), "get_user_pages_fast")) << text(0);
    EXPECT_EQ(static_cast<long>(pl_vmstat(k, "nr_foll_pin_released")), before) << "nothing released";
    put_page(g[0]);
}

TEST_F(PinTracker, UnpinOfNeverPinnedPageIsReported) {
    expect_reports("unpin_not_pinned", 1);
    unsigned long a = anon(1);
    page* p = pg(t, a);
    ASSERT_NE(p, nullptr);
    unpin_user_page(p);
    EXPECT_EQ(pl_warning_count(k, "unpin_not_pinned"), 1) << pl_dmesg(k);
    EXPECT_TRUE(has(text(0), pfn_hex(p))) << text(0);
}

TEST_F(PinTracker, DoubleUnpinIsReportedAndReleasesNothing) {
    expect_reports("double_unpin", 1);
    unsigned long a = anon(1);
    page* p[1] = {};
    ASSERT_EQ(pin_user_pages_fast(a, 1, FOLL_WRITE, p), 1);
    unpin_user_page(p[0]);
    const unsigned long released = pl_vmstat(k, "nr_foll_pin_released");
    unpin_user_page(p[0]);
    EXPECT_EQ(pl_warning_count(k, "double_unpin"), 1) << pl_dmesg(k);
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_released"), released);
    EXPECT_EQ(pin_balance(), 0);
}

// ---- leaks -----------------------------------------------------------------------------

// The "Done when" of issue 4: a program that forgets to unpin gets a "leak"
// report at exit naming the owner; the frame is quarantined (Zircon keeps
// pinned frames of a dead process out of the allocator), so it stays
// allocated after the mm is gone.
TEST_F(PinTracker, ForgottenPinLeaksAtExitNamingTheOwner) {
    expect_reports("leak", 1);
    unsigned long a = anon(1);
    page* p[1] = {};
    {
        PinOwnerScope drv("rdma", "ib_umem_get");
        ASSERT_EQ(pin_user_pages_fast(a, 1, FOLL_WRITE | FOLL_LONGTERM, p), 1);
    }
    EXPECT_EQ(pl_warning_count(k, "leak"), 0) << "still owned by a live task";
    const unsigned long allocated = pl_nr_allocated_pages(k);
    pl_exit(t);
    t = nullptr;
    ASSERT_EQ(pl_warning_count(k, "leak"), 1) << pl_dmesg(k);
    EXPECT_TRUE(has(text(0), "rdma:ib_umem_get")) << text(0);
    EXPECT_TRUE(has(text(0), "exit")) << text(0);
    EXPECT_EQ(pl_nr_quarantined_pages(k), 1UL);
    EXPECT_EQ(pl_nr_allocated_pages(k), baseline + 1) << "only the quarantined frame stays";
    EXPECT_LE(pl_nr_allocated_pages(k), allocated);
    EXPECT_EQ(page_maybe_dma_pinned(p[0]), 1) << "the pinned frame is kept";
    EXPECT_EQ(pl_pin_balance(k, "rdma"), 1);
}

// Unpinned before exit: no leak, nothing quarantined.
TEST_F(PinTracker, UnpinnedBeforeExitDoesNotLeak) {
    unsigned long a = anon(1);
    page* p[1] = {};
    ASSERT_EQ(pin_user_pages_fast(a, 1, FOLL_WRITE, p), 1);
    unpin_user_page(p[0]);
    pl_exit(t);
    t = nullptr;
    EXPECT_EQ(pl_warning_count(k, "leak"), 0) << pl_dmesg(k);
    EXPECT_EQ(pl_nr_quarantined_pages(k), 0UL);
}

// A pin the task's own GUP call took is the task's to release: its exit
// reports it at once (naming the pid), even with other tasks still alive.
TEST_F(PinTracker, BarePinLeaksAtItsTasksExit) {
    expect_reports("leak", 1);
    task_struct* c = pl_fork(t);
    ASSERT_NE(c, nullptr);
    unsigned long a = map(c, kPage);
    ASSERT_EQ(pl_memset(c, a, 1, kPage), static_cast<long>(kPage));
    pl_set_current(c);
    page* p[1] = {};
    ASSERT_EQ(pin_user_pages_fast(a, 1, FOLL_WRITE, p), 1);
    pl_set_current(t);
    const int pid = pl_task_pid(c);
    pl_exit(c);
    ASSERT_EQ(pl_warning_count(k, "leak"), 1) << pl_dmesg(k);
    EXPECT_TRUE(has(text(0), "pin_user_pages_fast in pid " + std::to_string(pid))) << text(0);
    EXPECT_TRUE(has(text(0), "at exit")) << text(0);
    EXPECT_EQ(pl_nr_quarantined_pages(k), 1UL);
}

// munmap() of the last mapping of a page the unmapping task pinned itself:
// nothing can reach the pin through an address any more (leak at munmap).
// A pin on a page that stays mapped elsewhere (here: a fork child's COW
// share) is not reported.
TEST_F(PinTracker, BarePinOfAFullyUnmappedPageLeaksAtMunmap) {
    expect_reports("leak", 1);
    unsigned long a = anon(2);
    page* p[2] = {};
    ASSERT_EQ(pin_user_pages_fast(a, 2, 0, p), 2);  // R/O pins: the pages stay shareable
    task_struct* c = pl_fork(t);
    ASSERT_NE(c, nullptr);
    // The child still maps page 1 (R/O pins keep exclusive anon pages
    // copied at fork, so the child got copies: unmap the child's too).
    ASSERT_EQ(pl_munmap(c, a, 2 * kPage), 0);
    ASSERT_EQ(pl_munmap(t, a + kPage, kPage), 0);
    ASSERT_EQ(pl_warning_count(k, "leak"), 1) << pl_dmesg(k);
    EXPECT_TRUE(has(text(0), "at munmap")) << text(0);
    EXPECT_TRUE(has(text(0), pfn_hex(p[1]))) << text(0);
    unpin_user_page(p[0]);
    unpin_user_page(p[1]);  // released late: the pin goes, the report stands
    EXPECT_EQ(pl_pin_balance(k, nullptr), 0);
    EXPECT_EQ(pl_nr_quarantined_pages(k), 0UL);
    pl_exit(c);
}

// Pins taken inside a C owner scope belong to that owner (a driver object
// that outlives the mapping and the task): munmap and the task's exit do
// not report them; the end of the run does.
TEST_F(PinTracker, OwnerScopePinsOutliveMunmapAndTaskExit) {
    expect_reports("leak", 1);
    unsigned long a = anon(1);
    page* p[1] = {};
    ASSERT_EQ(pl_pin_owner_begin("mydrv", "mydrv_ioctl"), 0);
    ASSERT_EQ(pin_user_pages_fast(a, 1, FOLL_WRITE | FOLL_LONGTERM, p), 1);
    ASSERT_EQ(pl_pin_owner_end(), 0);
    EXPECT_EQ(pl_pin_owner_end(), -EINVAL) << "no scope left";
    EXPECT_EQ(pl_pin_owner_begin(nullptr, nullptr), -EINVAL);
    EXPECT_EQ(pl_pin_balance(k, "mydrv"), 1);
    ASSERT_EQ(pl_munmap(t, a, kPage), 0);
    task_struct* other = pl_task_new(k);  // keeps the run going after t exits
    pl_exit(t);
    t = other;
    EXPECT_EQ(pl_warning_count(k, "leak"), 0) << pl_dmesg(k);
    pl_exit(t);  // the last task: the end of the run, and the driver never released it
    t = nullptr;
    ASSERT_EQ(pl_warning_count(k, "leak"), 1) << pl_dmesg(k);
    EXPECT_TRUE(has(text(0), "mydrv:mydrv_ioctl")) << text(0);
}

// Truncating a pinned page-cache page: the pin holder keeps a page no file
// will read again (truncate_inode_pages_range()); legal, and reported.
TEST_F(PinTracker, TruncatingAPinnedPageIsReported) {
    expect_reports("pinned_page_moved", 1);
    pl_file* f = file("tmpfs", 2 * kPage);
    unsigned long a = map(t, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    ASSERT_EQ(pl_memset(t, a, 7, 2 * kPage), static_cast<long>(2 * kPage));
    page* p[1] = {};
    ASSERT_EQ(pin_user_pages_fast(a + kPage, 1, FOLL_WRITE, p), 1);
    ASSERT_EQ(pl_ftruncate(f, kPage), 0);
    ASSERT_EQ(pl_warning_count(k, "pinned_page_moved"), 1) << pl_dmesg(k);
    EXPECT_TRUE(has(text(0), "truncated")) << text(0);
    EXPECT_TRUE(has(text(0), pfn_hex(p[0]))) << text(0);
    unpin_user_page(p[0]);
    EXPECT_EQ(pl_pin_balance(k, nullptr), 0);
}

// ---- dangling vmas[] (seed 002), routed through the tracker ---------------------------

TEST_F(PinTracker, DanglingVmaIsAStructuredReport) {
    expect_reports("dangling_vma", 1);
    unsigned long a = anon(1);
    Vma* v = mm().vma_lookup(a);
    ASSERT_NE(v, nullptr);
    // What v6.4's __get_user_pages() handing out vmas[] under the lock records.
    vmas_track(mm(), &v, 1, "get_user_pages");
    vmas_lock_released(mm());
    EXPECT_EQ(pl_vma_start(reinterpret_cast<vm_area_struct*>(v)), 0UL);
    ASSERT_EQ(pl_warning_count(k, "dangling_vma"), 1) << pl_dmesg(k);
    EXPECT_TRUE(has(text(0), "dangling VMA")) << text(0);
    EXPECT_EQ(pl_warning_count(k, "warn"), 0) << "not counted as a plain WARN";
}

// ---- plain WARNs are reports of kind "warn" -------------------------------------------

TEST_F(PinTracker, WarnIsAReportOfKindWarn) {
    expect_reports("warn", 1);
    page* p[1] = {};
    // is_valid_gup_args(): FOLL_LONGTERM without FOLL_PIN WARNs.
    EXPECT_EQ(get_user_pages_fast(anon(1), 1, FOLL_LONGTERM, p), -EINVAL);
    EXPECT_EQ(pl_warning_count(k, "warn"), 1);
    EXPECT_EQ(text(0) + "\n", std::string(pl_dmesg(k)));
}

}  // namespace
}  // namespace pl::test
