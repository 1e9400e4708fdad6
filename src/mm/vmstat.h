// pinlab — /proc/vmstat counters, by their upstream names.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "base/sync/atomic.h"

namespace pl {

struct ShardRelease;

enum class Vmstat : uint8_t {
    nr_foll_pin_acquired,
    nr_foll_pin_released,
    nr_anon_pages,
    nr_file_pages,
    nr_shmem,
    nr_dirty,
    nr_writeback,
    nr_written,
    pgfault,
    pgmajfault,
    pgmigrate_success,
    pgmigrate_fail,
    thp_fault_alloc,
    thp_fault_fallback,
    thp_split_pmd,
    thp_split_page,
    thp_collapse_alloc,
    thp_zero_page_alloc,
    compact_success,
    compact_fail,
    cow_copies,          // pinlab: wp_page_copy() runs (no upstream counter)
    fork_pinned_copies,  // pinlab: pages copied at fork because they may be pinned
    htlb_buddy_alloc_success,
    gup_fast_pages,      // pinlab: pages GUP-fast took without locks
    gup_fast_no_page,    // pinlab: GUP-fast met a usable-looking leaf without a struct page
    nr_vmstat_items
};

// Per-CPU counters, as upstream's vmstat is: each host thread owns a
// cache-line-aligned shard while it lives (claimed at its first count,
// handed back at its exit) and adds into it with a plain load and store,
// as this_cpu_add() does; a read sums the shards (vmstat_refresh()). Threads
// beyond kOwnedShards share one last shard with atomic adds.
class VmstatCounters {
public:
    void add(Vmstat i, int64_t d = 1) {
        const size_t s = shard_index();
        auto& c = shards_[s].v[static_cast<size_t>(i)];
        if (s < kOwnedShards) [[likely]]
            c.store(c.load(sync::memory_order_relaxed) + d, sync::memory_order_relaxed);  // one writer
        else
            c.fetch_add(d, sync::memory_order_relaxed);
    }
    int64_t get(Vmstat i) const {
        int64_t sum = 0;
        for (const auto& s : shards_) sum += s.v[static_cast<size_t>(i)].load(sync::memory_order_relaxed);
        return sum;
    }
    // By /proc/vmstat name; false if unknown.
    bool get(std::string_view name, int64_t* out) const;
    static std::string_view name(Vmstat i);

    static constexpr size_t kOwnedShards = 64;

private:
    // The calling thread's shard: one it owns, or kOwnedShards (shared).
    static size_t shard_index() {
        if (t_shard == kUnclaimed) [[unlikely]] t_shard = claim_shard();
        return t_shard;
    }
    static size_t claim_shard();
    friend struct ShardRelease;
    static constexpr size_t kUnclaimed = ~size_t{0};
    static thread_local size_t t_shard;
    struct alignas(64) Shard {
        std::array<sync::Atomic<int64_t>, static_cast<size_t>(Vmstat::nr_vmstat_items)> v{};
    };
    std::array<Shard, kOwnedShards + 1> shards_{};
};

}  // namespace pl
