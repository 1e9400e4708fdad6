// Tests of the host processes of `pinlab conform` (src/oracle/host_process.h):
// real processes on this machine's kernel, so every expectation below is a
// rule of Linux itself, cited by the kernel function that makes it so.
// What the machine may not offer (root, THP, a file system) skips with why.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "oracle/host_channel.h"
#include "oracle/host_pagemap.h"
#include "oracle/host_process.h"

namespace pl::oracle {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t k2M = uint64_t{2} << 20;

using Clock = std::chrono::steady_clock;

// One session for the suite: forking a zygote and probing the host once.
class HostProcessTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        auto s = HostSession::create();
        ASSERT_TRUE(s.ok()) << "HostSession::create: " << std::strerror(s.error().errnum);
        session_ = std::move(s).value().release();
    }
    static void TearDownTestSuite() {
        delete session_;
        session_ = nullptr;
    }

    void SetUp() override { ASSERT_NE(session_, nullptr) << "no host session"; }

    HostSession& session() { return *session_; }

    std::unique_ptr<HostProcess> spawn() {
        auto p = session_->spawn();
        EXPECT_TRUE(p.ok()) << "spawn: " << (p.ok() ? "" : std::strerror(p.error().errnum));
        return p.ok() ? std::move(p).value() : nullptr;
    }

    // A private anonymous read-write mapping of len bytes in p.
    static uint64_t map_anon(HostProcess& p, uint64_t len, int flags = MAP_PRIVATE) {
        HostResult r = p.mmap(0, len, PROT_READ | PROT_WRITE, flags | MAP_ANONYMOUS, 0, 0);
        EXPECT_GT(r.ret, 0) << "mmap: " << std::strerror(static_cast<int>(-r.ret));
        return r.ret > 0 ? static_cast<uint64_t>(r.ret) : 0;
    }

    bool root() const { return session_->caps().root; }

    static HostSession* session_;
};

HostSession* HostProcessTest::session_ = nullptr;

bool pid_gone(pid_t pid) { return ::kill(pid, 0) == -1 && errno == ESRCH; }

// The pids whose parent is `parent` (field 4 of /proc/PID/stat), zombies included.
std::set<pid_t> children_of(pid_t parent) {
    std::set<pid_t> out;
    std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir("/proc"), ::closedir);
    if (!dir) return out;
    while (dirent* e = ::readdir(dir.get())) {
        const pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
        if (pid <= 0) continue;
        std::ifstream in(std::string("/proc/") + e->d_name + "/stat");
        std::string stat;
        std::getline(in, stat);
        auto close = stat.rfind(')');
        if (close == std::string::npos) continue;
        std::istringstream rest(stat.substr(close + 2));
        std::string state;
        pid_t ppid = 0;
        rest >> state >> ppid;
        if (ppid == parent) out.insert(pid);
    }
    return out;
}

// mmap/write/read round trip: stores through the page tables of the
// process are what its loads see (do_anonymous_page then the same PTE).
TEST_F(HostProcessTest, MmapWriteReadRoundTrip) {
    auto p = spawn();
    ASSERT_TRUE(p);
    const uint64_t a = map_anon(*p, 2 * kPage);
    ASSERT_NE(a, 0u);
    EXPECT_EQ(p->write(a + kPage - 2, "hello").ret, 5);  // straddles two pages
    HostResult r = p->read(a + kPage - 2, 5);
    EXPECT_EQ(r.ret, 5);
    EXPECT_EQ(r.bytes, "hello");
    EXPECT_EQ(p->memset(a, 'x', 3).ret, 3);
    EXPECT_EQ(p->read(a, 4).bytes, std::string("xxx\0", 4));  // a fresh anon page reads zero
    EXPECT_EQ(p->munmap(a, 2 * kPage).ret, 0);
}

