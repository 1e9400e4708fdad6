// vmsplice() into a pipe (src/drivers/pipe_vmsplice.cpp): fs/splice.c
// vmsplice_to_pipe()/iter_to_pipe() take FOLL_GET references with
// get_user_pages_fast() and no FOLL_WRITE; fs/pipe.c pipe_read() copies out of
// the held pages and put_page()s each consumed buffer. The cow.c cases are
// CVE-2020-29374's setup.
#include <sys/mman.h>

#include <cerrno>
#include <string>
#include <vector>

#include "drivers/pipe_vmsplice.h"
#include "test_kernel.h"

namespace pl::test {
namespace {

class Vmsplice : public KernelTest {
protected:
    pl_pipe* pipe = nullptr;
    void SetUp() override {
        KernelTest::SetUp();
        pipe = pl_pipe_new(k);
        ASSERT_NE(pipe, nullptr);
    }
    void TearDown() override {
        pl_pipe_free(pipe);  // before the frame-leak check
        pipe = nullptr;
        KernelTest::TearDown();
    }
    int refcount(task_struct* task, unsigned long addr) { return page_ref_count(pg(task, addr)); }
    // A whole-page pattern, without put_str()'s terminating NUL.
    void fill(task_struct* task, unsigned long addr, const std::string& s) {
        ASSERT_EQ(pl_write(task, addr, s.data(), s.size()), static_cast<long>(s.size()));
    }
    std::string read_pipe(unsigned long n) {
        std::string s(n, '\0');
        long r = pl_pipe_read(pipe, s.data(), n);
        EXPECT_EQ(r, static_cast<long>(n));
        if (r < 0) return "";
        s.resize(static_cast<size_t>(r));
        return s;
    }
};

// iter_to_pipe(): one buffer and one page reference per page; pipe_read()
// copies out and drops the reference as each buffer empties.
TEST_F(Vmsplice, SplicesPagesAndReadDropsReferences) {
    const unsigned long a = map(2 * kPage);
    const std::string one(kPage, 'a'), two(kPage, 'b');
    fill(t, a, one);
    fill(t, a + kPage, two);
    const int before = refcount(t, a);
    // The splice runs as t whatever the thread's current is, and leaves
    // current as it found it.
    task_struct* other = pl_task_new(k);
    ASSERT_NE(other, nullptr);
    pl_set_current(other);
    EXPECT_EQ(pl_vmsplice(t, pipe, a + 100, 2 * kPage - 100), static_cast<long>(2 * kPage - 100));
    EXPECT_EQ(pl_current(), other);
    pl_set_current(nullptr);
    EXPECT_EQ(pl_pipe_nr_bufs(pipe), 2u);
    EXPECT_EQ(refcount(t, a), before + 1);
    EXPECT_EQ(refcount(t, a + kPage), before + 1);
    // FOLL_GET only: no pin was taken (nr_foll_pin_acquired stays put).
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), 0u);
    EXPECT_EQ(read_pipe(kPage - 100), one.substr(100));
    EXPECT_EQ(refcount(t, a), before);        // first buffer consumed: put_page()
    EXPECT_EQ(refcount(t, a + kPage), before + 1);
    EXPECT_EQ(read_pipe(10), two.substr(0, 10));  // partial read keeps the buffer
    EXPECT_EQ(refcount(t, a + kPage), before + 1);
    EXPECT_EQ(read_pipe(kPage - 10), two.substr(10));
    EXPECT_EQ(refcount(t, a + kPage), before);
    char c;
    EXPECT_EQ(pl_pipe_read(pipe, &c, 1), -EAGAIN);  // empty, O_NONBLOCK
}

// vmsplice_to_pipe(): up to PIPE_DEF_BUFFERS buffers, the rest left for the
// caller to retry; wait_for_space() on a full pipe is -EAGAIN (NONBLOCK).
TEST_F(Vmsplice, CapacityIsSixteenBuffers) {
    const unsigned long n = Pipe::kDefBuffers + 4;
    const unsigned long a = map(n * kPage);
    pl_memset(t, a, 'x', n * kPage);
    EXPECT_EQ(pl_vmsplice(t, pipe, a, n * kPage), static_cast<long>(Pipe::kDefBuffers * kPage));
    EXPECT_EQ(pl_pipe_nr_bufs(pipe), Pipe::kDefBuffers);
    EXPECT_EQ(pl_vmsplice(t, pipe, a, kPage), -EAGAIN);
    read_pipe(kPage);  // one slot free again
    EXPECT_EQ(pl_vmsplice(t, pipe, a + Pipe::kDefBuffers * kPage, 4 * kPage), static_cast<long>(kPage));
}

