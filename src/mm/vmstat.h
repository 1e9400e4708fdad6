// pinlab — /proc/vmstat counters, by their upstream names.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "base/sync/atomic.h"

namespace pl {

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

// Per-CPU counters, as upstream's vmstat is: each host thread adds into its
// own cache-line-aligned shard (no shared line is written on the pin path, so
// -j threads do not contend); a read sums the shards (vmstat_refresh()).
class VmstatCounters {
public:
    void add(Vmstat i, int64_t d = 1) {
        shards_[shard_index()].v[static_cast<size_t>(i)].fetch_add(d, sync::memory_order_relaxed);
    }
    int64_t get(Vmstat i) const {
        int64_t sum = 0;
        for (const auto& s : shards_) sum += s.v[static_cast<size_t>(i)].load(sync::memory_order_relaxed);
        return sum;
    }
    // By /proc/vmstat name; false if unknown.
    bool get(std::string_view name, int64_t* out) const;
    static std::string_view name(Vmstat i);

private:
    static constexpr size_t kShards = 16;
    // The calling thread's shard, handed out round-robin at its first use.
    static size_t shard_index();
    struct alignas(64) Shard {
        std::array<sync::Atomic<int64_t>, static_cast<size_t>(Vmstat::nr_vmstat_items)> v{};
    };
    std::array<Shard, kShards> shards_{};
};

}  // namespace pl
