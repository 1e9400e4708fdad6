// futex keys (src/drivers/futex.cpp): get_futex_key() of kernel/futex/core.c
// across backings, tasks and fork — which words name the same futex, the
// GET reference it takes and drops, and the COW break of its FOLL_WRITE.
#include "test_kernel.h"

namespace pl::test {
namespace {

class Futex : public KernelTest {
protected:
    pl_futex_key key(task_struct* task, unsigned long uaddr, int flags = PL_FUTEX_SHARED) {
        pl_futex_key out{};
        EXPECT_EQ(pl_get_futex_key(task, uaddr, flags, &out), 0) << std::hex << uaddr;
        return out;
    }
    int key_err(task_struct* task, unsigned long uaddr, int flags = PL_FUTEX_SHARED) {
        pl_futex_key out{};
        return pl_get_futex_key(task, uaddr, flags, &out);
    }
    void touch(task_struct* task, unsigned long a, unsigned long len) {
        ASSERT_EQ(pl_memset(task, a, 7, len), static_cast<long>(len)) << pl_last_error();
    }
};

// Shared file-backed futexes are keyed by inode and page index
// (FUT_OFF_INODE): two processes mapping the same file at different
// addresses (and at a different file offset) agree; other pages differ.
TEST_F(Futex, SharedFileMappingsAgreeAcrossTasksAndAddresses) {
    for (const char* fs : {"memfd", "tmpfs", "ext4"}) {
        SCOPED_TRACE(fs);
        pl_file* f = file(fs, 4 * kPage);
        task_struct* t2 = pl_task_new(k);
        ASSERT_NE(t2, nullptr);
        unsigned long a = map(t, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
        map(t2, kPage);  // shift t2's layout so the addresses differ
        unsigned long b = map(t2, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f, 2 * kPage);
        ASSERT_NE(a + 2 * kPage, b);
        const long before = pl_pin_balance(k, "futex");
        pl_futex_key ka = key(t, a + 2 * kPage + 8), kb = key(t2, b + 8);
        EXPECT_TRUE(pl_futex_key_equal(&ka, &kb));
        EXPECT_EQ(ka.offset, 8U | PL_FUT_OFF_INODE);
        EXPECT_EQ(ka.word, 2UL) << "page_to_pgoff()";
        pl_futex_key other_page = key(t2, b + kPage + 8), other_word = key(t, a + 2 * kPage + 12);
        EXPECT_FALSE(pl_futex_key_equal(&ka, &other_page));
        EXPECT_FALSE(pl_futex_key_equal(&ka, &other_word));
        EXPECT_EQ(pl_pin_balance(k, "futex"), before) << "get_futex_key() drops its reference";
        pl_exit(t2);
    }
}

// Another file of the same size gives another key (the inode sequence number).
TEST_F(Futex, DifferentFilesDiffer) {
    pl_file* f1 = file("memfd", kPage);
    pl_file* f2 = file("memfd", kPage);
    unsigned long a = map(t, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f1);
    unsigned long b = map(t, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f2);
    pl_futex_key ka = key(t, a), kb = key(t, b);
    EXPECT_FALSE(pl_futex_key_equal(&ka, &kb));
}

// MAP_SHARED|MAP_ANONYMOUS is shmem underneath: parent and child of a fork
// share the futex (inode key).
TEST_F(Futex, SharedAnonymousSameKeyAfterFork) {
    unsigned long a = map(t, kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS);
    touch(t, a, kPage);
    task_struct* child = pl_fork(t);
    ASSERT_NE(child, nullptr) << pl_last_error();
    pl_futex_key kp = key(t, a + 64), kc = key(child, a + 64);
    EXPECT_TRUE(pl_futex_key_equal(&kp, &kc));
    EXPECT_TRUE(kp.offset & PL_FUT_OFF_INODE);
}

// Private anonymous memory: keyed by mm + address (FUT_OFF_MMSHARED for the
// shared variant, nothing for FUTEX_PRIVATE_FLAG): two processes never match,
// even at the same address after fork.
TEST_F(Futex, PrivateAnonymousDiffersAcrossProcesses) {
    unsigned long a = map(kPage);
    touch(t, a, kPage);
    task_struct* child = pl_fork(t);
    ASSERT_NE(child, nullptr);
    for (int flags : {PL_FUTEX_SHARED, 0}) {
        SCOPED_TRACE(flags);
        pl_futex_key kp = key(t, a + 16, flags), kc = key(child, a + 16, flags);
        EXPECT_FALSE(pl_futex_key_equal(&kp, &kc));
        EXPECT_EQ(kp.word, a) << "the page-aligned address";
        EXPECT_EQ(kp.offset, 16U | (flags ? PL_FUT_OFF_MMSHARED : 0U));
        pl_futex_key again = key(t, a + 16, flags);
        EXPECT_TRUE(pl_futex_key_equal(&kp, &again));
    }
}

// get_futex_key() uses get_user_pages_fast(FOLL_WRITE): after fork the
// COW-shared anonymous page is unshared for the caller, as a store would.
TEST_F(Futex, SharedKeyBreaksCowOfPrivateAnon) {
    unsigned long a = map(kPage);
    touch(t, a, kPage);
    task_struct* child = pl_fork(t);
    ASSERT_NE(child, nullptr);
    ASSERT_EQ(pg(t, a), pg(child, a)) << "precondition: COW-shared after fork";
    key(t, a);
    EXPECT_NE(pg(t, a), pg(child, a)) << "FOLL_WRITE unshared the parent's page";
    // The private variant touches no memory.
    task_struct* child2 = pl_fork(t);
    ASSERT_NE(child2, nullptr);
    key(t, a, 0);
    EXPECT_EQ(pg(t, a), pg(child2, a));
}

// Argument and fault checks: a misaligned word is -EINVAL; a shared futex in
// unmapped or unpinnable memory (VM_PFNMAP) is -EFAULT from GUP; a private
// one is keyed without looking at the memory at all.
TEST_F(Futex, ErrorsAsGetFutexKey) {
    unsigned long a = map(kPage);
    EXPECT_EQ(key_err(t, a + 2), -EINVAL);
    EXPECT_EQ(key_err(t, a + 2, 0), -EINVAL);
    EXPECT_EQ(pl_get_futex_key(t, a, PL_FUTEX_SHARED, nullptr), -EINVAL);
    EXPECT_EQ(pl_get_futex_key(nullptr, a, PL_FUTEX_SHARED, nullptr), -EINVAL);
    EXPECT_EQ(key_err(t, a, 0x100), -EINVAL);
    ASSERT_EQ(pl_munmap(t, a, kPage), 0);
    EXPECT_EQ(key_err(t, a), -EFAULT);
    EXPECT_EQ(key_err(t, a, 0), 0) << "PROCESS_PRIVATE keys do not fault";
    pl_file* dev = pl_dev_open(k, "pfnmap");
    ASSERT_NE(dev, nullptr) << pl_last_error();
    files.push_back(dev);
    unsigned long p = map(t, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, dev);
    EXPECT_EQ(key_err(t, p), -EFAULT);
    EXPECT_EQ(key_err(t, p, PL_FUTEX_SHARED | PL_FUTEX_READ), -EFAULT);
}

// Read-only mappings: FOLL_WRITE fails; a FUTEX_WAIT (read) retries without
// it. A read-only page-cache page keys by inode; a read-only anonymous page
// (here the zero page, which has neither) is -EFAULT.
TEST_F(Futex, ReadOnlyRetryForWait) {
    pl_file* f = file("ext4", kPage);
    unsigned long ro = map(t, kPage, PROT_READ, MAP_PRIVATE, f);
    EXPECT_EQ(key_err(t, ro), -EFAULT);
    pl_futex_key kr = key(t, ro, PL_FUTEX_SHARED | PL_FUTEX_READ);
    EXPECT_TRUE(kr.offset & PL_FUT_OFF_INODE);
    task_struct* t2 = pl_task_new(k);
    unsigned long b = map(t2, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    pl_futex_key kw = key(t2, b);
    EXPECT_TRUE(pl_futex_key_equal(&kr, &kw)) << "a waiter on a read-only private mapping meets a waker";
    unsigned long z = map(kPage, PROT_READ);
    EXPECT_EQ(key_err(t, z, PL_FUTEX_SHARED | PL_FUTEX_READ), -EFAULT);
    pl_exit(t2);
}

// The GET reference is dropped: page refcounts and the tracker are back to
// where they were.
TEST_F(Futex, ReferenceDropped) {
    pl_file* f = file("memfd", kPage);
    unsigned long a = map(t, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    touch(t, a, kPage);
    const int refs = page_ref_count(pg(t, a));
    key(t, a);
    EXPECT_EQ(page_ref_count(pg(t, a)), refs);
    EXPECT_EQ(pl_pin_balance(k, "futex"), 0);
}

}  // namespace
}  // namespace pl::test
