// Running scenarios: small inline ones against a fresh kernel each, checking
// the verdict and, for failures, the located reason. The model's answers the
// pass cases rely on are upstream's: pin_user_pages_fast() pins one page
// (mm/gup.c), a pinned exclusive anonymous page is copied for the child at
// fork (copy_present_page() via folio_try_dup_anon_rmap()), FOLL_PIN on a
// small folio adds GUP_PIN_COUNTING_BIAS (try_grab_folio()).
#include <gtest/gtest.h>

#include "scenario_test_util.h"

namespace pl::scenario::test {
namespace {

constexpr const char* kSmall = "config ram=256M hugetlb_2m=4 hugetlb_1g=0\n";

TEST(ScenarioRun, PinThenForkChildDoesNotSeeDma) {
    const std::string text = std::string(kSmall) + R"(scenario "R/O pin, then fork"
task A
A: buf = mmap 8K rw private anon
A: write buf "hello"
A: n = pin_user_pages_fast buf 1 FOLL_WRITE -> P
fork A -> B
B: write buf "child"
expect n == 1
expect A: read buf 5 == "hello"
expect B: read buf 5 == "child"
expect page P[0] pincount == 1
expect page P[0] maybe_dma_pinned
expect page P[0] refcount >= GUP_PIN_COUNTING_BIAS
expect not same_frame A:buf B:buf
expect same_frame A:buf P[0]
device_write P[0] 0 "dma"
expect A: read buf 3 == "dma"
expect B: read buf 5 == "child"
expect vmstat nr_foll_pin_acquired == 1
unpin_user_pages P
expect vmstat nr_foll_pin_released == 1
expect not page A:buf maybe_dma_pinned
expect reports leak == 0
)";
    RunSummary r = run(text);
    ASSERT_EQ(r.results.size(), 1u);
    EXPECT_EQ(r.results[0].verdict, Verdict::Pass) << verdicts(r);
    EXPECT_EQ(r.results[0].title, "R/O pin, then fork");
    EXPECT_EQ(r.exit_status(), 0);
}

TEST(ScenarioRun, FailedExpectationIsLocatedWithExpectedAndGot) {
    RunSummary r = run(std::string(kSmall) + "task A\nA: buf = mmap 4K rw private anon\nn = pin_user_pages_fast buf 1 0 -> P\n"
                                             "expect n == 2\nunpin_user_pages P\n");
    ASSERT_EQ(r.results.size(), 1u);
    EXPECT_EQ(r.results[0].verdict, Verdict::Fail);
    EXPECT_EQ(r.results[0].reason, "5:10: expectation failed: expected 2, got 1") << verdicts(r);
    EXPECT_NE(r.results[0].detail.find("    5 | expect n == 2\n      |          ^"), std::string::npos) << r.results[0].detail;
    EXPECT_EQ(r.exit_status(), 1);
}

TEST(ScenarioRun, ErrnoNamesInMessages) {
    // An unmapped address: GUP-fast falls back to the slow path, which finds
    // no VMA (-EFAULT, check_vma_flags()/vma_lookup() in __get_user_pages()).
    RunSummary ok = run(std::string(kSmall) + "task A\nn = pin_user_pages_fast 0x10000 1 0 -> P\nexpect n == -EFAULT\n");
    EXPECT_EQ(ok.results.at(0).verdict, Verdict::Pass) << verdicts(ok);
    RunSummary bad = run(std::string(kSmall) + "task A\nn = pin_user_pages_fast 0x10000 1 0 -> P\nexpect n == -ENOMEM\n");
    EXPECT_EQ(bad.results.at(0).reason, "4:10: expectation failed: expected -12 (-ENOMEM), got -14 (-EFAULT)");
}

TEST(ScenarioRun, NotAndOrderingAndContains) {
    RunSummary r = run(std::string(kSmall) + R"(task A
A: buf = mmap 4K rw shared anon
write buf "abc"
expect not A: read buf 3 == "xyz"
expect vmstat nr_foll_pin_acquired < 1
expect pte A:buf contains "present"
expect not pte A:buf contains "nonsense"
expect page A:buf mapped
expect not page A:buf+4K mapped
)");
    EXPECT_EQ(r.results.at(0).verdict, Verdict::Pass) << verdicts(r);
    RunSummary f = run(std::string(kSmall) + "task A\nA: buf = mmap 4K rw shared anon\nexpect not page A:buf mapped\n");
    EXPECT_EQ(f.results.at(0).verdict, Verdict::Pass) << verdicts(f);  // never touched: nothing mapped yet
    RunSummary g = run(std::string(kSmall) + "task A\nA: buf = mmap 4K rw shared anon\nexpect page A:buf mapped\n");
    EXPECT_EQ(g.results.at(0).reason, "4:8: expectation failed: expected true, got false") << verdicts(g);
}

TEST(ScenarioRun, LeakedPinIsAnUnexpectedReportUnlessDeclared) {
    // A pin never released: the tracker reports "leak" when the task exits
    // (kapi.h pin tracker block); undeclared, the scenario fails.
    const std::string base = std::string(kSmall) + "task A\nA: buf = mmap 4K rw private anon\nn = pin_user_pages_fast buf 1 FOLL_WRITE -> P\n";
    RunSummary leak = run(base);
    EXPECT_EQ(leak.results.at(0).verdict, Verdict::Fail);
    EXPECT_NE(leak.results.at(0).reason.find("unexpected report(s) of kind leak"), std::string::npos) << verdicts(leak);
    RunSummary declared = run(base + "exit A\nexpect reports leak == 1\n");
    EXPECT_EQ(declared.results.at(0).verdict, Verdict::Pass) << verdicts(declared);
    RunSummary allowed = run(base + "allow reports leak\n");
    EXPECT_EQ(allowed.results.at(0).verdict, Verdict::Pass) << verdicts(allowed);
    // Looked at too early: the leak arrives after the expectation.
    RunSummary early = run(base + "expect reports leak == 0\n");
    EXPECT_EQ(early.results.at(0).verdict, Verdict::Fail) << verdicts(early);
}

TEST(ScenarioRun, MatrixExpansionsAreNamedAndRunEach) {
    RunSummary r = run(std::string(kSmall) + R"(matrix share = private | shared
matrix backing = anon | memfd
task A
A: buf = mmap 4K rw ${share} ${backing}
expect buf > 0
skip if "${share}" == "private" "only shared mappings"
write buf "x"
fork A -> B
A: write buf "y"
expect B: read buf 1 == "y"
)");
    ASSERT_EQ(r.results.size(), 4u);
    EXPECT_EQ(r.results[0].name, "t.pin[share=private,backing=anon]");
    EXPECT_EQ(r.results[3].name, "t.pin[share=shared,backing=memfd]");
    EXPECT_EQ(r.results[0].verdict, Verdict::Skip);
    EXPECT_EQ(r.results[0].reason, "only shared mappings");
    EXPECT_EQ(r.results[2].verdict, Verdict::Pass) << verdicts(r);
    EXPECT_EQ(r.results[3].verdict, Verdict::Pass) << verdicts(r);
    EXPECT_EQ(r.skipped, 2);
    EXPECT_EQ(r.exit_status(), 0);
}

TEST(ScenarioRun, BadInputIsAnErrorWithStatus2) {
    RunSummary r = run("task A\nfork A B\n");
    ASSERT_EQ(r.results.size(), 1u);
    EXPECT_EQ(r.results[0].verdict, Verdict::Error);
    EXPECT_EQ(r.exit_status(), 2);
    EXPECT_EQ(r.results[0].reason, "2:8: expected '->' and the child's name, got 'B'");
}

TEST(ScenarioRun, RuntimeLimitsFailTheStepNotTheRunner) {
    // Out-of-range index, oversized pages[] and reads: a located failure, no
    // allocation of that size.
    RunSummary idx = run(std::string(kSmall) +
                         "task A\nA: buf = mmap 4K rw private anon\nn = get_user_pages_fast buf 1 0 -> P\nput_page P[1]\n");
    EXPECT_EQ(idx.results.at(0).verdict, Verdict::Fail);
    EXPECT_EQ(idx.results.at(0).reason, "5:12: index 1 out of range: P holds 1 page(s)") << verdicts(idx);
    RunSummary big = run(std::string(kSmall) + "task A\nn = pin_user_pages_fast 0 0x7fffffff 0 -> P\n");
    EXPECT_NE(big.results.at(0).reason.find("nr_pages 2147483647 does not fit"), std::string::npos) << verdicts(big);
    RunSummary neg = run(std::string(kSmall) + "task A\nn = get_user_pages 0 -1 0 -> P\n");
    EXPECT_NE(neg.results.at(0).reason.find("nr_pages -1 does not fit"), std::string::npos) << verdicts(neg);
    // Without `-> P` the kernel judges the call alone. get_user_pages() with
    // no pages[] takes no references (__get_user_pages_locked() adds FOLL_GET
    // only with pages) and faults: nothing is mapped at 0, -EFAULT.
    // pin_user_pages() must have pages (is_valid_gup_args(): WARN, returns 0).
    RunSummary nopages = run(std::string(kSmall) + "task A\nn = get_user_pages 0 -1 0\nexpect n == -EFAULT\n"
                                                   "n = pin_user_pages 0 -1 0\nexpect n == 0\n"
                                                   "expect reports warn == 1\n");
    EXPECT_EQ(nopages.results.at(0).verdict, Verdict::Pass) << verdicts(nopages);
    RunSummary range = run(std::string(kSmall) + "task A\nA: b = mmap 4K rw private anon\n"
                                                 "n = pin_user_pages_fast b 1 FOLL_WRITE -> P\n"
                                                 "unpin_user_page_range_dirty_lock P[0] 1G dirty\n");
    EXPECT_NE(range.results.at(0).reason.find("5:39: 1073741824 pages from pfn"), std::string::npos) << verdicts(range);
    RunSummary rd = run(std::string(kSmall) + "task A\nx = read 0 1T\n");
    EXPECT_NE(rd.results.at(0).reason.find("at most 1048576"), std::string::npos) << verdicts(rd);
    // A mapping far beyond RAM is the kernel's business: mmap() succeeds
    // (MAP_POPULATE's failure is not mmap's, as in do_mmap()/mm_populate()),
    // MADV_POPULATE_WRITE runs out of memory (-ENOMEM, madvise_populate()).
    RunSummary huge = run(std::string(kSmall) + "task A\nx = mmap 1T rw private anon noreserve\nexpect x > 0\n"
                                                "expect madvise x 1T MADV_POPULATE_WRITE == -ENOMEM\n");
    EXPECT_EQ(huge.results.at(0).verdict, Verdict::Pass) << verdicts(huge);
}

TEST(ScenarioRun, ConfigOverridesWinOverTheScenario) {
    // FOLL_SAME_FILE is refused (WARN, -EINVAL) unless gup.foll_same_file=on.
    const std::string text = std::string(kSmall) + R"(task A
A: buf = mmap 4K rw private anon
A: n = pin_user_pages buf 1 FOLL_SAME_FILE -> P
expect n == 1
unpin_user_pages P
)";
    RunSummary off = run(text);
    EXPECT_EQ(off.results.at(0).verdict, Verdict::Fail) << verdicts(off);
    RunSummary on = run(text, "gup.foll_same_file=on");
    EXPECT_EQ(on.results.at(0).verdict, Verdict::Pass) << verdicts(on);
}

