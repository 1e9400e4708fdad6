// process_vm_readv()/process_vm_writev() (src/drivers/process_vm_access.cpp,
// mm/process_vm_access.c): remote pages pinned with pin_user_pages_remote()
// in batches, copied through the caller's page tables, unpinned with
// unpin_user_pages_dirty_lock(); permission through a reduced ptrace check.
#include <sys/mman.h>

#include <cerrno>
#include <string>

#include "drivers/process_vm_access.h"
#include "test_kernel.h"

namespace pl::test {
namespace {

class ProcessVm : public KernelTest {
protected:
    void fill(task_struct* task, unsigned long addr, const std::string& s) {
        ASSERT_EQ(pl_write(task, addr, s.data(), s.size()), static_cast<long>(s.size()));
    }
    std::string bytes(task_struct* task, unsigned long addr, unsigned long n) {
        std::string s(n, '\0');
        EXPECT_EQ(pl_read(task, addr, s.data(), n), static_cast<long>(n));
        return s;
    }
    // Every pin taken was released (upstream's global balance).
    void expect_pins_balanced() {
        EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), pl_vmstat(k, "nr_foll_pin_released"));
        EXPECT_EQ(pl_pin_balance(k, "process_vm_access"), 0);
    }
    static std::string pattern(unsigned long n, unsigned seed) {
        std::string s(n, '\0');
        for (unsigned long i = 0; i < n; i++) s[i] = static_cast<char>('A' + (i * 7 + seed) % 26);
        return s;
    }
};

// A parent reads from and writes to its child, across page boundaries and at
// unaligned offsets; the pins come and go within the call.
TEST_F(ProcessVm, ParentReadsAndWritesChild) {
    const unsigned long remote = map(4 * kPage);
    const std::string data = pattern(4 * kPage, 1);
    fill(t, remote, data);
    task_struct* child = pl_fork(t);
    ASSERT_NE(child, nullptr);
    const unsigned long local = map(4 * kPage);
    // The parent reads the child's copy (same addresses after fork).
    EXPECT_EQ(pl_process_vm_readv(t, child, local + 5, remote + 100, 3 * kPage), static_cast<long>(3 * kPage));
    EXPECT_EQ(bytes(t, local + 5, 3 * kPage), data.substr(100, 3 * kPage));
    const unsigned long acquired = pl_vmstat(k, "nr_foll_pin_acquired");
    EXPECT_GE(acquired, 4u);  // pin_user_pages_remote() pinned the 4 pages spanned
    const std::string upd = pattern(kPage + 50, 9);
    fill(t, local, upd);
    EXPECT_EQ(pl_process_vm_writev(t, child, local, remote + kPage - 25, upd.size()), static_cast<long>(upd.size()));
    EXPECT_EQ(bytes(child, remote + kPage - 25, upd.size()), upd);
    expect_pins_balanced();
}

// writev into a child's private page after fork: FOLL_WRITE on the pin breaks
// COW in the child only; the parent's page keeps its data.
TEST_F(ProcessVm, WritevIntoChildCowsOnlyInChild) {
    const unsigned long a = map(kPage);
    const std::string orig = pattern(kPage, 3);
    fill(t, a, orig);
    task_struct* child = pl_fork(t);
    ASSERT_NE(child, nullptr);
    page* shared_before = pg(t, a);
    EXPECT_EQ(pg(child, a), shared_before);  // COW-shared after fork
    const unsigned long src = map(kPage);
    const std::string upd = pattern(kPage, 17);
    fill(t, src, upd);
    EXPECT_EQ(pl_process_vm_writev(t, child, src, a, kPage), static_cast<long>(kPage));
    EXPECT_NE(pg(child, a), shared_before);
    EXPECT_EQ(pg(t, a), shared_before);
    EXPECT_EQ(bytes(child, a, kPage), upd);
    EXPECT_EQ(bytes(t, a, kPage), orig);
    expect_pins_balanced();
}