// A load from PROT_NONE or from no VMA at all is SIGSEGV (do_user_addr_fault
// -> bad_area / access_error), which the CPU view reports as -EFAULT, as
// pl_read() does.
TEST_F(HostProcessTest, ReadOfProtNoneAndUnmappedIsEfault) {
    auto p = spawn();
    ASSERT_TRUE(p);
    const uint64_t a = map_anon(*p, 2 * kPage);
    ASSERT_NE(a, 0u);
    ASSERT_EQ(p->mprotect(a, kPage, PROT_NONE).ret, 0);
    HostResult r = p->read(a, 1);
    EXPECT_EQ(r.ret, -EFAULT);
    EXPECT_TRUE(r.bytes.empty());
    ASSERT_EQ(p->munmap(a + kPage, kPage).ret, 0);
    EXPECT_EQ(p->read(a + kPage, 8).ret, -EFAULT);
    EXPECT_EQ(p->write(a + kPage, "x").ret, -EFAULT);
    // The process survived its faults and still serves.
    EXPECT_EQ(p->mprotect(a, kPage, PROT_READ | PROT_WRITE).ret, 0);
    EXPECT_EQ(p->write(a, "ok").ret, 2);
}

// A store that faults part way leaves the pages before the faulting one
// written (the model's access_user() goes page by page the same way), and
// a store to a read-only page is SIGSEGV (access_error: !VM_WRITE).
TEST_F(HostProcessTest, PartialWriteStoresLeadingPages) {
    auto p = spawn();
    ASSERT_TRUE(p);
    const uint64_t a = map_anon(*p, 2 * kPage);
    ASSERT_NE(a, 0u);
    ASSERT_EQ(p->mprotect(a + kPage, kPage, PROT_READ).ret, 0);
    EXPECT_EQ(p->write(a + kPage - 4, "abcdefgh").ret, -EFAULT);
    EXPECT_EQ(p->read(a + kPage - 4, 4).bytes, "abcd");
    EXPECT_EQ(p->read(a + kPage, 4).bytes, std::string(4, '\0'));
    EXPECT_EQ(p->memset(a + kPage - 1, 'z', 2).ret, -EFAULT);
    EXPECT_EQ(p->read(a + kPage - 1, 1).bytes, "z");
}

// fork() shares a private anon page read-only (copy_present_pte clears the
// write bit, both map one frame) until a write copies it (do_wp_page ->
// wp_page_copy); PM_MMAP_EXCLUSIVE follows the mapcount.
TEST_F(HostProcessTest, ForkSharesFrameUntilWrite) {
    if (!root()) GTEST_SKIP() << "PFNs in /proc/PID/pagemap need CAP_SYS_ADMIN";
    auto a = spawn();
    ASSERT_TRUE(a);
    const uint64_t buf = map_anon(*a, kPage);
    ASSERT_NE(buf, 0u);
    ASSERT_EQ(a->write(buf, "hello").ret, 5);
    HostPageInfo before = a->page_info(buf);
    ASSERT_TRUE(before.present);
    EXPECT_NE(before.pfn, 0u);
    EXPECT_TRUE(before.exclusive);
    EXPECT_FALSE(before.file);

    auto forked = a->fork();
    ASSERT_TRUE(forked.ok()) << std::strerror(forked.error().errnum);
    auto b = std::move(forked).value();
    ASSERT_NE(b->pid(), a->pid());
    HostPageInfo pa = a->page_info(buf), pb = b->page_info(buf);
    ASSERT_TRUE(pa.present && pb.present);
    EXPECT_EQ(pa.pfn, before.pfn);
    EXPECT_EQ(pb.pfn, pa.pfn);
    EXPECT_FALSE(pa.exclusive);
    EXPECT_FALSE(pb.exclusive);
    EXPECT_EQ(b->read(buf, 5).bytes, "hello");

    ASSERT_EQ(b->write(buf, "child").ret, 5);
    pa = a->page_info(buf);
    pb = b->page_info(buf);
    EXPECT_NE(pb.pfn, pa.pfn);
    EXPECT_TRUE(pb.exclusive);
    EXPECT_TRUE(pa.exclusive);
    EXPECT_EQ(a->read(buf, 5).bytes, "hello");
    EXPECT_EQ(b->read(buf, 5).bytes, "child");
}