// Errors: unmapped memory is -EFAULT (gup_fast then the slow path find no
// VMA); PROT_NONE too (GUP refuses inaccessible VMAs); a partially mapped
// range splices the mapped prefix; bad handles are -EINVAL.
TEST_F(Vmsplice, Errors) {
    const unsigned long a = map(2 * kPage);
    pl_memset(t, a, 1, 2 * kPage);
    ASSERT_EQ(pl_munmap(t, a + kPage, kPage), 0);
    EXPECT_EQ(pl_vmsplice(t, pipe, a + kPage, kPage), -EFAULT);
    EXPECT_EQ(pl_vmsplice(t, pipe, a, 2 * kPage), static_cast<long>(kPage));
    const unsigned long none = map(kPage, PROT_NONE);
    EXPECT_EQ(pl_vmsplice(t, pipe, none, kPage), -EFAULT);
    EXPECT_EQ(pl_vmsplice(t, pipe, ~0UL - 10, 100), -EFAULT);
    EXPECT_EQ(pl_vmsplice(t, pipe, a, 0), 0);
    int bogus = 0;
    EXPECT_EQ(pl_vmsplice(nullptr, pipe, a, kPage), -EINVAL);
    EXPECT_EQ(pl_vmsplice(t, reinterpret_cast<pl_pipe*>(&bogus), a, kPage), -EINVAL);
    EXPECT_EQ(pl_pipe_read(reinterpret_cast<pl_pipe*>(&bogus), nullptr, 0), -EINVAL);
    EXPECT_EQ(pl_pipe_read(pipe, nullptr, 1), -EINVAL);
    EXPECT_EQ(pl_pipe_nr_bufs(pipe), 1u);
}

// cow.c case 3, "vmsplice() + unmap in child": the child splices the shared
// anonymous page read-only and unmaps it; the parent's later write must COW
// (the pipe's reference keeps do_wp_page() from reusing the page), so the
// pipe still reads what the page held at vmsplice() time (CVE-2020-29374).
TEST_F(Vmsplice, ChildPipeDoesNotSeeParentWrite) {
    const unsigned long a = map(kPage);
    const std::string old_data(kPage, 'o'), new_data(kPage, 'N');
    fill(t, a, old_data);
    task_struct* child = pl_fork(t);
    ASSERT_NE(child, nullptr);
    EXPECT_EQ(pl_vmsplice(child, pipe, a, kPage), static_cast<long>(kPage));
    ASSERT_EQ(pl_munmap(child, a, kPage), 0);
    page* spliced = pg(t, a);
    fill(t, a, new_data);
    EXPECT_NE(pg(t, a), spliced) << "the parent's write reused the page the pipe holds";
    std::string now(kPage, '\0');
    ASSERT_EQ(pl_read(t, a, now.data(), kPage), static_cast<long>(kPage));
    EXPECT_EQ(now, new_data);
    EXPECT_EQ(read_pipe(kPage), old_data);
}

// The same after a write in the child before splicing: the parent's page is
// unaffected either way, and the pipe holds the child's private copy.
TEST_F(Vmsplice, ChildCopyAfterOwnWrite) {
    const unsigned long a = map(kPage);
    fill(t, a, std::string(kPage, 'p'));
    task_struct* child = pl_fork(t);
    ASSERT_NE(child, nullptr);
    fill(child, a, std::string(kPage, 'c'));
    EXPECT_EQ(pl_vmsplice(child, pipe, a, kPage), static_cast<long>(kPage));
    fill(t, a, std::string(kPage, 'P'));
    EXPECT_EQ(read_pipe(kPage), std::string(kPage, 'c'));
}

// Pin tracker: the references are recorded as FOLL_GET taken by owner
// "vmsplice"; unpinning one (a driver mixing up its release) is reported
// with that owner and releases nothing.
TEST_F(Vmsplice, OwnerShowsInPinTracker) {
    const unsigned long a = map(kPage);
    pl_memset(t, a, 7, kPage);
    ASSERT_EQ(pl_vmsplice(t, pipe, a, kPage), static_cast<long>(kPage));
    page* p = pg(t, a);
    const int rc = page_ref_count(p);
    expect_reports("unpin_not_pinned", 1);
    unpin_user_page(p);
    EXPECT_EQ(page_ref_count(p), rc);
    ASSERT_EQ(pl_warning_count(k, "unpin_not_pinned"), 1);
    const std::string text = pl_warning_text(k, 0);
    EXPECT_NE(text.find("vmsplice"), std::string::npos) << text;
    EXPECT_EQ(pl_pin_balance(k, "vmsplice"), 0);
}

// Freeing a pipe with unread buffers drops their references
// (free_pipe_info()); the frames go back when the task exits.
TEST_F(Vmsplice, FreeReleasesUnreadBuffers) {
    const unsigned long a = map(3 * kPage);
    pl_memset(t, a, 3, 3 * kPage);
    const int before = refcount(t, a);
    ASSERT_EQ(pl_vmsplice(t, pipe, a, 3 * kPage), static_cast<long>(3 * kPage));
    EXPECT_EQ(refcount(t, a + 2 * kPage), before + 1);
    pl_pipe_free(pipe);
    pipe = pl_pipe_new(k);
    EXPECT_EQ(refcount(t, a + 2 * kPage), before);
}

}  // namespace
}  // namespace pl::test