// readv pins without FOLL_WRITE, but a FOLL_PIN of a shared anonymous page
// must unshare it (gup_must_unshare(), FAULT_FLAG_UNSHARE): the child, whose
// page is pinned, gets its own copy; the parent keeps the original page and
// both still read the same bytes.
TEST_F(ProcessVm, ReadvUnsharesChildPage) {
    const unsigned long a = map(kPage);
    const std::string data = pattern(kPage, 5);
    fill(t, a, data);
    task_struct* child = pl_fork(t);
    ASSERT_NE(child, nullptr);
    page* shared = pg(t, a);
    ASSERT_EQ(pg(child, a), shared);
    const unsigned long dst = map(kPage);
    EXPECT_EQ(pl_process_vm_readv(t, child, dst, a, kPage), static_cast<long>(kPage));
    EXPECT_EQ(bytes(t, dst, kPage), data);
    EXPECT_EQ(pg(t, a), shared);
    EXPECT_NE(pg(child, a), shared);
    EXPECT_EQ(bytes(child, a, kPage), data);
    expect_pins_balanced();
}

// More than PVM_MAX_PP_ARRAY_COUNT pages switch to the kmalloc'ed array:
// batches of PVM_MAX_KMALLOC_PAGES / sizeof(struct page *) pages, so a
// transfer one page larger than that takes two pin_user_pages_remote() calls.
TEST_F(ProcessVm, LargeTransferInBatches) {
    const unsigned long n = kPvmMaxPagesPerLoopKmalloc + 1;
    const unsigned long remote = map(n * kPage);
    const std::string data = pattern(n * kPage, 2);
    fill(t, remote, data);
    task_struct* other = pl_task_new(k);
    ASSERT_NE(other, nullptr);
    ASSERT_EQ(pl_task_set_ptrace_allowed(t, 1), 0);
    const unsigned long local = map(other, n * kPage);
    EXPECT_EQ(pl_process_vm_readv(other, t, local, remote, n * kPage), static_cast<long>(n * kPage));
    EXPECT_EQ(bytes(other, local, n * kPage), data);
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), n);
    expect_pins_balanced();
}

