#include "mm/vmstat.h"

namespace pl {
namespace {

constexpr std::array<std::string_view, static_cast<size_t>(Vmstat::nr_vmstat_items)> kNames{
    "nr_foll_pin_acquired", "nr_foll_pin_released", "nr_anon_pages",     "nr_file_pages",
    "nr_shmem",             "nr_dirty",             "nr_writeback",      "nr_written",
    "pgfault",              "pgmajfault",           "pgmigrate_success", "pgmigrate_fail",
    "thp_fault_alloc",      "thp_fault_fallback",   "thp_split_pmd",     "thp_split_page",
    "thp_collapse_alloc",   "thp_zero_page_alloc",  "compact_success",   "compact_fail",
    "cow_copies",           "fork_pinned_copies",   "htlb_buddy_alloc_success", "gup_fast_pages",     "gup_fast_no_page",
};

}  // namespace

size_t VmstatCounters::shard_index() {
    static sync::Atomic<size_t> next{0};
    thread_local const size_t mine = next.fetch_add(1, sync::memory_order_relaxed) % kShards;
    return mine;
}

std::string_view VmstatCounters::name(Vmstat i) { return kNames[static_cast<size_t>(i)]; }

bool VmstatCounters::get(std::string_view n, int64_t* out) const {
    for (size_t i = 0; i < kNames.size(); ++i)
        if (kNames[i] == n) {
            *out = get(static_cast<Vmstat>(i));
            return true;
        }
    return false;
}

}  // namespace pl