// A fork child serves its own channel and has its parent's mappings; the
// session files it inherited need not be sent again.
TEST_F(HostProcessTest, ForkChildInheritsMappingsAndFiles) {
    auto a = spawn();
    ASSERT_TRUE(a);
    std::string why;
    const int64_t f = session().file_new("memfd", kPage, &why);
    ASSERT_GT(f, 0) << why;
    HostResult r = a->mmap(0, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
    ASSERT_GT(r.ret, 0);
    auto forked = a->fork();
    ASSERT_TRUE(forked.ok());
    auto b = std::move(forked).value();
    HostResult rb = b->mmap(0, kPage, PROT_READ, MAP_SHARED, f, 0);  // the inherited fd
    ASSERT_GT(rb.ret, 0) << std::strerror(static_cast<int>(-rb.ret));
    ASSERT_EQ(a->write(static_cast<uint64_t>(r.ret), "shared").ret, 6);
    EXPECT_EQ(b->read(static_cast<uint64_t>(rb.ret), 6).bytes, "shared");
    EXPECT_EQ(b->read(static_cast<uint64_t>(r.ret), 6).bytes, "shared");  // the parent's mapping, inherited
}

// exit() returns once the process is gone: its channel at EOF (exit_files,
// after exit_mm in do_exit) and the pid reaped (the zygote ignores SIGCHLD,
// so exit_notify releases it at once). Calls afterwards are -EPIPE.
TEST_F(HostProcessTest, ExitReturnsWithPidGone) {
    auto p = spawn();
    ASSERT_TRUE(p);
    const pid_t pid = p->pid();
    ASSERT_GT(pid, 0);
    EXPECT_FALSE(pid_gone(pid));
    p->exit();
    EXPECT_TRUE(pid_gone(pid));
    EXPECT_EQ(p->read(0x1000, 1).ret, -EPIPE);
    EXPECT_FALSE(p->page_info(0x1000).present);
}

// A process whose parent exited first is adopted by the zygote (a
// subreaper) and still serves; its own exit reaps it.
TEST_F(HostProcessTest, OrphanedChildStillServesAndIsReaped) {
    auto a = spawn();
    ASSERT_TRUE(a);
    const uint64_t buf = map_anon(*a, kPage);
    ASSERT_EQ(a->write(buf, "kept").ret, 4);
    auto forked = a->fork();
    ASSERT_TRUE(forked.ok());
    auto b = std::move(forked).value();
    a->exit();
    EXPECT_EQ(b->read(buf, 4).bytes, "kept");
    const pid_t pid = b->pid();
    b->exit();
    EXPECT_TRUE(pid_gone(pid));
}

// echo 4 > /proc/self/clear_refs clears the soft-dirty bits
// (clear_refs_write -> clear_soft_dirty); the next write sets the bit again
// (the write fault marks the PTE soft-dirty).
TEST_F(HostProcessTest, ClearRefsFourClearsSoftDirty) {
    auto p = spawn();
    ASSERT_TRUE(p);
    const uint64_t a = map_anon(*p, kPage);
    ASSERT_EQ(p->write(a, "d").ret, 1);
    EXPECT_EQ(p->clear_refs(99).ret, -EINVAL);  // clear_refs_write: type out of range
    const bool tracked = p->page_info(a).soft_dirty;
    EXPECT_EQ(p->clear_refs(4).ret, 0);  // accepted with or without soft-dirty tracking
    if (!tracked) GTEST_SKIP() << "no soft-dirty tracking here (CONFIG_MEM_SOFT_DIRTY)";
    HostPageInfo clean = p->page_info(a);
    EXPECT_TRUE(clean.present);
    EXPECT_FALSE(clean.soft_dirty);
    ASSERT_EQ(p->write(a, "e").ret, 1);
    EXPECT_TRUE(p->page_info(a).soft_dirty);
}

// No PTE, no entry: pagemap_pte_hole() reports an unmapped page as not
// present; a mapped page never touched is not present either (no fault yet).
TEST_F(HostProcessTest, PageInfoOfUnmappedIsNotPresent) {
    auto p = spawn();
    ASSERT_TRUE(p);
    const uint64_t a = map_anon(*p, 2 * kPage);
    ASSERT_EQ(p->write(a, "x").ret, 1);
    HostPageInfo touched = p->page_info(a);
    EXPECT_TRUE(touched.present);
    EXPECT_FALSE(p->page_info(a + kPage).present);
    ASSERT_EQ(p->munmap(a, 2 * kPage).ret, 0);
    HostPageInfo gone = p->page_info(a);
    EXPECT_FALSE(gone.present);
    EXPECT_EQ(gone.pfn, 0u);
    if (root()) {
        ASSERT_TRUE(touched.kpageflags.has_value());
        EXPECT_TRUE((*touched.kpageflags >> kKpfAnon) & 1);  // KPF_ANON: folio_test_anon
        EXPECT_EQ(touched.folio_nr_pages, 1u);
    }
}

// MADV_HUGEPAGE on a 2M-aligned anon range: the first touch allocates a
// PMD-sized folio (do_huge_pmd_anonymous_page), 512 pages, KPF_THP; if
// memory is too fragmented for that, MADV_COLLAPSE tries harder.
TEST_F(HostProcessTest, ThpFolioHas512Pages) {
    if (!root()) GTEST_SKIP() << "kpageflags needs root";
    if (!session().caps().thp) GTEST_SKIP() << "no transparent hugepages";
    std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
    std::string mode;
    std::getline(in, mode);
    if (mode.find("[never]") != std::string::npos) GTEST_SKIP() << "THP is disabled: " << mode;
    auto p = spawn();
    ASSERT_TRUE(p);
    const uint64_t raw = map_anon(*p, 2 * k2M);
    ASSERT_NE(raw, 0u);
    const uint64_t a = (raw + k2M - 1) & ~(k2M - 1);
    ASSERT_EQ(p->madvise(a, k2M, MADV_HUGEPAGE).ret, 0);
    ASSERT_EQ(p->write(a, "T").ret, 1);
    HostPageInfo info = p->page_info(a + 5 * kPage);
    if (info.folio_nr_pages != 512) {
        constexpr int kMadvCollapse = 25;  // MADV_COLLAPSE (v6.1)
        HostResult c = p->madvise(a, k2M, kMadvCollapse);
        if (c.ret < 0) GTEST_SKIP() << "no huge page could be had: MADV_COLLAPSE " << std::strerror(static_cast<int>(-c.ret));
        info = p->page_info(a + 5 * kPage);
    }
    ASSERT_TRUE(info.present);
    EXPECT_EQ(info.folio_nr_pages, 512u);
    ASSERT_TRUE(info.kpageflags.has_value());
    EXPECT_TRUE((*info.kpageflags >> kKpfThp) & 1);
    EXPECT_TRUE((*info.kpageflags >> kKpfCompoundTail) & 1);  // page 5 is a tail
    HostPageInfo head = p->page_info(a);
    EXPECT_EQ(head.folio_nr_pages, 512u);
    EXPECT_EQ(head.pfn + 5, info.pfn);
    EXPECT_EQ(p->read(a, 1).bytes, "T");
}

// Session files of each type: pwrite/pread from the controller, and a
// MAP_SHARED mapping in a process sees the same page cache (filemap_fault /
// shmem_fault), both ways.
TEST_F(HostProcessTest, SessionFilesMapAndReadBack) {
    auto p = spawn();
    ASSERT_TRUE(p);
    int tried = 0;
    for (std::string fs : {"memfd", "tmpfs", "ext4"}) {
        SCOPED_TRACE(fs);
        std::string why;
        const int64_t f = session().file_new(fs, 2 * kPage, &why);
        if (f == -EOPNOTSUPP) {
            EXPECT_FALSE(why.empty());
            continue;
        }
        ++tried;
        ASSERT_GT(f, 0) << why;
        EXPECT_GE(session().file_fd(f), 0);
        EXPECT_EQ(session().file_pwrite(f, kPage, "hello").ret, 5);
        EXPECT_EQ(session().file_pread(f, kPage, 5).bytes, "hello");
        HostResult m = p->mmap(0, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
        ASSERT_GT(m.ret, 0) << std::strerror(static_cast<int>(-m.ret));
        const uint64_t a = static_cast<uint64_t>(m.ret);
        EXPECT_EQ(p->read(a + kPage, 5).bytes, "hello");
        EXPECT_EQ(p->write(a, "world").ret, 5);
        EXPECT_EQ(session().file_pread(f, 0, 5).bytes, "world");
        EXPECT_EQ(session().file_fsync(f).ret, 0);
        // Beyond EOF a shared file mapping is SIGBUS (filemap_fault: -> VM_FAULT_SIGBUS).
        ASSERT_EQ(session().file_ftruncate(f, kPage).ret, 0);
        EXPECT_EQ(p->read(a + kPage, 1).ret, -EFAULT);
        EXPECT_EQ(session().file_fallocate(f, 0, 2 * kPage).ret, 0);
        EXPECT_EQ(p->munmap(a, 2 * kPage).ret, 0);
    }
    EXPECT_GE(tried, 1);  // memfd is always there
    std::string why;
    EXPECT_EQ(session().file_new("no-such-fs", kPage, &why), -EOPNOTSUPP);
    EXPECT_NE(why.find("--fs no-such-fs=DIR"), std::string::npos) << why;
    EXPECT_EQ(session().file_pread(12345, 0, 1).ret, -EBADF);
    EXPECT_EQ(p->mmap(0, kPage, PROT_READ, MAP_SHARED, 12345, 0).ret, -EBADF);
}

// VmLck in pages follows mlock (mlock_fixup -> mm->locked_vm); the worker
// sets RLIMIT_MEMLOCK for itself.
TEST_F(HostProcessTest, RlimitAndVmLck) {
    auto p = spawn();
    ASSERT_TRUE(p);
    ASSERT_EQ(p->set_rlimit_memlock(64 * kPage).ret, 0);
    EXPECT_EQ(p->status_pages("VmLck").ret, 0);
    HostResult r = p->mmap(0, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, 0, 0);
    ASSERT_GT(r.ret, 0);
    EXPECT_EQ(p->status_pages("VmLck").ret, 4);
    EXPECT_EQ(p->status_pages("VmPin").ret, 0);
    EXPECT_EQ(p->status_pages("NoSuchField").ret, -ENOENT);
}

// A killed worker: the next request finds a closed channel and answers
// -EPIPE at once (no waiting for the 30 s reply timeout).
TEST_F(HostProcessTest, KilledWorkerGivesEpipeQuickly) {
    auto p = spawn();
    ASSERT_TRUE(p);
    const uint64_t a = map_anon(*p, kPage);
    ASSERT_EQ(::kill(p->pid(), SIGKILL), 0);
    const auto t0 = Clock::now();
    EXPECT_EQ(p->read(a, 1).ret, -EPIPE);
    EXPECT_EQ(p->write(a, "x").ret, -EPIPE);
    EXPECT_LT(Clock::now() - t0, std::chrono::seconds(1));
    auto f = p->fork();
    ASSERT_FALSE(f.ok());
    EXPECT_EQ(f.error().errnum, EPIPE);
}

// Oversized requests are refused before they are sent; the process serves on.
TEST_F(HostProcessTest, OversizedRequestsAreRefused) {
    auto p = spawn();
    ASSERT_TRUE(p);
    EXPECT_EQ(p->read(0x10000, kMaxChannelBytes + 1).ret, -E2BIG);
    EXPECT_EQ(p->write(0x10000, std::string(kMaxChannelBytes + 1, 'x')).ret, -E2BIG);
    const uint64_t a = map_anon(*p, kPage);
    EXPECT_EQ(p->write(a, "still here").ret, 10);
}

// Destroying the session kills every process it made, forks included, and
// reaps its zygote: nothing of it is left in the pid table. The objects that
// outlive it answer -EPIPE.
TEST_F(HostProcessTest, DestroyedSessionLeavesNoPids) {
    const std::set<pid_t> before = children_of(::getpid());
    auto s = HostSession::create();
    ASSERT_TRUE(s.ok());
    auto session = std::move(s).value();
    std::vector<std::unique_ptr<HostProcess>> procs;
    for (int i = 0; i < 2; ++i) {
        auto p = session->spawn();
        ASSERT_TRUE(p.ok());
        procs.push_back(std::move(p).value());
    }
    auto child = procs[0]->fork();
    ASSERT_TRUE(child.ok());
    procs.push_back(std::move(child).value());
    std::vector<pid_t> pids;
    for (auto& p : procs) {
        pids.push_back(p->pid());
        EXPECT_FALSE(pid_gone(p->pid()));
    }
    session.reset();
    for (pid_t pid : pids) EXPECT_TRUE(pid_gone(pid)) << pid;
    for (auto& p : procs) EXPECT_EQ(p->read(0x1000, 1).ret, -EPIPE);
    // No child of ours is left, not even unreaped: the zygote was waited for.
    EXPECT_EQ(children_of(::getpid()), before);
    procs.clear();  // destructors after the session: no crash, no hang
}

// A controller that dies without cleaning up leaves nothing running: each
// worker exits at EOF on its channel, and the zygote, at its own EOF, reaps
// them all before it exits. This test process stands in for init as the
// subreaper that inherits the orphaned zygote.
TEST_F(HostProcessTest, DeadControllerLeavesNothingRunning) {
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t controller = ::fork();
    ASSERT_GE(controller, 0);
    if (controller == 0) {
        ::close(fds[0]);
        auto s = HostSession::create();
        if (!s.ok()) ::_exit(2);
        const std::set<pid_t> zygote = children_of(::getpid());
        auto w = s.value()->spawn();
        if (!w.ok() || zygote.size() != 1) ::_exit(3);
        auto c = w.value()->fork();
        if (!c.ok()) ::_exit(4);
        pid_t pids[3] = {*zygote.begin(), w.value()->pid(), c.value()->pid()};
        if (::write(fds[1], pids, sizeof pids) != static_cast<ssize_t>(sizeof pids)) ::_exit(5);
        ::_exit(0);  // no destructors: as if killed
    }
    ::close(fds[1]);
    pid_t pids[3] = {0, 0, 0};
    const ssize_t n = ::read(fds[0], pids, sizeof pids);
    ::close(fds[0]);
    int status = 0;
    ASSERT_EQ(::waitpid(controller, &status, 0), controller);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    ASSERT_EQ(n, static_cast<ssize_t>(sizeof pids));
    // The zygote, now ours, exits once its workers are gone.
    const auto end = Clock::now() + std::chrono::seconds(3);
    pid_t reaped = 0;
    while ((reaped = ::waitpid(pids[0], &status, WNOHANG)) == 0 && Clock::now() < end)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    EXPECT_EQ(reaped, pids[0]);
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);
    EXPECT_TRUE(WIFEXITED(status));
    for (pid_t pid : {pids[1], pids[2]}) EXPECT_TRUE(pid_gone(pid)) << pid;
}

// The doors run inside the worker, on its memory: io_uring fixed buffers
// are pinned at registration (io_sqe_buffer_register -> pin_user_pages,
// FOLL_LONGTERM: nr_foll_pin_acquired moves by one per page) and a
// READ_FIXED from a session file (sent to the worker on first use) lands
// in the buffer the CPU then reads; unregistering unpins them.
TEST_F(HostProcessTest, IoUringFixedBufferInTheProcess) {
    if (!session().caps().io_uring) GTEST_SKIP() << "no io_uring here";
    auto p = spawn();
    ASSERT_TRUE(p);
    std::string why;
    const int64_t f = session().file_new("memfd", 2 * kPage, &why);
    ASSERT_GT(f, 0) << why;
    ASSERT_EQ(session().file_pwrite(f, kPage, "from the file").ret, 13);
    const uint64_t buf = map_anon(*p, 2 * kPage);
    ASSERT_EQ(p->memset(buf, 0, 2 * kPage).ret, static_cast<int64_t>(2 * kPage));
    HostResult ring = p->io_uring_setup(4);
    ASSERT_GT(ring.ret, 0) << std::strerror(static_cast<int>(-ring.ret));
    session().settle_pins();
    const auto acquired0 = session().vmstat("nr_foll_pin_acquired");
    const auto released0 = session().vmstat("nr_foll_pin_released");
    ASSERT_EQ(p->io_uring_register_buffers(ring.ret, {{buf, 2 * kPage}}).ret, 0);
    const auto acquired1 = session().vmstat("nr_foll_pin_acquired");
    ASSERT_TRUE(acquired0 && acquired1 && released0) << "no FOLL_PIN counters in /proc/vmstat";
    EXPECT_GE(*acquired1 - *acquired0, 2u);
    HostResult io = p->io_uring_rw_fixed(ring.ret, false, f, 0, buf, 13, kPage);
    EXPECT_EQ(io.ret, 13) << std::strerror(static_cast<int>(-io.ret));
    EXPECT_EQ(p->read(buf, 13).bytes, "from the file");
    EXPECT_EQ(p->io_uring_unregister_buffers(ring.ret).ret, 0);
    const auto released1 = session().vmstat("nr_foll_pin_released");
    ASSERT_TRUE(released1.has_value());
    EXPECT_GE(*released1 - *released0, 2u);
    EXPECT_EQ(p->io_uring_exit(ring.ret).ret, 0);
}

// vmsplice() takes references to the process's pages into a pipe
// (iov_iter_get_pages2): what is read back is the bytes the CPU wrote.
// process_vm_readv() pins the target's pages (pin_user_pages_remote) and
// copies them into the caller.
TEST_F(HostProcessTest, PipeAndProcessVmRwInTheProcess) {
    auto a = spawn();
    auto b = spawn();
    ASSERT_TRUE(a && b);
    const uint64_t ba = map_anon(*a, kPage), bb = map_anon(*b, kPage);
    ASSERT_EQ(a->write(ba, "spliced").ret, 7);
    // The pipe is the session's; its write end reaches the process by SCM_RIGHTS.
    const int64_t pipe = session().pipe_new();
    ASSERT_GT(pipe, 0);
    EXPECT_EQ(a->vmsplice_file(pipe, ba, 7).ret, 7);
    HostResult got = session().pipe_read(pipe, 64);
    EXPECT_EQ(got.ret, 7);
    EXPECT_EQ(got.bytes, "spliced");
    EXPECT_EQ(session().pipe_close(pipe).ret, 0);
    HostResult r = b->process_vm_rw(false, a->pid(), bb, ba, 7);
    if (r.ret == -EPERM) GTEST_SKIP() << "process_vm_readv refused across processes (ptrace scope)";
    EXPECT_EQ(r.ret, 7);
    EXPECT_EQ(b->read(bb, 7).bytes, "spliced");
}

// mremap(MREMAP_MAYMOVE|MREMAP_FIXED) moves the pages to new_addr
// (move_vma); MADV_DONTNEED zaps them, so a private anon page reads zero.
TEST_F(HostProcessTest, MremapFixedAndMadviseDontneed) {
    auto p = spawn();
    ASSERT_TRUE(p);
    const uint64_t raw = map_anon(*p, 4 * kPage);
    ASSERT_NE(raw, 0u);
    ASSERT_EQ(p->write(raw, "moved").ret, 5);
    const uint64_t to = raw + 2 * kPage;
    HostResult m = p->mremap(raw, kPage, kPage, MREMAP_MAYMOVE | MREMAP_FIXED, to);
    ASSERT_EQ(m.ret, static_cast<int64_t>(to)) << std::strerror(static_cast<int>(-m.ret));
    EXPECT_EQ(p->read(to, 5).bytes, "moved");
    EXPECT_EQ(p->read(raw, 1).ret, -EFAULT);
    EXPECT_EQ(p->madvise(to, kPage, MADV_DONTNEED).ret, 0);
    EXPECT_EQ(p->read(to, 5).bytes, std::string(5, '\0'));
    EXPECT_EQ(p->mremap(raw, kPage, kPage, MREMAP_FIXED, to).ret, -EINVAL);  // FIXED needs MAYMOVE
}

// The host lock is the abstract Unix socket name "\0pinlab-host-lock":
// held (bound), another socket cannot bind it (unix_bind(): EADDRINUSE);
// released, it can; and it leaves no file behind.
TEST_F(HostProcessTest, HostLockExcludesOtherRuns) {
    auto try_bind = [] {
        int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        static constexpr char kName[] = "\0pinlab-host-lock";
        std::memcpy(addr.sun_path, kName, sizeof kName - 1);
        const int r = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr),
                             static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + sizeof kName - 1));
        const int e = errno;
        ::close(fd);
        return r == 0 ? 0 : e;
    };
    if (try_bind() == EADDRINUSE) GTEST_SKIP() << "another pinlab run holds the host lock";
    ASSERT_TRUE(session().acquire_host().ok());
    EXPECT_TRUE(session().acquire_host().ok());  // already held: no deadlock
    EXPECT_EQ(try_bind(), EADDRINUSE);
    session().release_host();
    EXPECT_EQ(try_bind(), 0);
    struct stat st {};
    EXPECT_NE(::stat("/tmp/pinlab-host.lock", &st), 0);  // nothing on disk
}

