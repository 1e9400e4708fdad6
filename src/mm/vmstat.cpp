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

namespace {
// Which shard indices a live thread owns (the same index in every kernel).
std::array<sync::Atomic<bool>, VmstatCounters::kOwnedShards> g_shard_owned{};
}  // namespace

// Hands the thread's shard back when it exits; a later thread that claims
// it (acquire) sees every count this one made (release).
struct ShardRelease {
    size_t idx = VmstatCounters::kOwnedShards;
    ~ShardRelease();
    // The explorer's pooled threads claim their shard before running model
    // threads: a fresh thread's lazy claim would pass interleaving points
    // that a reused one does not (sync::ThreadReuseHooks).
    static void claim_now() { (void)VmstatCounters::shard_index(); }
};

namespace {
thread_local ShardRelease t_release;
[[maybe_unused]] const bool kReuseHooks = sync::register_thread_reuse_hooks({&ShardRelease::claim_now, nullptr});
}  // namespace

thread_local size_t VmstatCounters::t_shard = VmstatCounters::kUnclaimed;

// Counts made after this (other thread-local destructors) go to the shared shard.
ShardRelease::~ShardRelease() {
    if (idx >= VmstatCounters::kOwnedShards) return;
    VmstatCounters::t_shard = VmstatCounters::kOwnedShards;
    g_shard_owned[idx].store(false, sync::memory_order_release);
}

size_t VmstatCounters::claim_shard() {
    for (size_t i = 0; i < kOwnedShards; ++i) {
        bool expected = false;
        if (!g_shard_owned[i].load(sync::memory_order_relaxed) &&
            g_shard_owned[i].compare_exchange(expected, true, sync::memory_order_acq_rel)) {
            t_release.idx = i;
            return i;
        }
    }
    return kOwnedShards;  // all taken: the shared shard
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
