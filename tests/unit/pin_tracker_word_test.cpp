// The pin tracker's fast path (issue 7): the common case lives in one word on
// the folio's head page (Page::lru.track.gup), a folio pinned by calls of
// different owners spills to the side table, concurrent calls of one class
// (gup_test's -j threads) share a record, and records are swept, not
// refcounted. Each test checks what the tracker reports and balances, so a
// broken word (lost counts, wrong owner, a spill that loses records) fails.
#include "test_kernel.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "debug/pin_tracker.h"
#include "gup/foll_flags.h"
#include "mm/folio.h"

namespace pl::test {
namespace {

class PinTrackerWord : public KernelTest {
protected:
    void SetUp() override {
        KernelTest::SetUp();
        pl_set_current(t);
    }
    unsigned long anon(task_struct* task, unsigned long n) {
        unsigned long a = map(task, n * kPage);
        EXPECT_EQ(pl_memset(task, a, 0x5a, n * kPage), static_cast<long>(n * kPage));
        return a;
    }
    static const Folio* F(page* p) { return page_folio(reinterpret_cast<Page*>(p)); }
    static uint64_t word(page* p) { return F(p)->head()->lru.track.gup; }
    static bool spilled(page* p) { return word(p) >> 63; }
    std::string text(int i) {
        const char* s = pl_warning_text(k, i);
        return s ? s : "<null>";
    }
};

// One call pinning many pages: each page's word counts its pins under one
// record; nothing spills; the balance is exact and per owner.
TEST_F(PinTrackerWord, OneCallKeepsEveryPageInItsWord) {
    const unsigned long n = 64;
    unsigned long a = anon(t, n);
    std::vector<page*> p(n);
    ASSERT_EQ(pin_user_pages_fast(a, static_cast<int>(n), FOLL_WRITE, p.data()), static_cast<long>(n));
    for (page* x : p) {
        EXPECT_FALSE(spilled(x));
        EXPECT_EQ(word(x) & 0xffffffffULL, 1u) << "one pin counted in the word";
        EXPECT_EQ(pin_track_pins(F(x)), 1);
    }
    EXPECT_EQ(pl_pin_balance(k, "pin_user_pages_fast"), static_cast<long>(n));
    EXPECT_EQ(pl_pin_balance(k, "pin_user_pages"), 0) << "owners are told apart";
    unpin_user_pages(p.data(), n);
    EXPECT_EQ(pl_pin_balance(k, nullptr), 0);
    for (page* x : p) EXPECT_EQ(pin_track_pins(F(x)), 0);
}

// A second call pinning the same page has its own step: the page spills to
// the side table with both records, and reports still name each call.
TEST_F(PinTrackerWord, TwoCallsOnOnePageSpillAndKeepBothRecords) {
    expect_reports("put_page_on_pinned", 1);
    unsigned long a = anon(t, 1);
    page* p1[1] = {};
    page* p2[1] = {};
    ASSERT_EQ(pin_user_pages_fast(a, 1, FOLL_WRITE, p1), 1);  // step 1
    EXPECT_FALSE(spilled(p1[0]));
    ASSERT_EQ(pin_user_pages(a, 1, FOLL_WRITE, p2), 1);  // step 2, another entry point
    EXPECT_TRUE(spilled(p1[0])) << "two records on one folio";
    EXPECT_EQ(pin_track_pins(F(p1[0])), 2);
    EXPECT_EQ(pl_pin_balance(k, "pin_user_pages_fast"), 1);
    EXPECT_EQ(pl_pin_balance(k, "pin_user_pages"), 1);
    put_page(p1[0]);  // eats a pin: the report names the first pinning call
    ASSERT_EQ(pl_warning_count(k, "put_page_on_pinned"), 1) << pl_dmesg(k);
    EXPECT_NE(text(0).find("pin_user_pages_fast"), std::string::npos) << text(0);
    EXPECT_NE(text(0).find("step 1"), std::string::npos) << text(0);
    get_page(p1[0]);
    unpin_user_page(p1[0]);
    unpin_user_page(p2[0]);
    EXPECT_EQ(pl_pin_balance(k, nullptr), 0);
    EXPECT_FALSE(spilled(p1[0])) << "an emptied entry leaves the side table";
}

// GET then PIN on one page: different kinds never share a word; unpin of
// the GET is still told apart (FOLL_GET named) after the spill.
TEST_F(PinTrackerWord, GetAndPinOnOnePage) {
    expect_reports("unpin_not_pinned", 1);
    unsigned long a = anon(t, 1);
    page* g[1] = {};
    page* p[1] = {};
    ASSERT_EQ(get_user_pages_fast(a, 1, 0, g), 1);
    EXPECT_FALSE(spilled(g[0]));
    EXPECT_EQ(pin_track_pins(F(g[0])), 0) << "a GET is no pin";
    ASSERT_EQ(pin_user_pages_fast(a, 1, FOLL_WRITE, p), 1);
    EXPECT_TRUE(spilled(p[0]));
    EXPECT_EQ(pin_track_pins(F(p[0])), 1);
    unpin_user_page(p[0]);
    unpin_user_page(g[0]);  // the GET: reported, nothing released
    ASSERT_EQ(pl_warning_count(k, "unpin_not_pinned"), 1) << pl_dmesg(k);
    EXPECT_NE(text(0).find("FOLL_GET"), std::string::npos) << text(0);
    put_page(g[0]);
    EXPECT_EQ(pl_pin_balance(k, nullptr), 0);
}

// The double unpin of a page whose word kept the released record names the
// call that pinned it, and a freed frame keeps that knowledge aside.
TEST_F(PinTrackerWord, DoubleUnpinAfterTheFrameWasFreed) {
    expect_reports("double_unpin", 2);
    unsigned long a = anon(t, 2);
    page* p[2] = {};
    ASSERT_EQ(pin_user_pages_fast(a, 2, FOLL_WRITE, p), 2);
    unpin_user_pages(p, 2);
    unpin_user_page(p[0]);  // still mapped: the word's released record
    ASSERT_EQ(pl_warning_count(k, "double_unpin"), 1) << pl_dmesg(k);
    ASSERT_EQ(pl_munmap(t, a, 2 * kPage), 0);  // frees both frames
    unpin_user_page(p[1]);  // freed: the side table remembers
    EXPECT_EQ(pl_warning_count(k, "double_unpin"), 2) << pl_dmesg(k);
}

// A task exiting with pins in its words: each leaked page is reported once
// with the exiting pid, and quarantined (the frame stays allocated).
TEST_F(PinTrackerWord, ExitWithPinsInWordsReportsEachPage) {
    expect_reports("leak", 3);
    task_struct* u = pl_task_new(k);
    ASSERT_NE(u, nullptr);
    pl_set_current(u);
    unsigned long a = anon(u, 3);
    page* p[3] = {};
    ASSERT_EQ(pin_user_pages_fast(a, 3, FOLL_WRITE, p), 3);
    pl_set_current(t);
    pl_exit(u);
    ASSERT_EQ(pl_warning_count(k, "leak"), 3) << pl_dmesg(k);
    EXPECT_EQ(pl_nr_quarantined_pages(k), 3u);
    for (page* x : p) EXPECT_TRUE(spilled(x)) << "leaked records live in the side table";
}

// Many GUP calls, each leaving one pin: the record table is swept when it
// grows, and records still named by a word survive it (reports stay right).
TEST_F(PinTrackerWord, SweptRecordsStillNameLivePins) {
    expect_reports("put_page_on_pinned", 1);
    const unsigned long n = 70000;  // past the table's first sweep (2^16 records)
    unsigned long a = map(n * kPage);
    ASSERT_EQ(pl_memset(t, a, 1, n * kPage), static_cast<long>(n * kPage));
    std::vector<page*> p(n);
    for (unsigned long i = 0; i < n; ++i) {
        ASSERT_EQ(pin_user_pages_fast(a + i * kPage, 1, FOLL_WRITE, &p[i]), 1);
        if (i % 2) unpin_user_page(p[i]);  // half go at once: their records can be swept
    }
    EXPECT_EQ(pl_pin_balance(k, "pin_user_pages_fast"), static_cast<long>(n / 2));
    put_page(p[0]);  // the very first call's record was kept: it still has a pin
    ASSERT_EQ(pl_warning_count(k, "put_page_on_pinned"), 1) << pl_dmesg(k);
    EXPECT_NE(text(0).find("step 1,"), std::string::npos) << text(0);
    get_page(p[0]);
    for (unsigned long i = 0; i < n; i += 2) unpin_user_page(p[i]);
    EXPECT_EQ(pl_pin_balance(k, nullptr), 0);
}

class PinTrackerWordConcurrent : public PinTrackerWord {};

// gup_test -j: threads of one task pin and unpin the same pages at once.
// Their calls share a class, so the words take both without spilling, and
// every count comes back to zero.
TEST_F(PinTrackerWordConcurrent, CallsOfOneClassShareTheWord) {
    const unsigned long n = 256;
    unsigned long a = anon(t, n);
    constexpr int kThreads = 4, kRounds = 40;
    std::atomic<int> failures{0};
    std::vector<std::thread> th;
    for (int i = 0; i < kThreads; ++i) {
        th.emplace_back([&] {
            pl_set_current(t);
            std::vector<page*> p(n);
            for (int r = 0; r < kRounds; ++r) {
                if (pin_user_pages_fast(a, static_cast<int>(n), FOLL_WRITE, p.data()) != static_cast<long>(n)) {
                    failures++;
                    continue;
                }
                unpin_user_pages(p.data(), n);
            }
            pl_set_current(nullptr);
        });
    }
    for (auto& x : th) x.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(pl_pin_balance(k, nullptr), 0);
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), pl_vmstat(k, "nr_foll_pin_released"));
    for (unsigned long i = 0; i < n; ++i) EXPECT_EQ(pin_track_pins(F(pg(t, a + i * kPage))), 0);
}

