// GUP slow path: get_user_pages*/pin_user_pages* and the unpin_* API.
// Rows cite /work/shared/reference/linux-gup-spec.md sections.
#include <csignal>
#include <functional>
#include <thread>

#include "gup/foll_flags.h"
#include "gup/gup_slow.h"
#include "test_kernel.h"

namespace pl::test {
namespace {

constexpr unsigned long kHuge = 2UL << 20;

class GupSlow : public KernelTest {
protected:
    unsigned long stat(const char* name) { return pl_vmstat(k, name); }
    void expect_pins_balanced() {
        EXPECT_EQ(stat("nr_foll_pin_acquired"), stat("nr_foll_pin_released")) << "§5: pins balance at rest";
    }
    // A PMD-aligned anonymous range of n huge pages.
    unsigned long map_huge_aligned(unsigned long n = 1) {
        unsigned long a = map(t, (n + 1) * kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
        return (a + kHuge - 1) & ~(kHuge - 1);
    }
    long pin_locked(unsigned long start, unsigned long nr, unsigned flags, page** pages) {
        mmap_read_lock(pl_task_mm(t));
        long r = ::pin_user_pages(start, nr, flags, pages);
        mmap_read_unlock(pl_task_mm(t));
        return r;
    }
    long get_locked(unsigned long start, unsigned long nr, unsigned flags, page** pages) {
        mmap_read_lock(pl_task_mm(t));
        long r = ::get_user_pages(start, nr, flags, pages);
        mmap_read_unlock(pl_task_mm(t));
        return r;
    }
    void SetUp() override {
        KernelTest::SetUp();
        pl_set_current(t);
    }

public:
    // For the table rows' setup functions.
    unsigned long map_file(const char* fs, unsigned long len, int prot, int flags) {
        return map(t, len, prot, flags, file(fs, len));
    }
    unsigned long map_dev(const char* dev, unsigned long len) {
        pl_file* d = pl_dev_open(k, dev);
        EXPECT_NE(d, nullptr) << pl_last_error();
        files.push_back(d);
        return map(t, len, PROT_READ | PROT_WRITE, MAP_SHARED, d);
    }
    unsigned long map_anon(unsigned long len, int prot) { return map(t, len, prot, MAP_PRIVATE | MAP_ANONYMOUS); }
};

// ---- §2 is_valid_gup_args, per API (§1: pin_* return 0 on invalid args) --------------

struct ArgRow {
    const char* why;
    unsigned flags;
    bool with_pages;
    bool bad_locked;
    long get_expect;  // get_user_pages*()
    long pin_expect;  // pin_user_pages*()
};

TEST_F(GupSlow, InvalidArgumentsPerApi) {
    expect_reports("warn");  // every invalid combination WARNs
    unsigned long a = map(4 * kPage);
    const ArgRow rows[] = {
        {"§2 internal FOLL_PIN from a caller", FOLL_PIN, true, false, -EINVAL, 0},
        {"§2 internal FOLL_TOUCH from a caller", FOLL_TOUCH, true, false, -EINVAL, 0},
        {"§2 internal FOLL_UNLOCKABLE from a caller", FOLL_UNLOCKABLE, true, false, -EINVAL, 0},
        {"§2 LONGTERM without PIN (get_*) / LONGTERM|P2PDMA (pin_*)", FOLL_LONGTERM | FOLL_PCI_P2PDMA, true, false,
         -EINVAL, 0},
        {"§2 GET and PIN both set (GET from caller on pin_*)", FOLL_GET, true, false, 1, 0},
        {"§2 PIN without pages (get_* without pages is fine)", 0, false, false, 1, 0},
    };
    for (const ArgRow& r : rows) {
        SCOPED_TRACE(r.why);
        page* p[1] = {nullptr};
        page** pages = r.with_pages ? p : nullptr;
        long got = get_locked(a, 1, r.flags, pages);
        EXPECT_EQ(got, r.get_expect);
        if (got == 1 && pages) put_page(p[0]);
        EXPECT_EQ(::get_user_pages_unlocked(a, 1, pages, r.flags), r.get_expect);
        if (r.get_expect == 1 && pages) put_page(p[0]);
        EXPECT_EQ(pin_locked(a, 1, r.flags, pages), r.pin_expect);
        EXPECT_EQ(::pin_user_pages_unlocked(a, 1, pages, r.flags), r.pin_expect);
        mmap_read_lock(pl_task_mm(t));
        EXPECT_EQ(::pin_user_pages_remote(pl_task_mm(t), a, 1, r.flags, pages, nullptr), r.pin_expect);
        mmap_read_unlock(pl_task_mm(t));
    }
    // §2: `locked` given but *locked != 1.
    page* p[1] = {nullptr};
    int locked = 0;
    EXPECT_EQ(::get_user_pages_remote(pl_task_mm(t), a, 1, 0, p, &locked), -EINVAL);
    EXPECT_EQ(::pin_user_pages_remote(pl_task_mm(t), a, 1, 0, p, &locked), 0);
    // §1: nr_pages == 0 → 0.
    EXPECT_EQ(pin_locked(a, 0, 0, p), 0);
    EXPECT_EQ(get_locked(a, 0, 0, p), 0);
    expect_pins_balanced();
}

// ---- §3 check_vma_flags -------------------------------------------------------------------

struct VmaRow {
    const char* why;
    std::function<unsigned long(GupSlow&)> setup;
    unsigned flags;
    bool pin;
    long expect;
};

TEST_F(GupSlow, CheckVmaFlagsRows) {
    const VmaRow rows[] = {
        {"§3 VM_IO|VM_PFNMAP device → -EFAULT",
         [](GupSlow& s) { return s.map_dev("pfnmap", 4 * kPage); },
         0, true, -EFAULT},
        {"§3 FOLL_ANON on a file VMA → -EFAULT",
         [](GupSlow& s) { return s.map_file("ext4", 4 * kPage, PROT_READ, MAP_PRIVATE); },
         FOLL_ANON, false, -EFAULT},
        {"§3 secretmem → -EFAULT",
         [](GupSlow& s) { return s.map_file("secretmem", 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED); },
         0, true, -EFAULT},
        {"§3 LONGTERM|WRITE pin of shared ext4 (needs dirty tracking) → -EFAULT",
         [](GupSlow& s) { return s.map_file("ext4", 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED); },
         FOLL_LONGTERM | FOLL_WRITE, true, -EFAULT},
        {"§3 LONGTERM|WRITE pin of shared memfd → ok",
         [](GupSlow& s) { return s.map_file("memfd", 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED); },
         FOLL_LONGTERM | FOLL_WRITE, true, 1},
        {"§3 LONGTERM|WRITE pin of shared hugetlbfs → ok",
         [](GupSlow& s) { return s.map_file("hugetlbfs", kHuge, PROT_READ | PROT_WRITE, MAP_SHARED); },
         FOLL_LONGTERM | FOLL_WRITE, true, 1},
        {"§3 FORCE write on R/O shared → -EFAULT",
         [](GupSlow& s) { return s.map_file("memfd", 4 * kPage, PROT_READ, MAP_SHARED); },
         FOLL_FORCE | FOLL_WRITE, true, -EFAULT},
        {"§3 write without FORCE on R/O private anon → -EFAULT",
         [](GupSlow& s) { return s.map_anon(4 * kPage, PROT_READ); }, FOLL_WRITE, true,
         -EFAULT},
        {"§3 read on PROT_NONE → -EFAULT",
         [](GupSlow& s) { return s.map_anon(4 * kPage, PROT_NONE); }, 0, true,
         -EFAULT},
    };
    for (const VmaRow& r : rows) {
        SCOPED_TRACE(r.why);
        unsigned long a = r.setup(*this);
        page* p[1] = {nullptr};
        long got = r.pin ? pin_locked(a, 1, r.flags, p) : get_locked(a, 1, r.flags, p);
        EXPECT_EQ(got, r.expect);
        if (got == 1) {
            if (r.pin)
                unpin_user_page(p[0]);
            else
                put_page(p[0]);
        }
    }
    expect_pins_balanced();
}

TEST_F(GupSlow, ForceWriteOnReadOnlyPrivateAnonCows) {
    // §3: FORCE writes break COW in private mappings (ptrace's poke).
    unsigned long a = map(t, 2 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
    put_str(t, a, "orig");
    ASSERT_EQ(pl_mprotect(t, a, 2 * kPage, PROT_READ), 0);
    task_struct* c = pl_fork(t);
    ASSERT_NE(c, nullptr);
    page* before = pg(t, a);
    page* p[1] = {nullptr};
    ASSERT_EQ(get_locked(a, 1, FOLL_FORCE | FOLL_WRITE, p), 1) << pl_last_error();
    EXPECT_NE(p[0], before) << "the write fault COW-ed a new page";
    EXPECT_EQ(p[0], pg(t, a));
    EXPECT_TRUE(PageAnonExclusive(p[0]));
    ASSERT_EQ(pl_page_write(p[0], 0, "poke", 5), 0);
    EXPECT_EQ(get_str(t, a), "poke");
    EXPECT_EQ(get_str(c, a), "orig") << "the child keeps the old page";
    EXPECT_FALSE(pte::write(entry(t, a))) << "the PTE stays read-only";
    put_page(p[0]);
}

// ---- §1/§3 partial success -------------------------------------------------------------------

TEST_F(GupSlow, PartialSuccessAtAVmaHole) {
    unsigned long a = map(t, 4 * kPage);
    ASSERT_EQ(pl_munmap(t, a + 2 * kPage, 2 * kPage), 0);
    page* p[4] = {};
    EXPECT_EQ(pin_locked(a, 4, FOLL_WRITE, p), 2) << "§1: count of pages before the hole";
    EXPECT_EQ(p[2], nullptr);
    unpin_user_pages(p, 2);
    EXPECT_EQ(pin_locked(a + 2 * kPage, 2, FOLL_WRITE, p), -EFAULT) << "§3: no VMA at the first page";
    EXPECT_EQ(get_locked(a, 4, 0, p), 2);
    put_page(p[0]);
    put_page(p[1]);
    expect_pins_balanced();
}

// ---- §5 pin accounting -----------------------------------------------------------------------

TEST_F(GupSlow, SmallPagePinAndUnpinAccounting) {
    unsigned long a = map(t, 3 * kPage);
    pl_memset(t, a, 'a', 3 * kPage);
    EXPECT_FALSE(mm().test_flag(MMF_HAS_PINNED));
    page* p[3] = {};
    unsigned long acq = stat("nr_foll_pin_acquired");
    ASSERT_EQ(pin_locked(a, 3, FOLL_WRITE, p), 3);
    EXPECT_TRUE(mm().test_flag(MMF_HAS_PINNED)) << "§5 set on first pin";
    for (int i = 0; i < 3; i++) {
        EXPECT_EQ(p[i], pg(t, a + static_cast<unsigned long>(i) * kPage));
        EXPECT_EQ(page_ref_count(p[i]), 1 + GUP_PIN_COUNTING_BIAS) << "§5 small: +1024";
        EXPECT_TRUE(folio_maybe_dma_pinned(::page_folio(p[i])));
    }
    EXPECT_EQ(stat("nr_foll_pin_acquired") - acq, 3u);
    EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
    // A GET adds 1.
    page* g[1] = {};
    ASSERT_EQ(get_locked(a, 1, 0, g), 1);
    EXPECT_EQ(page_ref_count(g[0]), 2 + GUP_PIN_COUNTING_BIAS);
    put_page(g[0]);
    unpin_user_pages(p, 3);
    for (int i = 0; i < 3; i++) {
        EXPECT_EQ(page_ref_count(p[i]), 1);
        EXPECT_FALSE(folio_maybe_dma_pinned(::page_folio(p[i])));
    }
    expect_pins_balanced();
}

TEST_F(GupSlow, ThpIsGrabbedInOneBatch) {
    unsigned long a = map_huge_aligned();
    put_str(t, a, "thp");
    ASSERT_EQ(level(t, a), PtLevel::Pmd);
    Folio* f = folio_at(t, a);
    const int before = f->ref_count();
    std::vector<page*> p(512, nullptr);
    ASSERT_EQ(pin_locked(a + 8 * kPage, 100, FOLL_WRITE, p.data()), 100);
    EXPECT_EQ(f->ref_count(), before + 100) << "§5 large: +refs";
    EXPECT_EQ(f->pincount(), 100) << "§5 large: +pincount";
    for (int i = 0; i < 100; i++) EXPECT_EQ(reinterpret_cast<Page*>(p[static_cast<size_t>(i)]), f->page(8 + static_cast<unsigned long>(i)));
    EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
    unpin_user_pages(p.data(), 100);
    EXPECT_EQ(f->pincount(), 0);
    EXPECT_EQ(f->ref_count(), before);
    // §3 step 6: the batch stops at the leaf's end.
    ASSERT_EQ(get_locked(a + kHuge - 2 * kPage, 2, 0, p.data()), 2);
    EXPECT_EQ(f->ref_count(), before + 2);
    put_page(p[0]);
    put_page(p[1]);
    expect_pins_balanced();
}

TEST_F(GupSlow, HugetlbPin) {
    unsigned long a = map(t, kHuge, PROT_READ | PROT_WRITE, MAP_SHARED, file("hugetlbfs", kHuge));
    put_str(t, a, "huge");
    Folio* f = folio_at(t, a);
    ASSERT_TRUE(f->is_hugetlb());
    const int before = f->ref_count();
    std::vector<page*> p(512, nullptr);
    ASSERT_EQ(pin_locked(a, 512, FOLL_WRITE | FOLL_LONGTERM, p.data()), 512);
    EXPECT_EQ(f->ref_count(), before + 512);
    EXPECT_EQ(f->pincount(), 512);
    char buf[5] = {};
    ASSERT_EQ(pl_page_read(p[0], 0, buf, 5), 0);
    EXPECT_STREQ(buf, "huge");
    unpin_user_pages_dirty_lock(p.data(), 512, true);
    EXPECT_EQ(f->pincount(), 0);
    EXPECT_EQ(f->ref_count(), before);
    expect_pins_balanced();
}

TEST_F(GupSlow, ZeroPagePinTakesNoReference) {
    reboot("ram=512M hugetlb_2m=8 hugetlb_1g=0 thp=never");
    pl_set_current(t);
    unsigned long a = map(t, 2 * kPage);
    char c;
    ASSERT_EQ(pl_read(t, a, &c, 1), 1);  // maps the zero page
    page* z = pg(t, a);
    ASSERT_TRUE(is_zero_page(z));
    const int before = page_ref_count(z);
    const unsigned long acq = stat("nr_foll_pin_acquired");
    page* p[1] = {};
    ASSERT_EQ(pin_locked(a, 1, 0, p), 1);
    EXPECT_EQ(p[0], z);
    EXPECT_EQ(page_ref_count(z), before) << "§5: PIN of the zero page takes nothing";
    EXPECT_EQ(stat("nr_foll_pin_acquired"), acq) << "§5: nor counts";
    unpin_user_page(p[0]);
    EXPECT_EQ(page_ref_count(z), before);
    // §4: a long-term R/O pin in a COW mapping unshares the zero page.
    ASSERT_EQ(pin_locked(a, 1, FOLL_LONGTERM, p), 1);
    EXPECT_FALSE(is_zero_page(p[0]));
    EXPECT_EQ(p[0], pg(t, a));
    unpin_user_page(p[0]);
    expect_pins_balanced();
}

// ---- §7 COW and pins ---------------------------------------------------------------------------

TEST_F(GupSlow, ReadOnlyPinOfSharedAnonPageUnshares) {
    unsigned long a = map(t, kPage);
    put_str(t, a, "before");
    task_struct* c = pl_fork(t);
    ASSERT_NE(c, nullptr);
    page* shared = pg(t, a);
    ASSERT_EQ(shared, pg(c, a));
    ASSERT_FALSE(PageAnonExclusive(shared));
    page* p[1] = {};
    ASSERT_EQ(pin_locked(a, 1, 0, p), 1);
    EXPECT_NE(p[0], shared) << "§4/§7: R/O pin of a shared anon page unshares it";
    EXPECT_TRUE(PageAnonExclusive(p[0]));
    EXPECT_EQ(pg(c, a), shared) << "the child keeps the old page";
    put_str(t, a, "after");
    char buf[8] = {};
    ASSERT_EQ(pl_page_read(p[0], 0, buf, 6), 0);
    EXPECT_STREQ(buf, "after") << "§7: the parent's later write is seen through the pin";
    EXPECT_EQ(get_str(c, a), "before");
    unpin_user_page(p[0]);
    expect_pins_balanced();
}

TEST_F(GupSlow, WritablePinThenForkGivesTheChildACopy) {
    unsigned long a = map(t, kPage);
    put_str(t, a, "dma");
    page* p[1] = {};
    ASSERT_EQ(pin_locked(a, 1, FOLL_WRITE | FOLL_LONGTERM, p), 1);
    task_struct* c = pl_fork(t);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(pg(t, a), p[0]) << "§7: the parent keeps the pinned page";
    EXPECT_NE(pg(c, a), p[0]) << "§7: the child gets a copy at fork";
    ASSERT_EQ(pl_page_write(p[0], 0, "new", 4), 0);
    EXPECT_EQ(get_str(t, a), "new");
    EXPECT_EQ(get_str(c, a), "dma");
    unpin_user_page(p[0]);
    expect_pins_balanced();
}

// ---- §3 lock dance ----------------------------------------------------------------------------

TEST_F(GupSlow, UnlockedPinCompletesThoughTheFaultDroppedTheLock) {
    pl_file* f = file("ext4", 4 * kPage);
    unsigned long a = map(t, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    const unsigned long majflt = stat("pgmajfault");
    std::vector<page*> p(4, nullptr);
    ASSERT_EQ(::pin_user_pages_unlocked(a, 4, p.data(), FOLL_WRITE), 4) << pl_last_error();
    EXPECT_GT(stat("pgmajfault"), majflt) << "uncached: filemap dropped the lock";
    EXPECT_FALSE(mm().mmap_lock.is_locked()) << "§1: *_unlocked releases the lock";
    for (unsigned long i = 0; i < 4; i++) EXPECT_EQ(p[i], pg(t, a + i * kPage));
    unpin_user_pages_dirty_lock(p.data(), 4, true);
    expect_pins_balanced();
}

TEST_F(GupSlow, RemoteWithLockedFollowsUpstream) {
    pl_file* f = file("ext4", 4 * kPage);
    unsigned long a = map(t, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    std::vector<page*> p(4, nullptr);
    // Uncached: the fault drops the lock; GUP re-takes it, then releases it
    // and reports *locked = 0 (§3 lock dance).
    int locked = 1;
    mmap_read_lock(pl_task_mm(t));
    ASSERT_EQ(::pin_user_pages_remote(pl_task_mm(t), a, 4, FOLL_WRITE, p.data(), &locked), 4);
    EXPECT_EQ(locked, 0);
    EXPECT_FALSE(mm().mmap_lock.is_locked());
    unpin_user_pages(p.data(), 4);
    // Now cached and mapped: no fault drops the lock, *locked stays 1.
    locked = 1;
    mmap_read_lock(pl_task_mm(t));
    ASSERT_EQ(::get_user_pages_remote(pl_task_mm(t), a, 4, 0, p.data(), &locked), 4);
    EXPECT_EQ(locked, 1);
    mmap_read_unlock(pl_task_mm(t));
    for (page* x : p) put_page(x);
    expect_pins_balanced();
}

TEST_F(GupSlow, NowaitReturnsShort) {
    pl_file* f = file("ext4", 4 * kPage);
    ASSERT_EQ(pl_pwrite(f, "x", 1, 0), 1);  // page 0 cached, page 1 not
    unsigned long a = map(t, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    std::vector<page*> p(2, nullptr);
    EXPECT_EQ(pin_locked(a, 2, FOLL_NOWAIT, p.data()), 1) << "§2 NOWAIT: stops at the uncached page";
    unpin_user_pages(p.data(), 1);
    EXPECT_EQ(pin_locked(a + kPage, 1, FOLL_NOWAIT, p.data()), 1) << "the read was started: now cached";
    unpin_user_page(p[0]);
    expect_pins_balanced();
}

TEST_F(GupSlow, FatalSignalGivesEintr) {
    unsigned long a = map(t, 2 * kPage);
    ASSERT_EQ(pl_task_signal(t, SIGKILL), 0);
    page* p[2] = {};
    EXPECT_EQ(::pin_user_pages_unlocked(a, 2, p, 0), -EINTR) << "§3 step 2";
    EXPECT_EQ(pin_locked(a, 2, 0, p), -EINTR);
    pl_task_clear_signals(t);
    ASSERT_EQ(pl_task_signal(t, SIGUSR1), 0);
    EXPECT_EQ(::pin_user_pages_unlocked(a, 2, p, 0), 2) << "non-fatal signals do not interrupt";
    unpin_user_pages(p, 2);
    pl_task_clear_signals(t);
    expect_pins_balanced();
}

TEST_F(GupSlow, NofaultAndHwpoison) {
    unsigned long a = map(t, 2 * kPage);
    page* p[1] = {};
    EXPECT_EQ(pin_locked(a, 1, FOLL_NOFAULT, p), -EFAULT) << "§2 NOFAULT: never fault";
    put_str(t, a, "x");
    page* v = pg(t, a);
    ASSERT_EQ(pl_memory_failure(k, page_to_pfn(v)), 0);
    ++baseline;  // a poisoned frame never returns to the allocator
    EXPECT_EQ(pin_locked(a, 1, 0, p), -EFAULT) << "§3: HWPOISON → -EFAULT";
    EXPECT_EQ(pin_locked(a, 1, FOLL_HWPOISON, p), -EHWPOISON) << "§2 FOLL_HWPOISON";
    expect_pins_balanced();
}

TEST_F(GupSlow, UnpinDirtyLockMarksDirty) {
    pl_file* f = file("ext4", 2 * kPage);
    ASSERT_EQ(pl_pwrite(f, "ab", 2, 0), 2);
    ASSERT_EQ(pl_fsync(f), 0);
    unsigned long a = map(t, 2 * kPage, PROT_READ, MAP_SHARED, f);
    page* p[1] = {};
    ASSERT_EQ(pin_locked(a, 1, 0, p), 1);
    EXPECT_FALSE(PageDirty(p[0]));
    unpin_user_pages_dirty_lock(p, 1, true);
    EXPECT_TRUE(PageDirty(p[0])) << "§5: marked dirty under the folio lock";
    expect_pins_balanced();
}

}  // namespace
}  // namespace pl::test

namespace pl::test {
namespace {

class GupFastFallback : public KernelTest {
protected:
    void SetUp() override {
        KernelTest::SetUp();
        pl_set_current(t);
    }
};

// The lockless walk is not implemented yet: these check the argument rules
// of gup_fast_fallback() (§1, §2) and the slow-path fallback.
TEST_F(GupFastFallback, FlagRulesAndSlowFallback) {
    expect_reports("warn");
    unsigned long a = map(t, 4 * kPage);
    page* p[4] = {};
    EXPECT_EQ(::pin_user_pages_fast(a, 1, FOLL_NOWAIT, p), -EINVAL) << "§2: NOWAIT rejected by the fast path";
    EXPECT_EQ(::get_user_pages_fast(a, 1, FOLL_ANON, p), -EINVAL) << "§2: ANON rejected";
    EXPECT_EQ(::pin_user_pages_fast(a, 1, FOLL_INTERRUPTIBLE, p), -EINVAL) << "§2: INTERRUPTIBLE rejected";
    EXPECT_EQ(::pin_user_pages_fast(a, 1, FOLL_GET, p), -EINVAL) << "§1: pin_user_pages_fast → -EINVAL";
    EXPECT_EQ(::get_user_pages_fast(a, 1, FOLL_LONGTERM, p), -EINVAL) << "§2: LONGTERM needs PIN";
    EXPECT_EQ(::pin_user_pages_fast(a, 0, 0, p), 0) << "§1: nr == 0";
    EXPECT_EQ(::pin_user_pages_fast(TASK_SIZE - kPage, 4, 0, p), -EFAULT) << "§1: end beyond TASK_SIZE";
    EXPECT_EQ(::pin_user_pages_fast(a, -1, 0, p), -EOVERFLOW) << "§1: length overflow";
    ASSERT_EQ(::pin_user_pages_fast(a, 4, FOLL_WRITE | FOLL_LONGTERM, p), 4);
    EXPECT_FALSE(mm().mmap_lock.is_locked());
    for (unsigned long i = 0; i < 4; i++) EXPECT_EQ(p[i], pg(t, a + i * kPage));
    unpin_user_pages(p, 4);
    ASSERT_EQ(::get_user_pages_fast(a, 2, 0, p), 2);
    put_page(p[0]);
    put_page(p[1]);
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), pl_vmstat(k, "nr_foll_pin_released"));
}

TEST_F(GupFastFallback, InterruptibleUnlockedPinStopsOnAnySignal) {
    // §3 lock dance: with FOLL_INTERRUPTIBLE any pending signal ends the
    // retry once the fault dropped the lock (uncached ext4 page).
    pl_file* f = file("ext4", 2 * kPage);
    unsigned long a = map(t, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    ASSERT_EQ(pl_task_signal(t, SIGUSR1), 0);
    page* p[2] = {};
    EXPECT_EQ(::pin_user_pages_unlocked(a, 2, p, FOLL_INTERRUPTIBLE), -EINTR);
    EXPECT_FALSE(mm().mmap_lock.is_locked());
    EXPECT_EQ(::pin_user_pages_unlocked(a, 2, p, 0), 2) << "without INTERRUPTIBLE it completes";
    unpin_user_pages(p, 2);
    pl_task_clear_signals(t);
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), pl_vmstat(k, "nr_foll_pin_released"));
}

}  // namespace
}  // namespace pl::test

namespace pl::test {
namespace {

class GupSlowMore : public KernelTest {
protected:
    void SetUp() override {
        KernelTest::SetUp();
        pl_set_current(t);
    }
    long get_locked(unsigned long start, unsigned long nr, unsigned flags, page** pages) {
        mmap_read_lock(pl_task_mm(t));
        long r = ::get_user_pages(start, nr, flags, pages);
        mmap_read_unlock(pl_task_mm(t));
        return r;
    }
};

TEST_F(GupSlowMore, SplitPmdFollowsThePteLevel) {
    // §2 FOLL_SPLIT_PMD: split the THP PMD first; the folio stays large.
    unsigned long a = map(t, 2 * kHuge);
    a = (a + kHuge - 1) & ~(kHuge - 1);
    put_str(t, a, "thp");
    ASSERT_EQ(level(t, a), PtLevel::Pmd);
    Folio* f = folio_at(t, a);
    page* p[2] = {};
    ASSERT_EQ(get_locked(a, 2, FOLL_SPLIT_PMD, p), 2);
    EXPECT_EQ(level(t, a), PtLevel::Pte);
    EXPECT_EQ(folio_at(t, a), f);
    EXPECT_EQ(reinterpret_cast<Page*>(p[1]), f->page(1));
    put_page(p[0]);
    put_page(p[1]);
}

TEST_F(GupSlowMore, DumpDoesNotFaultInAnonHoles) {
    // §2 FOLL_DUMP: a hole in anonymous memory is an error, nothing allocated.
    unsigned long a = map(t, 2 * kPage);
    page* p[1] = {};
    const unsigned long before = pl_nr_allocated_pages(k);
    EXPECT_EQ(get_locked(a, 1, FOLL_DUMP, p), -EFAULT);
    EXPECT_EQ(pl_nr_allocated_pages(k), before);
    put_str(t, a, "x");
    ASSERT_EQ(get_locked(a, 1, FOLL_DUMP, p), 1);
    put_page(p[0]);
}

}  // namespace
}  // namespace pl::test

namespace pl::test {
namespace {

class GupUnpin : public KernelTest {
protected:
    void SetUp() override {
        KernelTest::SetUp();
        pl_set_current(t);
    }
    long pin_locked(unsigned long start, unsigned long nr, unsigned flags, page** pages) {
        mmap_read_lock(pl_task_mm(t));
        long r = ::pin_user_pages(start, nr, flags, pages);
        mmap_read_unlock(pl_task_mm(t));
        return r;
    }
};

TEST_F(GupUnpin, RangeAndFolioVariantsOnAThp) {
    // §1/§5: unpin_user_page_range_dirty_lock() (physically contiguous) and
    // unpin_folios() (groups equal neighbours) drop exactly what was taken.
    unsigned long a = map(t, 2 * kHuge);
    a = (a + kHuge - 1) & ~(kHuge - 1);
    put_str(t, a, "thp");
    Folio* f = folio_at(t, a);
    ASSERT_EQ(level(t, a), PtLevel::Pmd);
    const int before = f->ref_count();
    std::vector<page*> p(16, nullptr);
    ASSERT_EQ(pin_locked(a, 16, FOLL_WRITE, p.data()), 16);
    EXPECT_EQ(f->pincount(), 16);
    unpin_user_page_range_dirty_lock(p[0], 10, true);
    EXPECT_EQ(f->pincount(), 6);
    EXPECT_TRUE(f->is_dirty());
    folio* fs[6];
    for (auto& x : fs) x = reinterpret_cast<folio*>(f);
    unpin_folios(fs, 6);
    EXPECT_EQ(f->pincount(), 0);
    EXPECT_EQ(f->ref_count(), before);
    // unpin_user_pages() skips NULL entries and ignores a negative count.
    page* q[3] = {};
    ASSERT_EQ(pin_locked(a, 1, 0, q), 1);
    unpin_user_pages(q, static_cast<unsigned long>(-EFAULT));
    EXPECT_EQ(f->pincount(), 1);
    q[2] = q[0];
    q[0] = nullptr;
    unpin_user_pages(q, 3);
    EXPECT_EQ(f->pincount(), 0);
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), pl_vmstat(k, "nr_foll_pin_released"));
}

}  // namespace
}  // namespace pl::test



