// src/base/sync: the primitives every interleaving point goes through.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "base/result.h"
#include "base/sync/atomic.h"
#include "base/sync/rcu.h"
#include "base/sync/rwsem.h"
#include "base/sync/seqcount.h"
#include "base/sync/spinlock.h"

namespace pl {
namespace {

TEST(Result, ValueErrorAndTry) {
    auto f = [](int x) -> Result<int> {
        if (x < 0) return Error(EINVAL);
        return x * 2;
    };
    auto g = [&](int x) -> Result<int> {
        PL_TRY_ASSIGN(int y, f(x));
        return y + 1;
    };
    EXPECT_EQ(*g(3), 7);
    EXPECT_EQ(g(-1).error(), Error(EINVAL));
    EXPECT_EQ(g(-1).negative_errno(), -EINVAL);
    Status s = Error(EFAULT);
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(errno_name(EHWPOISON), "EHWPOISON");
    EXPECT_EQ(errno_from_name("EMLINK"), EMLINK);
    EXPECT_EQ(errno_name(4242), "E4242");
}

class Recorder final : public sync::Scheduler {
public:
    void at_point(sync::Point p, const void*) override { points.push_back(p); }
    void blocked(const void*) override { ++blocked_calls; }
    std::vector<sync::Point> points;
    int blocked_calls = 0;
};

TEST(SyncPoints, EveryOperationAnnouncesItself) {
    Recorder r;
    sync::set_thread_scheduler(&r);
    sync::Atomic<int> a{0};
    a.fetch_add(1);
    sync::Spinlock l;
    l.lock();
    l.unlock();
    sync::SeqCount s;
    s.write_begin();
    s.write_end();
    uint64_t field = 0;
    sync::fetch_or(field, uint64_t{4});
    sync::set_thread_scheduler(nullptr);
    ASSERT_EQ(r.points.size(), 6u);
    EXPECT_EQ(r.points[0], sync::Point::AtomicRmw);
    EXPECT_EQ(r.points[1], sync::Point::LockAcquire);
    EXPECT_EQ(r.points[2], sync::Point::LockRelease);
    EXPECT_EQ(r.points[3], sync::Point::SeqWrite);
    EXPECT_EQ(r.points[5], sync::Point::AtomicRmw);
    EXPECT_EQ(field, 4u);
}

TEST(Rwsem, ReadersShareWritersExclude) {
    sync::Rwsem r;
    r.down_read();
    EXPECT_TRUE(r.try_down_read());
    EXPECT_FALSE(r.try_down_write());
    r.up_read();
    r.up_read();
    EXPECT_TRUE(r.try_down_write());
    EXPECT_TRUE(r.is_write_locked_by_me());
    EXPECT_FALSE(r.try_down_read());
    r.downgrade_write();
    EXPECT_EQ(r.readers(), 1u);
    r.up_read();
    EXPECT_FALSE(r.is_locked());
}

TEST(Rwsem, KillableWaitGivesUp) {
    sync::Rwsem r;
    r.down_write();
    int polls = 0;
    bool got = r.down_read_until([&] { return ++polls > 3; });
    EXPECT_FALSE(got);
    r.up_write();
    EXPECT_TRUE(r.down_read_until([] { return false; }));
    r.up_read();
}

TEST(SyncConcurrent, SpinlockAndRwsemExclusion) {
    sync::Spinlock spin;
    sync::Rwsem sem;
    long counter = 0;  // guarded by spin
    long shared = 0;   // written under sem for write, read under it for read
    std::atomic<bool> bad{false};
    std::vector<std::thread> ts;
    for (int i = 0; i < 4; ++i)
        ts.emplace_back([&, i] {
            for (int j = 0; j < 2000; ++j) {
                {
                    sync::SpinGuard g(spin);
                    ++counter;
                }
                if ((i + j) % 4 == 0) {
                    sync::WriteGuard g(sem);
                    shared += 2;
                    if (shared % 2) bad = true;
                } else {
                    sync::ReadGuard g(sem);
                    if (shared % 2) bad = true;
                }
            }
        });
    for (auto& t : ts) t.join();
    EXPECT_EQ(counter, 8000);
    EXPECT_FALSE(bad.load());
}

TEST(SyncConcurrent, SeqcountReadersSeeConsistentPairs) {
    sync::SeqCount seq;
    sync::Spinlock writer_lock;
    std::atomic<long> a{0}, b{0};
    std::atomic<bool> stop{false}, torn{false};
    std::thread w([&] {
        for (long i = 1; i < 5000; ++i) {
            sync::SpinGuard g(writer_lock);
            seq.write_begin();
            a.store(i, std::memory_order_relaxed);
            b.store(i, std::memory_order_relaxed);
            seq.write_end();
        }
        stop = true;
    });
    std::thread r([&] {
        while (!stop) {
            uint32_t s;
            if (!seq.try_begin(s)) continue;
            long x = a.load(std::memory_order_relaxed), y = b.load(std::memory_order_relaxed);
            if (!seq.retry(s) && x != y) torn = true;
        }
    });
    w.join();
    r.join();
    EXPECT_FALSE(torn.load());
}

// A reader holding an RCU-protected pointer never sees it freed: the model's
// page-table freeing depends on this.
TEST(RcuConcurrent, CallRcuWaitsForReaders) {
    struct Node {
        std::atomic<int> value{42};
    };
    std::atomic<Node*> head{new Node};
    std::atomic<bool> stop{false}, bad{false};
    std::vector<std::thread> readers;
    for (int i = 0; i < 2; ++i)
        readers.emplace_back([&] {
            while (!stop) {
                sync::RcuReadGuard g;
                Node* n = head.load(std::memory_order_acquire);
                if (n->value.load() != 42) bad = true;
            }
        });
    for (int i = 0; i < 500; ++i) {
        Node* old = head.exchange(new Node, std::memory_order_acq_rel);
        sync::call_rcu([old] {
            old->value = -1;  // poison before freeing: a reader that still sees it fails
            delete old;
        });
    }
    stop = true;
    for (auto& t : readers) t.join();
    sync::rcu_barrier();
    EXPECT_FALSE(bad.load());
    EXPECT_EQ(sync::rcu_pending(), 0u);
    delete head.load();
}

}  // namespace
}  // namespace pl
