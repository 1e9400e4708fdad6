// `if COND: STATEMENT` (one guarded statement), `clear_refs` and `fallocate`:
// what the cow.c / gup_longterm.c scenarios (examples/selftests) need to pick
// a memory type's setup steps from a matrix value and to set their memory up
// as the selftests do. The kernel answers the pass cases rely on:
// clear_refs 4 write-protects the PTEs (clear_soft_dirty() in
// fs/proc/task_mmu.c), so mprotect(RW) does not map an exclusive anonymous
// page writable again (can_change_pte_writable() refuses while soft-dirty
// tracking is armed); fallocate() on a hugetlb memfd puts the page in the page
// cache, so a read fault in a MAP_PRIVATE mapping maps that page instead of
// allocating an anonymous one (hugetlb_no_page()).
#include <gtest/gtest.h>

#include "scenario_test_util.h"

namespace pl::scenario::test {
namespace {

constexpr const char* kSmall = "config ram=256M hugetlb_2m=2 hugetlb_1g=0\n";

TEST(ScenarioGuard, RunsTheStatementOnlyWhenTheConditionHolds) {
    // Each expansion runs exactly its own guarded lines: the `size` each one
    // ends with, and the failing expectation guarded by a false condition
    // (a wrong value on purpose) never runs.
    RunSummary r = run(std::string(kSmall) + R"(matrix mem = small | large
task A
size = 4K
if "${mem}" == "large": size = 8K
buf = mmap size rw private anon
if "${mem}" == "small": expect size == 4K
if "${mem}" == "large": expect size == 8K
if "${mem}" == "nothing": expect size == 12345
if size == 8K: write buf+4K "x"
if size == 8K: expect page A:buf+4K mapped
if size == 4K: expect not page A:buf+4K mapped
)");
    ASSERT_EQ(r.results.size(), 2u);
    EXPECT_EQ(r.results[0].verdict, Verdict::Pass) << verdicts(r);
    EXPECT_EQ(r.results[1].verdict, Verdict::Pass) << verdicts(r);

    // A guarded expectation whose condition holds is checked.
    RunSummary f = run(std::string(kSmall) + "task A\nx = 1\nif x == 1: expect x == 2\n");
    ASSERT_EQ(f.results.size(), 1u);
    EXPECT_EQ(f.results[0].verdict, Verdict::Fail) << verdicts(f);
    EXPECT_NE(f.results[0].detail.find("t.pin:4:21:"), std::string::npos) << verdicts(f);
}

TEST(ScenarioGuard, GuardsForkExitSkipAndTaskPrefixes) {
    const std::string body = R"(task A
A: buf = mmap 4K rw private anon
A: write buf "a"
if flag == 1: fork A -> C
if flag == 1: C: write buf "c"
if flag == 1: expect C: read buf 1 == "c"
if flag == 1: exit C
expect A: read buf 1 == "a"
if flag == 2: skip "flag two"
)";
    RunSummary one = run(std::string(kSmall) + "task Z\nflag = 1\n" + body);
    EXPECT_EQ(one.results.at(0).verdict, Verdict::Pass) << verdicts(one);
    RunSummary none = run(std::string(kSmall) + "task Z\nflag = 0\n" + body);
    EXPECT_EQ(none.results.at(0).verdict, Verdict::Pass) << verdicts(none);
    RunSummary two = run(std::string(kSmall) + "task Z\nflag = 2\n" + body);
    EXPECT_EQ(two.results.at(0).verdict, Verdict::Skip) << verdicts(two);
    EXPECT_EQ(two.results.at(0).reason, "flag two");
}

TEST(ScenarioGuard, MalformedGuardsAreLocated) {
    const struct {
        const char* text;
        const char* where;
        const char* message;
    } cases[] = {
        {"task A\nif", "2:3", "expected a condition after 'if'"},
        {"task A\nif 1 == 1 expect 1 == 1", "2:11", "expected ':' and a statement"},
        {"task A\nif 1 == 1:", "2:11", "expected a statement after 'if CONDITION:'"},
        {"task A\nif 1 == 1: if 1 == 1: expect 1 == 1", "2:12", "expected an operation"},
        {"task A\nif 1 == 1: config era=v6.5", "2:12", "expected an operation"},
        {"task A\nif y == 1: expect 1 == 1", "2:4", "unknown variable 'y'"},
    };
    for (const auto& c : cases) {
        const std::string err = parse_error(c.text);
        EXPECT_EQ(err.rfind(std::string("t.pin:") + c.where + ": ", 0), 0u) << c.text << "\n -> " << err;
        EXPECT_NE(err.find(c.message), std::string::npos) << c.text << "\n -> " << err;
    }
}

TEST(ScenarioGuard, ClearRefsKeepsAnExclusivePageReadOnlyAcrossMprotect) {
    // cow.c's "R/O-mapped exclusive page" setup: without clear_refs, mprotect(RW)
    // maps the exclusive anonymous page writable at once; with it, it stays R/O.
    const std::string setup = std::string(kSmall) + R"(task A
buf = mmap 4K rw private anon
write buf "x"
mprotect buf 4K r
)";
    RunSummary without = run(setup + "mprotect buf 4K rw\nexpect pte A:buf contains \"write\"\n");
    EXPECT_EQ(without.results.at(0).verdict, Verdict::Pass) << verdicts(without);
    RunSummary with = run(setup + "r = clear_refs 4\nexpect r == 0\nmprotect buf 4K rw\n"
                                  "expect not pte A:buf contains \"write\"\nexpect page A:buf anon_exclusive\n");
    EXPECT_EQ(with.results.at(0).verdict, Verdict::Pass) << verdicts(with);
}

TEST(ScenarioGuard, FallocateFillsThePageCacheBeforeAPrivateFault) {
    // hugetlb_no_page(): a read fault in a MAP_PRIVATE mapping of a hole
    // allocates an anonymous huge page; after fallocate() it maps the file's.
    const std::string open = std::string(kSmall) + "task A\nf = open \"memfd-hugetlb\" 2M\n";
    const std::string maps = R"(mem = mmap 2M rw private file f
smem = mmap 2M r shared file f
read mem 1
read smem 1
)";
    RunSummary hole = run(open + maps + "expect not same_frame A:mem A:smem\n");
    EXPECT_EQ(hole.results.at(0).verdict, Verdict::Pass) << verdicts(hole);
    RunSummary filled = run(open + "r = fallocate f 0 2M\nexpect r == 0\n" + maps +
                            "expect same_frame A:mem A:smem\nexpect not page A:mem anon\n");
    EXPECT_EQ(filled.results.at(0).verdict, Verdict::Pass) << verdicts(filled);
}

}  // namespace
}  // namespace pl::scenario::test