TEST(ScenarioRun, RemoteGupUsesTheTaskPrefixMm) {
    RunSummary r = run(std::string(kSmall) + R"(task A, B
A: buf = mmap 4K rw private anon
A: write buf "remote"
B: n = pin_user_pages_remote buf 1 0 -> P
expect n == -EFAULT
A: n = pin_user_pages_remote buf 1 0 -> P
expect n == 1
expect device_read P[0] 0 6 == "remote"
unpin_user_page P[0]
)");
    EXPECT_EQ(r.results.at(0).verdict, Verdict::Pass) << verdicts(r);
}


TEST(ScenarioRun, EveryCoreCommandRuns) {
    // One scenario through every core command, each line with the upstream
    // rule it relies on; GET references dropped with put_page(), pins with
    // the unpin_*() family (include/linux/mm.h), so nothing is reported.
    RunSummary r = run(R"(config ram=256M hugetlb_2m=0 hugetlb_1g=0
task A
A: b = mmap 16K rw private anon
expect mprotect b 4K r == 0
expect A: write b "x" == -EFAULT  # a store to a PROT_READ page: SIGSEGV (do_user_addr_fault -> bad_area)
expect write b+4K "y" == 1
expect madvise b+4K 4K MADV_DONTNEED == 0
expect A: read b+4K 1 == "\0"  # MADV_DONTNEED on private anon: zero-fill on next touch (zap_page_range_single)
expect memset b+8K 0x41 4 == 4
expect read b+8K 4 == "AAAA"
p0 = page A:b+8K pfn
expect migrate b+8K == 0
expect page A:b+8K pfn != p0  # move_pages()-style migration: a new frame (migrate_folio)
r = mremap b+4K 12K 24K MREMAP_MAYMOVE
expect r > 0
expect read r+4K 4 == "AAAA"  # mremap moves the page tables with the data (move_page_tables)
expect munmap r 24K == 0
expect not page A:r+4K mapped
f = open "ext4" 8K
expect pwrite f 0 "disk" == 4
expect pread f 0 4 == "disk"
expect read_disk f 0 4 == "\0\0\0\0"  # pwrite() dirties the page cache only
expect fsync f == 0
expect read_disk f 0 4 == "disk"  # fsync() writes it back (filemap_write_and_wait_range)
expect ftruncate f 4K == 0
A: m = mmap 4K rw shared file f
expect A: read m 4 == "disk"
n = get_user_pages_fast_only m 1 0 -> G
expect n == 1
get_page G[0]
put_page G[0]
put_page G
n = pin_user_pages_unlocked m 1 FOLL_WRITE -> P
expect n == 1
set_page_dirty_lock P[0]
unpin_user_page_range_dirty_lock P[0] 1 dirty
n = get_user_pages_unlocked m 1 0 -> G2
expect n == 1
put_page G2
n = pin_user_pages m 1 0 -> P2
expect n == 1
unpin_folio P2[0]
n = get_user_pages m 1 0 -> G3
put_page G3
A: n = get_user_pages_remote m 1 0 -> G4
put_page G4
expect compact >= 0
expect invariants
expect pins == 0
expect reports == 0
)");
    EXPECT_EQ(r.results.at(0).verdict, Verdict::Pass) << verdicts(r);
}