// mm_access() -> __ptrace_may_access() -> yama_ptrace_access_check(). Every
// model task is root: same uid, and CAP_SYS_PTRACE passes Yama too, so by
// default anyone may read anyone (what the host, as root, does). With the
// target's switch off (a caller without CAP_SYS_PTRACE under ptrace_scope=1)
// only its thread group (same_thread_group()) and its ancestors
// (task_is_descendant(), which walks real_parent up from the target's group
// leader) may; an exited parent cuts the chain (its children go to init).
TEST_F(ProcessVm, PtracePermission) {
    const unsigned long a = map(2 * kPage);  // remote page, then a local page
    fill(t, a, pattern(kPage, 4));
    task_struct* b = pl_fork(t);          // A -> B
    task_struct* c = pl_fork(b);          // B -> C: A's grandchild
    task_struct* d = pl_fork(t);          // A -> D: B's sibling
    task_struct* ta = pl_thread_new(t);   // a thread of A
    task_struct* s = pl_task_new(k);      // unrelated
    ASSERT_TRUE(b && c && d && ta && s) << pl_last_error();
    const unsigned long sa = map(s, 2 * kPage);
    auto local = [&](task_struct* caller) { return (caller == s ? sa : a) + kPage; };
    struct Row {
        const char* why;
        task_struct* caller;
        task_struct* target;
        bool target_allows;
        long want;
    };
    const long ok = 8;
    const Row rows[] = {
        {"root: an unrelated task (CAP_SYS_PTRACE)", s, t, true, ok},
        {"root: a child reads its parent", b, t, true, ok},
        {"root: a sibling", b, d, true, ok},
        {"the task itself (same_thread_group())", t, t, false, ok},
        {"a thread of the target's group (same_thread_group())", ta, t, false, ok},
        {"the parent (task_is_descendant())", t, b, false, ok},
        {"the grandparent (task_is_descendant() walks up)", t, c, false, ok},
        {"a thread of the grandparent (compared by group leader)", ta, c, false, ok},
        {"a child reading its parent: not an ancestor", b, t, false, -EPERM},
        {"a grandchild reading its grandparent", c, t, false, -EPERM},
        {"a sibling", b, d, false, -EPERM},
        {"an unrelated task", s, t, false, -EPERM},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(r.why);
        ASSERT_EQ(pl_task_set_ptrace_allowed(r.target, r.target_allows ? 1 : 0), 0);
        EXPECT_EQ(pl_process_vm_readv(r.caller, r.target, local(r.caller), a, 8), r.want) << pl_last_error();
        if (r.want == ok) {
            EXPECT_EQ(bytes(r.caller, local(r.caller), 8), pattern(kPage, 4).substr(0, 8));
        }
        ASSERT_EQ(pl_task_set_ptrace_allowed(r.target, 1), 0);
    }
    // writev takes the same check.
    ASSERT_EQ(pl_task_set_ptrace_allowed(t, 0), 0);
    EXPECT_EQ(pl_process_vm_writev(s, t, sa, a, kPage), -EPERM);
    EXPECT_EQ(pl_process_vm_writev(t, c, a, a, 8), 8);
    // B exits: C is reparented (to init upstream), A is no longer its ancestor.
    ASSERT_EQ(pl_task_set_ptrace_allowed(c, 0), 0);
    pl_exit(b);
    EXPECT_EQ(pl_process_vm_readv(t, c, a + kPage, a, 8), -EPERM);
    ASSERT_EQ(pl_task_set_ptrace_allowed(c, 1), 0);
    EXPECT_EQ(pl_process_vm_readv(t, c, a + kPage, a, 8), 8) << "root again";
    EXPECT_EQ(pl_task_set_ptrace_allowed(nullptr, 1), -EINVAL);
    expect_pins_balanced();
}

// Errors as upstream: a remote range with nothing mapped is -EFAULT; a
// partially mapped one returns the bytes before the hole; a local fault
// after some bytes returns those; an exited target is -ESRCH.
TEST_F(ProcessVm, ErrorsAndPartialTransfers) {
    const unsigned long remote = map(2 * kPage);
    fill(t, remote, pattern(2 * kPage, 6));
    task_struct* child = pl_fork(t);
    ASSERT_NE(child, nullptr);
    ASSERT_EQ(pl_munmap(child, remote + kPage, kPage), 0);
    const unsigned long local = map(2 * kPage);
    EXPECT_EQ(pl_process_vm_readv(t, child, local, remote + kPage, kPage), -EFAULT);
    EXPECT_EQ(pl_process_vm_readv(t, child, local, remote + 10, 2 * kPage - 10), static_cast<long>(kPage - 10));
    // Local side: only the first local page is writable.
    ASSERT_EQ(pl_mprotect(t, local + kPage, kPage, PROT_READ), 0);
    EXPECT_EQ(pl_process_vm_readv(t, t, local, remote, 2 * kPage), static_cast<long>(kPage));
    EXPECT_EQ(pl_process_vm_readv(t, t, local + kPage, remote, kPage), -EFAULT);
    // writev needs FOLL_WRITE on the remote: a read-only mapping is -EFAULT.
    const unsigned long ro = map(kPage, PROT_READ);
    EXPECT_EQ(pl_process_vm_writev(t, t, local, ro, kPage), -EFAULT);
    EXPECT_EQ(pl_process_vm_readv(t, child, local, ~0UL - 10, 100), -EFAULT);
    EXPECT_EQ(pl_process_vm_readv(t, child, local, remote, 0), 0);
    EXPECT_EQ(pl_process_vm_readv(nullptr, child, local, remote, kPage), -EINVAL);
    pl_exit(child);
    EXPECT_EQ(pl_process_vm_readv(t, child, local, remote, kPage), -ESRCH);
    expect_pins_balanced();
}

}  // namespace
}  // namespace pl::test