// ---- the channel itself -------------------------------------------------------

class HostProcessTestChannel : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv_), 0); }
    void TearDown() override {
        for (int fd : sv_)
            if (fd >= 0) ::close(fd);
    }
    int sv_[2] = {-1, -1};
};

// A request with arguments, bytes and a descriptor arrives whole.
TEST_F(HostProcessTestChannel, RequestRoundTripWithDescriptor) {
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    ChannelRequest req;
    req.op = HostOp::mremap;
    for (int i = 0; i < kChannelArgs; ++i) req.args[i] = -1000 * i - 7;
    req.bytes = std::string("a\0b", 3);
    req.fd_file = 42;
    ASSERT_EQ(channel_send_request(sv_[0], req, p[1], 1000), 0);
    ::close(p[1]);
    ChannelRequest got;
    ASSERT_EQ(channel_recv_request(sv_[1], &got, 1000), 0);
    EXPECT_EQ(got.op, HostOp::mremap);
    for (int i = 0; i < kChannelArgs; ++i) EXPECT_EQ(got.args[i], req.args[i]);
    EXPECT_EQ(got.bytes, req.bytes);
    EXPECT_EQ(got.fd_file, 42);
    ASSERT_GE(got.fd, 0);
    EXPECT_EQ(::write(got.fd, "z", 1), 1);  // the same pipe
    char c = 0;
    EXPECT_EQ(::read(p[0], &c, 1), 1);
    EXPECT_EQ(c, 'z');
    ::close(got.fd);
    ::close(p[0]);
    ChannelReply rep{-EFAULT, "bytes"};
    ASSERT_EQ(channel_send_reply(sv_[1], rep, 1000), 0);
    ChannelReply back;
    ASSERT_EQ(channel_recv_reply(sv_[0], &back, 1000), 0);
    EXPECT_EQ(back.ret, -EFAULT);
    EXPECT_EQ(back.bytes, "bytes");
}

