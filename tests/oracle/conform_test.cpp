// Tests of `pinlab conform`'s engine (src/oracle/conform.h): scenarios run in
// the model and on this machine's kernel in lock step. Each case is built so
// that the outcome follows from a rule of Linux (cited) or of the comparison
// itself (docs/SCENARIOS.md, "pinlab conform"); what the machine cannot do
// (io_uring, root) skips with why.
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "oracle/conform.h"

namespace pl::oracle {
namespace {

class ConformTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        auto s = HostSession::create();
        ASSERT_TRUE(s.ok()) << "HostSession::create: " << std::strerror(s.error().errnum);
        session_ = std::move(s).value().release();
        (void)session_->acquire_host();
    }
    static void TearDownTestSuite() {
        session_->restore_knobs();
        session_->release_host();
        delete session_;
        session_ = nullptr;
    }

    // The one result of a scenario without matrix lines.
    ConformResult run(const std::string& text) {
        auto rs = conform_text("t.pin", text, *session_, {});
        EXPECT_EQ(rs.size(), 1u);
        return rs.empty() ? ConformResult{} : rs[0];
    }
    static std::string show(const ConformResult& r) {
        return std::string(conform_status_name(r.status)) + ": " + r.reason + " [model " +
               std::string(scenario::verdict_name(r.model_verdict)) + ": " + r.model_reason + "; kernel " +
               r.kernel_outcome + "]";
    }
    bool io_uring() const { return session_->caps().io_uring; }
    bool root() const { return session_->caps().root; }

    static HostSession* session_;
};

HostSession* ConformTest::session_ = nullptr;

constexpr const char* kHead = "config ram=256M hugetlb_2m=0 hugetlb_1g=0 thp=madvise\ntask A\n";

// Fork shares private anonymous pages until one side writes
// (copy_present_pte() write-protects both; do_wp_page() copies): every
// observation agrees, PFNs included when root.
TEST_F(ConformTest, ForkAndCowAgree) {
    const std::string text = std::string(kHead) +
                             "buf = mmap 8K rw private anon\n"
                             "write buf \"hello\"\n"
                             "fork A -> B\n"
                             "expect page A:buf mapped\n"
                             "expect not page A:buf exclusive\n"
                             "expect same_frame A:buf B:buf\n"
                             "B: write buf \"child\"\n"
                             "expect not same_frame A:buf B:buf\n"
                             "expect page B:buf exclusive\n"
                             "expect A: read buf 5 == \"hello\"\n"
                             "expect B: read buf 5 == \"child\"\n"
                             "expect not page A:buf+4K mapped\n"
                             "exit B\n"
                             "expect page A:buf exclusive\n";
    const ConformResult r = run(text);
    EXPECT_EQ(r.status, ConformStatus::agree) << show(r);
    EXPECT_EQ(r.kernel_outcome, "PASS") << show(r);
    // Every expect and every command result was compared, not taken.
    EXPECT_GE(r.compared, 14) << show(r);
    if (root()) {
        EXPECT_EQ(r.model_only_checks, 0) << show(r);
    }
}

// A CPU load from PROT_NONE memory faults on both sides (the host's process
// takes SIGSEGV; pl_read() returns -EFAULT).
TEST_F(ConformTest, FaultsAgree) {
    const ConformResult r = run(std::string(kHead) +
                                "buf = mmap 4K none private anon\n"
                                "x = read buf 4\n"
                                "expect x == -EFAULT\n"
                                "expect write buf \"a\" == -EFAULT\n"
                                "expect munmap buf+1 4K == -EINVAL\n");
    EXPECT_EQ(r.status, ConformStatus::agree) << show(r);
}

// The model's RAM is its own (`ram` is not mapped to the host): populating
// more than it has fails in the model (-ENOMEM from MAP_POPULATE's
// __mm_populate) and succeeds on the host, and conform names the line.
TEST_F(ConformTest, DifferenceIsLocated) {
    const ConformResult r = run("config ram=64M hugetlb_2m=0 hugetlb_1g=0 thp=madvise\n"
                                "task A\n"
                                "buf = mmap 32M rw private anon\n"
                                "r = madvise buf 32M MADV_POPULATE_WRITE\n"
                                "r2 = madvise buf 32M MADV_POPULATE_WRITE\n"
                                "big = mmap 128M rw private anon\n"
                                "r3 = madvise big 128M MADV_POPULATE_WRITE\n");
    ASSERT_EQ(r.status, ConformStatus::disagree) << show(r);
    EXPECT_EQ(r.first_difference.loc.line, 7) << show(r);
    EXPECT_EQ(r.first_difference.kernel, "0") << show(r);
    EXPECT_NE(r.first_difference.model, "0") << show(r);
    EXPECT_NE(r.reason.find("line 7"), std::string::npos) << show(r);
}

