// Several threads against one simulated kernel: address-space syscalls,
// faults, fork and exit racing each other and a lockless page-table walker
// (the shape of GUP-fast). Afterwards every invariant holds and no frame
// leaked. These suites also run under TSan.
#include "test_kernel.h"

#include <atomic>
#include <random>
#include <thread>

#include "base/sync/rcu.h"

namespace pl::test {
namespace {

class MmConcurrent : public KernelTest {};

TEST_F(MmConcurrent, ThreadsShareOneAddressSpaceWhileItForks) {
    constexpr int kThreads = 2;
    std::atomic<bool> failed{false};
    std::vector<std::thread> ts;
    for (int id = 0; id < kThreads; ++id)
        ts.emplace_back([&, id] {
            std::mt19937 rng(id);
            for (int i = 0; i < 150; ++i) {
                unsigned long n = 1 + rng() % 8;
                long a = pl_mmap(t, 0, n * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, nullptr, 0);
                if (a < 0) {
                    failed = true;
                    continue;
                }
                std::string s = "t" + std::to_string(id) + "-" + std::to_string(i);
                for (unsigned long p = 0; p < n; ++p)
                    if (pl_write(t, a + p * kPage, s.c_str(), s.size() + 1) < 0) failed = true;
                if (rng() % 3 == 0 && pl_mprotect(t, a, kPage, PROT_READ) != 0) failed = true;
                char buf[32] = {};
                for (unsigned long p = 0; p < n; ++p) {
                    if (pl_read(t, a + p * kPage, buf, s.size() + 1) < 0 || s != buf) failed = true;
                }
                if (pl_munmap(t, a, n * kPage) != 0) failed = true;
            }
        });
    // Meanwhile: fork the busy mm and let the children write and exit.
    std::thread forker([&] {
        for (int i = 0; i < 30; ++i) {
            task_struct* c = pl_fork(t);
            if (!c) {
                failed = true;
                continue;
            }
            pl_exit(c);
        }
    });
    for (auto& th : ts) th.join();
    forker.join();
    EXPECT_FALSE(failed.load()) << pl_last_error();
}

TEST_F(MmConcurrent, SharedFileWritersAndTruncation) {
    pl_file* f = file("memfd", 16 * kPage);
    task_struct* other = pl_task_new(k);
    unsigned long a = map(t, 16 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    unsigned long b = map(other, 16 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    std::atomic<bool> stop{false};
    std::thread w1([&] {
        for (int i = 0; i < 400; ++i) (void)pl_write(t, a + (i % 16) * kPage, "a", 1);
    });
    std::thread w2([&] {
        for (int i = 0; i < 400; ++i) (void)pl_write(other, b + (i % 16) * kPage, "b", 1);
    });
    std::thread tr([&] {
        for (int i = 0; i < 40; ++i) {
            (void)pl_fallocate(f, 3, ((i % 16) * kPage), kPage);  // punch a hole
            (void)pl_fsync(f);
        }
    });
    w1.join();
    w2.join();
    tr.join();
    stop = true;
    // Both mappings still see one file.
    ASSERT_EQ(pl_write(t, a, "same", 5), 5);
    char buf[8] = {};
    ASSERT_EQ(pl_read(other, b, buf, 5), 5);
    EXPECT_STREQ(buf, "same");
}

// A walker in an RCU read-side section, as GUP-fast walks, while another
// thread maps and unmaps (freeing page tables): the walker never touches a
// freed table (ASan) and never races a writer (TSan).
TEST_F(MmConcurrent, LocklessWalkerSurvivesPageTableFreeing) {
    std::atomic<bool> stop{false};
    std::atomic<unsigned long> region{0};
    std::thread walker([&] {
        MmStruct& m = mm();
        while (!stop) {
            unsigned long a = region.load();
            if (!a) continue;
            sync::RcuReadGuard g;
            for (unsigned long off = 0; off < (2UL << 20); off += kPage) {
                PageTable::Leaf l = m.pgtable.find_leaf(a + off);
                if (l.slot) (void)sync::load(*l.slot);
            }
        }
    });
    for (int i = 0; i < 200; ++i) {
        unsigned long a = map(2UL << 20);
        for (unsigned long off = 0; off < (2UL << 20); off += 64 * kPage) (void)pl_write(t, a + off, "x", 1);
        region = a;
        ASSERT_EQ(pl_munmap(t, a, 2UL << 20), 0);
    }
    stop = true;
    walker.join();
}

}  // namespace
}  // namespace pl::test