TEST(ScenarioRun, MoreEntryPoints) {
    // get_dump_page(): a never-touched anonymous page is a hole (NULL), a
    // written one is returned with a reference. fixup_user_fault() maps the
    // page as a write fault would; no VMA: -EFAULT. Large folios count extra
    // pins from folio_add_pin()/folio_add_pins() in _pincount and
    // unpin_user_folio() drops N of them (mm/gup.c).
    RunSummary r = run(R"(config ram=256M hugetlb_2m=2 hugetlb_1g=0
task A
A: b = mmap 8K rw private anon
expect get_dump_page b -> D == 0
write b "core"
expect get_dump_page b -> D == 1
expect device_read D[0] 0 4 == "core"
put_page D
expect fixup_user_fault b+4K FAULT_FLAG_WRITE == 0
expect page A:b+4K mapped
expect fixup_user_fault 0x1000 FAULT_FLAG_WRITE == -EFAULT
A: h = mmap 2M rw private hugetlb
write h "x"
n = pin_user_pages_fast h 1 FOLL_WRITE -> P
folio_add_pin P[0]
expect folio_add_pins P[0] 2 == 0
expect page P[0] pincount == 4
unpin_user_folio P[0] 3
expect page P[0] pincount == 1
unpin_user_pages P
expect page A:h pincount == 0
)");
    EXPECT_EQ(r.results.at(0).verdict, Verdict::Pass) << verdicts(r);
}

