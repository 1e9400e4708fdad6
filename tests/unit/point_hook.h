// pinlab unit tests — PointHook: a chosen interleaving inside one call
// without a second thread.
#pragma once

#include <functional>
#include <utility>

#include "base/sync/sched_point.h"

namespace pl::test {

// Runs `fn` once, on the calling thread, just before the n-th interleaving
// point of kind `p` (at `addr`, or anywhere when addr is null): what another
// CPU could do at that instant. Installed as the calling thread's scheduler
// for its lifetime.
class PointHook : public sync::Scheduler {
public:
    PointHook(sync::Point p, const void* addr, int nth, std::function<void()> fn)
        : p_(p), addr_(addr), nth_(nth), fn_(std::move(fn)) {
        sync::set_thread_scheduler(this);
    }
    ~PointHook() override { sync::set_thread_scheduler(nullptr); }
    PointHook(const PointHook&) = delete;
    PointHook& operator=(const PointHook&) = delete;
    void at_point(sync::Point p, const void* addr) override {
        if (busy_ || fired_ || p != p_ || (addr_ && addr != addr_) || ++seen_ < nth_) return;
        busy_ = true;
        fn_();
        busy_ = false;
        fired_ = true;
    }
    void blocked(const void*) override {}  // the waiter polls again
    bool fired() const { return fired_; }

private:
    sync::Point p_;
    const void* addr_;
    int nth_;
    std::function<void()> fn_;
    int seen_ = 0;
    bool busy_ = false, fired_ = false;
};

}  // namespace pl::test