namespace pl::test {
namespace {

class GupConcurrent : public KernelTest {};

TEST_F(GupConcurrent, PinUnpinRacesForkZapAndWrites) {
    // §3/§7 under contention: pins through the lock dance while another
    // thread forks, writes (COW) and zaps the range. Invariants must hold
    // and every pin must be released.
    unsigned long a = map(t, 8 * kPage);
    pl_memset(t, a, 'x', 8 * kPage);
    std::thread pinner([&] {
        pl_set_current(t);
        for (int i = 0; i < 200; i++) {
            page* p[8] = {};
            long n = ::pin_user_pages_unlocked(a, 8, p, (i & 1) ? FOLL_WRITE : 0);
            if (n > 0) unpin_user_pages_dirty_lock(p, static_cast<unsigned long>(n), (i & 1) != 0);
        }
    });
    for (int i = 0; i < 40; i++) {
        task_struct* c = pl_fork(t);
        ASSERT_NE(c, nullptr);
        pl_memset(t, a + static_cast<unsigned long>(i % 8) * kPage, 'y', 16);
        if (i % 5 == 0) {
            EXPECT_EQ(pl_madvise(t, a, 4 * kPage, MADV_DONTNEED), 0);
        }
        pl_exit(c);
    }
    pinner.join();
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), pl_vmstat(k, "nr_foll_pin_released"));
}

}  // namespace
}  // namespace pl::test
