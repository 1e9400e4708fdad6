// Spec §1 (return rules per entry point) and §5 (pin accounting per folio
// kind) as tables: one row per rule, each naming what it checks.
#include <functional>
#include <string>

#include "gup/foll_flags.h"
#include "test_kernel.h"

namespace pl::test {
namespace {

constexpr unsigned long kHuge = 2UL << 20;

class GupRules : public KernelTest {
protected:
    void SetUp() override {
        KernelTest::SetUp();
        pl_set_current(t);
    }
    unsigned long stat(const char* n) { return pl_vmstat(k, n); }
    void expect_balanced() { EXPECT_EQ(stat("nr_foll_pin_acquired"), stat("nr_foll_pin_released")); }
};

// ---- §1 return rules, per entry point ------------------------------------------------------

// One entry point, called the way its contract asks (lock held or not).
struct Api {
    const char* name;
    bool pin;  // release with unpin_user_pages (else put_page)
    std::function<long(MmStruct&, unsigned long start, unsigned long nr, unsigned flags, page** pages)> call;
};

std::vector<Api> apis() {
    auto locked = [](MmStruct& mm, auto fn) {
        mm_struct* m = reinterpret_cast<mm_struct*>(&mm);
        mmap_read_lock(m);
        long r = fn(m);
        mmap_read_unlock(m);
        return r;
    };
    return {
        {"get_user_pages", false,
         [=](MmStruct& mm, unsigned long s, unsigned long n, unsigned f, page** p) {
             return locked(mm, [&](mm_struct*) { return ::get_user_pages(s, n, f, p); });
         }},
        {"get_user_pages_remote", false,
         [=](MmStruct& mm, unsigned long s, unsigned long n, unsigned f, page** p) {
             return locked(mm, [&](mm_struct* m) { return ::get_user_pages_remote(m, s, n, f, p, nullptr); });
         }},
        {"get_user_pages_unlocked", false,
         [](MmStruct&, unsigned long s, unsigned long n, unsigned f, page** p) {
             return ::get_user_pages_unlocked(s, n, p, f);
         }},
        {"get_user_pages_fast", false,
         [](MmStruct&, unsigned long s, unsigned long n, unsigned f, page** p) {
             return static_cast<long>(::get_user_pages_fast(s, static_cast<int>(n), f, p));
         }},
        {"pin_user_pages", true,
         [=](MmStruct& mm, unsigned long s, unsigned long n, unsigned f, page** p) {
             return locked(mm, [&](mm_struct*) { return ::pin_user_pages(s, n, f, p); });
         }},
        {"pin_user_pages_remote", true,
         [=](MmStruct& mm, unsigned long s, unsigned long n, unsigned f, page** p) {
             return locked(mm, [&](mm_struct* m) { return ::pin_user_pages_remote(m, s, n, f, p, nullptr); });
         }},
        {"pin_user_pages_unlocked", true,
         [](MmStruct&, unsigned long s, unsigned long n, unsigned f, page** p) {
             return ::pin_user_pages_unlocked(s, n, p, f);
         }},
        {"pin_user_pages_fast", true,
         [](MmStruct&, unsigned long s, unsigned long n, unsigned f, page** p) {
             return static_cast<long>(::pin_user_pages_fast(s, static_cast<int>(n), f, p));
         }},
    };
}

TEST_F(GupRules, ReturnConventionsPerApi) {
    // [a, a+4 pages) mapped; [a+4, a+8) a hole.
    unsigned long a = map(8 * kPage);
    ASSERT_EQ(pl_munmap(t, a + 4 * kPage, 4 * kPage), 0);
    ASSERT_EQ(pl_memset(t, a, 'r', 4 * kPage), static_cast<long>(4 * kPage));
    struct Row {
        const char* rule;
        unsigned long start;
        unsigned long nr;
        long expect;
    };
    const Row rows[] = {
        {"§1 nr_pages == 0 → 0", a, 0, 0},
        {"§1 every page → nr_pages", a, 4, 4},
        {"§1 partial success: the pages before the hole (caller releases exactly that many)", a + kPage, 6, 3},
        {"§1/§3 none: no VMA at start → -EFAULT", a + 4 * kPage, 2, -EFAULT},
        {"§3 start is rounded down to its page", a + 100, 1, 1},
    };
    for (const Api& api : apis()) {
        for (const Row& r : rows) {
            SCOPED_TRACE(std::string(api.name) + ": " + r.rule);
            page* pages[8] = {};
            long got = api.call(mm(), r.start, r.nr, FOLL_WRITE, pages);
            EXPECT_EQ(got, r.expect);
            if (got > 0) {
                EXPECT_EQ(pages[0], pg(t, r.start & ~(kPage - 1)));
                EXPECT_EQ(pages[got], nullptr) << "nothing written past the count";
                if (api.pin) {
                    unpin_user_pages(pages, static_cast<unsigned long>(got));
                } else {
                    for (long i = 0; i < got; ++i) put_page(pages[i]);
                }
            }
        }
    }
    expect_balanced();
}

TEST_F(GupRules, FastPathPrechecks) {
    unsigned long a = map(kPage);
    page* p[1] = {};
    struct Row {
        const char* rule;
        unsigned long start;
        int nr;
        int expect;
    };
    const Row rows[] = {
        {"§1 fast: start + nr*PAGE_SIZE overflows → -EOVERFLOW", ~0UL - kPage + 1, 2, -EOVERFLOW},
        {"§1 fast: a negative count sign-extends into an overflow → -EOVERFLOW", a, -1, -EOVERFLOW},
        {"§1 fast: end beyond TASK_SIZE → -EFAULT", TASK_SIZE - kPage, 2, -EFAULT},
        {"§1 fast: nr == 0 → 0", a, 0, 0},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(r.rule);
        EXPECT_EQ(::pin_user_pages_fast(r.start, r.nr, 0, p), r.expect);
        EXPECT_EQ(::get_user_pages_fast(r.start, r.nr, 0, p), r.expect);
    }
    expect_balanced();
}

TEST_F(GupRules, InvalidArgumentsAreWarnedInDmesg) {
    expect_reports("warn", 2);
    // §2: every is_valid_gup_args() refusal is a WARN_ON_ONCE upstream; the
    // model logs it where pl_dmesg() shows it.
    unsigned long a = map(kPage);
    page* p[1] = {};
    EXPECT_EQ(::get_user_pages_fast(a, 1, FOLL_LONGTERM, p), -EINVAL);
    EXPECT_NE(std::string(pl_dmesg(k)).find("is_valid_gup_args: FOLL_LONGTERM without FOLL_PIN"), std::string::npos)
        << pl_dmesg(k);
    EXPECT_EQ(::pin_user_pages_fast(a, 1, FOLL_NOWAIT, p), -EINVAL);
    EXPECT_NE(std::string(pl_dmesg(k)).find("gup_fast_fallback: flags 0x10 outside the GUP-fast set"),
              std::string::npos)
        << pl_dmesg(k);
}

TEST_F(GupRules, FollTouchMarksTheFolioAccessedAndDirty) {
    // §2 FOLL_TOUCH (set by get_user_pages*, pin_user_pages_remote/_unlocked
    // and the fast path's fallback; not by pin_user_pages()).
    pl_file* f = file("ext4", 2 * kPage);
    unsigned long a = map(t, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    ASSERT_EQ(pl_memset(t, a, 1, 2 * kPage), static_cast<long>(2 * kPage));
    ASSERT_EQ(pl_fsync(f), 0);  // clean, and the PTEs clean and write-protected again
    Folio* f0 = folio_at(t, a);
    f0->clear(PG_referenced);
    ASSERT_FALSE(f0->is_dirty());
    page* p[1] = {};
    mmap_read_lock(pl_task_mm(t));
    ASSERT_EQ(::pin_user_pages(a, 1, 0, p), 1);
    mmap_read_unlock(pl_task_mm(t));
    EXPECT_FALSE(f0->test(PG_referenced)) << "pin_user_pages() sets no FOLL_TOUCH";
    unpin_user_page(p[0]);
    ASSERT_EQ(::get_user_pages_unlocked(a, 1, p, 0), 1);
    EXPECT_TRUE(f0->test(PG_referenced)) << "folio_mark_accessed()";
    EXPECT_FALSE(f0->is_dirty()) << "a read does not dirty";
    put_page(p[0]);
    ASSERT_EQ(::get_user_pages_unlocked(a, 1, p, FOLL_WRITE), 1);
    // (The PTE was write-protected by writeback, so the write fault's
    // page_mkwrite dirties it before FOLL_TOUCH looks.)
    EXPECT_TRUE(f0->is_dirty()) << "a GUP write dirties the page-cache folio";
    put_page(p[0]);
    ASSERT_EQ(pl_fsync(f), 0);
}

// ---- §5 accounting per folio kind ----------------------------------------------------------

class GupAccounting : public GupRules {
public:
    unsigned long small_anon() {
        unsigned long a = map(t, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
        EXPECT_EQ(pl_memset(t, a, 1, 4 * kPage), static_cast<long>(4 * kPage));
        return a;
    }
    unsigned long page_cache() {
        pl_file* f = file("ext4", 4 * kPage);
        unsigned long a = map(t, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
        EXPECT_EQ(pl_memset(t, a, 1, 4 * kPage), static_cast<long>(4 * kPage));
        return a;
    }
    unsigned long thp() {
        unsigned long raw = map(t, 2 * kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
        unsigned long a = (raw + kHuge - 1) & ~(kHuge - 1);
        EXPECT_EQ(pl_memset(t, a, 1, kHuge), static_cast<long>(kHuge));
        EXPECT_EQ(level(t, a), PtLevel::Pmd);
        return a;
    }
    unsigned long hugetlb() {
        unsigned long a = map(t, kHuge, PROT_READ | PROT_WRITE, MAP_SHARED, file("hugetlbfs", kHuge));
        EXPECT_EQ(pl_memset(t, a, 1, kHuge), static_cast<long>(kHuge));
        return a;
    }
    unsigned long zero() {
        unsigned long a = map(t, 4 * kPage, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS);
        char c;
        for (unsigned long i = 0; i < 4; ++i) EXPECT_EQ(pl_read(t, a + i * kPage, &c, 1), 1);
        EXPECT_TRUE(is_zero_page(pg(t, a)));
        return a;
    }
};

TEST_F(GupAccounting, PerFolioKind) {
    reboot("ram=512M hugetlb_2m=4 hugetlb_1g=0 thp=always thp.use_zero_page=off");
    pl_set_current(t);
    struct Row {
        const char* rule;
        std::function<unsigned long(GupAccounting&)> setup;
        bool pin;
        unsigned long nr;       // pages pinned, all in one folio
        long ref_per_page;      // _refcount change per page
        long pincount_per_page; // _pincount change per page (large folios)
        long vmstat_per_page;   // nr_foll_pin_acquired per page
        bool maybe_pinned;
    };
    const Row rows[] = {
        {"§5 GET: +1 per page", [](GupAccounting& f) { return f.small_anon(); }, false, 1, 1, 0, 0, false},
        {"§5 PIN, small folio: +GUP_PIN_COUNTING_BIAS", [](GupAccounting& f) { return f.small_anon(); }, true, 1,
         GUP_PIN_COUNTING_BIAS, 0, 1, true},
        {"§5 PIN, small page-cache folio: +GUP_PIN_COUNTING_BIAS", [](GupAccounting& f) { return f.page_cache(); },
         true, 1, GUP_PIN_COUNTING_BIAS, 0, 1, true},
        {"§5 PIN, PMD THP: +1 _refcount and +1 _pincount per subpage", [](GupAccounting& f) { return f.thp(); },
         true, 512, 1, 1, 1, true},
        {"§5 GET, PMD THP: +1 per subpage, _pincount untouched", [](GupAccounting& f) { return f.thp(); }, false,
         512, 1, 0, 0, false},
        {"§5 PIN, 2M hugetlb: as any large folio", [](GupAccounting& f) { return f.hugetlb(); }, true, 100, 1, 1,
         1, true},
        {"§5 PIN, zero page: nothing, not even the vmstat", [](GupAccounting& f) { return f.zero(); }, true, 1, 0,
         0, 0, false},
        {"§5 GET, zero page: a GET does take its reference", [](GupAccounting& f) { return f.zero(); }, false, 1, 1,
         0, 0, false},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(r.rule);
        unsigned long a = r.setup(*this);
        Folio* f = folio_at(t, a);
        ASSERT_NE(f, nullptr);
        const long ref0 = f->ref_count();
        const long pin0 = f->is_large() ? f->pincount() : 0;
        const unsigned long acq0 = stat("nr_foll_pin_acquired");
        std::vector<page*> pages(r.nr);
        long n = r.pin ? ::pin_user_pages_fast(a, static_cast<int>(r.nr), 0, pages.data())
                       : ::get_user_pages_fast(a, static_cast<int>(r.nr), 0, pages.data());
        ASSERT_EQ(n, static_cast<long>(r.nr));
        const long nr = static_cast<long>(r.nr);
        EXPECT_EQ(f->ref_count() - ref0, r.ref_per_page * nr);
        if (f->is_large()) {
            EXPECT_EQ(f->pincount() - pin0, r.pincount_per_page * nr);
        }
        EXPECT_EQ(static_cast<long>(stat("nr_foll_pin_acquired") - acq0), r.vmstat_per_page * nr);
        EXPECT_EQ(f->maybe_dma_pinned(), r.maybe_pinned);
        EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
        if (r.pin) {
            unpin_user_pages(pages.data(), r.nr);
        } else {
            for (page* p : pages) put_page(p);
        }
        EXPECT_EQ(f->ref_count(), ref0) << "§5: gup_put_folio() is the exact inverse";
        expect_balanced();
    }
}

TEST_F(GupAccounting, MaybeDmaPinnedFalsePositivesOnlyForSmallFolios) {
    // §5: small folios: refcount >= GUP_PIN_COUNTING_BIAS — ordinary
    // references alone can make it say "maybe"; large folios are exact.
    unsigned long a = small_anon();
    page* p = pg(t, a);
    for (int i = 0; i < GUP_PIN_COUNTING_BIAS; ++i) get_page(p);
    EXPECT_TRUE(folio_maybe_dma_pinned(::page_folio(p))) << "a false positive, as upstream";
    for (int i = 0; i < GUP_PIN_COUNTING_BIAS; ++i) put_page(p);
    EXPECT_FALSE(folio_maybe_dma_pinned(::page_folio(p)));

    unsigned long h = thp();
    page* hp = pg(t, h);
    for (int i = 0; i < GUP_PIN_COUNTING_BIAS; ++i) get_page(hp);
    EXPECT_FALSE(folio_maybe_dma_pinned(::page_folio(hp))) << "large folios count pins in _pincount: exact";
    for (int i = 0; i < GUP_PIN_COUNTING_BIAS; ++i) put_page(hp);
}

TEST_F(GupAccounting, PinWholeUnpinPerPageBalances) {
    // §5: the vmstat counts per subpage, so a batch pin released page by page balances.
    unsigned long h = thp();
    std::vector<page*> pages(512);
    ASSERT_EQ(::pin_user_pages_fast(h, 512, FOLL_WRITE, pages.data()), 512);
    EXPECT_EQ(stat("nr_foll_pin_acquired") - stat("nr_foll_pin_released"), 512u);
    for (page* p : pages) unpin_user_page(p);
    expect_balanced();
    EXPECT_EQ(pl_folio_pincount(::page_folio(pages[0])), 0);
}

}  // namespace
}  // namespace pl::test
