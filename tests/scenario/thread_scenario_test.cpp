// Threads in scenarios (`thread T of A`, pl_thread_new(): clone(CLONE_VM|
// CLONE_THREAD)) and the lock-dropping form of the remote GUP calls (`locked`:
// get_user_pages_remote()/pin_user_pages_remote() with int *locked). The
// rules the pass cases rely on are upstream's: threads share one mm (copy_mm()
// with CLONE_VM), exit_mm() of one thread is mmput(), and
// __get_user_pages_locked() with a caller's *locked == 1 may drop mmap_lock on
// VM_FAULT_RETRY (filemap_fault()'s major fault) and returns with *locked == 0.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "scenario_test_util.h"

namespace pl::scenario::test {
namespace {

constexpr const char* kSmall = "config ram=256M hugetlb_2m=0 hugetlb_1g=0\n";

Verdict verdict_of(const std::string& text) {
    RunSummary r = run(std::string(kSmall) + text);
    EXPECT_EQ(r.results.size(), 1u) << verdicts(r);
    return r.results.empty() ? Verdict::Error : r.results[0].verdict;
}

// One mm: a thread's write is the leader's read, both map one frame, and a
// pin taken as the thread is seen by the leader's reads.
TEST(ScenarioThreads, ThreadsShareWritesFramesAndPins) {
    const std::string text = R"(task A
thread T of A
A: buf = mmap 4K rw private anon
T: write buf "thread"
expect A: read buf 6 == "thread"
expect same_frame A:buf T:buf
T: n = pin_user_pages_fast buf 1 FOLL_WRITE -> P
expect n == 1
device_write P[0] 0 "dev"
expect A: read buf 3 == "dev"
expect page A:buf maybe_dma_pinned
T: unpin_user_pages P
expect not page T:buf maybe_dma_pinned
)";
    RunSummary r = run(std::string(kSmall) + text);
    ASSERT_EQ(r.results.size(), 1u);
    EXPECT_EQ(r.results[0].verdict, Verdict::Pass) << verdicts(r);
}

// The expectations do fail when the model does not share: a write by one
// thread read back as something else fails (the check is not vacuous).
TEST(ScenarioThreads, AWrongExpectationOnTheSharedMmFails) {
    EXPECT_EQ(verdict_of("task A\nthread T of A\nA: buf = mmap 4K rw private anon\nT: write buf \"x\"\n"
                         "expect A: read buf 1 == \"y\"\n"),
              Verdict::Fail);
    // Two processes (not threads) do not share: the same check on a forked
    // child's copy fails.
    EXPECT_EQ(verdict_of("task A\nA: buf = mmap 4K rw private anon\nA: write buf \"x\"\nfork A -> B\n"
                         "B: write buf \"y\"\nexpect A: read buf 1 == \"y\"\n"),
              Verdict::Fail);
}

// exit_mm() of a thread is mmput(): the address space stays for the leader,
// and the leader's exit leaves it to the thread. The end-of-run frame check
// passes only if the last exit freed it.
TEST(ScenarioThreads, ExitOfEitherKeepsTheMmForTheOther) {
    EXPECT_EQ(verdict_of("task A\nthread T of A\nA: buf = mmap 4K rw private anon\nA: write buf \"kept\"\n"
                         "exit T\nexpect A: read buf 4 == \"kept\"\n"),
              Verdict::Pass);
    EXPECT_EQ(verdict_of("task A\nthread T of A\nA: buf = mmap 4K rw private anon\nA: write buf \"kept\"\n"
                         "exit A\nexpect T: read buf 4 == \"kept\"\nT: write buf \"more\"\n"
                         "expect T: read buf 4 == \"more\"\n"),
              Verdict::Pass);
}

// fork from a thread copies the shared mm; the child's writes stay its own.
TEST(ScenarioThreads, ForkFromAThread) {
    EXPECT_EQ(verdict_of("task A\nthread T of A\nA: buf = mmap 4K rw private anon\nA: write buf \"p\"\n"
                         "fork T -> C\nexpect C: read buf 1 == \"p\"\nC: write buf \"c\"\n"
                         "expect A: read buf 1 == \"p\"\nexpect T: read buf 1 == \"p\"\n"
                         "expect not same_frame C:buf A:buf\n"),
              Verdict::Pass);
}

// A pin a thread's own GUP took, still held at its exit, is its leak.
TEST(ScenarioThreads, PinHeldAtAThreadsExitIsALeak) {
    const std::string base =
        "task A\nthread T of A\nA: buf = mmap 4K rw private anon\nA: write buf \"z\"\n"
        "T: n = pin_user_pages_fast buf 1 FOLL_WRITE -> P\nexit T\n";
    EXPECT_EQ(verdict_of(base + "expect reports leak == 1\nexpect A: read buf 1 == \"z\"\n"), Verdict::Pass);
    // Unlooked-at, the report fails the scenario.
    EXPECT_EQ(verdict_of(base), Verdict::Fail);
}

// `locked`: a major fault on an uncached file page drops mmap_lock for the
// I/O (VM_FAULT_RETRY), so *locked comes back 0; a populated anonymous page
// needs no fault and the lock stays (1).
TEST(ScenarioThreads, RemoteGupLockedReportsTheDroppedLock) {
    EXPECT_EQ(verdict_of("task A\nA: f = mmap 4K rw shared file ext4:4K\n"
                         "A: r = get_user_pages_remote f 1 0 locked -> G\nexpect r == 1\nexpect locked == 0\n"
                         "put_page G[0]\n"),
              Verdict::Pass);
    EXPECT_EQ(verdict_of("task A\nA: buf = mmap 4K rw private anon populate\n"
                         "A: r = pin_user_pages_remote buf 1 FOLL_WRITE locked -> P\nexpect r == 1\n"
                         "expect locked == 1\nunpin_user_pages P\n"),
              Verdict::Pass);
    // And the dropped-lock case is told apart: expecting 1 there fails.
    EXPECT_EQ(verdict_of("task A\nA: f = mmap 4K rw shared file ext4:4K\n"
                         "A: r = get_user_pages_remote f 1 0 locked -> G\nput_page G[0]\nexpect locked == 1\n"),
              Verdict::Fail);
    // A thread's remote call works on the shared mm.
    EXPECT_EQ(verdict_of("task A\nthread T of A\nA: f = mmap 4K rw shared file ext4:4K\n"
                         "T: r = pin_user_pages_remote f 1 FOLL_WRITE locked -> P\nexpect r == 1\n"
                         "expect locked == 0\nexpect page A:f maybe_dma_pinned\nunpin_user_pages P\n"),
              Verdict::Pass);
}

// Declaration errors are located and say what was expected.
TEST(ScenarioThreads, BadThreadLinesAreLocatedErrors) {
    struct Case {
        const char* text;
        const char* want;
    } cases[] = {
        {"task A\nthread T A\n", "t.pin:2:10: expected 'of'"},
        {"task A\nthread T of B\n", "t.pin:2:13: unknown task 'B'"},
        {"task A\nthread A of A\n", "t.pin:2:8: task 'A' already exists"},
        {"task A\nthread\n", "t.pin:2:7: expected a thread name"},
        {"task A\nthread T of A\nexit T\nT: write 0 \"x\"\n", "t.pin:4:1: task 'T' has exited"},
        {"task A\nthread fork of A\n", "t.pin:2:8: 'fork' is a reserved word"},
        {"task A\nthread T of A extra\n", "t.pin:2:15: expected the end of the line"},
        {"task A\nexpect locked == 0\n", "t.pin:2:8:"},
        {"task A\nA: b = mmap 4K rw private anon\nA: get_user_pages b 1 0 locked\n", "t.pin:3:"},
    };
    for (const Case& c : cases) {
        const std::string err = parse_error(c.text);
        EXPECT_EQ(err.rfind(c.want, 0), 0u) << "input:\n" << c.text << "got: " << err;
    }
    EXPECT_EQ(parse_error("task A\nthread T of A\nT: b = mmap 4K rw private anon\nexit T\nA: write b \"x\"\n"), "");
}

// The tutorial's thread scenario passes as written.
TEST(ScenarioThreads, TutorialPasses) {
    std::ifstream in(std::string(PINLAB_EXAMPLES_DIR) + "/tutorial/10_threads.pin");
    ASSERT_TRUE(in.good());
    std::stringstream ss;
    ss << in.rdbuf();
    RunSummary r = run(ss.str());
    ASSERT_EQ(r.results.size(), 1u);
    EXPECT_EQ(r.results[0].verdict, Verdict::Pass) << verdicts(r);
}

}  // namespace
}  // namespace pl::scenario::test