TEST(ScenarioRun, PutUserPagesOnlyInTheirEra) {
    // put_user_pages_dirty_lock() (v5.3-v5.5) is put_page() after
    // set_page_dirty_lock(); in later eras it WARNs and releases nothing
    // (include/pinlab/kapi.h, seed 004), so the GET references stay.
    const std::string text = R"(config ram=256M hugetlb_2m=0 hugetlb_1g=0
task A
A: b = mmap 8K rw private anon
write b "x"
write b+4K "y"
n = get_user_pages_fast b 2 FOLL_WRITE -> G
expect n == 2
put_user_pages_dirty_lock G dirty
expect page A:b dirty
expect page A:b refcount == 1
)";
    RunSummary old = run(text, "era=v5.5");
    EXPECT_EQ(old.results.at(0).verdict, Verdict::Pass) << verdicts(old);
    RunSummary now = run(text, "era=current");
    EXPECT_EQ(now.results.at(0).verdict, Verdict::Fail) << verdicts(now);
}

// `page T:ADDR exclusive` is pagemap's PM_MMAP_EXCLUSIVE. Under a PMD,
// pagemap_pmd_range() (fs/proc/task_mmu.c, since v6.15) asks
// __folio_page_mapped_exclusively() about the PMD's first page for every
// entry; under a PTE, about the page itself. After the child's COW of the
// first subpage (do_huge_pmd_wp_page() splits only the child's PMD), the
// parent's entries all read that first page (mapped by the parent's PMD
// alone), although the child's PTEs map the others too; the host agreed
// (examples/conform/regress_thp_cow_pagemap_exclusive.pin).
TEST(ScenarioRun, PagemapExclusiveUnderAPmdReadsItsFirstPage) {
    const std::string head = "config ram=256M hugetlb_2m=0 hugetlb_1g=0 thp=always\n"
                             "task A\nA: m = mmap 2M rw private anon\nA: write m \"a\"\nfork A -> B\n";
    struct Row {
        const char* writer;  // who writes, and where
        const char* check;   // the expectation
    };
    const Row rows[] = {
        {"B: write m \"b\"", "expect page A:m+4K exclusive"},        // A's PMD: first page, A's alone
        {"B: write m \"b\"", "expect page A:m+4K mapcount == 2"},    // the page itself: A's PMD, B's PTE
        {"B: write m \"b\"", "expect not page B:m+4K exclusive"},    // B's PTE: the page itself
        {"B: write m \"b\"", "expect page B:m exclusive"},           // B's copy
        {"B: write m+4K \"b\"", "expect not page A:m exclusive"},    // first page still B's too
        {"B: write m+4K \"b\"", "expect not page A:m+4K exclusive"}, // A's PMD reads the first page
        {"A: write m+4K \"b\"", "expect not page B:m+4K exclusive"}, // now B keeps the PMD
        {"A: write m \"b\"", "expect page B:m+4K exclusive"},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(std::string(r.writer) + " / " + r.check);
        RunSummary ok = run(head + r.writer + "\n" + r.check + "\n");
        ASSERT_EQ(ok.results.size(), 1u);
        EXPECT_EQ(ok.results[0].verdict, Verdict::Pass) << verdicts(ok);
    }
}

}  // namespace
}  // namespace pl::scenario::test