// A raw GUP call has no door on the host: the host side stops there and the
// scenario is model-only from that line, while the model runs to the end.
TEST_F(ConformTest, RawGupIsModelOnly) {
    const ConformResult r = run(std::string(kHead) +
                                "buf = mmap 4K rw private anon\n"
                                "write buf \"x\"\n"
                                "n = pin_user_pages_fast buf 1 FOLL_WRITE -> P\n"
                                "expect n == 1\n"
                                "unpin_user_pages P\n");
    EXPECT_EQ(r.status, ConformStatus::model_only) << show(r);
    EXPECT_NE(r.reason.find("line 5"), std::string::npos) << show(r);
    EXPECT_NE(r.reason.find("raw GUP"), std::string::npos) << show(r);
    EXPECT_EQ(r.model_verdict, scenario::Verdict::Pass) << show(r);
    EXPECT_EQ(r.host_steps, 3) << show(r);  // task, mmap, write, and nothing after
}

// Historical eras and architecture switches are the model's alone.
TEST_F(ConformTest, ConfigWithoutCounterpartIsModelOnly) {
    ConformResult r = run("config era=v5.8 ram=64M hugetlb_2m=0 hugetlb_1g=0\ntask A\nbuf = mmap 4K rw private anon\n");
    EXPECT_EQ(r.status, ConformStatus::model_only) << show(r);
    EXPECT_NE(r.reason.find("era v5.8"), std::string::npos) << show(r);
    EXPECT_EQ(r.host_steps, 0);
    r = run("config arch.pte_special=off ram=64M hugetlb_2m=0 hugetlb_1g=0\ntask A\n");
    EXPECT_EQ(r.status, ConformStatus::model_only) << show(r);
}

// A `skip` line skips both sides; a failed expectation on both is the
// model's failure (the scenario is wrong, or upstream changed).
TEST_F(ConformTest, SkipAndModelFail) {
    ConformResult r = run(std::string(kHead) + "buf = mmap 4K rw private anon\nskip if buf > 0 \"why not\"\n");
    EXPECT_EQ(r.status, ConformStatus::skipped) << show(r);
    EXPECT_NE(r.reason.find("why not"), std::string::npos) << show(r);
    r = run(std::string(kHead) + "buf = mmap 4K rw private anon\nexpect read buf 1 == \"z\"\n");
    EXPECT_EQ(r.status, ConformStatus::model_fail) << show(r);
    EXPECT_EQ(r.model_verdict, scenario::Verdict::Fail);
}

// A bad scenario is an error with the located diagnostic, and nothing runs.
TEST_F(ConformTest, ParseErrorIsLocated) {
    const ConformResult r = run("task A\nfork A B\n");
    EXPECT_EQ(r.status, ConformStatus::error) << show(r);
    EXPECT_NE(r.reason.find("t.pin:2:"), std::string::npos) << show(r);
}

// io_uring_register_buffers() pins with FOLL_WRITE|FOLL_LONGTERM
// (io_sqe_buffer_register()): nr_foll_pin_acquired moves by the pages
// pinned, released by as many at unregister, pinned_vm (VmPin) by the
// pages accounted; WRITE_FIXED shows the device's view of the bytes.
TEST_F(ConformTest, IoUringCountersAgree) {
    if (!io_uring()) GTEST_SKIP() << "io_uring is not available here";
    if (!root()) GTEST_SKIP() << "the counters need /proc/sys/vm/stat_refresh (root)";
    const ConformResult r = run(std::string(kHead) +
                                "ring = io_uring_setup 4\n"
                                "f = open \"tmpfs\" 8K\n"
                                "buf = mmap 8K rw private anon\n"
                                "memset buf 0x5a 8K\n"
                                "expect io_uring_register_buffers ring buf 8K == 0\n"
                                "expect vmstat nr_foll_pin_acquired - vmstat nr_foll_pin_released == 2\n"
                                "expect pinned_vm == 2\n"
                                "expect io_uring_write_fixed ring f 0 buf 8K 0 == 8K\n"
                                "expect pread f 4K 4 == \"ZZZZ\"\n"
                                "expect io_uring_unregister_buffers ring == 0\n"
                                "expect vmstat nr_foll_pin_acquired == vmstat nr_foll_pin_released\n"
                                "io_uring_exit ring\n");
    EXPECT_EQ(r.status, ConformStatus::agree) << show(r);
    EXPECT_EQ(r.kernel_outcome, "PASS") << show(r);
}

// The host knobs a scenario sets (THP mode) are put back at the end of the run.
TEST_F(ConformTest, KnobsRestored) {
    if (!root()) GTEST_SKIP() << "setting THP needs root";
    auto read = [] {
        std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    };
    const std::string before = read();
    if (before.empty()) GTEST_SKIP() << "no THP here";
    const bool was_never = before.find("[never]") != std::string::npos;
    const ConformResult r = run(std::string("config ram=64M hugetlb_2m=0 hugetlb_1g=0 thp=") +
                                (was_never ? "always" : "never") + "\ntask A\nbuf = mmap 4K rw private anon\n");
    EXPECT_EQ(r.status, ConformStatus::agree) << show(r);
    session_->restore_knobs();
    EXPECT_EQ(read(), before);
}

}  // namespace
}  // namespace pl::oracle