// A header announcing more than 64 MiB is refused, not allocated.
TEST_F(HostProcessTestChannel, OversizedFrameIsRefused) {
    // The request header: magic "PLRQ", op, fd_file, 8 args, length.
    char h[4 + 4 + 8 + 64 + 8] = {};
    const uint32_t magic = 0x51524c50, op = 10;
    const uint64_t len = uint64_t{1} << 40;
    std::memcpy(h, &magic, 4);
    std::memcpy(h + 4, &op, 4);
    std::memcpy(h + sizeof h - 8, &len, 8);
    ASSERT_EQ(::write(sv_[0], h, sizeof h), static_cast<ssize_t>(sizeof h));
    ChannelRequest got;
    EXPECT_EQ(channel_recv_request(sv_[1], &got, 1000), -EPROTO);
    ChannelRequest big;
    big.bytes.assign(kMaxChannelBytes + 1, 'x');
    EXPECT_EQ(channel_send_request(sv_[0], big, -1, 1000), -E2BIG);
}

// A silent peer times out; a closed one is -EPIPE, both at once for EOF.
TEST_F(HostProcessTestChannel, SilenceTimesOutAndEofIsEpipe) {
    ChannelReply rep;
    const auto t0 = Clock::now();
    EXPECT_EQ(channel_recv_reply(sv_[0], &rep, 50), -ETIMEDOUT);
    EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(45));
    ::close(sv_[1]);
    sv_[1] = -1;
    EXPECT_EQ(channel_recv_reply(sv_[0], &rep, 5000), -EPIPE);
    EXPECT_EQ(channel_send_reply(sv_[0], rep, 5000), -EPIPE);
    EXPECT_TRUE(channel_wait_eof(sv_[0], 1000));
}

}  // namespace
}  // namespace pl::oracle
