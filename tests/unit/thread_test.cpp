// Threads: pl_thread_new() is clone(CLONE_VM|CLONE_THREAD) (copy_process()
// with copy_mm() taking an mm_users reference instead of dup_mmap()). Threads
// share one address space, so one thread's writes and pins are the other's;
// exit_mm() of a thread only drops its reference (mmput()), and the last
// user's exit tears the mm down (the fixture's frame-leak check catches a
// reference left behind).
#include "test_kernel.h"

#include <thread>

#include "gup/foll_flags.h"
#include "mm/mm_struct.h"

namespace pl::test {
namespace {

class ThreadTest : public KernelTest {
protected:
    Task& task(task_struct* x) { return *reinterpret_cast<Task*>(x); }
};
// Suites named *Concurrent also run under TSan.
class ThreadConcurrent : public ThreadTest {};

// copy_mm() with CLONE_VM: the same mm, one more mm_users; its own pid, the
// leader's thread group; mm->owner stays the leader.
TEST_F(ThreadTest, SharesTheMmWithItsOwnPid) {
    task_struct* th = pl_thread_new(t);
    ASSERT_NE(th, nullptr) << pl_last_error();
    EXPECT_EQ(pl_task_mm(th), pl_task_mm(t));
    EXPECT_NE(pl_task_pid(th), pl_task_pid(t));
    EXPECT_EQ(task(th).tgid, pl_task_pid(t));
    EXPECT_TRUE(task(th).is_thread());
    EXPECT_FALSE(task(t).is_thread());
    EXPECT_EQ(mm(t).users.load(), 2);
    EXPECT_EQ(mm(t).owner, &task(t));
}

// One address space: a CPU write by either thread is what the other reads.
TEST_F(ThreadTest, ThreadsSeeEachOthersWrites) {
    task_struct* th = pl_thread_new(t);
    ASSERT_NE(th, nullptr);
    const unsigned long a = map(t, 2 * kPage);
    put_str(th, a, "from the thread");
    EXPECT_EQ(get_str(t, a), "from the thread");
    put_str(t, a + kPage, "from the leader");
    EXPECT_EQ(get_str(th, a + kPage), "from the leader");
    EXPECT_EQ(pg(t, a), pg(th, a));  // one page table, one frame
}

// A pin taken by one thread's GUP (current = that thread) pins the shared
// mm's page: the other thread's CPU reads see what the device writes through
// it, and the other thread's writes reach the device.
TEST_F(ThreadTest, PinByOneThreadIsSeenByTheOther) {
    task_struct* th = pl_thread_new(t);
    ASSERT_NE(th, nullptr);
    const unsigned long a = map(t, kPage);
    put_str(t, a, "before");
    pl_set_current(th);
    page* p = nullptr;
    ASSERT_EQ(pin_user_pages_fast(a, 1, FOLL_WRITE, &p), 1) << pl_last_error();
    EXPECT_EQ(p, pg(t, a));
    EXPECT_TRUE(folio_maybe_dma_pinned(page_folio(p)));
    const char dev[] = "device";
    ASSERT_EQ(pl_page_write(p, 0, dev, sizeof dev), 0);
    EXPECT_EQ(get_str(t, a), "device");
    put_str(t, a, "leader");
    char buf[8] = {};
    ASSERT_EQ(pl_page_read(p, 0, buf, 7), 0);
    EXPECT_STREQ(buf, "leader");
    unpin_user_page(p);  // still as the pinning thread
    pl_set_current(nullptr);
    EXPECT_FALSE(folio_maybe_dma_pinned(page_folio(pg(t, a))));
}

// exit_mm() of one thread is mmput(): the mm lives on for the other; the
// leader's exit hands mm->owner on (mm_update_next_owner()). The fixture's
// teardown exits the last thread, and its frame check proves the mm went.
TEST_F(ThreadTest, ExitOfOneThreadKeepsTheMmForTheOther) {
    task_struct* th = pl_thread_new(t);
    ASSERT_NE(th, nullptr);
    const unsigned long a = map(t, kPage);
    put_str(t, a, "kept");
    MmStruct* shared = &mm(t);
    Task* th_task = &task(th);
    pl_exit(t);
    t = nullptr;
    EXPECT_EQ(shared->users.load(), 1);
    EXPECT_EQ(shared->owner, th_task);
    EXPECT_EQ(get_str(th, a), "kept");
    EXPECT_GT(pl_nr_allocated_pages(k), baseline);
    pl_exit(th);
    EXPECT_EQ(pl_nr_allocated_pages(k), baseline) << "the last user's exit frees the address space";
}

// A non-leader thread's exit leaves the owner alone.
TEST_F(ThreadTest, ExitOfANonLeaderKeepsTheOwner) {
    task_struct* th = pl_thread_new(t);
    ASSERT_NE(th, nullptr);
    pl_exit(th);
    EXPECT_EQ(mm(t).users.load(), 1);
    EXPECT_EQ(mm(t).owner, &task(t));
}

// fork() from a thread forks the process: the child gets a copy of the
// shared mm (dup_mmap(), COW), its own thread group, and the forking thread
// as its parent.
TEST_F(ThreadTest, ForkFromAThreadCopiesTheSharedMm) {
    task_struct* th = pl_thread_new(t);
    ASSERT_NE(th, nullptr);
    const unsigned long a = map(t, kPage);
    put_str(t, a, "parent");
    task_struct* child = pl_fork(th);
    ASSERT_NE(child, nullptr) << pl_last_error();
    EXPECT_NE(pl_task_mm(child), pl_task_mm(th));
    EXPECT_FALSE(task(child).is_thread());
    EXPECT_EQ(task(child).parent_pid.load(), pl_task_pid(th));
    EXPECT_EQ(get_str(child, a), "parent");
    put_str(child, a, "child");
    EXPECT_EQ(get_str(t, a), "parent");
    EXPECT_EQ(get_str(th, a), "parent");
    EXPECT_EQ(mm(t).users.load(), 2);  // the fork took no reference on the shared mm
}

// copy_process() copies the limits (signal->rlim) and credentials: a thread
// starts with its creator's RLIMIT_MEMLOCK and CAP_IPC_LOCK.
TEST_F(ThreadTest, ThreadStartsWithTheCreatorsLimits) {
    ASSERT_EQ(pl_task_set_rlimit_memlock(t, 3 * kPage), 0);
    task(t).cap_ipc_lock.store(true);
    task_struct* th = pl_thread_new(t);
    ASSERT_NE(th, nullptr);
    EXPECT_EQ(task(th).rlimit_memlock.load(), 3 * kPage);
    EXPECT_TRUE(task(th).cap_ipc_lock.load());
}

// __ptrace_may_access(): same_thread_group() is always allowed, so one
// thread may process_vm_readv() another of its group.
TEST_F(ThreadTest, ProcessVmReadvWithinTheGroupIsAllowed) {
    task_struct* th = pl_thread_new(t);
    ASSERT_NE(th, nullptr);
    const unsigned long a = map(t, 2 * kPage);
    put_str(t, a, "remote bytes");
    EXPECT_EQ(pl_process_vm_readv(th, t, a + kPage, a, 13), 13) << pl_last_error();
    EXPECT_EQ(get_str(t, a + kPage), "remote bytes");
    task_struct* stranger = pl_task_new(k);
    ASSERT_NE(stranger, nullptr);
    // Off: a caller without CAP_SYS_PTRACE under Yama ptrace_scope=1, which
    // same_thread_group() does not need.
    ASSERT_EQ(pl_task_set_ptrace_allowed(th, 0), 0);
    EXPECT_EQ(pl_process_vm_readv(stranger, th, 0, a, 1), -EPERM);
    EXPECT_EQ(pl_process_vm_readv(th, t, a + kPage, a, 13), 13) << pl_last_error();
}

// Pins a thread's own GUP calls take are the thread's: left held at its exit
// they leak (reported with its pid), though the mm lives on for the leader.
TEST_F(ThreadTest, PinsHeldAtAThreadsExitLeak) {
    expect_reports("leak", 1);
    task_struct* th = pl_thread_new(t);
    ASSERT_NE(th, nullptr);
    const unsigned long a = map(t, kPage);
    pl_set_current(th);
    page* p = nullptr;
    ASSERT_EQ(pin_user_pages_fast(a, 1, FOLL_WRITE, &p), 1);
    const std::string pid = "pid " + std::to_string(pl_task_pid(th));
    pl_exit(th);  // also clears current
    EXPECT_EQ(pl_current(), nullptr);
    ASSERT_EQ(pl_warning_count(k, "leak"), 1);
    EXPECT_NE(std::string(pl_dmesg(k)).find(pid), std::string::npos) << pl_dmesg(k);
    put_str(t, a, "alive");
    EXPECT_EQ(get_str(t, a), "alive");
}

// Bad handles: NULL plus pl_last_error(), never a crash.
TEST_F(ThreadTest, BadArgumentsGiveNullAndAnError) {
    EXPECT_EQ(pl_thread_new(nullptr), nullptr);
    EXPECT_NE(std::string(pl_last_error()).find("pl_thread_new"), std::string::npos) << pl_last_error();
    EXPECT_NE(std::string(pl_last_error()).find("invalid argument 't'"), std::string::npos) << pl_last_error();
    // A successful call clears the error.
    ASSERT_NE(pl_thread_new(t), nullptr);
    EXPECT_STREQ(pl_last_error(), "");
}

// Two host threads, each running as one of the group's tasks, pin, write
// through the pin and unpin the same shared pages: every pin finds the
// shared mm's frame and the books balance.
TEST_F(ThreadConcurrent, ThreadsPinTheSharedMm) {
    task_struct* th = pl_thread_new(t);
    ASSERT_NE(th, nullptr);
    const unsigned long a = map(t, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE);
    std::vector<page*> expected;
    for (unsigned long i = 0; i < 4; ++i) expected.push_back(pg(t, a + i * kPage));
    auto worker = [&](task_struct* me, bool* ok) {
        pl_set_current(me);
        for (int it = 0; it < 50; ++it) {
            page* ps[4] = {};
            if (pin_user_pages_fast(a, 4, FOLL_WRITE, ps) != 4) *ok = false;
            for (int i = 0; i < 4; ++i)
                if (ps[i] != expected[static_cast<size_t>(i)]) *ok = false;
            unpin_user_pages(ps, 4);
        }
        pl_set_current(nullptr);
    };
    bool ok1 = true, ok2 = true;
    std::thread h1(worker, t, &ok1);
    std::thread h2(worker, th, &ok2);
    h1.join();
    h2.join();
    EXPECT_TRUE(ok1);
    EXPECT_TRUE(ok2);
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), pl_vmstat(k, "nr_foll_pin_released"));
}

}  // namespace
}  // namespace pl::test