// Threads of different tasks (different owners of record) pinning one
// shared page: it spills, and the books balance at the end.
TEST_F(PinTrackerWordConcurrent, OwnersOfOnePageSpill) {
    pl_file* f = file("tmpfs", kPage);
    ASSERT_NE(f, nullptr);
    constexpr int kThreads = 3, kRounds = 200;
    std::vector<task_struct*> tasks;
    std::vector<unsigned long> addrs;
    for (int i = 0; i < kThreads; ++i) {
        task_struct* u = pl_task_new(k);
        ASSERT_NE(u, nullptr);
        unsigned long a = map(u, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
        put_str(u, a, "x");
        tasks.push_back(u);
        addrs.push_back(a);
    }
    std::atomic<int> failures{0};
    std::vector<std::thread> th;
    for (int i = 0; i < kThreads; ++i) {
        th.emplace_back([&, i] {
            pl_set_current(tasks[i]);
            for (int r = 0; r < kRounds; ++r) {
                page* p[1] = {};
                if (pin_user_pages_fast(addrs[i], 1, FOLL_WRITE, p) != 1) {
                    failures++;
                    continue;
                }
                unpin_user_page(p[0]);
            }
            pl_set_current(nullptr);
        });
    }
    for (auto& x : th) x.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(pl_pin_balance(k, nullptr), 0);
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), pl_vmstat(k, "nr_foll_pin_released"));
    for (task_struct* u : tasks) pl_exit(u);
}

}  // namespace
}  // namespace pl::test
