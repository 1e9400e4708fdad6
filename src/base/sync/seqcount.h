// pinlab — seqcount_t. The mm's write_protect_seq is one: fork holds it odd
// while it write-protects the parent's anonymous pages, and GUP-fast pins
// only when it saw it even before and unchanged after (gup_fast()).
#pragma once

#include <atomic>
#include <cstdint>

#include "base/sync/sched_point.h"

namespace pl::sync {

class SeqCount {
public:
    // raw_write_seqcount_begin/end: the caller serialises writers itself.
    void write_begin() {
        point(Point::SeqWrite, this);
        // seq_cst: the data stores that follow cannot move above the increment.
        seq_.fetch_add(1, std::memory_order_seq_cst);
    }
    void write_end() {
        point(Point::SeqWrite, this);
        seq_.fetch_add(1, std::memory_order_release);
    }
    // read_seqcount_begin: waits out a writer.
    uint32_t read_begin() const {
        Backoff b(this);
        while (true) {
            point(Point::SeqRead, this);
            uint32_t s = seq_.load(std::memory_order_acquire);
            if (!(s & 1)) return s;
            b.pause();
        }
    }
    // raw_seqcount_try_begin: false while a writer is inside.
    bool try_begin(uint32_t& start) const {
        point(Point::SeqRead, this);
        start = seq_.load(std::memory_order_acquire);
        return !(start & 1);
    }
    // read_seqcount_retry: true when a writer ran since `start`.
    bool retry(uint32_t start) const {
        point(Point::SeqRead, this);
        // The model's protected data are read with seq_cst loads, so a seq_cst
        // re-read of the count cannot be satisfied before them.
        return seq_.load(std::memory_order_seq_cst) != start;
    }
    uint32_t raw() const { return seq_.load(std::memory_order_relaxed); }

private:
    std::atomic<uint32_t> seq_{0};
};

// RAII writer section.
class SeqWriteGuard {
public:
    explicit SeqWriteGuard(SeqCount& s) : s_(s) { s_.write_begin(); }
    ~SeqWriteGuard() { s_.write_end(); }
    SeqWriteGuard(const SeqWriteGuard&) = delete;
    SeqWriteGuard& operator=(const SeqWriteGuard&) = delete;

private:
    SeqCount& s_;
};

}  // namespace pl::sync
